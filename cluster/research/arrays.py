"""A run's journals replayed into numpy structured arrays, chunk by chunk, for researchers.

A shard's journal holds commands, not events, so the events come back the way every other
reader gets them: replayed through a private copy of the shard (`ShardReplay`, which is
`actors.core.shard.build_shard` and `replay_batch`). This module only turns those events into
columns: `iter_chunks` streams them as chunks (`Chunk`) of at most ``chunk_events`` events
each, so a journal larger than memory can be folded chunk by chunk, and `load_run` concatenates
the chunks into one `Run` for data that fits in memory::

    run = load_run(".raytrade")                       # every shard, instruments from the registry
    fills = run.trades[run.trades["symbol"] == run.symbol_index("SYM0")]
    for chunk in iter_chunks(".raytrade", shards=[1], chunk_events=500_000):
        ...                                           # chunk.orders, chunk.trades, chunk.top

What the arrays hold (one dtype each, declared once below; every array has ``seq``, ``ts_ns``,
``shard`` and ``symbol`` first):

    orders    ORDER_DTYPE    one row per OrderAccepted
    trades    TRADE_DTYPE    one row per Trade
    cancels   CANCEL_DTYPE   one row per OrderCancelled
    replaces  REPLACE_DTYPE  one row per OrderReplaced
    rejects   REJECT_DTYPE   one row per OrderRejected (the code, not the text)
    levels    LEVEL_DTYPE    one row per LevelChanged (the L2 deltas)
    top       TOP_DTYPE      top of book: a row each time a symbol's best bid or ask changes

Numbers stay as the journal has them: prices in integer price units (``10**-price_scale``,
multiples of the tick size), quantities in integer units, ``ts_ns`` in nanoseconds since the
epoch; `Run.decimal` divides by the price scale when floats are wanted. Enum fields (side,
order type, time in force, reasons, codes) hold the enum's integer value.

Symbols and accounts are ``int32`` indexes into tables that belong to the iteration
(``chunk.symbols`` / ``chunk.accounts``, ``run.symbols`` / ``run.accounts``), not fixed-width
bytes: an index is 4 bytes where a fixed-width field must fit the longest name (32 bytes for a
symbol, no limit for an account), it compares and groups as an integer, and it costs one dict
lookup to build. The symbol table starts
as the instruments in registry order (so a symbol's index is known before the replay); symbols
and accounts the journal names beyond that are appended in the order they first appear in the
events (shards in the order iterated, each by sequence number), so the tables and every index
are the same whatever the chunk size. Tables only grow: an index in an early chunk stays valid.
Admin events (limits, kill switches, halts) are only counted. Client order ids and reject texts
are not kept (unique strings per row; replay `cluster.storage.shard.replay_events` for them).

How arrays are built: event objects are gathered per type and converted a field at a time with
``np.fromiter(map(attrgetter(field), events))`` every `_STAGE_EVENTS` events (few enough to
stay in the CPU's cache between fields), then concatenated per chunk. On 100k events of the
benchmark flow held in memory (2 cores, benchmarks/bench_replay_numpy.py) that took ~640 ns
per event (~740 with the top-of-book fold); a tuple per event assigned row by row into
preallocated structured buffers took ~730-840, and a list of tuples with ``np.array(rows,
dtype)`` ~1250. The replay itself (~1.8 us per event) costs more than either.

The manifest of a data dir (`cluster.storage.layout`) records only the shard count, so the
instruments (and symbol pins) come from an `InstrumentRegistry`, the packaged one unless given,
grouped per shard by `ShardMap` as the cluster does. Replaying with other instruments than the
run's (almost always) makes the replay diverge, which raises `ReplayDivergedError` saying so.
The client order id window must be the run's too (the default is the cluster's default).

Exceptions::

    ConfigError (protocols.errors)   not a data dir, no such shard, a bad argument
    ReplayDivergedError              the journal does not replay with these instruments/window
    JournalCorrupt                   a shard's journal is damaged before its end
"""

from __future__ import annotations

import heapq
import re
import time
import typing
from collections.abc import Iterable, Iterator, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeAlias

