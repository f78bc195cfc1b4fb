"""Record a shard's market data as Parquet files that researchers query with DuckDB.

The shard's journal holds commands; its events come back by replay. Researchers want the
market data in a columnar form that any tool reads (DuckDB, polars, pyarrow, Spark), so a
`MarketDataRecorder` is fed each batch of one shard's events, in sequence, and keeps three
tables:

* ``trades``: every `Trade`, all of its fields;
* ``top_of_book``: a row whenever a symbol's best bid or best ask (price or quantity) changes,
  derived from the `LevelChanged` events by keeping each symbol's price levels;
* ``l2``: the `LevelChanged` events themselves (L2 deltas).

Layout (hive partitioning: ``kind``, ``symbol`` and ``date`` are columns to DuckDB and
pyarrow; the symbol is URL-quoted, the date is the UTC day of ``ts_ns``)::

    <directory>/
      kind=trades/symbol=AAPL/date=2026-12-02/shard-0-<first seq>-<last seq>.parquet
      kind=top_of_book/symbol=AAPL/date=2026-12-02/shard-0-...parquet
      kind=l2/symbol=AAPL/date=2026-12-02/shard-0-...parquet
      _recorder/shard-0-<position>.snap    the commit record: position and price levels

Files hold ``seq``, ``ts_ns`` (int64 nanoseconds) and ``ts`` (``timestamp[ns, UTC]``, the same
instant), then the kind's columns (`SCHEMAS`). Prices are the system's integer prices (units
of ``10**-price_scale``, multiples of the tick size, as in the events); each file's key-value
metadata names the instrument's ``price_scale``, ``tick_size`` and ``lot_size``
(`RecordedFile`, `decimal_price`, `decimal_prices`). Sides are the `Side` values (1 buy,
2 sell). Several shards may record into one directory: file names carry the shard.

Durability. Rows are buffered and flushed when ``max_rows`` rows are buffered or the oldest
unflushed event is ``max_age_s`` old (checked by `record` and `maybe_flush`), always at the
end of a `record` call, so a flush never splits a call. A flush writes one file per kind,
symbol and day, each to a temporary name, fsynced, renamed into place, its directory fsynced;
every file of a flush carries the flush's sequence range ``position + 1 .. last`` in its name
and metadata. Then it commits: the commit record (a `cluster.storage.snapshots` snapshot: CRC,
atomic rename) stores the new position and every symbol's price levels. A crash between the
two leaves files whose range ends after the committed position: the next recorder on the
directory deletes them (and any temporary file of its shard) before it records, and the
events come again. So the files hold each event's rows exactly once, and what the files
hold is exactly the events ``1..position``.

Why the price levels are persisted rather than rebuilt. Top of book after a restart needs
every symbol's levels as of ``position``, which the events after it do not carry. They could
be rebuilt: replay the shard from its newest snapshot at or before ``position`` up to
``position`` and read the books' L2, or read every L2 file back. Either ties the recorder's
start to the journal and the matching engine (or to the whole history), and the first needs
the caller to stop its replay exactly at ``position``. Stored instead in the commit record,
the levels are written in the same atomic rename as the position they belong to, so the two
cannot disagree, and the recorder restarts from its own directory alone; they are small (a
shard's price levels: a few KB to a few MB, written once per flush).

After a restart, the caller must::

    recorder = MarketDataRecorder(directory, shard_id, instruments)   # recovers from disk
    for events in replay_events(shard_dir, shard_id, instruments, recorder.position + 1):
        recorder.record(events)                # the missed events, from the journal
    ...                                        # then the live batches, as before the crash

Feeding from seq 1 instead also works (events at or before the last one taken are ignored),
only slower; events pushed again after the catch-up are ignored likewise. Feed whole command
batches (as the book actor publishes them and `ShardReplay` / `replay_events` yield them):
top-of-book rows are taken at the end of each symbol's run of `LevelChanged` events within a
call, which is the book after the batch; a batch split across two calls gives an extra row
with the half-applied picture. ``position`` is always the end of a call, so with whole
batches a restart resumes at the start of one and the rows equal an uninterrupted run's.
The recorder is not thread-safe: one caller feeds it.

Exceptions (ValueError for bad arguments)::

    RecorderError              base of the recorder's own failures
    ├── SequenceGapError       record() got an event past the next expected seq (nothing taken)
    ├── UnknownSymbolError     a Trade or LevelChanged names a symbol not in the instruments
    ├── RecordingStateError    the directory holds this shard's files but no commit record
    ├── RecorderLockedError    another recorder (process or object) holds this shard
    ├── RecorderFailedError    a flush failed earlier: reopen the recorder to recover
    └── RecorderClosedError    used after close()

Not built: compaction of the many small files a long live recording makes (one per kind,
symbol and day per flush).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import logging
import os
import re
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Final
from urllib.parse import quote, unquote

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from cluster.config import InstrumentRegistry, ShardMap, shard_instruments
from cluster.storage import layout
from cluster.storage.journal import list_segments, read_batches
from cluster.storage.shard import replay_events
from cluster.storage.snapshots import SnapshotStore
from protocols.messages import Event, Instrument, LevelChanged, Side, Trade

log = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1
"""Version of the files' layout, in every file's metadata and in the commit record."""

TRADES: Final = "trades"
TOP_OF_BOOK: Final = "top_of_book"
L2: Final = "l2"
KINDS: Final = (TRADES, TOP_OF_BOOK, L2)

NS_PER_DAY: Final = 86_400 * 10**9
TIMESTAMP: Final = pa.timestamp("ns", tz="UTC")

_SEQ_COLUMNS = [("seq", pa.int64()), ("ts_ns", pa.int64())]
INPUT_SCHEMAS: Final[Mapping[str, pa.Schema]] = {
    TRADES: pa.schema([
        *_SEQ_COLUMNS,
        ("price", pa.int64()),
        ("quantity", pa.int64()),
        ("aggressor_side", pa.int8()),
        ("maker_order_id", pa.int64()),
        ("maker_account", pa.string()),
        ("maker_client_order_id", pa.string()),
        ("maker_leaves", pa.int64()),
        ("taker_order_id", pa.int64()),
        ("taker_account", pa.string()),
        ("taker_client_order_id", pa.string()),
        ("taker_leaves", pa.int64()),
    ]),
    TOP_OF_BOOK: pa.schema([
        *_SEQ_COLUMNS,
        ("bid_price", pa.int64()),
        ("bid_quantity", pa.int64()),
        ("ask_price", pa.int64()),
        ("ask_quantity", pa.int64()),
    ]),
    L2: pa.schema([
        *_SEQ_COLUMNS,
        ("side", pa.int8()),
        ("price", pa.int64()),
        ("quantity", pa.int64()),
        ("order_count", pa.int64()),
    ]),
}
"""What `PartitionWriter.write` takes per kind: the file's columns without ``ts``. In
``top_of_book`` an empty side has a null price and quantity 0."""

SCHEMAS: Final[Mapping[str, pa.Schema]] = {
    kind: schema.insert(2, pa.field("ts", TIMESTAMP)) for kind, schema in INPUT_SCHEMAS.items()
}
"""The columns of each kind's files (``symbol`` and ``date`` come from the path)."""

