"""Rules of the shard journal: framing, recovery, rotation, durability policy, fencing, readers.

Every test works on real files under pytest's tmp_path; damage is done by writing bytes into
the segment files, the way a crash or a bad disk would.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.storage.journal import (
    DEFAULT_FSYNC_POLICY,
    LOCK_FILE,
    FsyncPolicy,
    Journal,
    JournalClosedError,
    JournalCorrupt,
    JournalError,
    JournalFenced,
    JournalLockError,
    JournalWriteError,
    list_segments,
    read_batches,
    read_frames,
)
from protocols.journal_format import (
    FRAME_HEADER,
    SEGMENT_HEADER,
    CommandBatch,
    EpochStarted,
    decode_record,
    encode_frame,
    unpack_segment_header,
)
from protocols.messages import (
    CancelOrder,
    Command,
    MassCancel,
    NewOrder,
    ReplaceOrder,
    RiskLimitsConfig,
    SetKillSwitch,
    SetRiskLimits,
    SetSymbolHalt,
    Side,
    TimeInForce,
)

# ------------------------------------------------------------------------------- helpers


def order(number: int) -> NewOrder:
    return NewOrder(
        account=f"account-{number % 3}",
        client_order_id=f"order-{number}",
        symbol="SYM0",
        side=Side.BUY if number % 2 else Side.SELL,
        quantity=1 + number % 7,
        price=10_000 + number,
        ts_ns=1_767_225_600_000_000_000 + number,
    )


def append_batches(
    journal: Journal, count: int, *, commands: int = 2, events: int = 3
) -> list[CommandBatch]:
    """Append ``count`` batches and return them as a reader should see them."""
    appended = []
    for _ in range(count):
        first = journal.next_seq
        batch_commands: list[Command] = [order(first + index) for index in range(commands)]
        journal.append(first, first + events - 1, batch_commands)
        appended.append(
            CommandBatch(
                epoch=journal.epoch,
                first_seq=first,
                last_seq=first + events - 1,
                commands=batch_commands,
            )
        )
    return appended


def patch_file(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(data)


def append_bytes(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


class FsyncCounter:
    """An fsync that really syncs and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, descriptor: int) -> None:
        os.fsync(descriptor)
        self.calls += 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


NO_FSYNC = FsyncPolicy(mode="none")


# ------------------------------------------------------------------------------- basics


def test_empty_journal_starts_at_sequence_one_with_an_epoch_marker(tmp_path: Path) -> None:
    """A new journal gets epoch 1, one segment named 1, and the marker EpochStarted(1, 1)."""
    with Journal.open_writer(tmp_path) as journal:
        assert (journal.epoch, journal.next_seq) == (1, 1)
        assert journal.recovery_report.last_seq == 0
        assert journal.recovery_report.truncated_bytes == 0
    assert [path.name for path in list_segments(tmp_path)] == ["00000000000000000001.seg"]
    frames = list(read_frames(tmp_path))
    assert [decode_record(frame.payload) for frame in frames] == [
        EpochStarted(epoch=1, next_seq=1)
    ]
    assert frames[0].offset == SEGMENT_HEADER.size
    assert list(read_batches(tmp_path)) == []


def test_every_command_type_reads_back_exactly(tmp_path: Path) -> None:
    """What was appended is read back equal, field for field, in order."""
    commands: list[Command] = [
        order(1),
        NewOrder(
            account="a", client_order_id="m", symbol="SYM1", side=Side.SELL, quantity=5,
            time_in_force=TimeInForce.IOC, ts_ns=7,
        ),
        CancelOrder(account="a", client_order_id="c", symbol="SYM0", order_id=1 << 40, ts_ns=8),
        ReplaceOrder(
            account="a", client_order_id="r", symbol="SYM0", order_id=3, price=9, quantity=2
        ),
        MassCancel(account="a", client_order_id="x"),
        SetRiskLimits(account="*", limits=RiskLimitsConfig(max_order_quantity=100)),
        SetKillSwitch(account="a", engaged=True),
        SetSymbolHalt(symbol="SYM0", halted=True),
    ]
    with Journal.open_writer(tmp_path) as journal:
        journal.append(1, 12, commands)
        journal.append(13, 13, tuple(commands[:1]))  # any sequence will do
    assert list(read_batches(tmp_path)) == [
        CommandBatch(epoch=1, first_seq=1, last_seq=12, commands=commands),
        CommandBatch(epoch=1, first_seq=13, last_seq=13, commands=commands[:1]),
    ]