import msgspec
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from actors.core.shard import CLIENT_ORDER_ID_WINDOW, ReplayDivergedError
from cluster.config import InstrumentRegistry, ShardMap, shard_instruments
from cluster.storage import layout
from cluster.storage.journal_files import numbered_segments
from cluster.storage.journal_readers import JournalWalk
from cluster.storage.shard import ShardReplay, shard_directory
from protocols.errors import ConfigError
from protocols.messages import (
    Event,
    Instrument,
    LevelChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    Side,
    Trade,
)

Array: TypeAlias = npt.NDArray[np.void]
"""A numpy structured array of one of the dtypes below."""

_STAGE_EVENTS: Final = 8_192
"""Events gathered as objects before they are converted to columns: bounds the objects held."""
_PROGRESS_EVERY_EVENTS: Final = 16_384
_SHARD_FOLDER: Final = re.compile(r"^shard-(\d+)$")


class _Column(NamedTuple):
    name: str
    dtype: str
    source: str
    """The event attribute, or ``"shard"`` for the shard being replayed."""
    table: str = ""
    """``"symbols"`` or ``"accounts"`` if the attribute is a name stored as a table index."""


def _columns(*specs: tuple[str, ...]) -> tuple[_Column, ...]:
    return tuple(
        _Column(spec[0], spec[1], spec[2] if len(spec) > 2 else spec[0], *spec[3:])
        for spec in specs
    )


_HEAD = (("seq", "i8"), ("ts_ns", "i8"), ("shard", "i2"), ("symbol", "i4", "symbol", "symbols"))

_ORDER_COLUMNS: Final = _columns(
    *_HEAD,
    ("order_id", "i8"),
    ("account", "i4", "account", "accounts"),
    ("side", "i1"),
    ("order_type", "i1"),
    ("time_in_force", "i1"),
    ("price", "i8"),
    ("quantity", "i8"),
)
_TRADE_COLUMNS: Final = _columns(
    *_HEAD,
    ("price", "i8"),
    ("quantity", "i8"),
    ("aggressor_side", "i1"),
    ("maker_order_id", "i8"),
    ("maker_account", "i4", "maker_account", "accounts"),
    ("maker_leaves", "i8"),
    ("taker_order_id", "i8"),
    ("taker_account", "i4", "taker_account", "accounts"),
    ("taker_leaves", "i8"),
)
_CANCEL_COLUMNS: Final = _columns(
    *_HEAD,
    ("order_id", "i8"),
    ("account", "i4", "account", "accounts"),
    ("side", "i1"),
    ("price", "i8"),
    ("quantity", "i8"),
    ("reason", "i1"),
)
_REPLACE_COLUMNS: Final = _columns(
    *_HEAD,
    ("order_id", "i8"),
    ("account", "i4", "account", "accounts"),
    ("side", "i1"),
    ("old_price", "i8"),
    ("old_quantity", "i8"),
    ("price", "i8"),
    ("quantity", "i8"),
    ("priority_kept", "?"),
)
_REJECT_COLUMNS: Final = _columns(
    *_HEAD,
    ("order_id", "i8"),
    ("account", "i4", "account", "accounts"),
    ("request", "i1"),
    ("code", "i2"),
)
_LEVEL_COLUMNS: Final = _columns(
    *_HEAD,
    ("side", "i1"),
    ("price", "i8"),
    ("quantity", "i8"),
    ("order_count", "i8"),
)


def _dtype(columns: tuple[_Column, ...]) -> np.dtype[np.void]:
    return np.dtype([(column.name, column.dtype) for column in columns])


