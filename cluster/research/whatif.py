"""What-if: replay a recorded run's commands under other settings, side by side.

A shard's journal holds the commands it applied, and matching is deterministic, so the same
commands can be applied again to a fresh shard built with other settings (`Variant`): default
or per-account risk limits, a self-trade prevention mode forced on every order, other fees, or
another shard count. Each variant is one pure replay (`run_variant`: `actors.core.shard`'s
`build_shard` and `MatchingEngine.apply`, positions folded by `PositionLedger`); `what_if`
runs them as parallel Ray tasks (`cluster.edge.handles.map_tasks`) and returns a
`WhatIfReport`: fills, rejects by `RejectCode`, self-trades, fees, PnL per account and final
positions, next to the run as recorded::

    report = what_if(".raytrade", [Variant(name="stp", stp=SelfTradePrevention.CANCEL_RESTING),
                                   Variant(name="qty<=100",
                                           limits=RiskLimitsConfig(max_order_quantity=100))])
    print(report.format())

What a variant changes, and how:

* ``limits``: the default limits of every account (account ``"*"``), ``account_limits``:
  limits of named accounts. They are applied by `SetRiskLimits` commands in a batch of their
  own before the run's first batch (as a cluster journals ``default_limits``), and a
  `SetRiskLimits` of the run for the same account (no symbol) keeps its other fields but takes
  the variant's: the variant's fields hold for the whole replay. The run's symbol overrides
  still win where they set a field (the resolution order of `actors.core.risk`).
* ``stp``: every `NewOrder`'s ``self_trade_prevention`` is replaced by it.
* ``fee_bps``: ``(maker, taker)`` fee rates of every instrument, for the positions and PnL
  only (fees do not change matching). Fees are modelled by `PositionLedger` from each
  instrument's rates; the recorded row uses the run's.
* ``shards``: the symbols are dealt to that many shards with `ShardMap` (the run's pins that
  fit, a stable hash for the rest). Each original shard's batches are merged in the order of
  their first command's ingress time (``ts_ns``, then the shard), each batch split by new
  shard (order kept); an account-wide command (no symbol), which the run broadcast to every
  shard, is taken once and delivered to every new shard.

**Order ids.** An order's id depends on its shard and on every order accepted before it
(``shard << 40`` plus a counter), and a variant accepts other orders (a limit rejects some, a
new shard count numbers them apart), so the ids that the log's cancels and replaces name are
the recording's. They are mapped: each original id to the (account, client order id, symbol)
of the `NewOrder` that created it (from the recording's `OrderAccepted` events), that to the id the
variant gave the same order. A cancel or replace of an order the variant never accepted names
order 0 (rejected ``UNKNOWN_ORDER``); an id the recording never assigned passes unchanged.
Where a batch cancels an order created earlier in the same batch (a generated flow does; a
gateway cannot, since a client learns an id only from the reply), the variant's id is not
known before the batch runs: the batch is first applied command by command to a scratch copy
of the shard to learn it (batch boundaries change only the `LevelChanged` events, never a
decision), then applied whole.

**The recording as is.** `load_recording` replays each shard's journal through
`cluster.storage.shard.ShardReplay` (the path of every other reader) once, and keeps the
commands, the id map, the recorded figures, events digests and state hashes. A variant that
changes nothing gives exactly those events and hashes (``VariantResult.same_events``; a
test compares its events with `replay_events` too).

**Why the tasks get the recording through the object store** rather than read the journal:
the driver replays the log once anyway (for the id map and the recorded row), so each task
starts from the decoded commands instead of replaying the recording again, and workers need
not see the data dir (a Ray whose nodes do not mount the data volume works). The cost is
memory: the commands are held by the driver and once per node in Ray's object store (about
60 bytes a command encoded, with the id map; more in the driver's decoded copy), fine for
research-sized runs.

What a re-sharded replay keeps (and `tests/unit/test_whatif.py` checks): each symbol's
commands reach its new shard in the original order, so with no account-wide limits
(``max_open_orders``, order rates: counted per shard) and no cross-shard client order id reuse,
every symbol trades exactly as recorded: same trades (price, quantity, accounts), volume,
positions and PnL; only order ids and sequence numbers differ.

Money (notional, fees, PnL) is reported exactly, in currency units: each symbol's price units
x quantity divided by its instrument's ``10**price_scale``, then summed over symbols.

Exceptions::

    ConfigError (protocols.errors)   not a data dir, a bad variant or argument
    ReplayDivergedError              the journal does not replay with these instruments/window
    JournalCorrupt                   a shard's journal is damaged before its end
    ClusterError (protocols.errors)  a Ray task's worker died, or the tasks outlasted the timeout
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec
from tqdm import tqdm

from actors.core.engine import MatchingEngine
from actors.core.positions import PositionLedger
from actors.core.risk import RiskLimits
from actors.core.shard import (
    CLIENT_ORDER_ID_WINDOW,
    ReplayDivergedError,
    build_shard,
    shard_state,
    state_hashes,
)
from cluster.config import InstrumentRegistry, ShardMap, shard_instruments
from cluster.storage import layout
from cluster.storage.shard import ShardReplay, shard_directory
from protocols.errors import ConfigError, RaytradeError
from protocols.journal_format import CommandBatch
from protocols.messages import (
    CancelOrder,
    CancelReason,
    Command,
    Event,
    Instrument,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    RejectCode,
    ReplaceOrder,
    RiskLimitsConfig,
    SelfTradePrevention,
    SetRiskLimits,
    Trade,
    encode,
)

RECORDED: Final = "recorded"
"""The name of the report's row for the run as recorded."""