def test_reopen_takes_the_next_epoch_and_continues_the_sequence(tmp_path: Path) -> None:
    """Each new writer takes epoch + 1, marks it, and continues right after the last batch."""
    with Journal.open_writer(tmp_path) as first:
        appended = append_batches(first, 3)
    with Journal.open_writer(tmp_path) as second:
        assert (second.epoch, second.next_seq) == (2, 10)
        report = second.recovery_report
        assert (report.batches, report.records, report.last_seq) == (3, 4, 9)
        appended += append_batches(second, 2)
    with Journal.open_writer(tmp_path) as third:
        assert (third.epoch, third.next_seq) == (3, 16)
    assert list(read_batches(tmp_path)) == appended
    markers = [
        record
        for record in (decode_record(frame.payload) for frame in read_frames(tmp_path))
        if isinstance(record, EpochStarted)
    ]
    assert markers == [
        EpochStarted(epoch=1, next_seq=1),
        EpochStarted(epoch=2, next_seq=10),
        EpochStarted(epoch=3, next_seq=16),
    ]


def test_a_gap_or_overlap_in_first_seq_raises_value_error(tmp_path: Path) -> None:
    """A batch must start at next_seq and end at or after its start; violations are bugs."""
    with Journal.open_writer(tmp_path) as journal:
        append_batches(journal, 1, events=2)
        with pytest.raises(ValueError, match="continues at 3"):
            journal.append(4, 4, [order(4)])
        with pytest.raises(ValueError, match="continues at 3"):
            journal.append(2, 4, [order(4)])
        with pytest.raises(ValueError, match="before its start"):
            journal.append(3, 2, [order(3)])
        with pytest.raises(ValueError, match="at least one command"):
            journal.append(3, 3, [])
        journal.append(3, 3, [order(3)])
    assert [batch.first_seq for batch in read_batches(tmp_path)] == [1, 3]


def test_a_closed_writer_refuses_appends(tmp_path: Path) -> None:
    """After close() (or leaving the with block) an append raises JournalClosedError."""
    with Journal.open_writer(tmp_path) as journal:
        pass
    with pytest.raises(JournalClosedError):
        journal.append(1, 1, [order(1)])
    journal.close()  # closing twice is harmless


def test_frames_are_contiguous_after_the_segment_header(tmp_path: Path) -> None:
    """Frames follow the 32-byte header back to back: length, CRC32C, payload."""
    with Journal.open_writer(tmp_path) as journal:
        append_batches(journal, 3)
    frames = list(read_frames(tmp_path))
    offset = SEGMENT_HEADER.size
    for frame in frames:
        assert frame.offset == offset
        offset += FRAME_HEADER.size + len(frame.payload)
    assert offset == frames[0].segment.stat().st_size


# ------------------------------------------------------------------------------- torn tail