ORDER_DTYPE: Final = _dtype(_ORDER_COLUMNS)
"""An accepted order: ``seq, ts_ns, shard, symbol, order_id, account, side, order_type,
time_in_force, price, quantity`` (``symbol`` and ``account`` index the tables; ``price`` is 0
for a market order; ``quantity`` is the order's full quantity)."""
TRADE_DTYPE: Final = _dtype(_TRADE_COLUMNS)
"""A trade at the maker's price: ``seq, ts_ns, shard, symbol, price, quantity, aggressor_side,
maker_order_id, maker_account, maker_leaves, taker_order_id, taker_account, taker_leaves``
(``*_leaves``: that side's open quantity after the trade)."""
CANCEL_DTYPE: Final = _dtype(_CANCEL_COLUMNS)
"""A cancelled order: ``seq, ts_ns, shard, symbol, order_id, account, side, price, quantity``
(the open quantity removed) ``, reason`` (`CancelReason`)."""
REPLACE_DTYPE: Final = _dtype(_REPLACE_COLUMNS)
"""A replaced order: ``seq, ts_ns, shard, symbol, order_id, account, side, old_price,
old_quantity, price, quantity`` (the new open quantity) ``, priority_kept``."""
REJECT_DTYPE: Final = _dtype(_REJECT_COLUMNS)
"""A refused request: ``seq, ts_ns, shard, symbol, order_id`` (0 for a new order) ``, account,
request`` (`RequestKind`) ``, code`` (`RejectCode`)."""
LEVEL_DTYPE: Final = _dtype(_LEVEL_COLUMNS)
"""A price level's new aggregate: ``seq, ts_ns, shard, symbol, side, price, quantity,
order_count`` (quantity 0: the level is gone)."""
TOP_DTYPE: Final = np.dtype([
    ("seq", "i8"), ("ts_ns", "i8"), ("shard", "i2"), ("symbol", "i4"),
    ("bid_price", "i8"), ("bid_quantity", "i8"), ("bid_orders", "i8"),
    ("ask_price", "i8"), ("ask_quantity", "i8"), ("ask_orders", "i8"),
])
"""A symbol's best bid and ask after a change: ``seq, ts_ns`` are those of the last
`LevelChanged` of the symbol in its batch (the book is as shown from that event on), then
``shard, symbol, bid_price, bid_quantity, bid_orders, ask_price, ask_quantity, ask_orders``.
An empty side is price 0, quantity 0, orders 0 (no resting order has price 0). A row is
written only when one of the six values differs from the symbol's previous row (the first
one from an empty book), so each row is a change of the top of book. It is as fine as the
level changes it comes from: a shard emits those once per command batch, so a change that a
batch undid before its end is not seen."""

_KINDS: Final[tuple[tuple[str, type[Event], tuple[_Column, ...]], ...]] = (
    ("orders", OrderAccepted, _ORDER_COLUMNS),
    ("trades", Trade, _TRADE_COLUMNS),
    ("cancels", OrderCancelled, _CANCEL_COLUMNS),
    ("replaces", OrderReplaced, _REPLACE_COLUMNS),
    ("rejects", OrderRejected, _REJECT_COLUMNS),
    ("levels", LevelChanged, _LEVEL_COLUMNS),
)
_DTYPES: Final = {
    **{name: _dtype(columns) for name, _, columns in _KINDS}, "top": TOP_DTYPE,
}
_ADMIN_KINDS: Final = tuple(
    kind for kind in typing.get_args(Event) if kind not in {kind for _, kind, _ in _KINDS}
)
"""Events that are counted, not kept: limits, kill switches and halts."""
ARRAY_NAMES: Final = tuple(_DTYPES)
"""The arrays every `Chunk` and `Run` has, in this order."""


class Chunk(msgspec.Struct, frozen=True, kw_only=True, eq=False):
    """At most ``chunk_events`` consecutive events of one shard, as arrays."""

    shard: int
    first_seq: int
    """Sequence number of the chunk's first event."""
    last_seq: int
    """Sequence number of its last event (the chunk holds every event in between)."""
    orders: Array
    trades: Array
    cancels: Array
    replaces: Array
    rejects: Array
    levels: Array
    top: Array
    admin_events: int
    """Admin events (limits, kill switches, halts) in the range, counted but not kept."""
    symbols: tuple[str, ...]
    """What ``symbol`` indexes, as of the end of this chunk."""
    accounts: tuple[str, ...]
    """What the account fields index, as of the end of this chunk."""

    @property
    def events(self) -> int:
        """Return the number of events in the chunk (of every kind)."""
        return self.last_seq - self.first_seq + 1


