"""The matching engine of one shard: many symbols, one gap-free event sequence.

`MatchingEngine.apply` takes a batch of commands and returns the batch of events; it is the
unit a shard's book actor wraps (journal the batch, apply it, publish the events). It assigns
order ids (``shard_id << 40`` plus a counter) and event sequence numbers, so a replay of the
same batches gives the same ids, the same events and the same `state_hash`.

A command with bad values (unknown symbol or order, non-positive or off-lot quantity,
off-tick price, ...) gives an `OrderRejected` and changes nothing; exceptions are left for
bugs. A cancel or replace of another account's order is answered exactly as one of an order
that is not open (same code, same text): order ids are sequential, so any other answer would
tell a prober which ids are live and whose.

Client order ids: the engine remembers the last ``client_order_id_window`` (account, client
order id) pairs its new orders, cancels and replaces used (one id space, as FIX has it: a
cancel's id names the cancel request, so a retried cancel is recognised like a retried
order), and answers a reuse with ``DUPLICATE_CLIENT_ORDER_ID`` naming the original request
and its order. That window is per shard; `client_order_id_uses` reads the same pairs back from
events, which is how a gateway extends the rule across shards
(`cluster.gateway.core.AccountWideIds`).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

import cython
import msgspec

from actors.core.book import BookState, OrderBook, OrderIds, PreTradeGate, RestingOrder
from protocols.messages import (
    CancelOrder,
    CancelReason,
    Command,
    Event,
    Instrument,
    KillSwitchSet,
    MassCancel,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    RejectCode,
    ReplaceOrder,
    RequestKind,
    RiskLimitsSet,
    SetKillSwitch,
    SetRiskLimits,
    SetSymbolHalt,
    SymbolHaltSet,
)

COMPILED: Final[bool] = cython.compiled
"""True when this module runs as its Cython extension, False as plain Python."""

ORDER_ID_SHARD_BITS: Final = 40
"""Order ids are ``shard_id << 40 | n``: unique across shards, ~10**12 orders per shard."""

_KIND_BITS: Final = 2
"""The window packs each entry as ``order_id << 2 | request kind`` (one int, not a tuple: it
holds up to a million entries per shard)."""
_KIND_MASK: Final = (1 << _KIND_BITS) - 1
_REQUEST_OF: Final = {
    NewOrder: RequestKind.NEW_ORDER, CancelOrder: RequestKind.CANCEL,
    ReplaceOrder: RequestKind.REPLACE,
}

RememberedRequest = tuple[str, str, int, int]
"""(account, client order id, `RequestKind` value or 0 if unknown, order id it created or named,
0 if none): one entry of the idempotency window."""


class EngineState(msgspec.Struct, frozen=True, kw_only=True):
    """Canonical state of an engine; the body of its snapshot and of its `state_hash`."""

    shard_id: int
    next_seq: int
    next_order_id: int
    books: list[BookState]
    """One per symbol, sorted by symbol."""
    window_keys: list[tuple[str, str]] = []
    """The idempotency window, oldest first: (account, client order id) ..."""
    window_values: list[int] = []
    """... and for each, the order it created or named (0: none) << 2 | the `RequestKind`
    value of the request that used it (0: unknown). Two lists the engine copies as they are
    (a snapshot of a full window copied 1M entries field by field before)."""
    window_accounts: list[str] = []
    """Snapshots written before `window_keys`: the window column by column (accounts, ...)."""
    window_client_order_ids: list[str] = []
    """... client order ids, ..."""
    window_order_ids: list[int] = []
    """... the order each created or named (0: none), ..."""
    window_requests: list[int] = []
    """... and the `RequestKind` value of the request that used it (0: unknown; empty in
    snapshots written before the kinds were kept)."""


@cython.final
@cython.cclass
class MatchingEngine:
    """Apply command batches to the order books of one shard."""

    shard_id = cython.declare(object, visibility="public")
    gate = cython.declare(object, visibility="public")
    client_order_id_window = cython.declare(cython.Py_ssize_t, visibility="public")
    books = cython.declare(dict, visibility="public")
    """Symbol -> its `OrderBook`."""
    next_seq = cython.declare(object, visibility="public")
    cython.declare(
        _seen=dict, _seen_order=object, _seen_values=object, _order_ids=object, _symbols=list,
    )

    def __init__(
        self,
        instruments: Iterable[Instrument],
        shard_id: int = 0,
        gate: PreTradeGate | None = None,
        client_order_id_window: int = 0,
    ) -> None:
        self.shard_id = shard_id
        self.gate = gate
        """Pre-trade risk checks, consulted by every book; it observes every event."""
        self.client_order_id_window = client_order_id_window
        """How many recent (account, client order id) pairs to remember; 0: no idempotency."""
        # (account, client_order_id) -> order id it created or named (0: none) << 2 | request
        # kind. FIFO order is kept in deques (evicting from the front of a dict makes its
        # iteration O(n)); the values ride along so a snapshot is built column by column.
        self._seen: dict[tuple[str, str], int] = {}
        self._seen_order: deque[tuple[str, str]] = deque()
        self._seen_values: deque[int] = deque()
        self._order_ids = OrderIds((shard_id << ORDER_ID_SHARD_BITS) + 1)
        self.books = {
            instrument.symbol: OrderBook(instrument, gate, self._order_ids)
            for instrument in instruments
        }
        self._symbols = sorted(self.books)
        self.next_seq = 1
        """Sequence number of the next event."""

    @property
    def next_order_id(self) -> int:
        """Id the next accepted order gets."""
        next_id: int = self._order_ids.next
        return next_id

    @cython.locals(out=list, books=dict, seen=dict, touched=set, seq=cython.longlong,
                   first=cython.Py_ssize_t)
    def apply(self, commands: Sequence[Command], ends: list[int] | None = None) -> list[Event]:
        """Apply a batch of commands in order and return every event it caused.

        Level changes for market data follow the order events, once per batch. If ``ends`` is
        given, append to it, per command, the index just past that command's events (so
        ``events[ends[i - 1]:ends[i]]`` are command ``i``'s).
        """
        out: list[Event] = []
        if not commands:
            return out
        seq = self.next_seq
        books = self.books
        gate = self.gate
        seen = self._seen if self.client_order_id_window else None
        touched = set()  # symbols whose books may have level changes to flush
        first = 0
        for command in commands:
            if gate is not None:
                first = len(out)
            kind = type(command)
            if kind is NewOrder or kind is CancelOrder or kind is ReplaceOrder:
                key = None
                if seen is not None and command.client_order_id:
                    key = (command.account, command.client_order_id)
                    original = seen.get(key)
                    if original is not None:
                        out.append(_reject_duplicate(command, original, seq))  # type: ignore[arg-type]
                        seq += 1
                        if ends is not None:
                            ends.append(len(out))
                        continue
                symbol = command.symbol  # type: ignore[union-attr]
                book = books.get(symbol)
                named = 0 if kind is NewOrder else command.order_id  # type: ignore[union-attr]
                if book is None:
                    text = f"unknown symbol {symbol!r}"
                    out.append(_reject(command, RejectCode.UNKNOWN_SYMBOL, text, seq))
                    seq += 1
                elif kind is NewOrder:
                    touched.add(symbol)
                    before = self._order_ids.next
                    seq = book.submit(command, seq, out)
                    if self._order_ids.next != before:
                        named = before
                else:
                    touched.add(symbol)
                    resting = book.orders.get(named)
                    # another account's order is answered as a missing one (module docstring)
                    if resting is not None and resting.account == command.account:
                        if kind is CancelOrder:
                            seq = book.cancel(command, seq, out)
                        else:
                            seq = book.replace(command, seq, out)
                    else:
                        out.append(self._reject_missing(command, seq))  # type: ignore[arg-type]
                        seq += 1
                if key is not None:
                    self._remember(key, named << _KIND_BITS | _REQUEST_OF[kind])
            elif kind in _ADMIN:
                seq = self._apply_admin(command, seq, out)
                touched.update(self._symbols)  # a mass cancel or kill switch may touch any
            else:
                raise TypeError(f"not a command: {command!r}")
            if gate is not None:
                gate.observe(out, first)
            if ends is not None:
                ends.append(len(out))
        ts_ns = commands[-1].ts_ns
        for symbol in sorted(touched) if len(touched) > 1 else touched:
            book = books[symbol]
            if book.dirty:
                seq = book.flush_level_changes(ts_ns, seq, out)
        self.next_seq = seq
        return out

    @cython.cfunc
    def _remember(self, key: tuple[str, str], value: int) -> None:
        self._seen[key] = value
        self._seen_order.append(key)
        self._seen_values.append(value)
        if len(self._seen_order) > self.client_order_id_window:
            del self._seen[self._seen_order.popleft()]
            self._seen_values.popleft()

    def _apply_admin(self, command: Command, seq: int, out: list[Event]) -> int:
        """Apply an admin command: emit its event, then any cancels it causes."""
        symbol: str = getattr(command, "symbol", "")  # a kill switch covers every symbol
        if symbol and symbol not in self.books:
            text = f"unknown symbol {symbol!r}"
            out.append(_reject(command, RejectCode.UNKNOWN_SYMBOL, text, seq))
            return seq + 1
        problem = self.gate.check_admin(command) if self.gate is not None else None
        if problem is not None:
            out.append(_reject(command, problem[0], problem[1], seq))
            return seq + 1
        ts_ns = command.ts_ns
        request_id = command.client_order_id
        if type(command) is SetRiskLimits:
            out.append(
                RiskLimitsSet(
                    seq=seq,
                    ts_ns=ts_ns,
                    account=command.account,
                    symbol=symbol,
                    limits=command.limits,
                    request_id=request_id,
                )
            )
            return seq + 1
        if type(command) is SetSymbolHalt:
            out.append(
                SymbolHaltSet(
                    seq=seq, ts_ns=ts_ns, symbol=symbol, halted=command.halted,
                    request_id=request_id,
                )
            )
            return seq + 1
        if type(command) is SetKillSwitch:
            out.append(
                KillSwitchSet(
                    seq=seq, ts_ns=ts_ns, account=command.account, engaged=command.engaged,
                    request_id=request_id,
                )
            )
            seq += 1
            if not command.engaged:
                return seq
            reason = CancelReason.KILL_SWITCH
        else:
            reason = CancelReason.MASS_CANCEL
        for name in [symbol] if symbol else sorted(self.books):
            seq = self.books[name].cancel_all(command.account, reason, ts_ns, request_id, seq, out)
        return seq

    def _reject_missing(self, request: CancelOrder | ReplaceOrder, seq: int) -> OrderRejected:
        """Reject a cancel or replace of an order that is not the requester's open order.

        Whether the id is below the shard's next order id is no secret (any account sees it
        in its own ids); whether that order is live, or whose, must not show.
        """
        order_id = request.order_id
        base = self.shard_id << ORDER_ID_SHARD_BITS
        if base < order_id < self.next_order_id:
            code = RejectCode.ORDER_NOT_OPEN
            text = (
                f"order {order_id} is not open for account {request.account!r} in "
                f"{request.symbol}: filled, cancelled, or entered for another symbol or "
                f"account"
            )
        else:
            code, text = RejectCode.UNKNOWN_ORDER, f"no order {order_id} was ever entered here"
        return _reject(request, code, text, seq)

    # ---------------------------------------------------------------- queries

    def remembered(self) -> list[RememberedRequest]:
        """Return the idempotency window, oldest first (what `client_order_id_uses` reads
        back from this engine's events)."""
        return [
            (account, client_order_id, value & _KIND_MASK, value >> _KIND_BITS)
            for (account, client_order_id), value in zip(
                self._seen_order, self._seen_values, strict=True
            )
        ]

    def find_order(self, order_id: int) -> RestingOrder | None:
        """Return the live order with this id, or None."""
        for book in self.books.values():
            order: RestingOrder | None = book.orders.get(order_id)
            if order is not None:
                return order
        return None

    def state(self) -> EngineState:
        """Return the canonical state (a deep copy, safe to keep or encode)."""
        return EngineState(
            shard_id=self.shard_id,
            next_seq=self.next_seq,
            next_order_id=self.next_order_id,
            books=[self.books[symbol].state() for symbol in sorted(self.books)],
            window_keys=list(self._seen_order),
            window_values=list(self._seen_values),
        )

    @classmethod
    def from_state(
        cls,
        instruments: Iterable[Instrument],
        state: EngineState,
        gate: PreTradeGate | None = None,
        client_order_id_window: int = 0,
    ) -> MatchingEngine:
        """Rebuild an engine from a snapshot of its state (the gate restores its own)."""
        engine: MatchingEngine = cls(instruments, state.shard_id, gate, client_order_id_window)
        if state.window_keys or not state.window_accounts:
            keys, values = state.window_keys, state.window_values
            if len(keys) != len(values):
                raise ValueError(f"the window has {len(keys)} keys and {len(values)} values")
        else:  # a snapshot written column by column
            keys = list(zip(state.window_accounts, state.window_client_order_ids, strict=True))
            # a snapshot from before the kinds were kept has none: 0 (unknown) for each
            requests = state.window_requests or [0] * len(keys)
            values = [
                order_id << _KIND_BITS | request
                for order_id, request in zip(state.window_order_ids, requests, strict=True)
            ]
        if client_order_id_window:
            keep = slice(max(0, len(keys) - client_order_id_window), None)
            engine._seen_order = deque(keys[keep])
            engine._seen_values = deque(values[keep])
            engine._seen = dict(zip(engine._seen_order, engine._seen_values, strict=True))
        engine._order_ids.next = state.next_order_id
        for book_state in state.books:
            book = engine.books[book_state.symbol]
            engine.books[book_state.symbol] = OrderBook.from_state(
                book.instrument, book_state, gate, engine._order_ids
            )
        engine.next_seq = state.next_seq
        return engine

    def state_hash(self) -> str:
        """Return a hex digest that is equal for equal states, however they were reached."""
        return hashlib.blake2b(msgspec.msgpack.encode(self.state()), digest_size=16).hexdigest()

    def check_invariants(self) -> None:
        """Raise `AssertionError` if any book is inconsistent or ids are out of range."""
        base = self.shard_id << ORDER_ID_SHARD_BITS
        for book in self.books.values():
            book.check_invariants()
            for order_id in book.orders:
                assert base < order_id < self.next_order_id, f"order id {order_id} out of range"


_ADMIN: Final = frozenset({MassCancel, SetRiskLimits, SetKillSwitch, SetSymbolHalt})


def _reject_duplicate(
    command: NewOrder | CancelOrder | ReplaceOrder, remembered: int, seq: int
) -> OrderRejected:
    """Answer a resubmitted request: nothing happens again; the reject names the original
    request's kind (whatever kind the new one is) and its order."""
    original, request = remembered >> _KIND_BITS, remembered & _KIND_MASK
    if request == RequestKind.NEW_ORDER:
        what = f"an order, which became order {original}" if original else (
            "an order, which was rejected")
    elif request == RequestKind.CANCEL:
        what = f"a cancel of order {original}"
    elif request == RequestKind.REPLACE:
        what = f"a replace of order {original}"
    else:  # remembered before the kinds were kept
        what = f"an earlier request (order {original})" if original else "an earlier request"
    text = (
        f"client order id {command.client_order_id!r} was already used by account "
        f"{command.account!r} for {what}"
    )
    rejected = _reject(command, RejectCode.DUPLICATE_CLIENT_ORDER_ID, text, seq)
    return msgspec.structs.replace(rejected, order_id=original)


def client_order_id_uses(events: Iterable[Event]) -> Iterator[RememberedRequest]:
    """Yield each request's first use of its client order id that ``events`` record, as the
    engine that made them remembers it (`MatchingEngine.remembered`).

    A reader of a shard's events (a gateway) rebuilds the shard's window from them without
    the shard: an acceptance or a rejection of a new order, cancel or replace, a user cancel
    and a replace each record one use; a duplicate's rejection records none.
    """
    for event in events:
        if isinstance(event, OrderAccepted):
            if event.client_order_id:
                yield event.account, event.client_order_id, RequestKind.NEW_ORDER, event.order_id
        elif isinstance(event, OrderRejected):
            if (
                event.client_order_id
                and event.request is not RequestKind.ADMIN
                and event.code is not RejectCode.DUPLICATE_CLIENT_ORDER_ID
            ):
                yield event.account, event.client_order_id, event.request, event.order_id
        elif isinstance(event, OrderCancelled):
            if event.reason is CancelReason.USER and event.request_id:
                yield event.account, event.request_id, RequestKind.CANCEL, event.order_id
        elif isinstance(event, OrderReplaced) and event.request_id:
            yield event.account, event.request_id, RequestKind.REPLACE, event.order_id


def _reject(command: Command, code: RejectCode, text: str, seq: int) -> OrderRejected:
    if type(command) is NewOrder:
        kind, order_id = RequestKind.NEW_ORDER, 0
    elif type(command) is CancelOrder or type(command) is ReplaceOrder:
        kind = RequestKind.CANCEL if type(command) is CancelOrder else RequestKind.REPLACE
        order_id = command.order_id
    else:
        kind, order_id = RequestKind.ADMIN, 0
    return OrderRejected(
        seq=seq,
        ts_ns=command.ts_ns,
        symbol=getattr(command, "symbol", ""),
        account=command.account,
        client_order_id=command.client_order_id,
        request=kind,
        code=code,
        text=text,
        order_id=order_id,
    )