_LIMIT_FIELDS: Final = tuple(RiskLimitsConfig.__struct_fields__)


# ------------------------------------------------------------------------------ the vocabulary


class Variant(msgspec.Struct, frozen=True, kw_only=True):
    """One set of settings to replay the recording under; a field left None keeps the run's."""

    name: str = ""
    """The variant's column in the report (`label` makes one from the settings if empty)."""
    limits: RiskLimitsConfig | None = None
    """Default limits of every account (account ``"*"``), see the module docstring."""
    account_limits: dict[str, RiskLimitsConfig] = {}
    """Limits of named accounts, applied like ``limits``."""
    stp: SelfTradePrevention | None = None
    """Self-trade prevention forced on every new order."""
    fee_bps: tuple[int, int] | None = None
    """``(maker, taker)`` fee rates of every instrument, in hundredths of a percent."""
    shards: int | None = None
    """Shard count to re-shard the symbols into."""

    @property
    def label(self) -> str:
        """Return the name, or a description of the settings if it has none."""
        if self.name:
            return self.name
        parts = []
        if self.limits is not None:
            parts += _limit_words(self.limits)
        for account, limits in sorted(self.account_limits.items()):
            parts += [f"{account}:{word}" for word in _limit_words(limits)]
        if self.stp is not None:
            parts.append(f"stp={self.stp.name.lower()}")
        if self.fee_bps is not None:
            parts.append(f"fee_bps={self.fee_bps[0]}:{self.fee_bps[1]}")
        if self.shards is not None:
            parts.append(f"shards={self.shards}")
        return " ".join(parts) or "as recorded"


def _limit_words(limits: RiskLimitsConfig) -> list[str]:
    return [f"{field}={value}" for field in _LIMIT_FIELDS
            if (value := getattr(limits, field)) is not None]


class VariantResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one replay did, summed over its shards.

    Money (notional, fees, PnL) is exact, in currency units: each symbol's price units x
    quantity divided by ``10**price_scale`` of its instrument, then summed over symbols.
    """

    name: str
    variant: Variant
    shards: int
    commands: int
    """Commands applied (the variant's limit commands included)."""
    events: int
    accepted: int
    """Orders accepted."""
    fills: int
    """Trades."""
    traded_quantity: int
    traded_notional: Decimal
    self_trades: int
    """Trades with one account on both sides."""
    stp_cancels: int
    """Orders (or remainders) cancelled by self-trade prevention."""
    rejects: dict[str, int]
    """`RejectCode` name -> how many requests it refused."""
    fees: Decimal
    pnl: dict[str, Decimal]
    """Account -> realized plus unrealized PnL (marked at each symbol's last trade), net of
    fees; accounts that traded."""
    account_fees: dict[str, Decimal]
    """Account -> fees paid."""
    positions: dict[str, dict[str, int]]
    """Account -> symbol -> net quantity, non-zero positions only."""
    symbol_volume: dict[str, int]
    """Symbol -> quantity traded (each trade once)."""
    event_digests: dict[int, str]
    """Shard -> digest of its events, batch by batch."""
    state_hashes: dict[int, dict[str, str]]
    """Shard -> hashes of its books, engine and risk state (`actors.core.shard.state_hashes`)."""
    positions_hash: str
    """`PositionLedger.state_hash` over every shard's trades."""
    same_events: bool
    """True if every shard's events and final state are exactly the recording's (fees and
    PnL aside: a ``fee_bps`` variant changes only those)."""
    wall_s: float
    """Seconds the replay took (where it ran)."""


class RecordedShard(msgspec.Struct, frozen=True, kw_only=True):
    """One shard of the recording: its journaled batches, and what replaying them gave."""

    shard: int
    instruments: list[Instrument]
    batches: list[CommandBatch]
    event_digest: str
    state_hashes: dict[str, str]


class Recording(msgspec.Struct, frozen=True, kw_only=True):
    """A run's commands and what they did as recorded: what every variant replays."""

    data_dir: str
    instruments: tuple[Instrument, ...]
    """The run's instruments, in registry order."""
    pins: dict[str, int]
    client_order_id_window: int
    shards: list[RecordedShard]
    creators: dict[int, tuple[str, str, str]]
    """Original order id -> (account, client order id, symbol) of the order that got it."""
    result: VariantResult
    """The recorded run, summed up like a variant's replay."""

    @property
    def shard_count(self) -> int:
        return len(self.shards)

    @property
    def commands(self) -> int:
        """Return how many commands the journals hold."""
        return sum(len(batch.commands) for shard in self.shards for batch in shard.batches)


# ------------------------------------------------------------------------------ the tally


class _Tally:
    """Fold a replay's events into the figures of a `VariantResult`."""

    def __init__(self, ledger_instruments: Sequence[Instrument]) -> None:
        self.ledger = PositionLedger(ledger_instruments)
        self.scales = {i.symbol: i.price_scale for i in ledger_instruments}
        self.commands = self.events = self.accepted = 0
        self.fills = self.quantity = self.self_trades = self.stp_cancels = 0
        self.rejects: Counter[RejectCode] = Counter()
        self.digests: dict[int, Any] = {}

    def add(self, shard: int, commands: int, events: list[Event]) -> None:
        self.commands += commands
        self.events += len(events)
        digest = self.digests.get(shard)
        if digest is None:
            digest = self.digests[shard] = hashlib.blake2b(digest_size=16)
        digest.update(encode(events))
        self.ledger.observe(events)
        for event in events:
            kind = type(event)
            if kind is Trade:
                self.fills += 1
                self.quantity += event.quantity  # type: ignore[union-attr]
                if event.maker_account == event.taker_account:  # type: ignore[union-attr]
                    self.self_trades += 1
            elif kind is OrderAccepted:
                self.accepted += 1
            elif kind is OrderRejected:
                self.rejects[event.code] += 1  # type: ignore[union-attr]
            elif (kind is OrderCancelled
                  and event.reason is CancelReason.SELF_TRADE_PREVENTION):  # type: ignore[union-attr]
                self.stp_cancels += 1

    def result(self, name: str, variant: Variant, hashes: dict[int, dict[str, str]],
               recorded: VariantResult | None, wall_s: float) -> VariantResult:
        self.ledger.check_invariants()
        ledger = self.ledger
        scales = self.scales
        pnl: dict[str, Decimal] = {}
        fees: dict[str, Decimal] = {}
        positions: dict[str, dict[str, int]] = {}
        for account in ledger.accounts():
            held = ledger.positions(account)
            pnl[account] = sum((_money(p.realized_pnl + p.unrealized_pnl - p.fees,
                                       scales[p.symbol]) for p in held), Decimal(0))
            fees[account] = sum((_money(p.fees, scales[p.symbol]) for p in held), Decimal(0))
            open_positions = {p.symbol: p.net_quantity for p in held if p.net_quantity}
            if open_positions:
                positions[account] = open_positions
        digests = {shard: digest.hexdigest() for shard, digest in sorted(self.digests.items())}
        matches = recorded is None or (
            digests == recorded.event_digests and hashes == recorded.state_hashes
        )
        return VariantResult(
            name=name, variant=variant, shards=len(hashes), commands=self.commands,
            events=self.events, accepted=self.accepted, fills=self.fills,
            traded_quantity=self.quantity,
            traded_notional=sum((_money(ledger.symbol_totals(symbol).notional, scales[symbol])
                                 for symbol in ledger.symbols()), Decimal(0)),
            self_trades=self.self_trades, stp_cancels=self.stp_cancels,
            rejects={code.name: count for code, count in sorted(self.rejects.items())},
            fees=sum(fees.values(), Decimal(0)), pnl=pnl, account_fees=fees, positions=positions,
            symbol_volume={symbol: ledger.symbol_totals(symbol).volume
                           for symbol in ledger.symbols()},
            event_digests=digests, state_hashes=hashes, positions_hash=ledger.state_hash(),
            same_events=matches, wall_s=wall_s,
        )


def _money(amount: int, scale: int) -> Decimal:
    return Decimal(amount).scaleb(-scale)  # exact: a power of ten moves the point


# ------------------------------------------------------------------------------ the recording


def _registry(instruments: InstrumentRegistry | Sequence[Instrument] | None
              ) -> InstrumentRegistry:
    if instruments is None:
        return InstrumentRegistry.load()
    if isinstance(instruments, InstrumentRegistry):
        return instruments
    return InstrumentRegistry(tuple(instruments))


def load_recording(
    data_dir: str | Path,
    instruments: InstrumentRegistry | Sequence[Instrument] | None = None,
    *,
    client_order_id_window: int = CLIENT_ORDER_ID_WINDOW,
    progress: bool = True,
) -> Recording:
    """Read every shard's journal of a run and replay it once, as recorded.

    ``instruments`` are the run's (the packaged registry by default), and so must the client
    order id window be; the shard count is the data dir's manifest's (else its ``shard-k``
    folders'). Every journal must hold its shard's whole log, from event 1.

    Raise `ConfigError` for a folder that is not a data dir, `ReplayDivergedError` if a
    journal does not replay with these instruments.
    """
    path = Path(data_dir)
    if not path.is_dir():
        raise ConfigError(f"data dir {path} does not exist or is not a folder")
    manifest = layout.read_manifest(path)
    folders = layout.shard_folders(path)
    if manifest is not None:
        shard_count = manifest.shards
    elif folders:
        shard_count = max(folders) + 1
    else:
        raise ConfigError(f"{path} is not a raytrade data dir: it holds neither "
                          f"{layout.MANIFEST} nor shard-k folders")
    registry = _registry(instruments)
    pins = dict(registry.pins)
    grouped = shard_instruments(registry, ShardMap(shard_count, pins))
    tally = _Tally(registry.instruments)
    creators: dict[int, tuple[str, str, str]] = {}
    shards: list[RecordedShard] = []
    hashes: dict[int, dict[str, str]] = {}
    started = time.perf_counter()
    with tqdm(unit="event", unit_scale=True, disable=not progress,
              desc=f"reading {path}") as bar:
        for shard in range(shard_count):
            folder = shard_directory(path, shard)
            replay = ShardReplay(folder, shard, grouped[shard], snapshot_max_seq=0,
                                 client_order_id_window=client_order_id_window)
            batches: list[CommandBatch] = []
            try:
                for batch, events in replay.batches():
                    batches.append(batch)
                    tally.add(shard, len(batch.commands), events)
                    for event in events:
                        if type(event) is OrderAccepted and event.client_order_id:
                            creators[event.order_id] = (event.account, event.client_order_id,
                                                        event.symbol)
                    bar.update(len(events))
            except ReplayDivergedError as error:
                raise ReplayDivergedError(
                    f"{error} (are these the run's instruments and client order id window?)"
                ) from error
            if not batches:
                tally.digests.setdefault(shard, hashlib.blake2b(digest_size=16))
            hashes[shard] = state_hashes(replay.risk, replay.engine)
            shards.append(RecordedShard(
                shard=shard, instruments=grouped[shard], batches=batches,
                event_digest=tally.digests[shard].hexdigest(), state_hashes=hashes[shard],
            ))
    result = tally.result(RECORDED, Variant(name=RECORDED), hashes, None,
                          time.perf_counter() - started)
    return Recording(
        data_dir=str(path), instruments=registry.instruments, pins=pins,
        client_order_id_window=client_order_id_window, shards=shards, creators=creators,
        result=result,
    )


# ------------------------------------------------------------------------------ one replay


class _OrderIds:
    """Map the recording's order ids to the variant's (see the module docstring)."""

    def __init__(self, creators: dict[int, tuple[str, str, str]]) -> None:
        self.creators = creators
        self.assigned: dict[tuple[str, str, str], int] = {}
        """(account, client order id, symbol) -> the id the variant gave that order (with
        the symbol: a shard's engine lets another shard's order reuse a client order id)."""

    def translate(self, command: Command, learned: dict[tuple[str, str, str], int]) -> Command:
        if type(command) is not CancelOrder and type(command) is not ReplaceOrder:
            return command
        key = self.creators.get(command.order_id)
        if key is None:
            return command  # never assigned in the recording: passes as it is
        order_id = learned.get(key)
        if order_id is None:
            order_id = self.assigned.get(key, 0)
        if order_id == command.order_id:
            return command
        return msgspec.structs.replace(command, order_id=order_id)

    def pending(self, commands: Sequence[Command]) -> bool:
        """Tell whether a cancel or replace names an order made earlier in the same batch,
        whose variant id is not known yet."""
        created: set[tuple[str, str, str]] = set()
        for command in commands:
            kind = type(command)
            if kind is NewOrder:
                created.add((command.account, command.client_order_id,
                             command.symbol))  # type: ignore[union-attr]
            elif kind is CancelOrder or kind is ReplaceOrder:
                key = self.creators.get(command.order_id)  # type: ignore[union-attr]
                if key is not None and key in created:
                    return True
        return False

    def observe(self, events: Sequence[Event], into: dict[tuple[str, str, str], int]) -> None:
        for event in events:
            if type(event) is OrderAccepted and event.client_order_id:
                into[(event.account, event.client_order_id, event.symbol)] = event.order_id


class _Shard:
    """One shard of a variant: its risk gate and engine, fed batch by batch."""

    def __init__(self, shard: int, instruments: list[Instrument], window: int,
                 ids: _OrderIds) -> None:
        self.shard = shard
        self.instruments = instruments
        self.window = window
        self.ids = ids
        self.risk: RiskLimits
        self.engine: MatchingEngine
        self.risk, self.engine = build_shard(shard, instruments, client_order_id_window=window)

    def apply(self, commands: Sequence[Command]) -> list[Event]:
        ids = self.ids
        learned: dict[tuple[str, str, str], int] = {}
        if ids.pending(commands):
            learned = self._learn(commands)
        events = self.engine.apply([ids.translate(command, learned) for command in commands])
        ids.observe(events, ids.assigned)
        for key, order_id in learned.items():
            if ids.assigned.get(key) != order_id:
                raise AssertionError(
                    f"shard {self.shard}: order {key} got {ids.assigned.get(key)} in its batch "
                    f"but {order_id} command by command: a batch boundary changed a decision"
                )
        return events

    def _learn(self, commands: Sequence[Command]) -> dict[tuple[str, str, str], int]:
        """Apply the batch command by command to a scratch copy; return the ids it gave."""
        _, engine = build_shard(self.shard, self.instruments,
                                shard_state(self.risk, self.engine),
                                client_order_id_window=self.window)
        learned: dict[tuple[str, str, str], int] = {}
        for command in commands:
            self.ids.observe(engine.apply([self.ids.translate(command, learned)]), learned)
        return learned


def _merge_limits(base: RiskLimitsConfig, override: RiskLimitsConfig) -> RiskLimitsConfig:
    changes = {field: value for field in _LIMIT_FIELDS
               if (value := getattr(override, field)) is not None}
    return msgspec.structs.replace(base, **changes)


class _Rewrite:
    """Turn a recorded command into the variant's (before order ids are mapped)."""

    def __init__(self, variant: Variant) -> None:
        self.stp = variant.stp
        self.limits: dict[str, RiskLimitsConfig] = dict(variant.account_limits)
        if variant.limits is not None:
            self.limits["*"] = variant.limits

    def __call__(self, command: Command) -> Command:
        kind = type(command)
        if kind is NewOrder:
            if self.stp is not None and command.self_trade_prevention != self.stp:  # type: ignore[union-attr]
                return msgspec.structs.replace(command, self_trade_prevention=self.stp)
        elif kind is SetRiskLimits and not command.symbol:  # type: ignore[union-attr]
            override = self.limits.get(command.account)
            if override is not None:
                return msgspec.structs.replace(
                    command, limits=_merge_limits(command.limits, override))  # type: ignore[union-attr]
        return command

    def opening(self, ts_ns: int) -> list[Command]:
        """Return the commands that set the variant's limits before the run's first batch."""
        return [SetRiskLimits(account=account, limits=limits, ts_ns=ts_ns)
                for account, limits in sorted(self.limits.items())]


def _stream(recording: Recording, shard_map: ShardMap, same_layout: bool
            ) -> Iterator[tuple[int, list[Command]]]:
    """Yield ``(new shard, commands)`` batches in an order each new shard can apply."""
    if same_layout:
        for recorded in recording.shards:
            for batch in recorded.batches:
                yield recorded.shard, list(batch.commands)
        return

    def keyed(recorded: RecordedShard) -> Iterator[tuple[int, int, int, CommandBatch]]:
        for index, batch in enumerate(recorded.batches):
            yield batch.commands[0].ts_ns, recorded.shard, index, batch

    seen: dict[bytes, set[int]] = {}  # an account-wide command -> shards that had its copy
    everywhere = range(shard_map.shard_count)
    merged = heapq.merge(*(keyed(recorded) for recorded in recording.shards))
    for _, origin, _, batch in merged:
        parts: dict[int, list[Command]] = {}
        for command in batch.commands:
            symbol = getattr(command, "symbol", "")
            if symbol:
                parts.setdefault(shard_map.shard_of(symbol), []).append(command)
                continue
            key = encode([command])
            copies = seen.get(key)
            if copies is not None and origin not in copies:
                copies.add(origin)  # another shard's copy of a broadcast already delivered
                continue
            seen[key] = {origin}
            for shard in everywhere:
                parts.setdefault(shard, []).append(command)
        for shard in sorted(parts):
            yield shard, parts[shard]


def run_variant(recording: Recording, variant: Variant, *,
                on_events: Callable[[int, list[Event]], None] | None = None) -> VariantResult:
    """Replay the recording under ``variant`` in this process; return what it did.

    ``on_events(shard, events)`` sees every batch's events as they come (tests compare them).
    Raise `ConfigError` for a variant that cannot run (a shard count below 1, say).
    """
    started = time.perf_counter()
    registry_instruments = list(recording.instruments)
    count = variant.shards if variant.shards is not None else recording.shard_count
    same_layout = count == recording.shard_count
    pins = recording.pins if same_layout else {
        symbol: shard for symbol, shard in recording.pins.items() if shard < count}
    shard_map = ShardMap(count, pins)
    grouped = (
        {recorded.shard: recorded.instruments for recorded in recording.shards} if same_layout
        else shard_instruments(InstrumentRegistry(tuple(registry_instruments), pins), shard_map)
    )
    ledger_instruments = registry_instruments
    if variant.fee_bps is not None:
        maker, taker = variant.fee_bps
        ledger_instruments = [msgspec.structs.replace(i, maker_fee_bps=maker, taker_fee_bps=taker)
                              for i in registry_instruments]
    ids = _OrderIds(recording.creators)
    shards = [_Shard(shard, grouped[shard], recording.client_order_id_window, ids)
              for shard in range(count)]
    tally = _Tally(ledger_instruments)
    rewrite = _Rewrite(variant)

    def apply(shard: int, commands: list[Command]) -> None:
        events = shards[shard].apply(commands)
        tally.add(shard, len(commands), events)
        if on_events is not None:
            on_events(shard, events)

    starts = [recorded.batches[0].commands[0].ts_ns
              for recorded in recording.shards if recorded.batches]
    opening = rewrite.opening(min(starts, default=0))
    for shard in range(count):
        tally.digests[shard] = hashlib.blake2b(digest_size=16)
        if opening:
            apply(shard, opening)
    for shard, commands in _stream(recording, shard_map, same_layout):
        apply(shard, [rewrite(command) for command in commands])
    hashes = {}
    for each in shards:
        each.engine.check_invariants()
        each.risk.check_invariants()
        hashes[each.shard] = state_hashes(each.risk, each.engine)
    return tally.result(variant.label, variant, hashes, recording.result,
                        time.perf_counter() - started)


def _run_encoded(payload: bytes, variant: Variant) -> VariantResult:
    """A Ray task: decode the recording (from the object store) and replay one variant."""
    return run_variant(msgspec.msgpack.decode(payload, type=Recording), variant)


# ------------------------------------------------------------------------------ the report


class WhatIfReport(msgspec.Struct, frozen=True, kw_only=True):
    """The recorded run and every variant's replay of it, side by side."""

    data_dir: str
    commands: int
    """Commands the recording holds."""
    recorded: VariantResult
    results: list[VariantResult]
    """One per variant, in the order given."""
    wall_s: float
    """Seconds from reading the journals to the last variant's answer."""

    @property
    def rows(self) -> list[VariantResult]:
        """Return the recorded row, then the variants."""
        return [self.recorded, *self.results]

    def result(self, name: str) -> VariantResult:
        """Return the row named ``name`` (`RECORDED` for the run as recorded)."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no variant named {name!r}")

    def table(self) -> list[dict[str, object]]:
        """Return one row per variant (the recording first): counts, rejects by code, fees.

        Columns: variant, shards, commands, accepted, fills, quantity, notional, self_trades,
        stp_cancels, rejects (all codes), one column per `RejectCode` that any row has (in
        code order), fees, pnl_spread (best minus worst account PnL) and same_events.
        Timings are not in it: they are the only thing that differs between two runs.
        """
        codes = sorted({code for row in self.rows for code in row.rejects},
                       key=lambda name: RejectCode[name].value)
        table: list[dict[str, object]] = []
        for row in self.rows:
            line: dict[str, object] = {
                "variant": row.name, "shards": row.shards, "commands": row.commands,
                "accepted": row.accepted, "fills": row.fills, "quantity": row.traded_quantity,
                "notional": row.traded_notional, "self_trades": row.self_trades,
                "stp_cancels": row.stp_cancels, "rejects": sum(row.rejects.values()),
            }
            line.update({code: row.rejects.get(code, 0) for code in codes})
            line["fees"] = row.fees
            line["pnl_spread"] = (max(row.pnl.values(), default=Decimal(0))
                                  - min(row.pnl.values(), default=Decimal(0)))
            line["same_events"] = row.same_events
            table.append(line)
        return table

    def pnl_table(self) -> list[dict[str, object]]:
        """Return one row per account: its PnL net of fees in each variant (column by name)."""
        accounts = sorted({account for row in self.rows for account in row.pnl})
        return [{"account": account,
                 **{row.name: row.pnl.get(account, Decimal(0)) for row in self.rows}}
                for account in accounts]

    def position_table(self) -> list[dict[str, object]]:
        """Return one row per (account, symbol) that any variant ends holding: its net
        quantity in each variant."""
        held = sorted({(account, symbol) for row in self.rows
                       for account, positions in row.positions.items() for symbol in positions})
        return [{"account": account, "symbol": symbol,
                 **{row.name: row.positions.get(account, {}).get(symbol, 0)
                    for row in self.rows}}
                for account, symbol in held]

    def format(self, *, positions: bool = True) -> str:
        """Return the report as text: the comparison, PnL per account, final positions."""
        variants = len(self.results)
        lines = [
            f"what-if over {self.data_dir}: {self.commands:,} commands in "
            f"{self.recorded.shards} shard(s), {variants} variant(s), {self.wall_s:.2f} s "
            f"(money in currency units)",
            "",
            _text_table(self.table()),
            "",
            "PnL per account, net of fees",
            _text_table(self.pnl_table()),
        ]
        if positions:
            lines += ["", "final positions (net quantity; rows any variant holds)",
                      _text_table(self.position_table())]
        lines += ["", "replay time: " + ", ".join(f"{row.name} {row.wall_s:.2f} s"
                                                  for row in self.rows)]
        return "\n".join(lines)


def _text_table(rows: list[dict[str, object]]) -> str:
    if not rows:
        return "(no rows)"
    names = list(rows[0])
    cells = [[_cell(row[name]) for name in names] for row in rows]
    widths = [max(len(name), *(len(line[index]) for line in cells))
              for index, name in enumerate(names)]
    right = [all(isinstance(row[name], int | Decimal) and not isinstance(row[name], bool)
                 for row in rows) for name in names]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.rjust(width) if numeric else value.ljust(width)
                         for value, width, numeric in zip(values, widths, right, strict=True)
                         ).rstrip()

    return "\n".join([line(names), line(["-" * width for width in widths]),
                      *(line(values) for values in cells)])


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, Decimal):
        return f"{value:,.2f}"  # (shown to the cent; the report holds the exact amount)
    return str(value)


# ------------------------------------------------------------------------------ the call


def what_if(
    data_dir: str | Path,
    variants: Sequence[Variant],
    instruments: InstrumentRegistry | Sequence[Instrument] | None = None,
    *,
    client_order_id_window: int = CLIENT_ORDER_ID_WINDOW,
    local: bool = False,
    num_cpus: float = 1.0,
    timeout_s: float | None = None,
    progress: bool = True,
) -> WhatIfReport:
    """Replay a run's journals under each variant and compare them with the recording.

    ``instruments`` and ``client_order_id_window`` are the run's (see `load_recording`). The
    variants run as parallel Ray tasks of ``num_cpus`` each (`cluster.edge.handles.map_tasks`,
    the recording put once into the object store), or in this process, one after the other,
    if ``local`` or if this process has not started or joined a Ray. ``progress`` shows tqdm
    bars on stderr (reading the journals; the variants, when local).

    Raise `ConfigError` for a bad data dir or two variants with the same label; what a replay
    raises (`ReplayDivergedError`, ...); `ClusterError` if a Ray task's worker died or the
    tasks took longer than ``timeout_s``.
    """
    started = time.perf_counter()
    labels = Counter(variant.label for variant in variants)
    twice = sorted(label for label, times in labels.items() if times > 1 or label == RECORDED)
    if twice:
        raise ConfigError(f"variant names must be unique and not {RECORDED!r}: {twice}")
    for variant in variants:
        _check(variant)
    recording = load_recording(data_dir, instruments,
                               client_order_id_window=client_order_id_window, progress=progress)
    if local:
        results = [run_variant(recording, variant)
                   for variant in tqdm(variants, unit="variant", disable=not progress,
                                       desc="replaying variants")]
    else:
        from cluster.edge import handles  # (imports Ray: only when the tasks are wanted)

        results = handles.map_tasks(_run_encoded, list(variants),
                                    shared=msgspec.msgpack.encode(recording),
                                    num_cpus=num_cpus, timeout_s=timeout_s)
    return WhatIfReport(data_dir=recording.data_dir, commands=recording.commands,
                        recorded=recording.result, results=results,
                        wall_s=time.perf_counter() - started)


def _check(variant: Variant) -> None:
    if variant.shards is not None and variant.shards < 1:
        raise ConfigError(f"variant {variant.label!r}: shards must be at least 1, "
                          f"not {variant.shards}")


# ------------------------------------------------------------------------------ command line


_STP_NAMES: Final = {mode.name.lower(): mode for mode in SelfTradePrevention}


def parse_limits(text: str) -> RiskLimitsConfig:
    """Parse ``"max_order_quantity=100,max_open_orders=5"`` (``none`` for no limit)."""
    values: dict[str, int | None] = {}
    for word in text.replace(",", " ").split():
        field, _, value = word.partition("=")
        if field not in _LIMIT_FIELDS or not value:
            raise ConfigError(f"{word!r}: give FIELD=VALUE with a field of "
                              f"{', '.join(_LIMIT_FIELDS)}")
        values[field] = None if value.lower() == "none" else _integer(field, value)
    return RiskLimitsConfig(**values)


def parse_variant(text: str) -> Variant:
    """Parse a variant spec: ``KEY=VALUE`` words (spaces or commas between them).

    Keys: ``name``, ``stp`` (none, cancel_resting, cancel_aggressing, cancel_both),
    ``fee_bps`` (``MAKER:TAKER``, or one rate for both), ``shards``, ``account`` (the limits
    that follow in the spec are that account's, not every account's), and any field of
    `RiskLimitsConfig`. E.g. ``"stp=cancel_resting max_order_quantity=100 shards=4"``.
    """
    fields: dict[str, Any] = {}
    limit_words: list[str] = []
    account = ""
    for word in text.replace(",", " ").split():
        key, _, value = word.partition("=")
        if not value:
            raise ConfigError(f"{word!r} in variant {text!r}: give KEY=VALUE")
        if key == "name":
            fields["name"] = value
        elif key == "stp":
            if value.lower() not in _STP_NAMES:
                raise ConfigError(f"stp={value}: choose one of {', '.join(_STP_NAMES)}")
            fields["stp"] = _STP_NAMES[value.lower()]
        elif key == "fee_bps":
            fields["fee_bps"] = _fee_bps(value)
        elif key == "shards":
            fields["shards"] = _integer(key, value)
        elif key == "account":
            account = value
        elif key in _LIMIT_FIELDS:
            limit_words.append(word)
        else:
            raise ConfigError(f"unknown key {key!r} in variant {text!r}: use name, stp, "
                              f"fee_bps, shards, account or a limit ({', '.join(_LIMIT_FIELDS)})")
    if limit_words:
        limits = parse_limits(" ".join(limit_words))
        if account:
            fields["account_limits"] = {account: limits}
        else:
            fields["limits"] = limits
    elif account:
        raise ConfigError(f"variant {text!r} names account {account!r} but no limit for it")
    variant = Variant(**fields)
    _check(variant)
    return variant


def _integer(field: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{field}={value}: not a whole number") from None


def _fee_bps(value: str) -> tuple[int, int]:
    rates = value.split(":")
    if len(rates) == 1:
        rates = rates * 2
    if len(rates) != 2:
        raise ConfigError(f"fee_bps={value}: give MAKER:TAKER or one rate")
    maker, taker = (_integer("fee_bps", rate) for rate in rates)
    return maker, taker


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``raytrade what-if``."""
    parser = argparse.ArgumentParser(
        prog="raytrade what-if",
        description="Replay a recorded run's journals under other settings and compare "
                    "fills, rejects, PnL and positions with the run as recorded. Each "
                    "--variant, --stp, --limits, --fee-bps or --shards adds one variant.")
    parser.add_argument("--data-dir", required=True, help="the run's data dir")
    parser.add_argument("--instruments", type=Path,
                        help="the run's instrument file (default: the packaged instruments)")
    parser.add_argument("--client-order-id-window", type=int, default=CLIENT_ORDER_ID_WINDOW,
                        help="the run's client order id window")
    parser.add_argument("--variant", action="append", default=[], metavar="SPEC",
                        help='KEY=VALUE words, e.g. "name=tight stp=cancel_resting '
                             'max_order_quantity=100 shards=4" (keys: name, stp, fee_bps, '
                             'shards, account, and any limit)')
    parser.add_argument("--stp", action="append", default=[], choices=sorted(_STP_NAMES),
                        help="a variant forcing this self-trade prevention on every order")
    parser.add_argument("--limits", action="append", default=[], metavar="FIELD=N,...",
                        help="a variant with these default limits for every account")
    parser.add_argument("--fee-bps", action="append", default=[], metavar="MAKER:TAKER",
                        help="a variant with these fee rates on every instrument")
    parser.add_argument("--shards", action="append", default=[], type=int, metavar="N",
                        help="a variant re-sharded into N shards")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--ray", action="store_true",
                       help="start a private local Ray and run the variants as its tasks")
    where.add_argument("--address",
                       help="HOST:PORT of a running Ray to run the variants on (or 'auto')")
    parser.add_argument("--num-cpus", type=int, default=2,
                        help="CPUs of the private Ray of --ray")
    parser.add_argument("--no-positions", action="store_true",
                        help="leave the final positions out of the report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def variants_of(args: argparse.Namespace) -> list[Variant]:
    """Return the variants the parsed command line asks for, in a fixed order."""
    variants = [parse_variant(spec) for spec in args.variant]
    variants += [Variant(stp=_STP_NAMES[mode]) for mode in args.stp]
    variants += [Variant(limits=parse_limits(text)) for text in args.limits]
    variants += [Variant(fee_bps=_fee_bps(text)) for text in args.fee_bps]
    variants += [Variant(shards=count) for count in args.shards]
    if not variants:
        raise ConfigError("no variant: give at least one --variant, --stp, --limits, "
                          "--fee-bps or --shards")
    return variants


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``raytrade what-if``; print the report; return the exit status (2: bad input)."""
    args = build_parser().parse_args(argv)
    run = None
    try:
        variants = variants_of(args)
        registry = InstrumentRegistry.load(args.instruments)
        if args.ray or args.address:
            from cluster.edge.local_run import LocalRun

            run = LocalRun(verbose=False)
            if args.ray:
                run.start_ray(args.num_cpus, "raytrade-what-if")
            else:
                run.join_ray(args.address, "raytrade-what-if", 10.0)
        report = what_if(args.data_dir, variants, registry,
                         client_order_id_window=args.client_order_id_window,
                         local=run is None, progress=not args.no_progress)
    except ConfigError as error:
        print(f"raytrade what-if: {error}", file=sys.stderr)
        return 2
    except RaytradeError as error:
        print(f"raytrade what-if: {error}", file=sys.stderr)
        return 1
    finally:
        if run is not None:
            run.close()
    print(report.format(positions=not args.no_positions))
    return 0


if __name__ == "__main__":
    # run the importable module's main, not this __main__ copy: Ray's workers unpickle the
    # variants and results by module name, and cannot import __main__.Variant
    from cluster.research import whatif

    sys.exit(whatif.main())