class Run(msgspec.Struct, frozen=True, kw_only=True, eq=False):
    """Every event of the shards replayed, concatenated: shard by shard, each by ``seq``.

    Across shards, order by time with ``np.argsort(run.trades, order=["ts_ns", "shard",
    "seq"], kind="stable")``.
    """

    data_dir: Path
    shards: tuple[int, ...]
    """The shards replayed, in the order their rows appear."""
    orders: Array
    trades: Array
    cancels: Array
    replaces: Array
    rejects: Array
    levels: Array
    top: Array
    events: int
    """Events replayed, of every kind."""
    admin_events: int
    symbols: tuple[str, ...]
    accounts: tuple[str, ...]
    instruments: tuple[Instrument, ...]
    """The instruments replayed with; the first ``len(instruments)`` symbols are theirs."""
    wall_s: float
    """Wall-clock seconds the replay took."""
    cpu_s: float
    """CPU seconds of this process during the replay."""

    @property
    def events_per_s(self) -> float:
        """Return the replay's throughput (events per wall-clock second)."""
        return self.events / self.wall_s if self.wall_s > 0 else 0.0

    def symbol_index(self, symbol: str) -> int:
        """Return the index ``symbol`` has in the arrays; raise `KeyError` if none has it."""
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise KeyError(f"{symbol!r} is not in this run's symbols") from None

    def decimal(self, array: Array, field: str = "price") -> npt.NDArray[np.float64]:
        """Return ``array[field]`` in currency units: divided by ``10**price_scale`` of each
        row's instrument (symbols without an instrument keep scale 0)."""
        scales = np.zeros(len(self.symbols), dtype=np.float64)
        scales[: len(self.instruments)] = [each.price_scale for each in self.instruments]
        return np.asarray(array[field] / 10.0 ** scales[array["symbol"]], dtype=np.float64)


# ------------------------------------------------------------------------------ the data dir


class _Source(NamedTuple):
    data_dir: Path
    shard_count: int
    shards: tuple[int, ...]
    registry: InstrumentRegistry
    instruments: dict[int, list[Instrument]]


def _resolve(
    data_dir: str | Path,
    shards: int | Iterable[int] | None,
    instruments: InstrumentRegistry | Sequence[Instrument] | None,
) -> _Source:
    path = Path(data_dir)
    if not path.exists():
        raise ConfigError(f"data dir {path} does not exist")
    if not path.is_dir():
        raise ConfigError(f"data dir {path} is not a folder")
    wanted = (shards,) if isinstance(shards, int) else None if shards is None else tuple(shards)
    match = _SHARD_FOLDER.match(path.resolve().name)
    if match and (path / "journal").is_dir() and not (path / layout.MANIFEST).exists():
        # a shard's own folder: read that shard of the data dir around it
        shard = int(match.group(1))
        if wanted is not None and wanted != (shard,):
            raise ConfigError(f"{path} is shard {shard}'s folder; shards={list(wanted)} "
                              f"names others: pass the data dir {path.parent} instead")
        path, wanted = path.parent, (shard,)
    manifest = layout.read_manifest(path)
    folders = layout.shard_folders(path)
    if manifest is not None:
        shard_count = manifest.shards
    elif folders:
        shard_count = max(folders) + 1  # as cluster.storage.layout infers it
    else:
        raise ConfigError(
            f"{path} is not a raytrade data dir: it holds neither {layout.MANIFEST} nor "
            f"shard-k folders (pass the --data-dir the run was started with)"
        )
    if wanted is None:
        wanted = tuple(range(shard_count))
    unknown = [shard for shard in wanted if not 0 <= shard < shard_count]
    if unknown:
        raise ConfigError(f"{path} holds shards 0..{shard_count - 1}; there is no shard "
                          f"{unknown[0]}")
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"shards {list(wanted)} names a shard twice")
    if instruments is None:
        registry = InstrumentRegistry.load()
    elif isinstance(instruments, InstrumentRegistry):
        registry = instruments
    else:
        registry = InstrumentRegistry(tuple(instruments))
    grouped = shard_instruments(registry, ShardMap(shard_count, dict(registry.pins)))
    return _Source(path, shard_count, wanted, registry, grouped)


def _journal_events(shard_folder: Path) -> int:
    """Return how many events the shard's journal holds, reading only batch heads of its last
    segment (for the progress bar; nothing is replayed)."""
    journal = shard_folder / "journal"
    if not journal.is_dir():
        return 0
    segments = numbered_segments(journal)
    if not segments:
        return 0
    walk = JournalWalk(segments, len(segments) - 1)
    for _ in walk.batches_from(1 << 62):
        pass
    return int(walk.next_seq) - 1