def test_a_frame_cut_short_at_the_end_is_truncated_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A partial last frame (a crash mid-write) is cut off, reported, and appending resumes."""
    with Journal.open_writer(tmp_path) as journal:
        appended = append_batches(journal, 3)
    segment = list_segments(tmp_path)[-1]
    clean_size = segment.stat().st_size
    partial = encode_frame(
        CommandBatch(epoch=1, first_seq=10, last_seq=10, commands=[order(10)])
    )[:-5]
    append_bytes(segment, partial)

    with caplog.at_level(logging.WARNING, logger="cluster.storage.journal"):
        journal = Journal.open_writer(tmp_path)
    with journal:
        assert journal.recovery_report.truncated_bytes == len(partial)
        assert journal.recovery_report.last_seq == 9
        assert journal.next_seq == 10
        assert f"torn tail of {len(partial)} bytes" in caplog.text
        assert segment.stat().st_size > clean_size  # the cut, then the new marker
        appended += append_batches(journal, 2)
    assert list(read_batches(tmp_path)) == appended


def test_a_last_frame_with_a_bad_checksum_is_truncated(tmp_path: Path) -> None:
    """A full-length last frame whose CRC fails, with nothing after it, is a torn tail."""
    with Journal.open_writer(tmp_path) as journal:
        appended = append_batches(journal, 3)
    last = list(read_frames(tmp_path))[-1]
    size = last.segment.stat().st_size
    patch_file(last.segment, last.offset + FRAME_HEADER.size + 3, b"\xff")

    with Journal.open_writer(tmp_path) as journal:
        assert journal.recovery_report.truncated_bytes == size - last.offset
        assert journal.next_seq == appended[-1].first_seq
        appended[-1:] = append_batches(journal, 1)
    assert list(read_batches(tmp_path)) == appended


def test_a_zero_filled_tail_is_truncated(tmp_path: Path) -> None:
    """Zero bytes after the last frame (left by some filesystems) are a torn tail, not frames."""
    with Journal.open_writer(tmp_path) as journal:
        appended = append_batches(journal, 2)
    append_bytes(list_segments(tmp_path)[-1], bytes(4096))
    with Journal.open_writer(tmp_path) as journal:
        assert journal.recovery_report.truncated_bytes == 4096
        appended += append_batches(journal, 1)
    assert list(read_batches(tmp_path)) == appended


def test_a_reader_stops_quietly_at_an_incomplete_last_frame(tmp_path: Path) -> None:
    """A reader treats a partial or damaged last frame as the end (a writer may be mid-write)."""
    with Journal.open_writer(tmp_path) as journal:
        appended = append_batches(journal, 3)
    segment = list_segments(tmp_path)[-1]
    clean_size = segment.stat().st_size
    frame = encode_frame(CommandBatch(epoch=1, first_seq=10, last_seq=10, commands=[order(1)]))
    for cut in (3, FRAME_HEADER.size, len(frame) - 1):
        append_bytes(segment, frame[:cut])
        assert list(read_batches(tmp_path)) == appended
        os.truncate(segment, clean_size)
    damaged = bytearray(frame)
    damaged[-1] ^= 0xFF
    append_bytes(segment, bytes(damaged))
    assert list(read_batches(tmp_path)) == appended


# ------------------------------------------------------------------------------- corruption


def test_a_bad_checksum_in_the_middle_raises_journal_corrupt(tmp_path: Path) -> None:
    """Damage with valid frames after it is never skipped: writer and readers raise."""
    with Journal.open_writer(tmp_path) as journal:
        append_batches(journal, 5)
    middle = list(read_frames(tmp_path))[2]
    patch_file(middle.segment, middle.offset + FRAME_HEADER.size + 5, b"\x00\x01")
    size = middle.segment.stat().st_size

    with pytest.raises(JournalCorrupt, match="checksum mismatch"):
        Journal.open_writer(tmp_path)
    with pytest.raises(JournalCorrupt, match="valid frames after it"):
        list(read_batches(tmp_path))
    with pytest.raises(JournalCorrupt):
        list(read_frames(tmp_path))
    assert middle.segment.stat().st_size == size  # nothing was cut


def test_a_damaged_length_in_the_middle_is_not_taken_for_a_torn_tail(tmp_path: Path) -> None:
    """A length field pointing past the end, with valid frames after it, is corruption."""
    with Journal.open_writer(tmp_path) as journal:
        append_batches(journal, 5)
    middle = list(read_frames(tmp_path))[2]
    patch_file(middle.segment, middle.offset, (1 << 20).to_bytes(4, "little"))
    size = middle.segment.stat().st_size
    with pytest.raises(JournalCorrupt, match="cut short"):
        Journal.open_writer(tmp_path)
    assert middle.segment.stat().st_size == size


def test_a_bad_frame_at_the_end_of_a_closed_segment_raises(tmp_path: Path) -> None:
    """Only the last segment may have a torn tail: the others were synced before rotation."""
    with Journal.open_writer(tmp_path, segment_bytes=400) as journal:
        append_batches(journal, 12)
    first_segment = list_segments(tmp_path)[0]
    last_frame = [frame for frame in read_frames(tmp_path) if frame.segment == first_segment][-1]
    patch_file(first_segment, last_frame.offset + FRAME_HEADER.size + 2, b"\xee")
    with pytest.raises(JournalCorrupt, match="closed segment"):
        Journal.open_writer(tmp_path)
    with pytest.raises(JournalCorrupt, match="closed segment"):
        list(read_batches(tmp_path))


def test_a_wrong_magic_raises_journal_corrupt(tmp_path: Path) -> None:
    """A file that is not a segment of this journal is rejected loudly."""
    with Journal.open_writer(tmp_path) as journal:
        append_batches(journal, 2)
    segment = list_segments(tmp_path)[0]
    patch_file(segment, 0, b"NOTAJRNL")
    with pytest.raises(JournalCorrupt, match="not a journal segment"):
        Journal.open_writer(tmp_path)
    with pytest.raises(JournalCorrupt, match="not a journal segment"):
        list(read_batches(tmp_path))


def test_a_damaged_header_or_misnamed_segment_raises(tmp_path: Path) -> None:
    """The header's checksum and first sequence number must match the file."""
    with Journal.open_writer(tmp_path) as journal:
        append_batches(journal, 2)
    segment = list_segments(tmp_path)[0]
    renamed = segment.with_name(f"{5:020d}.seg")
    segment.rename(renamed)
    with pytest.raises(JournalCorrupt, match="starts at 1"):
        list(read_batches(tmp_path, from_seq=5))
    renamed.rename(segment)
    patch_file(segment, 20, b"\x07")  # first_seq, without fixing the header's checksum
    with pytest.raises(JournalCorrupt, match="header checksum"):
        list(read_batches(tmp_path))