_DELTA: Final = "DELTA_BINARY_PACKED"
_ENCODINGS: Final[Mapping[str, Mapping[str, str]]] = {
    TRADES: {"seq": _DELTA, "ts_ns": _DELTA, "ts": _DELTA, "price": _DELTA,
             "maker_order_id": _DELTA, "taker_order_id": _DELTA,
             "maker_client_order_id": "DELTA_BYTE_ARRAY",
             "taker_client_order_id": "DELTA_BYTE_ARRAY"},
    TOP_OF_BOOK: {"seq": _DELTA, "ts_ns": _DELTA, "ts": _DELTA, "bid_price": _DELTA,
                  "ask_price": _DELTA},
    L2: {"seq": _DELTA, "ts_ns": _DELTA, "ts": _DELTA, "price": _DELTA},
}
"""Parquet encodings of the columns that change little from row to row (sequence numbers,
times, prices, order ids, client order ids with common prefixes): with zstd, they make the
trades files about a third the size of dictionary encoding (benchmarks/bench_query.py);
the other columns keep dictionary encoding."""
_DICTIONARY: Final[Mapping[str, list[str]]] = {
    kind: [field.name for field in schema if field.name not in _ENCODINGS[kind]]
    for kind, schema in SCHEMAS.items()
}

STATE_FOLDER: Final = "_recorder"
_PREFIX: Final = "raytrade."
_FILE_NAME: Final = re.compile(r"^shard-(\d+)-(\d{20})-(\d{20})\.parquet$")


