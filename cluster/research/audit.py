"""The audit trail: an order's whole life, or an account's, read back from the journal.

Who asked for what, when, through what, and what happened (MiFID II RTS 6 / RTS 25 style).
Every journaled command carries its ingress time (``ts_ns``) and its audit origin
(``origin``: the principal, i.e. the token's name, the gateway's name and the client's address;
`protocols.messages.format_origin`), and matching is deterministic, so replaying a shard's
journal gives back each command with exactly the events it caused. From those,
`order_history` tells one order's life::

    received   the new order: who sent it, via which gateway, from where, at what time
    accepted   or rejected (the code and the text)
    fill       each trade: price, quantity, maker or taker, leaves, the counterparty order id
    received   each cancel or replace naming it (also another account's, which is rejected)
    replaced   each amend: old and new price and open quantity, whether it kept priority
    cancelled  the cancel: why (user, IOC remainder, kill switch, ...), by which request

and `account_history` every request of one account and everything that happened to its
orders within a time range, across shards. ``python -m cluster.research.audit`` (``raytrade
audit``) prints either as a timeline, or as JSON lines.

Each `AuditEntry` has the time of the command that caused it (an event carries its command's
ingress time), the shard and the event's sequence number (a received request: the sequence
number its first event got, so it sorts right before them). Within a shard entries follow
the sequence, the order in which the shard decided; an account's entries from several
shards are interleaved by time. A received entry names the request's origin; another
account's order that traded against this one shows only as the fill's counterparty order id.

An order id names its shard (``shard << 40 | n``), so `order_history` by order id replays
that shard alone; by (account, client order id) it replays every shard. A replay starts from
the journal's beginning (a snapshot has no commands), and needs the run's instruments, shard
pins and client order id window, like every replay (`cluster.storage.shard`): other ones make
it diverge, which raises `ReplayDivergedError` saying so.

Exceptions::

    ConfigError (protocols.errors)   not a data dir, an order id of a shard it does not hold
    ReplayDivergedError              the journal does not replay with these instruments/window
"""

from __future__ import annotations

import argparse
import datetime
import enum
import heapq
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from actors.core.engine import ORDER_ID_SHARD_BITS, MatchingEngine
from actors.core.shard import CLIENT_ORDER_ID_WINDOW, ReplayDivergedError, build_shard
from cluster.config import InstrumentRegistry, ShardMap, shard_instruments
from cluster.research.times import parse_time_ns
from cluster.storage import layout
from cluster.storage.journal import read_batches
from cluster.storage.shard import shard_directory
from protocols.errors import ConfigError
from protocols.journal_format import CommandBatch
from protocols.messages import (
    CancelOrder,
    Command,
    Event,
    Instrument,
    KillSwitchSet,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    ReplaceOrder,
    RiskLimitsSet,
    SymbolHaltSet,
    Trade,
    parse_origin,
)
from protocols.prices import format_price

__all__ = [
    "AuditEntry",
    "ReplayDivergedError",
    "account_history",
    "describe",
    "main",
    "order_history",
]

RECEIVED: Final = "received"
ACCEPTED: Final = "accepted"
REJECTED: Final = "rejected"
FILL: Final = "fill"
REPLACED: Final = "replaced"
CANCELLED: Final = "cancelled"
KILL_SWITCH: Final = "kill_switch"
RISK_LIMITS: Final = "risk_limits"
HALT: Final = "halt"

_REQUESTS: Final = {
    "NewOrder": "new order", "CancelOrder": "cancel", "ReplaceOrder": "replace",
    "MassCancel": "mass cancel", "SetKillSwitch": "kill switch", "SetSymbolHalt": "halt",
    "SetRiskLimits": "risk limits",
}
_COMMON: Final = frozenset({"account", "client_order_id", "symbol", "ts_ns", "origin"})


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One step of an order's (or an account's) life."""

    ts_ns: int
    """Ingress time of the command that caused the step, nanoseconds since the epoch."""
    shard: int
    seq: int
    """The event's sequence number in the shard; for a received request, the number its first
    event got (where it stands in the shard's sequence)."""
    step: str
    """``received``, ``accepted``, ``rejected``, ``fill``, ``replaced``, ``cancelled``, or an
    admin change (``kill_switch``, ``risk_limits``, ``halt``)."""
    account: str = ""
    symbol: str = ""
    order_id: int = 0
    """The order the step concerns (a received cancel or replace: the one it names); 0 if
    none (a rejected new order, an admin change)."""
    client_order_id: str = ""
    """The order's client id; for a received request, the request's own."""
    principal: str = ""
    """Who sent a received request: the token's name (``driver`` for the Python driver)."""
    gateway: str = ""
    """The gateway a received request came through."""
    peer: str = ""
    """The address a received request came from, as the gateway saw it."""
    details: dict[str, Any] = {}
    """The step's own values by name (prices and quantities as integers, enums by name)."""


# ------------------------------------------------------------------------------ entries


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, msgspec.Struct):
        return {name: _plain(item) for name, item in msgspec.structs.asdict(value).items()}
    return value


