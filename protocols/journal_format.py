"""The on-disk format of a shard's journal: records, frames and segment headers.

The journal is the shard's source of truth, so its bytes are a contract of their own, kept
apart from the code that does the I/O (`cluster.storage.journal`): a replay tool, a researcher's
notebook or a future log engine can read a journal with this module alone.

Records
    A record is a `CommandBatch` (the commands one engine batch applied, with the range of event
    sequence numbers it produced) or an `EpochStarted` (a new writer took over). Both are
    MessagePack arrays whose first element is the type's name (msgspec ``tag``,
    ``array_like``), so field order is part of the format: add fields only at the end, with a
    default, and bump `FORMAT_VERSION` for anything else.

Frames
    Every record is written as one frame::

        offset  size  field
        0       4     payload length in bytes, unsigned little-endian, 1..MAX_PAYLOAD_BYTES
        4       4     CRC32C (Castagnoli) of the payload, unsigned little-endian
        8       n     payload: the MessagePack record

    The length comes first so that a reader can tell a frame cut short by a crash (fewer bytes
    left than the length says) from a damaged one (the checksum does not match). A length of
    zero is never valid: the checksum of nothing is zero, so a run of zero bytes (which some
    filesystems leave at the end of a file after a host crash) would otherwise read as an
    endless list of valid empty frames.

Segments
    A journal is a directory of segment files; each starts with a 32-byte header::

        offset  size  field
        0       8     magic b"RAYTRJNL"
        8       4     format version (1), unsigned little-endian
        12      8     epoch of the writer that created the segment
        20      8     first sequence number the segment holds (also its file name)
        28      4     CRC32C of bytes 0..27

    followed by frames up to the end of the file. A file with another magic, an unknown version
    or a damaged header is not a segment of this journal, and readers say so loudly.
"""

from __future__ import annotations

import struct
from typing import Final, TypeAlias

import crc32c
import msgspec

from protocols.messages import Command

FORMAT_VERSION: Final = 1
"""Version of the frame and segment layout written by this code."""

SEGMENT_MAGIC: Final = b"RAYTRJNL"
"""First eight bytes of every segment file."""

SEGMENT_HEADER: Final = struct.Struct("<8sIQQI")
"""Segment header: magic, format version, epoch, first sequence number, header CRC32C."""

FRAME_HEADER: Final = struct.Struct("<II")
"""Frame header: payload length, payload CRC32C."""

MAX_PAYLOAD_BYTES: Final = 1 << 28
"""Largest record payload (256 MiB); a larger length field can only be damage."""


class FormatError(ValueError):
    """Raised when bytes are not a valid segment header or record of this format."""


class CommandBatch(msgspec.Struct, frozen=True, kw_only=True, tag=True, array_like=True, gc=False):
    """A batch of commands a shard accepted, in the order it applied them."""

    epoch: int
    """Epoch of the writer that appended the batch; readers skip batches of superseded
    writers that appear after a newer writer's `EpochStarted`."""
    first_seq: int
    """Sequence number of the first event the batch produced."""
    last_seq: int
    """Sequence number of the last event the batch produced (a batch produces at least one,
    so ``last_seq >= first_seq``)."""
    commands: list[Command]
    """The commands, each with the ingress timestamp the gateway gave it."""


class EpochStarted(msgspec.Struct, frozen=True, kw_only=True, tag=True, array_like=True, gc=False):
    """A new writer incarnation took over the journal; older epochs are fenced from here on."""

    epoch: int
    """The new writer's epoch, greater than every epoch before it."""
    next_seq: int
    """Sequence number the new writer continues from."""


class BatchHead(
    msgspec.Struct, frozen=True, kw_only=True, tag="CommandBatch", array_like=True, gc=False
):
    """A `CommandBatch` with its commands left undecoded, for scans that need only the range."""

    epoch: int
    first_seq: int
    last_seq: int
    commands: msgspec.Raw
    """The encoded command list, decoded later only if the batch is wanted."""