# ------------------------------------------------------------------------------ exceptions


class RecorderError(Exception):
    """Base of the recorder's failures (see the tree in the module docstring)."""


class SequenceGapError(RecorderError):
    """Raised by `MarketDataRecorder.record` when an event's seq is past the next expected one.

    Nothing of the call is recorded. ``expected`` is the seq the recorder waits for,
    ``received`` the one it got: feed the events from ``expected`` (replayed from the journal).
    """

    def __init__(self, shard_id: int, expected: int, received: int) -> None:
        super().__init__(f"shard {shard_id} recorder expects event {expected} next, got "
                         f"{received}: events {expected}..{received - 1} are missing")
        self.shard_id = shard_id
        self.expected = expected
        self.received = received


class UnknownSymbolError(RecorderError):
    """Raised when a Trade or LevelChanged names a symbol the recorder was not given."""


class RecordingStateError(RecorderError):
    """Raised on open when the directory holds committed-looking files of this shard but no
    readable commit record, so the recorded position is unknown. Nothing is deleted: move the
    shard's files away (or restore ``_recorder/``) and record again."""


class RecorderLockedError(RecorderError):
    """Raised on open when another recorder, in this process or another, holds the shard."""


class RecorderFailedError(RecorderError):
    """Raised when the recorder is used after a flush failed: what it wrote was removed as far
    as possible, and a new recorder on the directory recovers from what was committed."""


class RecorderClosedError(RecorderError):
    """Raised when the recorder is used after `MarketDataRecorder.close`."""


# ------------------------------------------------------------------------------ prices


def decimal_price(price: int, price_scale: int) -> Decimal:
    """Return an integer price as a decimal: 12345 with scale 2 is ``Decimal("123.45")``."""
    return Decimal(price).scaleb(-price_scale)


def decimal_prices(prices: pa.Array | pa.ChunkedArray, price_scale: int) -> pa.Array:
    """Return int64 prices as ``decimal128(38, price_scale)`` with the same values, exactly.

    The integers become the decimals' unscaled values (no multiplication, no rounding).
    """
    if isinstance(prices, pa.ChunkedArray):
        prices = prices.combine_chunks()
    prices = prices.cast(pa.int64())
    values = pc.fill_null(prices, 0).to_numpy()
    wide = np.empty((len(values), 2), dtype=np.int64)
    wide[:, 0] = values
    wide[:, 1] = values >> 63  # sign extension: a 128-bit little-endian integer
    validity = pc.is_valid(prices).buffers()[1] if prices.null_count else None
    return pa.Array.from_buffers(
        pa.decimal128(38, price_scale), len(values), [validity, pa.py_buffer(wide.tobytes())],
        null_count=prices.null_count,
    )


# ------------------------------------------------------------------------------ files


class RecordedFile(msgspec.Struct, frozen=True, kw_only=True):
    """What a recorded file's metadata says about it."""

    path: Path
    kind: str
    shard_id: int
    symbol: str
    date: str
    """The UTC day of its rows, ``YYYY-MM-DD``."""
    first_seq: int
    last_seq: int
    """The flush's sequence range: its rows are events of this range, which the commit
    record at ``last_seq`` made durable."""
    rows: int
    price_scale: int
    tick_size: int
    lot_size: int

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RecordedFile:
        """Read a file's footer (not its rows)."""
        metadata = pq.read_metadata(path)
        fields = {
            key.decode()[len(_PREFIX):]: value.decode()
            for key, value in (metadata.metadata or {}).items()
            if key.startswith(_PREFIX.encode())
        }
        return cls(
            path=Path(path), kind=fields["kind"], shard_id=int(fields["shard"]),
            symbol=fields["symbol"], date=fields["date"], first_seq=int(fields["first_seq"]),
            last_seq=int(fields["last_seq"]), rows=metadata.num_rows,
            price_scale=int(fields["price_scale"]), tick_size=int(fields["tick_size"]),
            lot_size=int(fields["lot_size"]),
        )


def partition_directory(directory: str | os.PathLike[str], kind: str, symbol: str,
                        date: str) -> Path:
    """Return the folder of one kind, symbol and day."""
    return Path(directory) / f"kind={kind}" / f"symbol={quote(symbol, safe='')}" / f"date={date}"