# ------------------------------------------------------------------------- building arrays


class _Table(dict[str, int]):
    """Name -> index, appended to in the order names are interned."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        super().__init__()
        self.names: list[str] = []
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        if name not in self:
            self[name] = len(self.names)
            self.names.append(name)


class _TopOfBook:
    """One symbol's price levels as the LevelChanged events leave them, and its best levels."""

    __slots__ = ("ask_heap", "asks", "bid_heap", "bids", "last")

    def __init__(self) -> None:
        self.bids: dict[int, tuple[int, int]] = {}
        self.asks: dict[int, tuple[int, int]] = {}
        self.bid_heap: list[int] = []  # negated prices; may hold prices of removed levels
        self.ask_heap: list[int] = []
        self.last: tuple[int, ...] = (0, 0, 0, 0, 0, 0)

    def apply(self, event: LevelChanged) -> None:
        if event.side == Side.BUY:
            levels, heap, sign = self.bids, self.bid_heap, -1
        else:
            levels, heap, sign = self.asks, self.ask_heap, 1
        price = event.price
        if event.quantity:
            if price not in levels:
                heapq.heappush(heap, sign * price)
            levels[price] = (event.quantity, event.order_count)
        elif levels.pop(price, None) is not None and len(heap) > 2 * len(levels) + 64:
            # drop the removed levels' prices before they pile up below the best
            heap[:] = [sign * resting for resting in levels]
            heapq.heapify(heap)

    @staticmethod
    def _best(levels: dict[int, tuple[int, int]], heap: list[int], sign: int) -> tuple[int, ...]:
        while heap:
            price = heap[0] * sign
            level = levels.get(price)
            if level is not None:
                return (price, *level)
            heapq.heappop(heap)
        return (0, 0, 0)

    def changed(self) -> tuple[int, ...] | None:
        """Return the new best levels if they differ from the last ones returned."""
        now = self._best(self.bids, self.bid_heap, -1) + self._best(self.asks, self.ask_heap, 1)
        if now == self.last:
            return None
        self.last = now
        return now