def _received(command: Command, shard: int, seq: int) -> AuditEntry:
    origin = parse_origin(command.origin)
    details = {"request": _REQUESTS.get(type(command).__name__, type(command).__name__)}
    details.update({name: _plain(value) for name, value in msgspec.structs.asdict(command).items()
                    if name not in _COMMON})
    return AuditEntry(
        ts_ns=command.ts_ns, shard=shard, seq=seq, step=RECEIVED, account=command.account,
        symbol=getattr(command, "symbol", ""),
        order_id=command.order_id if isinstance(command, (CancelOrder, ReplaceOrder)) else 0,
        client_order_id=command.client_order_id, principal=origin.principal,
        gateway=origin.gateway, peer=origin.peer, details=details,
    )


def _entries(event: Event, shard: int) -> list[AuditEntry]:
    """Return the steps an event is, one per order it concerns (a trade concerns two)."""
    kind = type(event)
    if kind is Trade:
        assert isinstance(event, Trade)
        common = {"price": event.price, "quantity": event.quantity,
                  "aggressor_side": event.aggressor_side.name}
        return [
            AuditEntry(ts_ns=event.ts_ns, shard=shard, seq=event.seq, step=FILL,
                       account=event.maker_account, symbol=event.symbol,
                       order_id=event.maker_order_id,
                       client_order_id=event.maker_client_order_id,
                       details={**common, "liquidity": "maker", "leaves": event.maker_leaves,
                                "counterparty_order_id": event.taker_order_id}),
            AuditEntry(ts_ns=event.ts_ns, shard=shard, seq=event.seq, step=FILL,
                       account=event.taker_account, symbol=event.symbol,
                       order_id=event.taker_order_id,
                       client_order_id=event.taker_client_order_id,
                       details={**common, "liquidity": "taker", "leaves": event.taker_leaves,
                                "counterparty_order_id": event.maker_order_id}),
        ]
    if kind is OrderAccepted:
        assert isinstance(event, OrderAccepted)
        step, details = ACCEPTED, {
            "side": event.side.name, "order_type": event.order_type.name,
            "time_in_force": event.time_in_force.name, "price": event.price,
            "quantity": event.quantity,
        }
    elif kind is OrderRejected:
        assert isinstance(event, OrderRejected)
        step, details = REJECTED, {
            "request": _plain(event.request), "code": event.code.name,
            "code_value": int(event.code), "text": event.text,
        }
    elif kind is OrderCancelled:
        assert isinstance(event, OrderCancelled)
        step, details = CANCELLED, {
            "reason": event.reason.name, "side": event.side.name, "price": event.price,
            "quantity": event.quantity, "request_id": event.request_id,
        }
    elif kind is OrderReplaced:
        assert isinstance(event, OrderReplaced)
        step, details = REPLACED, {
            "request_id": event.request_id, "side": event.side.name,
            "old_price": event.old_price, "old_quantity": event.old_quantity,
            "price": event.price, "quantity": event.quantity,
            "priority_kept": event.priority_kept,
        }
    elif kind is KillSwitchSet:
        assert isinstance(event, KillSwitchSet)
        return [AuditEntry(ts_ns=event.ts_ns, shard=shard, seq=event.seq, step=KILL_SWITCH,
                           account=event.account, client_order_id=event.request_id,
                           details={"engaged": event.engaged})]
    elif kind is RiskLimitsSet:
        assert isinstance(event, RiskLimitsSet)
        return [AuditEntry(ts_ns=event.ts_ns, shard=shard, seq=event.seq, step=RISK_LIMITS,
                           account=event.account, symbol=event.symbol,
                           client_order_id=event.request_id,
                           details={"limits": _plain(event.limits)})]
    elif kind is SymbolHaltSet:
        assert isinstance(event, SymbolHaltSet)
        return [AuditEntry(ts_ns=event.ts_ns, shard=shard, seq=event.seq, step=HALT,
                           symbol=event.symbol, client_order_id=event.request_id,
                           details={"halted": event.halted})]
    else:  # LevelChanged: market data, nobody's order
        return []
    return [AuditEntry(
        ts_ns=event.ts_ns, shard=shard, seq=event.seq, step=step,
        account=event.account, symbol=event.symbol, order_id=event.order_id,
        client_order_id=event.client_order_id, details=details,
    )]