def test_a_missing_segment_raises_journal_corrupt(tmp_path: Path) -> None:
    """A segment that does not start where the previous one ended means lost data."""
    with Journal.open_writer(tmp_path, segment_bytes=400) as journal:
        append_batches(journal, 20)
    segments = list_segments(tmp_path)
    assert len(segments) >= 3
    segments[1].unlink()
    with pytest.raises(JournalCorrupt, match="segment starts at"):
        list(read_batches(tmp_path))
    with pytest.raises(JournalCorrupt, match="segment starts at"):
        Journal.open_writer(tmp_path)


def test_a_journal_that_starts_after_from_seq_raises(tmp_path: Path) -> None:
    """A reader asking for history the journal no longer has is told, not given a gap."""
    with Journal.open_writer(tmp_path, segment_bytes=400) as journal:
        append_batches(journal, 20)
    segments = list_segments(tmp_path)
    segments[0].unlink()
    second_start = int(segments[1].name.removesuffix(".seg"))
    with pytest.raises(JournalCorrupt, match="starts at"):
        list(read_batches(tmp_path, from_seq=1))
    assert next(iter(read_batches(tmp_path, from_seq=second_start))).first_seq == second_start


def test_a_malformed_epoch_file_raises_journal_corrupt(tmp_path: Path) -> None:
    """The EPOCH file is decimal text; anything else is not silently reset."""
    Journal.open_writer(tmp_path).close()
    (tmp_path / "EPOCH").write_text("seven\n")
    with pytest.raises(JournalCorrupt, match="malformed epoch"):
        Journal.open_writer(tmp_path)


def test_an_epoch_marker_that_skips_sequence_numbers_raises(tmp_path: Path) -> None:
    """A marker promising a later next_seq than the journal holds is a gap."""
    with Journal.open_writer(tmp_path) as journal:
        append_batches(journal, 1, events=2)
    append_bytes(list_segments(tmp_path)[-1], encode_frame(EpochStarted(epoch=9, next_seq=8)))
    with pytest.raises(JournalCorrupt, match="starts at 8"):
        list(read_batches(tmp_path))


# ------------------------------------------------------------------------------- rotation


def test_rotation_names_each_segment_by_its_first_sequence_number(tmp_path: Path) -> None:
    """Past segment_bytes the writer starts a segment named by the next batch's first_seq."""
    with Journal.open_writer(tmp_path, segment_bytes=500) as journal:
        appended = append_batches(journal, 30)
    segments = list_segments(tmp_path)
    assert len(segments) > 3
    first_batch_in: dict[Path, int] = {}
    for frame in read_frames(tmp_path):
        record = decode_record(frame.payload)
        if isinstance(record, CommandBatch):
            first_batch_in.setdefault(frame.segment, record.first_seq)
    for segment in segments:
        header = unpack_segment_header(segment.read_bytes()[: SEGMENT_HEADER.size])
        assert int(segment.name.removesuffix(".seg")) == header.first_seq
        assert first_batch_in[segment] == header.first_seq
    assert list(read_batches(tmp_path)) == appended