class _Builder:
    """Gather one shard's events into arrays; the tables outlive it (one per iteration)."""

    def __init__(self, shard: int, symbols: _Table, accounts: _Table) -> None:
        self.shard = shard
        self.symbols = symbols
        self.accounts = accounts
        self.gathered: dict[type[Event], list[Event]] = {kind: [] for _, kind, _ in _KINDS}
        self.admin: list[Event] = []
        self.append = {kind: events.append for kind, events in self.gathered.items()}
        self.append.update((kind, self.admin.append) for kind in _ADMIN_KINDS)
        self.pieces: dict[str, list[Array]] = {name: [] for name in ARRAY_NAMES}
        self.top_rows: list[tuple[Any, ...]] = []
        self.books: dict[str, _TopOfBook] = {}
        self.first_seq = 0
        self.last_seq = 0
        self.staged = 0
        self.admin_events = 0

    @property
    def events(self) -> int:
        return self.last_seq - self.first_seq + 1 if self.first_seq else 0

    def add(self, events: list[Event], start: int, stop: int) -> None:
        """Take ``events[start:stop]`` of one batch (the whole batch is there to look ahead)."""
        if not self.first_seq:
            self.first_seq = events[start].seq
        self.last_seq = events[stop - 1].seq
        append = self.append
        levels = self.gathered[LevelChanged]
        before = len(levels)
        for event in events[start:stop]:
            append[type(event)](event)
        if len(levels) > before:
            self._follow_books(events, levels, before)
        if self.events - self.staged >= _STAGE_EVENTS:
            self.stage()

    def _follow_books(self, batch: list[Any], levels: list[Any], start: int) -> None:
        # A batch's events are numbered consecutively, so an event's place in it is its seq
        # minus the first one's; a symbol's book is whole when its run of changes ends.
        base = batch[0].seq
        last = len(batch) - 1
        books = self.books
        for index in range(start, len(levels)):
            event = levels[index]
            symbol = event.symbol
            book = books.get(symbol)
            if book is None:
                book = books[symbol] = _TopOfBook()
            book.apply(event)
            position = event.seq - base
            following = batch[position + 1] if position < last else None
            if type(following) is not LevelChanged or following.symbol != symbol:
                top = book.changed()
                if top is not None:
                    self.top_rows.append((event.seq, event.ts_ns, symbol, *top))

    def stage(self) -> None:
        """Convert what was gathered to arrays, interning new names in event order first."""
        try:
            arrays = self._convert_all()
        except KeyError:  # a name the tables do not hold yet (rare: the first stages)
            self._intern()
            arrays = self._convert_all()
        for name, array in arrays.items():
            self.pieces[name].append(array)
        for gathered in self.gathered.values():
            gathered.clear()
        self.top_rows.clear()
        self.admin_events += len(self.admin)
        self.admin.clear()
        self.staged = self.events

    def _convert_all(self) -> dict[str, Array]:
        arrays = {}
        for name, kind, columns in _KINDS:
            gathered = self.gathered[kind]
            if gathered:
                arrays[name] = self._convert(gathered, columns, _DTYPES[name])
        if self.top_rows:
            symbols = self.symbols
            rows = [(seq, ts_ns, self.shard, symbols[symbol], *rest)
                    for seq, ts_ns, symbol, *rest in self.top_rows]
            arrays["top"] = np.array(rows, dtype=TOP_DTYPE)
        return arrays

    def _convert(self, events: list[Event], columns: tuple[_Column, ...],
                 dtype: np.dtype[np.void]) -> Array:
        count = len(events)
        array = np.empty(count, dtype=dtype)
        tables = {"symbols": self.symbols, "accounts": self.accounts}
        for column in columns:
            if column.source == "shard":
                array[column.name] = self.shard
                continue
            values: Iterator[Any] = map(attrgetter(column.source), events)
            if column.table:
                values = map(tables[column.table].__getitem__, values)
            array[column.name] = np.fromiter(values, dtype=column.dtype, count=count)
        return array

    def _intern(self) -> None:
        """Add the gathered names the tables lack, in the order they first appear."""
        for table in (self.symbols, self.accounts):
            name = "symbols" if table is self.symbols else "accounts"
            sources = [
                (self.gathered[kind], attrgetter(column.source))
                for _, kind, columns in _KINDS for column in columns if column.table == name
            ]
            new: set[str] = set()
            for events, getter in sources:
                new.update(map(getter, events))
            new.difference_update(table)
            first: dict[str, tuple[int, int]] = {}
            for position, (events, getter) in enumerate(sources):
                missing = set(new)  # each source is in seq order: stop once all are seen
                for event in events:
                    value = getter(event)
                    if value in missing:
                        missing.discard(value)
                        key = (event.seq, position)
                        if value not in first or key < first[value]:
                            first[value] = key
                        if not missing:
                            break
            for value in sorted(new, key=first.__getitem__):
                table.add(value)

    def flush(self) -> Chunk:
        """Return the chunk gathered so far and start the next one."""
        self.stage()
        arrays = {name: _concatenate(pieces, _DTYPES[name])
                  for name, pieces in self.pieces.items()}
        chunk = Chunk(
            shard=self.shard, first_seq=self.first_seq, last_seq=self.last_seq,
            admin_events=self.admin_events, symbols=tuple(self.symbols.names),
            accounts=tuple(self.accounts.names), **arrays,
        )
        for pieces in self.pieces.values():
            pieces.clear()
        self.first_seq = self.last_seq = self.staged = self.admin_events = 0
        return chunk


def _concatenate(pieces: list[Array], dtype: np.dtype[np.void]) -> Array:
    if not pieces:
        return np.empty(0, dtype=dtype)
    if len(pieces) == 1:
        return pieces[0]
    return np.concatenate(pieces)


# ------------------------------------------------------------------------------- the calls