def recorded_files(directory: str | os.PathLike[str], kind: str | None = None,
                   shard_id: int | None = None) -> list[Path]:
    """Return the recorded files under ``directory`` (of one kind and shard, if given)."""
    found = []
    for _kind, path in _walk(Path(directory), kind):
        match = _FILE_NAME.match(path.name)
        if match and (shard_id is None or int(match.group(1)) == shard_id):
            found.append(path)
    return sorted(found)


def read_recorded(directory: str | os.PathLike[str], kind: str,
                  symbol: str | None = None) -> pa.Table:
    """Read every recorded row of one kind (one symbol, if given), ordered by symbol and seq,
    with a ``symbol`` column; empty with the kind's columns if nothing is recorded."""
    tables = []
    for path in recorded_files(directory, kind):
        file_symbol = unquote(path.parent.parent.name.removeprefix("symbol="))
        if symbol is not None and file_symbol != symbol:
            continue
        table = pq.read_table(path)
        tables.append(table.append_column("symbol", pa.array([file_symbol] * len(table),
                                                             pa.string())))
    if not tables:
        schema = SCHEMAS[kind].append(pa.field("symbol", pa.string()))
        return schema.empty_table()
    table = pa.concat_tables([table.replace_schema_metadata(None) for table in tables])
    return table.sort_by([("symbol", "ascending"), ("seq", "ascending")])