def test_reading_from_the_middle_of_the_second_segment(tmp_path: Path) -> None:
    """A reader starts at the segment holding from_seq and yields exactly the batches from it."""
    with Journal.open_writer(tmp_path, segment_bytes=500) as journal:
        appended = append_batches(journal, 30)
    segments = list_segments(tmp_path)
    in_second = [
        record
        for record in (
            decode_record(frame.payload)
            for frame in read_frames(tmp_path)
            if frame.segment == segments[1]
        )
        if isinstance(record, CommandBatch)
    ]
    assert len(in_second) >= 3
    target = in_second[1]
    from_seq = target.first_seq + 1  # inside the second segment's second batch
    expected = [batch for batch in appended if batch.last_seq >= from_seq]
    assert expected[0] == target

    patch_file(segments[0], 0, b"NOTAJRNL")  # proves the reader never opens the first segment
    assert list(read_batches(tmp_path, from_seq=from_seq)) == expected


def test_from_seq_inside_a_batch_yields_that_batch(tmp_path: Path) -> None:
    """A batch is yielded when its range includes from_seq, not only when it starts there."""
    with Journal.open_writer(tmp_path) as journal:
        appended = append_batches(journal, 4, events=3)
    assert list(read_batches(tmp_path, from_seq=5)) == appended[1:]
    assert list(read_batches(tmp_path, from_seq=6)) == appended[1:]
    assert list(read_batches(tmp_path, from_seq=7)) == appended[2:]
    assert list(read_batches(tmp_path, from_seq=13)) == []
    with pytest.raises(ValueError):
        list(read_batches(tmp_path, from_seq=0))


def test_open_can_scan_only_the_last_segment(tmp_path: Path) -> None:
    """scan_all_segments=False reads only the last segment; readers still find old damage."""
    with Journal.open_writer(tmp_path, segment_bytes=400) as journal:
        append_batches(journal, 20)
        next_seq = journal.next_seq
    segments = list_segments(tmp_path)
    middle = next(frame for frame in read_frames(tmp_path) if frame.segment == segments[0])
    patch_file(segments[0], middle.offset + FRAME_HEADER.size + 4, b"\x99")
    with Journal.open_writer(tmp_path, scan_all_segments=False) as journal:
        assert journal.next_seq == next_seq
        assert journal.recovery_report.scanned_segments == 1
        assert journal.recovery_report.segments == len(segments)
    with pytest.raises(JournalCorrupt):
        list(read_batches(tmp_path))


# ------------------------------------------------------------------------------- fsync policy


def test_batch_policy_fsyncs_once_per_append(tmp_path: Path) -> None:
    """'batch': exactly one fsync per append, however many commands the batch holds."""
    counter = FsyncCounter()
    with Journal.open_writer(tmp_path, fsync=DEFAULT_FSYNC_POLICY, fsync_function=counter) as j:
        before = counter.calls
        append_batches(j, 5, commands=50)
        assert counter.calls - before == 5
        before = counter.calls
    assert counter.calls == before  # close() has nothing left to sync


def test_interval_policy_fsyncs_only_when_due_and_on_sync(tmp_path: Path) -> None:
    """'interval': an append fsyncs only if the last fsync is older than interval_ms."""
    counter = FsyncCounter()
    clock = FakeClock()
    journal = Journal.open_writer(
        tmp_path,
        fsync=FsyncPolicy(mode="interval", interval_ms=5),
        clock=clock,
        fsync_function=counter,
    )
    with journal:
        start = counter.calls
        for now, expected_calls in [(0.001, 0), (0.004, 0), (0.006, 1), (0.007, 1), (0.0109, 1)]:
            clock.now = now
            append_batches(journal, 1)
            assert counter.calls - start == expected_calls, now
        journal.sync()
        assert counter.calls - start == 2
        journal.sync()  # nothing new to sync
        assert counter.calls - start == 2
        clock.now = 0.0111
        append_batches(journal, 1)  # the sync() at 0.0109 reset the interval
        assert counter.calls - start == 2
    assert counter.calls - start == 3  # close() syncs what is pending