# ------------------------------------------------------------------------------ the replay


class _Decided(msgspec.Struct, frozen=True):
    """A journaled command with the events it caused, where it stands in the sequence."""

    command: Command
    events: list[Event]
    seq: int


def _apply_with_ends(engine: MatchingEngine, batch: CommandBatch, where: str
                     ) -> Iterator[_Decided]:
    """Re-apply a journaled batch, checked as `actors.core.shard.replay_batch` checks it, and
    split its events per command (the engine's ``ends``)."""
    if batch.first_seq != engine.next_seq:
        raise ReplayDivergedError(f"{where}: journal batch starts at event {batch.first_seq}, "
                                  f"replay is at {engine.next_seq}")
    ends: list[int] = []
    events = engine.apply(batch.commands, ends)
    if engine.next_seq != batch.last_seq + 1:
        raise ReplayDivergedError(
            f"{where}: replaying events {batch.first_seq}..{batch.last_seq} gave "
            f"{batch.first_seq}..{engine.next_seq - 1}: replay is not deterministic (are these "
            f"the run's instruments, shard pins and client order id window?)"
        )
    start = 0
    for command, end in zip(batch.commands, ends, strict=True):
        seq = events[start].seq if start < len(events) else batch.last_seq + 1
        yield _Decided(command, events[start:end], seq)
        start = end


def _decided(directory: Path, shard: int, instruments: Sequence[Instrument],
             client_order_id_window: int) -> Iterator[_Decided]:
    """Yield every journaled command of a shard with its events, from the journal's start."""
    journal = directory / "journal"
    if not journal.is_dir():
        return
    _, engine = build_shard(shard, instruments, client_order_id_window=client_order_id_window)
    for batch in read_batches(journal):
        yield from _apply_with_ends(engine, batch, str(directory))


class _Source(msgspec.Struct, frozen=True):
    data_dir: Path
    instruments: dict[int, list[Instrument]]


def _source(data_dir: str | Path, instruments: InstrumentRegistry | Sequence[Instrument] | None
            ) -> _Source:
    path = Path(data_dir)
    if not path.is_dir():
        raise ConfigError(f"data dir {path} is not a folder")
    manifest = layout.read_manifest(path)
    folders = layout.shard_folders(path)
    if manifest is not None:
        shard_count = manifest.shards
    elif folders:
        shard_count = max(folders) + 1  # as cluster.storage.layout infers it
    else:
        raise ConfigError(f"{path} is not a raytrade data dir: it holds neither "
                          f"{layout.MANIFEST} nor shard-k folders")
    if instruments is None:
        registry = InstrumentRegistry.load()
    elif isinstance(instruments, InstrumentRegistry):
        registry = instruments
    else:
        registry = InstrumentRegistry(tuple(instruments))
    grouped = shard_instruments(registry, ShardMap(shard_count, dict(registry.pins)))
    return _Source(path, grouped)


# ------------------------------------------------------------------------------ queries


def order_history(
    data_dir: str | Path,
    order_id: int | None = None,
    *,
    account: str | None = None,
    client_order_id: str | None = None,
    instruments: InstrumentRegistry | Sequence[Instrument] | None = None,
    client_order_id_window: int = CLIENT_ORDER_ID_WINDOW,
) -> list[AuditEntry]:
    """Return one order's life, in the shard's sequence (empty if the journal never saw it).

    Name the order by ``order_id``, or by ``account`` and ``client_order_id`` (which also
    finds a new order that was rejected, and every resubmission of it). ``instruments`` are
    the run's (the packaged registry if None); ``client_order_id_window`` is the run's.
    """
    if order_id is None and (account is None or client_order_id is None):
        raise ValueError("name the order by order_id, or by account and client_order_id")
    source = _source(data_dir, instruments)
    if order_id is not None:
        shard = order_id >> ORDER_ID_SHARD_BITS
        if shard not in source.instruments:
            raise ConfigError(f"order {order_id} is of shard {shard}; {source.data_dir} holds "
                              f"shards 0..{len(source.instruments) - 1}")
        shards = [shard]
    else:
        shards = sorted(source.instruments)
    key = (account, client_order_id) if order_id is None else None
    found: list[AuditEntry] = []
    for shard in shards:
        target = order_id
        owner: str | None = None
        for decided in _decided(shard_directory(source.data_dir, shard), shard,
                                source.instruments[shard], client_order_id_window):
            command = decided.command
            entries = [entry for event in decided.events for entry in _entries(event, shard)]
            creates = (type(command) is NewOrder
                       and (command.account, command.client_order_id) == key)
            if creates and target is None:
                target = next((entry.order_id for entry in entries
                               if entry.step == ACCEPTED), None)
            mine = [entry for entry in entries
                    if (target is not None and entry.order_id == target)
                    or (creates and entry.step == REJECTED and not entry.order_id
                        and (entry.account, entry.client_order_id) == key)]
            if owner is None:
                owner = next((entry.account for entry in mine if entry.step == ACCEPTED), None)
            names = (isinstance(command, (CancelOrder, ReplaceOrder))
                     and target is not None and command.order_id == target)
            if creates or names or (mine and command.account == owner):
                found.append(_received(command, shard, decided.seq))
            found.extend(mine)
    return found