def _walk(directory: Path, kind: str | None) -> Iterator[tuple[str, Path]]:
    """Yield ``(kind, path)`` of every entry in the partition folders (files and temps)."""
    for one in (kind,) if kind is not None else KINDS:
        root = directory / f"kind={one}"
        if not root.is_dir():
            continue
        for symbol_dir in root.iterdir():
            if not symbol_dir.is_dir():
                continue
            for date_dir in symbol_dir.iterdir():
                if date_dir.is_dir():
                    for entry in date_dir.iterdir():
                        yield one, entry


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class PartitionWriter:
    """Write tables of one shard as hive-partitioned Parquet files, each atomically.

    The recorder's flush goes through `write`; so do tools that make a dataset without
    matching (benchmarks, imports), which then get the same layout, schema and metadata.
    A file is durable once `sync` has returned after its `write`.
    """

    def __init__(self, directory: str | os.PathLike[str], shard_id: int,
                 instruments: Sequence[Instrument], *, compression: str = "zstd",
                 row_group_rows: int = 1 << 20) -> None:
        self.directory = Path(directory)
        self.shard_id = shard_id
        self.instruments = {instrument.symbol: instrument for instrument in instruments}
        self.compression = compression
        self.row_group_rows = row_group_rows
        self._unsynced: set[Path] = set()

    def file_name(self, first_seq: int, last_seq: int) -> str:
        """Return the name of a file of the flush ``first_seq..last_seq``."""
        return f"shard-{self.shard_id}-{first_seq:020d}-{last_seq:020d}.parquet"

    def write(self, kind: str, symbol: str, table: pa.Table, first_seq: int,
              last_seq: int) -> list[Path]:
        """Write ``table`` (`INPUT_SCHEMAS[kind]`, rows of ``symbol``) as one file per UTC day
        of its ``ts_ns``, named by the range ``first_seq..last_seq``; return their paths.

        Raise `UnknownSymbolError` for a symbol not in the instruments, ValueError for a table
        of other columns.
        """
        instrument = self.instruments.get(symbol)
        if instrument is None:
            raise UnknownSymbolError(f"shard {self.shard_id}: no instrument {symbol!r}")
        if not table.schema.equals(INPUT_SCHEMAS[kind]):
            raise ValueError(f"a {kind} table needs the columns {INPUT_SCHEMAS[kind]}, "
                             f"got {table.schema}")
        if len(table) == 0:
            return []
        ts_ns = table.column("ts_ns")
        if ts_ns.null_count:
            raise ValueError(f"a {kind} table's ts_ns must not be null")
        table = table.add_column(2, pa.field("ts", TIMESTAMP), ts_ns.cast(TIMESTAMP))
        day_numbers = np.floor_divide(ts_ns.to_numpy(), NS_PER_DAY)
        days = np.unique(day_numbers)
        paths = []
        for day in days:
            rows = table if len(days) == 1 else table.filter(pa.array(day_numbers == day))
            paths.append(self._write_day(kind, instrument, rows, int(day), first_seq, last_seq))
        return paths

    def _write_day(self, kind: str, instrument: Instrument, table: pa.Table, day: int,
                   first_seq: int, last_seq: int) -> Path:
        date = (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()
        folder = partition_directory(self.directory, kind, instrument.symbol, date)
        self._make_folder(folder)
        metadata = {
            "format": FORMAT_VERSION, "kind": kind, "shard": self.shard_id,
            "symbol": instrument.symbol, "date": date, "first_seq": first_seq,
            "last_seq": last_seq, "price_scale": instrument.price_scale,
            "tick_size": instrument.tick_size, "lot_size": instrument.lot_size,
            "sides": "1=BUY,2=SELL",
        }
        table = table.replace_schema_metadata(
            {f"{_PREFIX}{key}": str(value) for key, value in metadata.items()}
        )
        path = folder / self.file_name(first_seq, last_seq)
        descriptor, temporary = tempfile.mkstemp(prefix=f".shard-{self.shard_id}-",
                                                 suffix=".tmp", dir=folder)
        try:
            with os.fdopen(descriptor, "wb") as file:
                pq.write_table(table, file, compression=self.compression,
                               row_group_size=self.row_group_rows,
                               use_dictionary=_DICTIONARY[kind],
                               column_encoding=dict(_ENCODINGS[kind]))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        self._unsynced.add(folder)
        return path

    def _make_folder(self, folder: Path) -> None:
        if folder.is_dir():
            return
        missing = []
        parent = folder
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        folder.mkdir(parents=True, exist_ok=True)
        # a new folder's entry lives in its parent: those must be synced too
        self._unsynced.update(created.parent for created in missing)

    def sync(self) -> None:
        """Make the names of every file written since the last call durable."""
        for folder in sorted(self._unsynced, key=lambda path: -len(path.parts)):
            _fsync_directory(folder)
        self._unsynced.clear()


# ------------------------------------------------------------------------------ the recorder


class _SymbolLevels(msgspec.Struct, frozen=True, array_like=True):
    bids: list[tuple[int, int]]
    """``(price, quantity)`` of every bid level."""
    asks: list[tuple[int, int]]


class RecorderState(msgspec.Struct, frozen=True, kw_only=True):
    """The commit record: what the files hold, and the levels top of book continues from."""

    format: int = FORMAT_VERSION
    shard_id: int
    position: int
    """The last event the files hold (all of ``1..position``)."""
    levels: dict[str, _SymbolLevels]
    """Each symbol's price levels after event ``position``."""


Quote = tuple[int | None, int, int | None, int]
"""``(bid_price, bid_quantity, ask_price, ask_quantity)``; a missing side: ``(None, 0)``."""


class _Levels:
    """One symbol's price levels, with the best prices kept current."""

    __slots__ = ("asks", "best_ask", "best_bid", "bids", "quote")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.best_bid: int | None = None
        self.best_ask: int | None = None
        self.quote: Quote = (None, 0, None, 0)
        """The last top of book written, after the last whole run of level changes."""

    def apply(self, side: int, price: int, quantity: int) -> None:
        if side == Side.BUY:
            if quantity:
                self.bids[price] = quantity
                if self.best_bid is None or price > self.best_bid:
                    self.best_bid = price
            else:
                self.bids.pop(price, None)
                if price == self.best_bid:
                    self.best_bid = max(self.bids) if self.bids else None
        elif quantity:
            self.asks[price] = quantity
            if self.best_ask is None or price < self.best_ask:
                self.best_ask = price
        else:
            self.asks.pop(price, None)
            if price == self.best_ask:
                self.best_ask = min(self.asks) if self.asks else None

    def top(self) -> Quote:
        bid, ask = self.best_bid, self.best_ask
        return (bid, 0 if bid is None else self.bids[bid],
                ask, 0 if ask is None else self.asks[ask])

    def state(self) -> _SymbolLevels:
        return _SymbolLevels(sorted(self.bids.items()), sorted(self.asks.items()))

    @classmethod
    def from_state(cls, state: _SymbolLevels) -> _Levels:
        levels = cls()
        for price, quantity in state.bids:
            levels.apply(Side.BUY, price, quantity)
        for price, quantity in state.asks:
            levels.apply(Side.SELL, price, quantity)
        levels.quote = levels.top()
        return levels


class MarketDataRecorder:
    """Record one shard's trades, top of book and L2 deltas as Parquet (module docstring).

    The constructor is the recovery path: it takes the shard's lock, reads the newest commit
    record, deletes files and temporaries of an interrupted flush, and restores the levels.
    ``position`` is then the last event recorded; feed events from ``position + 1``.
    ``clock`` (monotonic seconds) times ``max_age_s``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        shard_id: int,
        instruments: Sequence[Instrument],
        *,
        max_rows: int = 200_000,
        max_age_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        compression: str = "zstd",
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        if max_age_s < 0:
            raise ValueError(f"max_age_s must not be negative, got {max_age_s}")
        self.directory = Path(directory)
        self.shard_id = shard_id
        self.instruments = {instrument.symbol: instrument for instrument in instruments}
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.clock = clock
        self.writer = PartitionWriter(self.directory, shard_id, instruments,
                                      compression=compression)
        self.flushes = 0
        self.files_written = 0
        self._trades: dict[str, list[tuple[object, ...]]] = {}
        self._quotes: dict[str, list[tuple[object, ...]]] = {}
        self._deltas: dict[str, list[tuple[object, ...]]] = {}
        self._buffered = 0
        self._pending_since: float | None = None
        self._failed: str | None = None
        self._closed = False
        state_folder = self.directory / STATE_FOLDER
        state_folder.mkdir(parents=True, exist_ok=True)
        self._release_lock = self._lock(state_folder / f"shard-{shard_id}.lock")
        try:
            self._store = SnapshotStore(state_folder, keep=2)
            self._position, self._levels = self._recover()
        except BaseException:
            self._release_lock()
            raise
        self._next_seq = self._position + 1

    # ---------------------------------------------------------------- recovery

    def _lock(self, path: Path) -> Callable[[], None]:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise RecorderLockedError(
                    f"{path}: another recorder of shard {self.shard_id} holds this directory"
                ) from error
            raise
        # the lock goes with the descriptor: released when this object is collected or the
        # process dies (SIGKILL included), without a ResourceWarning either way
        return weakref.finalize(self, os.close, descriptor)

    def _recover(self) -> tuple[int, dict[str, _Levels]]:
        found = self._store.latest(self._state_name())
        state = None
        if found is not None:
            state = msgspec.msgpack.decode(found[1], type=RecorderState)
            if state.shard_id != self.shard_id or state.position != found[0]:
                raise RecordingStateError(
                    f"{self.directory / STATE_FOLDER}: the commit record of shard "
                    f"{self.shard_id} names shard {state.shard_id} at {state.position}"
                )
        position = state.position if state is not None else 0
        stale: list[Path] = []
        for _kind, path in _walk(self.directory, None):
            name = path.name
            if name.startswith(f".shard-{self.shard_id}-") and name.endswith(".tmp"):
                stale.append(path)  # a flush died while writing it
                continue
            match = _FILE_NAME.match(name)
            if match is None or int(match.group(1)) != self.shard_id:
                continue
            first_seq, last_seq = int(match.group(2)), int(match.group(3))
            if state is None and first_seq > 1:
                raise RecordingStateError(
                    f"{self.directory}: shard {self.shard_id} has recorded files up to event "
                    f"{last_seq} or later ({path.name}) but no readable commit record in "
                    f"{STATE_FOLDER}/, so what they hold is unknown; nothing was deleted"
                )
            if last_seq > position:
                stale.append(path)  # written by a flush that never committed
        for path in stale:
            log.warning("shard %d recorder: removing %s (an interrupted flush; its events "
                        "come again after event %d)", self.shard_id, path, position)
            path.unlink()
        for folder in {path.parent for path in stale}:
            _fsync_directory(folder)
        levels = {}
        if state is not None:
            levels = {symbol: _Levels.from_state(one) for symbol, one in state.levels.items()}
        log.info("shard %d recorder at event %d (%s)", self.shard_id, position,
                 "new" if state is None else "recovered")
        return position, levels

    def _state_name(self) -> str:
        return f"shard-{self.shard_id}"

    # ---------------------------------------------------------------- state

    @property
    def position(self) -> int:
        """Return the last event the files durably hold (0: none); feed from ``position + 1``."""
        return self._position

    @property
    def next_seq(self) -> int:
        """Return the seq `record` expects next (past ``position`` while rows are buffered)."""
        return self._next_seq

    @property
    def buffered_rows(self) -> int:
        """Return how many rows wait for the next flush."""
        return self._buffered

    def top_of_book(self, symbol: str) -> Quote:
        """Return ``symbol``'s best bid and ask after the last event recorded."""
        levels = self._levels.get(symbol)
        return levels.top() if levels is not None else (None, 0, None, 0)

    # ---------------------------------------------------------------- recording

    def record(self, events: Sequence[Event]) -> None:
        """Take a batch of the shard's events, in seq order; flush if one is due.

        Events at or before the last one taken are ignored (a replay after a restart sends
        them again). Raise `SequenceGapError` if an event's seq is past the next expected one,
        `UnknownSymbolError` for a symbol not in the instruments; either way nothing of the
        call is taken.
        """
        self._check_usable()
        fresh = self._fresh(events)
        if fresh:
            if self._pending_since is None:
                self._pending_since = self.clock()
            self._take(fresh)
            self._next_seq = fresh[-1].seq + 1
        if self._buffered >= self.max_rows:
            self.flush()
        else:
            self.maybe_flush()

    def _fresh(self, events: Sequence[Event]) -> list[Event]:
        expected = self._next_seq
        fresh = []
        instruments = self.instruments
        for event in events:
            seq = event.seq
            if seq < expected:
                continue
            if seq > expected:
                raise SequenceGapError(self.shard_id, expected, seq)
            if isinstance(event, Trade | LevelChanged) and event.symbol not in instruments:
                raise UnknownSymbolError(
                    f"shard {self.shard_id} recorder: event {seq} names "
                    f"{event.symbol!r}, not one of {sorted(instruments)}"
                )
            fresh.append(event)
            expected += 1
        return fresh

    def _take(self, events: list[Event]) -> None:
        astuple = msgspec.structs.astuple
        last = len(events) - 1
        rows = 0
        for index, event in enumerate(events):
            if isinstance(event, Trade):
                self._trades.setdefault(event.symbol, []).append(astuple(event))
                rows += 1
            elif isinstance(event, LevelChanged):
                symbol = event.symbol
                self._deltas.setdefault(symbol, []).append((
                    event.seq, event.ts_ns, event.side, event.price, event.quantity,
                    event.order_count,
                ))
                rows += 1
                levels = self._levels.get(symbol)
                if levels is None:
                    levels = self._levels[symbol] = _Levels()
                levels.apply(event.side, event.price, event.quantity)
                following = events[index + 1] if index < last else None
                if isinstance(following, LevelChanged) and following.symbol == symbol:
                    continue  # the batch's changes to this symbol are not all applied yet
                quote = levels.top()
                if quote != levels.quote:
                    levels.quote = quote
                    self._quotes.setdefault(symbol, []).append((event.seq, event.ts_ns, *quote))
                    rows += 1
        self._buffered += rows

    def maybe_flush(self) -> bool:
        """Flush if the oldest unflushed event is ``max_age_s`` old; return whether it did."""
        self._check_usable()
        if self._pending_since is None or self.clock() - self._pending_since < self.max_age_s:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """Write the buffered rows and commit the position; nothing to do if none is new.

        If writing fails, remove what this flush wrote and raise; the recorder is then
        failed (`RecorderFailedError`), and a new one recovers from the last commit.
        """
        self._check_usable()
        last_seq = self._next_seq - 1
        if last_seq == self._position:
            return
        first_seq = self._position + 1
        written: list[Path] = []
        try:
            for kind, buffers in ((TRADES, self._trades), (TOP_OF_BOOK, self._quotes),
                                  (L2, self._deltas)):
                for symbol, rows in buffers.items():
                    if rows:
                        table = _TABLE_BUILDERS[kind](rows)
                        written += self.writer.write(kind, symbol, table, first_seq, last_seq)
            self.writer.sync()
            state = RecorderState(
                shard_id=self.shard_id, position=last_seq,
                levels={symbol: levels.state() for symbol, levels in self._levels.items()},
            )
            self._store.save(self._state_name(), last_seq, msgspec.msgpack.encode(state))
        except BaseException as error:
            self._failed = f"flush of events {first_seq}..{last_seq} failed: {error!r}"
            log.error("shard %d recorder: %s", self.shard_id, self._failed)
            for path in written:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        self._position = last_seq
        self._trades.clear()
        self._quotes.clear()
        self._deltas.clear()
        self._buffered = 0
        self._pending_since = None
        self.flushes += 1
        self.files_written += len(written)

    def close(self) -> None:
        """Flush (unless a flush failed) and release the shard; idempotent."""
        if self._closed:
            return
        try:
            if self._failed is None:
                self.flush()
        finally:
            self._closed = True
            self._release_lock()

    def __enter__(self) -> MarketDataRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_usable(self) -> None:
        if self._closed:
            raise RecorderClosedError(f"shard {self.shard_id} recorder is closed")
        if self._failed is not None:
            raise RecorderFailedError(
                f"shard {self.shard_id} recorder: {self._failed}; open a new recorder on "
                f"{self.directory} to recover from event {self._position}"
            )


def _trades_table(rows: list[tuple[object, ...]]) -> pa.Table:
    # Trade's fields in order; column 2 (symbol) is the partition
    columns = list(zip(*rows, strict=True))
    schema = INPUT_SCHEMAS[TRADES]
    picked = [columns[0], columns[1], *columns[3:]]
    return pa.Table.from_arrays(
        [pa.array(values, field.type) for values, field in zip(picked, schema, strict=True)],
        schema=schema,
    )


def _rows_table(kind: str) -> Callable[[list[tuple[object, ...]]], pa.Table]:
    schema = INPUT_SCHEMAS[kind]

    def build(rows: list[tuple[object, ...]]) -> pa.Table:
        columns = list(zip(*rows, strict=True))
        return pa.Table.from_arrays(
            [pa.array(values, field.type) for values, field in zip(columns, schema, strict=True)],
            schema=schema,
        )

    return build


_TABLE_BUILDERS: Final[Mapping[str, Callable[[list[tuple[object, ...]]], pa.Table]]] = {
    TRADES: _trades_table, TOP_OF_BOOK: _rows_table(TOP_OF_BOOK), L2: _rows_table(L2),
}


# ------------------------------------------------------------------------------ offline


MARKET_DATA_FOLDER: Final = "market-data"
"""Where a cluster's readers record, inside its data dir (``record_market_data``)."""


class RecorderFactory:
    """Open a shard's `MarketDataRecorder` in the reader's own process (picklable: the
    wiring hands it to the reader actor, which opens it again after each restart)."""

    def __init__(self, directory: str | os.PathLike[str], shard_id: int,
                 instruments: Sequence[Instrument], *, max_age_s: float = 5.0) -> None:
        self.directory = str(directory)
        self.shard_id = shard_id
        self.instruments = list(instruments)
        self.max_age_s = max_age_s

    def __call__(self) -> MarketDataRecorder:
        return MarketDataRecorder(self.directory, self.shard_id, self.instruments,
                                  max_age_s=self.max_age_s)


def _journal_end(journal: Path) -> int:
    """Return the last event of a journal (0 if empty), reading only its last segments."""
    for segment in reversed(list_segments(journal) if journal.is_dir() else []):
        last = 0
        for batch in read_batches(journal, int(segment.stem)):
            last = batch.last_seq
        if last:
            return last
    return 0


def record_journal(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    registry: InstrumentRegistry | None = None,
    *,
    max_rows: int = 200_000,
    max_age_s: float = 60.0,
    progress: bool = True,
) -> dict[int, int]:
    """Record every shard of a cluster's data dir into ``out_dir``; return each shard's position.

    ``registry`` is the cluster's instruments (the packaged set if None); the shard count is
    the data dir's manifest's (else its ``shard-k`` folders'). Run again after new events, or
    after a crash, it resumes each shard at its recorder's position, replaying from the
    shard's newest snapshot before that point rather than from the start.
    """
    registry = registry if registry is not None else InstrumentRegistry.load()
    folders = layout.shard_folders(data_dir)
    manifest = layout.read_manifest(data_dir)
    shard_count = manifest.shards if manifest is not None else max(folders, default=-1) + 1
    if not folders:
        return {}
    grouped = shard_instruments(registry, ShardMap(shard_count, dict(registry.pins)))
    positions = {}
    for shard_id, folder in sorted(folders.items()):
        instruments = grouped[shard_id]
        with MarketDataRecorder(out_dir, shard_id, instruments, max_rows=max_rows,
                                max_age_s=max_age_s) as recorder:
            start = recorder.position
            end = _journal_end(folder / "journal")
            with tqdm(total=max(end - start, 0), unit="event", disable=not progress,
                      desc=f"recording shard {shard_id}") as bar:
                if end > start:
                    for events in replay_events(folder, shard_id, instruments, start + 1):
                        recorder.record(events)
                        bar.update(len(events))
        positions[shard_id] = recorder.position
    return positions