def test_none_policy_never_fsyncs_on_the_append_path(tmp_path: Path) -> None:
    """'none': zero fsyncs however many appends, and none at close."""
    counter = FsyncCounter()
    with Journal.open_writer(tmp_path, fsync=NO_FSYNC, fsync_function=counter) as journal:
        before = counter.calls
        append_batches(journal, 100)
    assert counter.calls == before


def test_an_unknown_fsync_mode_is_refused() -> None:
    """A policy is checked when it is made."""
    with pytest.raises(ValueError):
        FsyncPolicy(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FsyncPolicy(mode="interval", interval_ms=-1)


def test_a_failed_fsync_kills_the_writer(tmp_path: Path) -> None:
    """After a failed fsync nothing is acknowledged again; a reopen recovers what is on disk."""
    failing = {"armed": False}

    def fsync_then_fail(descriptor: int) -> None:
        os.fsync(descriptor)
        if failing["armed"]:
            raise OSError(errno.EIO, "injected I/O error")

    journal = Journal.open_writer(tmp_path, fsync_function=fsync_then_fail)
    with journal:
        append_batches(journal, 1)
        failing["armed"] = True
        with pytest.raises(JournalWriteError, match="fsync failed"):
            append_batches(journal, 1)
        failing["armed"] = False
        with pytest.raises(JournalWriteError):
            append_batches(journal, 1)
    with Journal.open_writer(tmp_path) as reopened:
        assert reopened.recovery_report.batches == 2  # written, never acknowledged


# ------------------------------------------------------------------------------- fencing


def test_a_new_writer_fences_the_old_one(tmp_path: Path) -> None:
    """Once writer B has opened (epoch + 1), every append of writer A raises JournalFenced."""
    writer_a = Journal.open_writer(tmp_path, fsync=NO_FSYNC)
    appended = append_batches(writer_a, 2)
    writer_b = Journal.open_writer(tmp_path, fsync=NO_FSYNC)
    assert writer_b.epoch == writer_a.epoch + 1
    assert writer_b.next_seq == writer_a.next_seq
    with pytest.raises(JournalFenced):
        writer_a.append(writer_a.next_seq, writer_a.next_seq, [order(0)])
    with pytest.raises(JournalFenced):  # and it stays fenced
        writer_a.sync()
    appended += append_batches(writer_b, 2)
    writer_a.close()
    writer_b.close()
    assert list(read_batches(tmp_path)) == appended
    assert all(batch.epoch in (1, 2) for batch in appended)


def test_a_writer_superseded_during_its_fsync_does_not_acknowledge(tmp_path: Path) -> None:
    """The post-write check: a takeover between A's write and its return makes A raise.

    The batch stays in the journal (B's recovery saw it, so B continues after it), but A
    never acknowledges it.
    """
    successor: list[Journal] = []
    armed = {"value": False}

    def fsync_then_take_over(descriptor: int) -> None:
        os.fsync(descriptor)
        if armed["value"]:
            armed["value"] = False
            successor.append(Journal.open_writer(tmp_path))

    writer_a = Journal.open_writer(tmp_path, fsync_function=fsync_then_take_over)
    appended = append_batches(writer_a, 1)
    armed["value"] = True
    with pytest.raises(JournalFenced):
        append_batches(writer_a, 1, events=2)
    (writer_b,) = successor
    assert writer_b.next_seq == 6
    assert [batch.first_seq for batch in read_batches(tmp_path)] == [1, 4]
    appended = list(read_batches(tmp_path)) + append_batches(writer_b, 1)
    writer_a.close()
    writer_b.close()
    assert list(read_batches(tmp_path)) == appended


def test_an_epoch_file_rewritten_with_the_same_epoch_does_not_fence(tmp_path: Path) -> None:
    """Only a different epoch fences: a rewrite with the same number (a new inode) does not."""
    with Journal.open_writer(tmp_path, fsync=NO_FSYNC) as journal:
        append_batches(journal, 1)
        (tmp_path / "EPOCH.new").write_text(f"{journal.epoch}\n")
        os.replace(tmp_path / "EPOCH.new", tmp_path / "EPOCH")
        append_batches(journal, 2)
        journal.sync()
    assert len(list(read_batches(tmp_path))) == 3


def test_a_zombie_frame_after_the_epoch_marker_is_skipped(tmp_path: Path) -> None:
    """A frame of an older epoch after EpochStarted(E) is skipped by readers and recovery."""
    writer_a = Journal.open_writer(tmp_path, fsync=NO_FSYNC)
    appended = append_batches(writer_a, 2)
    writer_b = Journal.open_writer(tmp_path, fsync=NO_FSYNC)
    zombie = CommandBatch(
        epoch=writer_a.epoch,
        first_seq=writer_b.next_seq,
        last_seq=writer_b.next_seq + 4,
        commands=[order(666)],
    )
    segment = list_segments(tmp_path)[-1]
    descriptor = os.open(segment, os.O_WRONLY | os.O_APPEND)
    os.write(descriptor, encode_frame(zombie))  # as writer A would, bypassing its checks
    os.close(descriptor)
    appended += append_batches(writer_b, 2)
    writer_a.close()
    writer_b.close()

    assert list(read_batches(tmp_path)) == appended
    from_b = [batch for batch in appended if batch.epoch == writer_b.epoch]
    assert list(read_batches(tmp_path, from_seq=from_b[0].first_seq)) == from_b
    with Journal.open_writer(tmp_path) as writer_c:
        assert writer_c.recovery_report.skipped_records == 1
        assert writer_c.next_seq == appended[-1].last_seq + 1


def test_the_lock_keeps_a_writer_from_writing_during_a_takeover(tmp_path: Path) -> None:
    """An append waits while a new writer holds LOCK, then sees the new epoch and writes nothing.

    This closes the window between a new writer's recovery scan and its marker.
    """
    writer_a = Journal.open_writer(tmp_path, fsync=NO_FSYNC)
    append_batches(writer_a, 1)
    segment = list_segments(tmp_path)[-1]
    size = segment.stat().st_size
    outcome: list[BaseException | None] = []

    def append_in_thread() -> None:
        try:
            append_batches(writer_a, 1)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    descriptor = os.open(tmp_path / LOCK_FILE, os.O_RDWR)
    fcntl.flock(descriptor, fcntl.LOCK_EX)  # what a new writer holds while it recovers
    thread = threading.Thread(target=append_in_thread)
    try:
        thread.start()
        thread.join(timeout=0.2)
        assert thread.is_alive() and segment.stat().st_size == size
        (tmp_path / "EPOCH.new").write_text("2\n")
        os.replace(tmp_path / "EPOCH.new", tmp_path / "EPOCH")  # the new writer's epoch bump
    finally:
        os.close(descriptor)
        thread.join()
    assert isinstance(outcome[0], JournalFenced)
    assert segment.stat().st_size == size
    writer_a.close()


def test_a_frame_slipping_in_before_the_marker_stops_the_new_writer(tmp_path: Path) -> None:
    """Where the lock does not work, a frame between B's scan and B's marker is detected.

    B refuses to start (JournalLockError); the next writer counts the frame, which precedes
    B's marker, and tolerates the marker's now stale next_seq.
    """
    with Journal.open_writer(tmp_path) as journal:
        appended = append_batches(journal, 2)
    segment = list_segments(tmp_path)[-1]
    append_bytes(segment, b"\x05\x00")  # a torn tail, so that recovery syncs the cut
    slipped = CommandBatch(epoch=1, first_seq=7, last_seq=7, commands=[order(7)])
    injected = {"done": False}

    def fsync_then_write_behind_the_lock(descriptor: int) -> None:
        os.fsync(descriptor)
        if not injected["done"] and os.readlink(f"/proc/self/fd/{descriptor}").endswith(".seg"):
            injected["done"] = True  # the cut was synced: the scan is over, no marker yet
            append_bytes(segment, encode_frame(slipped))

    with pytest.raises(JournalLockError, match="during recovery"):
        Journal.open_writer(tmp_path, fsync_function=fsync_then_write_behind_the_lock)
    with Journal.open_writer(tmp_path) as journal:
        assert journal.epoch == 3
        assert journal.next_seq == 8
        appended += [slipped, *append_batches(journal, 1)]
    assert list(read_batches(tmp_path)) == appended


def test_readers_never_take_an_epoch(tmp_path: Path) -> None:
    """Reading leaves EPOCH, LOCK and the segments as they were."""
    with Journal.open_writer(tmp_path) as journal:
        append_batches(journal, 3)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    list(read_batches(tmp_path))
    list(read_frames(tmp_path))
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_each_open_bumps_the_epoch_file(tmp_path: Path) -> None:
    """The EPOCH file holds the newest writer's epoch, even if its open failed afterwards."""
    for expected in (1, 2, 3):
        Journal.open_writer(tmp_path).close()
        assert (tmp_path / "EPOCH").read_text() == f"{expected}\n"
    patch_file(list_segments(tmp_path)[0], 0, b"NOTAJRNL")
    with pytest.raises(JournalCorrupt):
        Journal.open_writer(tmp_path)
    assert (tmp_path / "EPOCH").read_text() == "4\n"
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")]


def test_a_lost_epoch_file_never_puts_a_writer_below_the_journal(tmp_path: Path) -> None:
    """If EPOCH is behind the journal, the writer takes an epoch above every record in it.

    Otherwise readers would skip the new writer's batches as a zombie's.
    """
    for _ in range(3):
        Journal.open_writer(tmp_path).close()
    (tmp_path / "EPOCH").unlink()
    with Journal.open_writer(tmp_path) as journal:
        assert journal.epoch == 4
        appended = append_batches(journal, 2)
    assert (tmp_path / "EPOCH").read_text() == "4\n"
    assert list(read_batches(tmp_path)) == appended


def test_open_gives_up_when_the_lock_is_held_too_long(tmp_path: Path) -> None:
    """Another process holding LOCK past lock_timeout_s makes open raise JournalLockError."""
    Journal.open_writer(tmp_path).close()
    descriptor = os.open(tmp_path / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        with pytest.raises(JournalLockError, match="held the journal lock"):
            Journal.open_writer(tmp_path, lock_timeout_s=0.05)
    finally:
        os.close(descriptor)
    with Journal.open_writer(tmp_path) as journal:
        assert journal.epoch == 2


def test_every_journal_exception_is_a_journal_error() -> None:
    """One base class lets an actor shell catch every journal failure in one place."""
    for exception in (
        JournalCorrupt, JournalFenced, JournalWriteError, JournalLockError, JournalClosedError
    ):
        assert issubclass(exception, JournalError)


# ------------------------------------------------------------------------------- property


@given(
    shapes=st.lists(
        st.tuples(st.integers(1, 4), st.integers(1, 3)), min_size=1, max_size=40
    ),
    segment_bytes=st.integers(150, 3_000),
    reopen_after=st.integers(0, 40),
    data=st.data(),
)
def test_everything_appended_is_read_back_from_any_from_seq(
    shapes: list[tuple[int, int]], segment_bytes: int, reopen_after: int, data: st.DataObject
) -> None:
    """For any batch shapes, segment size and reopen point, every from_seq reads back exactly.

    read_batches(from_seq) yields exactly the appended batches whose last_seq >= from_seq.
    """
    with tempfile.TemporaryDirectory() as directory:
        appended: list[CommandBatch] = []
        journal = Journal.open_writer(directory, fsync=NO_FSYNC, segment_bytes=segment_bytes)
        try:
            for index, (commands, events) in enumerate(shapes):
                if index == reopen_after:
                    journal.close()
                    journal = Journal.open_writer(
                        directory, fsync=NO_FSYNC, segment_bytes=segment_bytes
                    )
                appended += append_batches(journal, 1, commands=commands, events=events)
        finally:
            journal.close()
        last_seq = appended[-1].last_seq
        assert list(read_batches(directory)) == appended
        for from_seq in data.draw(st.lists(st.integers(1, last_seq + 2), max_size=5)):
            expected = [batch for batch in appended if batch.last_seq >= from_seq]
            assert list(read_batches(directory, from_seq=from_seq)) == expected