def account_history(
    data_dir: str | Path,
    account: str,
    start_ns: int | None = None,
    end_ns: int | None = None,
    *,
    instruments: InstrumentRegistry | Sequence[Instrument] | None = None,
    client_order_id_window: int = CLIENT_ORDER_ID_WINDOW,
) -> list[AuditEntry]:
    """Return every request of ``account`` and every step of its orders (fills, cancels, ...)
    and of its kill switch and limits whose time is in ``[start_ns, end_ns)`` (None: open),
    across every shard: each shard's in its sequence, shards interleaved by time."""
    source = _source(data_dir, instruments)
    low = start_ns if start_ns is not None else -(1 << 63)
    high = end_ns if end_ns is not None else 1 << 63

    def one_shard(shard: int) -> Iterator[AuditEntry]:
        for decided in _decided(shard_directory(source.data_dir, shard), shard,
                                source.instruments[shard], client_order_id_window):
            command = decided.command
            if command.account == account and low <= command.ts_ns < high:
                yield _received(command, shard, decided.seq)
            for event in decided.events:
                if low <= event.ts_ns < high:
                    for entry in _entries(event, shard):
                        if entry.account == account:
                            yield entry

    shards = [one_shard(shard) for shard in sorted(source.instruments)]
    # each shard's entries stay in its sequence; merge interleaves the shards by time
    return list(heapq.merge(*shards, key=lambda entry: entry.ts_ns))


# ------------------------------------------------------------------------------ printing


def format_time(ts_ns: int) -> str:
    """Return ISO 8601 in UTC to the nanosecond: ``2026-12-02T14:30:00.000000123Z``."""
    seconds, fraction = divmod(ts_ns, 10**9)
    moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
        seconds=seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def _limits(limits: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in limits.items()
                     if value is not None) or "no limits"


def describe(entry: AuditEntry, scales: dict[str, int] | None = None) -> str:
    """Return one entry as a line of a timeline; prices as decimals where ``scales`` (symbol
    -> price scale) knows the symbol."""
    scale = (scales or {}).get(entry.symbol)
    details = entry.details

    def price(value: int) -> str:
        return format_price(value, scale) if scale is not None and value >= 0 else str(value)

    step = entry.step
    if step == RECEIVED:
        request = details.get("request", "")
        if request == "new order":
            at = "market" if details.get("order_type") == "MARKET" else (
                f"@ {price(details['price'])}")
            what = (f"{details['side']} {details['quantity']} {entry.symbol} {at} "
                    f"{details['order_type']} {details['time_in_force']}")
            if details.get("post_only"):
                what += " post-only"
        elif request == "cancel":
            what = f"order {details['order_id']}"
        elif request == "replace":
            what = (f"order {details['order_id']} to {details['quantity']} @ "
                    f"{price(details['price'])}")
        elif request == "mass cancel":
            what = f"every order of {entry.account}" + (f" in {entry.symbol}"
                                                       if entry.symbol else "")
        elif request == "kill switch":
            what = f"{'engage' if details.get('engaged') else 'release'} for {entry.account}"
        elif request == "halt":
            what = f"{'halt' if details.get('halted') else 'resume'} {entry.symbol}"
        elif request == "risk limits":
            what = _limits(details["limits"]) + (f" in {entry.symbol}" if entry.symbol else "")
        else:
            what = ", ".join(f"{name}={value}" for name, value in details.items()
                             if name != "request")
        who = entry.principal or "unknown principal"
        via = f" via {entry.gateway}" if entry.gateway else ""
        peer = f" from {entry.peer}" if entry.peer else ""
        text = (f"received {request} {entry.client_order_id!r} ({entry.account}): {what}; "
                f"sent by {who}{via}{peer}")
    elif step == ACCEPTED:
        text = (f"accepted order {entry.order_id}: {details['side']} {details['quantity']} "
                f"{entry.symbol} @ {price(details['price'])} {details['order_type']} "
                f"{details['time_in_force']}")
    elif step == REJECTED:
        target = f" (order {entry.order_id})" if entry.order_id else ""
        text = (f"rejected {details['request'].lower().replace('_', ' ')} "
                f"{entry.client_order_id!r}{target}: {details['code']} "
                f"({details['code_value']}) {details['text']}")
    elif step == FILL:
        text = (f"fill of order {entry.order_id}: {details['quantity']} @ "
                f"{price(details['price'])} as {details['liquidity']}, leaves "
                f"{details['leaves']}, against order {details['counterparty_order_id']}")
    elif step == REPLACED:
        kept = "kept" if details["priority_kept"] else "lost"
        text = (f"replaced order {entry.order_id}: {details['old_quantity']} @ "
                f"{price(details['old_price'])} -> {details['quantity']} @ "
                f"{price(details['price'])} (priority {kept}) by request "
                f"{details['request_id']!r}")
    elif step == CANCELLED:
        by = f" by request {details['request_id']!r}" if details["request_id"] else ""
        text = (f"cancelled order {entry.order_id}: {details['quantity']} @ "
                f"{price(details['price'])} ({details['reason']}){by}")
    elif step == KILL_SWITCH:
        text = f"kill switch {'engaged' if details['engaged'] else 'released'} for {entry.account}"
    elif step == HALT:
        text = f"{entry.symbol} {'halted' if details['halted'] else 'resumed'}"
    elif step == RISK_LIMITS:
        where = f" in {entry.symbol}" if entry.symbol else ""
        text = f"risk limits of {entry.account}{where}: {_limits(details['limits'])}"
    else:
        text = f"{step} {entry.account} {entry.symbol}: {details}"
    return f"{format_time(entry.ts_ns)}  shard {entry.shard} seq {entry.seq:<8d} {text}"