class SegmentHeader(msgspec.Struct, frozen=True, kw_only=True):
    """The decoded header of a segment file."""

    version: int
    epoch: int
    """Epoch of the writer that created the segment."""
    first_seq: int
    """First sequence number the segment holds; the segment's file name says the same."""


JournalRecord: TypeAlias = CommandBatch | EpochStarted
"""Everything a journal frame may hold."""

RecordHead: TypeAlias = BatchHead | EpochStarted
"""A record as decoded by `decode_record_head`."""

RECORD_TAGS: Final = tuple(
    msgspec.msgpack.encode(record_type.__struct_config__.tag)
    for record_type in (CommandBatch, EpochStarted)
)
"""The encoded type name every payload carries right after its one-byte array header.

Scanning for these finds where frames may start in damaged data without trusting any
length field."""

_encoder: Final = msgspec.msgpack.Encoder()
_record_decoder: Final[msgspec.msgpack.Decoder[JournalRecord]] = msgspec.msgpack.Decoder(
    JournalRecord
)
_head_decoder: Final[msgspec.msgpack.Decoder[RecordHead]] = msgspec.msgpack.Decoder(RecordHead)


def decode_record(payload: bytes | memoryview) -> JournalRecord:
    """Decode a record payload; raise `msgspec.DecodeError` if it is malformed."""
    return _record_decoder.decode(payload)


def decode_record_head(payload: bytes | memoryview) -> RecordHead:
    """Decode a record payload but leave a batch's commands encoded.

    Raise `msgspec.DecodeError` if it is malformed.
    """
    return _head_decoder.decode(payload)


def encode_frame_into(record: JournalRecord, buffer: bytearray) -> None:
    """Replace the contents of ``buffer`` with the record's complete frame.

    Reusing one buffer per writer saves an allocation and a copy of the payload per append.
    Raise `FormatError` if the payload is larger than `MAX_PAYLOAD_BYTES`.
    """
    _encoder.encode_into(record, buffer, FRAME_HEADER.size)
    length = len(buffer) - FRAME_HEADER.size
    if length > MAX_PAYLOAD_BYTES:
        raise FormatError(f"record of {length} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    with memoryview(buffer) as view:
        checksum = crc32c.crc32c(view[FRAME_HEADER.size :])
    FRAME_HEADER.pack_into(buffer, 0, length, checksum)


def encode_frame(record: JournalRecord) -> bytes:
    """Return the record's complete frame (header and payload)."""
    buffer = bytearray()
    encode_frame_into(record, buffer)
    return bytes(buffer)


def pack_segment_header(*, epoch: int, first_seq: int) -> bytes:
    """Return the 32-byte header of a new segment."""
    body = SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, epoch, first_seq, 0)
    body_size = SEGMENT_HEADER.size - 4
    return body[:body_size] + struct.pack("<I", crc32c.crc32c(body[:body_size]))


def unpack_segment_header(data: bytes) -> SegmentHeader:
    """Decode a segment header; raise `FormatError` unless it is an intact header we can read."""
    if len(data) < SEGMENT_HEADER.size:
        raise FormatError(f"segment header is {len(data)} bytes, expected {SEGMENT_HEADER.size}")
    magic, version, epoch, first_seq, checksum = SEGMENT_HEADER.unpack_from(data)
    if magic != SEGMENT_MAGIC:
        raise FormatError(f"not a journal segment: magic {magic!r}, expected {SEGMENT_MAGIC!r}")
    if checksum != crc32c.crc32c(data[: SEGMENT_HEADER.size - 4]):
        raise FormatError("segment header checksum mismatch")
    if version != FORMAT_VERSION:
        raise FormatError(f"segment format version {version}, this code reads {FORMAT_VERSION}")
    return SegmentHeader(version=version, epoch=epoch, first_seq=first_seq)