def iter_chunks(
    data_dir: str | Path,
    *,
    shards: int | Iterable[int] | None = None,
    instruments: InstrumentRegistry | Sequence[Instrument] | None = None,
    chunk_events: int = 1_000_000,
    client_order_id_window: int = CLIENT_ORDER_ID_WINDOW,
    progress: bool = True,
) -> Iterator[Chunk]:
    """Replay a run's journals and yield their events as arrays, ``chunk_events`` at a time.

    ``data_dir`` is the run's data dir (or one shard's ``shard-k`` folder in it); ``shards``
    picks shards (all by default), replayed one after the other, each from its first event
    (snapshots are not used: they hold no events). A chunk never spans two shards and holds
    exactly ``chunk_events`` events except a shard's last, so memory is bounded by the chunk
    size (plus the replay's own shard state); a shard with no events yields no chunk.
    ``instruments`` are the run's (the packaged registry by default, see the module
    docstring). ``progress`` shows a tqdm bar of events on stderr.

    Raise `ConfigError` for something that is not a data dir, a shard it does not hold or
    ``chunk_events < 1``; `ReplayDivergedError` if a journal does not replay with these
    instruments.
    """
    if chunk_events < 1:
        raise ConfigError(f"chunk_events must be at least 1, not {chunk_events}")
    source = _resolve(data_dir, shards, instruments)
    return _chunks(source, chunk_events, client_order_id_window, progress)


def _chunks(source: _Source, chunk_events: int, client_order_id_window: int,
            progress: bool) -> Iterator[Chunk]:
    symbols = _Table(source.registry.symbols)
    accounts = _Table()
    folders = {shard: shard_directory(source.data_dir, shard) for shard in source.shards}
    total = sum(_journal_events(folder) for folder in folders.values()) if progress else None
    with tqdm(total=total, unit="event", unit_scale=True, disable=not progress,
              desc=f"replaying {source.data_dir}") as bar:
        for shard, folder in folders.items():
            if not (folder / "journal").is_dir():
                continue  # never started, or started and never written: no events
            bar.set_postfix(shard=shard)
            builder = _Builder(shard, symbols, accounts)
            replay = ShardReplay(folder, shard, source.instruments[shard], snapshot_max_seq=0,
                                 client_order_id_window=client_order_id_window)
            pending = 0
            try:
                for _, events in replay.batches():
                    position = 0
                    while position < len(events):
                        stop = min(len(events), position + chunk_events - builder.events)
                        builder.add(events, position, stop)
                        position = stop
                        if builder.events >= chunk_events:
                            yield builder.flush()
                    pending += len(events)
                    if pending >= _PROGRESS_EVERY_EVENTS:
                        bar.update(pending)
                        pending = 0
            except ReplayDivergedError as error:
                raise ReplayDivergedError(
                    f"{error} (is this the run's instrument set? {len(source.instruments[shard])}"
                    f" instrument(s) of {len(source.registry.instruments)} were given to shard "
                    f"{shard} of {source.shard_count}; the client order id window must be the "
                    f"run's too)"
                ) from error
            bar.update(pending)
            if builder.events:
                yield builder.flush()


def load_run(
    data_dir: str | Path,
    *,
    shards: int | Iterable[int] | None = None,
    instruments: InstrumentRegistry | Sequence[Instrument] | None = None,
    chunk_events: int = 1_000_000,
    client_order_id_window: int = CLIENT_ORDER_ID_WINDOW,
    progress: bool = True,
) -> Run:
    """Replay a run (as `iter_chunks` does, same arguments) and concatenate it in memory.

    An empty journal gives empty arrays of the declared dtypes.
    """
    if chunk_events < 1:
        raise ConfigError(f"chunk_events must be at least 1, not {chunk_events}")
    source = _resolve(data_dir, shards, instruments)
    started, started_cpu = time.perf_counter(), time.process_time()
    pieces: dict[str, list[Array]] = {name: [] for name in ARRAY_NAMES}
    events = admin_events = 0
    symbols = tuple(source.registry.symbols)
    accounts: tuple[str, ...] = ()
    for chunk in _chunks(source, chunk_events, client_order_id_window, progress):
        for name in ARRAY_NAMES:
            pieces[name].append(getattr(chunk, name))
        events += chunk.events
        admin_events += chunk.admin_events
        symbols, accounts = chunk.symbols, chunk.accounts
    arrays = {name: _concatenate(parts, _DTYPES[name]) for name, parts in pieces.items()}
    return Run(
        data_dir=source.data_dir, shards=source.shards, events=events,
        admin_events=admin_events, symbols=symbols, accounts=accounts,
        instruments=source.registry.instruments, wall_s=time.perf_counter() - started,
        cpu_s=time.process_time() - started_cpu, **arrays,
    )