def _print(entries: Iterable[AuditEntry], as_json: bool, scales: dict[str, int],
           write: Callable[[str], object]) -> None:
    for entry in entries:
        write(msgspec.json.encode(entry).decode() if as_json else describe(entry, scales))


def build_parser(prog: str = "raytrade audit") -> argparse.ArgumentParser:
    """Return the parser of ``raytrade audit``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Print an order's life, or an account's requests and orders, "
                               "from a data dir's journals.")
    parser.add_argument("--data-dir", required=True, type=Path,
                        help="the cluster's data dir (journals and snapshots)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--order", type=int, metavar="ID", help="the order's id")
    which.add_argument("--account", help="the account: with --client-order-id, that order's "
                                          "life; otherwise its requests and orders")
    parser.add_argument("--client-order-id", help="with --account: the order's client id")
    parser.add_argument("--from", dest="start", type=parse_time_ns, metavar="T",
                        help="with --account: from this time (ns since the epoch, or ISO 8601, "
                             "UTC if naive)")
    parser.add_argument("--to", dest="end", type=parse_time_ns, metavar="T",
                        help="with --account: before this time")
    parser.add_argument("--instruments", type=Path,
                        help="the run's instrument TOML (default: the packaged set)")
    parser.add_argument("--client-order-id-window", type=int, default=CLIENT_ORDER_ID_WINDOW,
                        help="the run's client order id window")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``raytrade audit``: 0 when something was found, 1 when nothing, 2 for bad
    arguments or data."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.client_order_id is not None and args.account is None:
        print("raytrade audit: --client-order-id needs --account", file=sys.stderr)
        return 2
    if args.order is not None and (args.start is not None or args.end is not None):
        print("raytrade audit: --from and --to go with --account", file=sys.stderr)
        return 2
    try:
        registry = InstrumentRegistry.load(args.instruments)
        options: dict[str, Any] = {"instruments": registry,
                                   "client_order_id_window": args.client_order_id_window}
        if args.order is not None:
            entries = order_history(args.data_dir, args.order, **options)
            what = f"order {args.order}"
        elif args.client_order_id is not None:
            entries = order_history(args.data_dir, account=args.account,
                                    client_order_id=args.client_order_id, **options)
            what = f"order {args.client_order_id!r} of account {args.account!r}"
        else:
            entries = account_history(args.data_dir, args.account, args.start, args.end,
                                      **options)
            what = f"account {args.account!r}"
    except (ConfigError, ReplayDivergedError, ValueError) as error:
        print(f"raytrade audit: {error}", file=sys.stderr)
        return 2
    if not entries:
        print(f"raytrade audit: the journals hold nothing of {what}", file=sys.stderr)
        return 1
    scales = {instrument.symbol: instrument.price_scale for instrument in registry.instruments}
    _print(entries, args.json, scales, print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
