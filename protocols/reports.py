"""Report building for the gRPC API: internal events and read-model rows in, protobuf out.

The gateway hands this module the events a shard produced and the rows its actors answered
with (`protocols.rows`), and gets the protobuf replies and stream messages back. Validating
requests is `protocols.requests`' job; `protocols.convert` joins the two into the gateway's
`Converter`. Building a report never raises for any event or row a shard can produce: an
internal enum value this API version does not know reads as ``UNSPECIFIED``.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Final

from protocols.generated import trading_pb2 as pb
from protocols.messages import (
    CancelReason,
    Event,
    KillSwitchSet,
    LevelChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    OrderType,
    RejectCode,
    RequestKind,
    RiskLimitsSet,
    Side,
    SymbolHaltSet,
    TimeInForce,
    Trade,
)
from protocols.requests import InstrumentSpec
from protocols.rows import GatewayShardRow, OrderRow, PositionRow, SupervisorStatusRow

__all__ = ["ReportBuilder"]

_OPPOSITE: Final = {Side.BUY: Side.SELL, Side.SELL: Side.BUY}


def _twins(internal: type[enum.IntEnum], wrapper: Any, prefix: str) -> dict[int, Any]:
    names = set(wrapper.keys())
    return {
        member: wrapper.Value(prefix + member.name)
        for member in internal
        if prefix + member.name in names
    }


# Internal enums to their protobuf twins, by name (a unit test holds the names and numbers
# equal). An internal value this API version does not know reads as UNSPECIFIED.
_PB_SIDE: Final[dict[int, pb.Side]] = {Side.BUY: pb.SIDE_BUY, Side.SELL: pb.SIDE_SELL}
_PB_ORDER_TYPE: Final[dict[int, pb.OrderType]] = {
    OrderType.LIMIT: pb.ORDER_TYPE_LIMIT, OrderType.MARKET: pb.ORDER_TYPE_MARKET,
}
_PB_TIME_IN_FORCE: Final[dict[int, pb.TimeInForce]] = {
    TimeInForce.GTC: pb.TIME_IN_FORCE_GTC, TimeInForce.IOC: pb.TIME_IN_FORCE_IOC,
    TimeInForce.FOK: pb.TIME_IN_FORCE_FOK,
}
_PB_REJECT_CODE: Final[dict[int, pb.RejectCode]] = _twins(RejectCode, pb.RejectCode, "REJECT_CODE_")
_PB_CANCEL_REASON: Final[dict[int, pb.CancelReason]] = _twins(
    CancelReason, pb.CancelReason, "CANCEL_REASON_"
)
_PB_REQUEST_KIND: Final[dict[int, pb.RequestKind]] = _twins(
    RequestKind, pb.RequestKind, "REQUEST_KIND_"
)


class ReportBuilder:
    """Build the gRPC replies and stream messages from events and read-model rows."""

    specs: dict[str, InstrumentSpec]
    """The instruments, by symbol (`instruments` lists them)."""

    @staticmethod
    def reports(
        events: Iterable[Event], shard: int, accounts: Collection[str] | None
    ) -> list[pb.ExecutionReport]:
        """Return the execution reports of ``events`` for ``accounts`` (None: every account)."""
        out: list[pb.ExecutionReport] = []
        for event in events:
            kind = type(event)
            if kind is Trade:
                _fills(event, shard, accounts, out)  # type: ignore[arg-type]
            elif kind in _REPORTED and (accounts is None or event.account in accounts):  # type: ignore[union-attr]
                out.append(_report(event, shard))
        return out

    @staticmethod
    def submit_orders_response(
        per_order: Sequence[Sequence[Event]],
    ) -> pb.SubmitOrdersResponse:
        """Summarise each order's events in columns (see `SubmitOrdersResponse`)."""
        order_ids: list[int] = []
        filled: list[int] = []
        open_quantities: list[int] = []
        rejections: list[pb.OrderRejection] = []
        for index, events in enumerate(per_order):
            order_id = 0
            done = 0
            left = 0
            for event in events:
                kind = type(event)
                if kind is OrderAccepted:
                    order_id = event.order_id  # type: ignore[union-attr]
                    left = event.quantity  # type: ignore[union-attr]
                elif kind is Trade:
                    if event.taker_order_id == order_id:  # type: ignore[union-attr]
                        done += event.quantity  # type: ignore[union-attr]
                        left = event.taker_leaves  # type: ignore[union-attr]
                elif kind is OrderCancelled:
                    if event.order_id == order_id:  # type: ignore[union-attr]
                        left = 0
                elif kind is OrderRejected:
                    rejections.append(pb.OrderRejection(
                        index=index, code=_reject_code(event.code), text=event.text,  # type: ignore[union-attr]
                        order_id=event.order_id,  # type: ignore[union-attr]
                    ))
            order_ids.append(order_id)
            filled.append(done)
            open_quantities.append(left)
        response = pb.SubmitOrdersResponse(rejections=rejections)
        response.order_ids.extend(order_ids)
        response.filled_quantities.extend(filled)
        response.open_quantities.extend(open_quantities)
        return response

    @staticmethod
    def execution_batch(
        reports: Sequence[pb.ExecutionReport], cursor: Mapping[int, int]
    ) -> pb.ExecutionBatch:
        """Return one message of an execution stream."""
        return pb.ExecutionBatch(reports=reports, cursor=cursor)

    # ---------------------------------------------------------------- market data

    @staticmethod
    def snapshot_update(
        symbol: str,
        seq: int,
        ts_ns: int,
        bids: Sequence[tuple[int, int, int]],
        asks: Sequence[tuple[int, int, int]],
    ) -> pb.MarketDataUpdate:
        """Return a whole-book update valid at ``seq``."""
        return pb.MarketDataUpdate(
            symbol=symbol, seq=seq, previous_seq=0, ts_ns=ts_ns,
            snapshot=pb.BookSnapshot(bids=_levels(bids), asks=_levels(asks)),
        )

    @staticmethod
    def level_update(event: LevelChanged, previous_seq: int) -> pb.MarketDataUpdate:
        """Return a price level change."""
        return pb.MarketDataUpdate(
            symbol=event.symbol, seq=event.seq, previous_seq=previous_seq, ts_ns=event.ts_ns,
            level=pb.LevelUpdate(
                side=_PB_SIDE.get(event.side, pb.SIDE_UNSPECIFIED), price=event.price,
                quantity=event.quantity, order_count=event.order_count,
            ),
        )

    @staticmethod
    def trade_update(event: Trade, previous_seq: int) -> pb.MarketDataUpdate:
        """Return a public trade print (no accounts)."""
        return pb.MarketDataUpdate(
            symbol=event.symbol, seq=event.seq, previous_seq=previous_seq, ts_ns=event.ts_ns,
            trade=pb.TradePrint(
                price=event.price, quantity=event.quantity,
                aggressor_side=_PB_SIDE.get(event.aggressor_side, pb.SIDE_UNSPECIFIED),
            ),
        )

    def market_update(
        self, event: LevelChanged | Trade, previous_seq: int
    ) -> pb.MarketDataUpdate:
        """Return a level change or a trade print."""
        if type(event) is Trade:
            return self.trade_update(event, previous_seq)
        return self.level_update(event, previous_seq)  # type: ignore[arg-type]

    @staticmethod
    def market_data_batch(updates: Sequence[pb.MarketDataUpdate]) -> pb.MarketDataBatch:
        """Return one message of a market-data stream."""
        return pb.MarketDataBatch(updates=updates)

    # ---------------------------------------------------------------- reads

    @staticmethod
    def order(row: OrderRow) -> pb.Order:
        """Return an open order from a book actor's order row."""
        return pb.Order(
            order_id=row.order_id, account=row.account, client_order_id=row.client_order_id,
            symbol=row.symbol, side=_PB_SIDE.get(row.side, pb.SIDE_UNSPECIFIED),
            price=row.price, open_quantity=row.open_quantity,
        )

    def open_orders(self, rows: Iterable[OrderRow]) -> pb.ListOpenOrdersResponse:
        """Return the open orders of the rows, by order id."""
        ordered = sorted(rows, key=lambda row: row.order_id)
        return pb.ListOpenOrdersResponse(orders=[self.order(row) for row in ordered])

    @staticmethod
    def positions(rows: Iterable[PositionRow]) -> pb.GetPositionsResponse:
        """Return positions from the readers' position rows (money as decimal strings)."""
        positions = [
            pb.Position(
                account=row.account,
                symbol=row.symbol,
                net_quantity=row.net_quantity,
                cost=str(row.cost),
                realized_pnl=str(row.realized_pnl),
                unrealized_pnl=str(row.unrealized_pnl),
                mark_price=row.mark_price or 0,
                traded_quantity=row.traded_quantity,
                traded_notional=str(row.traded_notional),
                fees=str(row.fees),
            )
            for row in sorted(rows, key=lambda row: (row.symbol, row.account))
        ]
        return pb.GetPositionsResponse(positions=positions)

    @staticmethod
    def book(
        symbol: str, bids: Sequence[Sequence[int]], asks: Sequence[Sequence[int]]
    ) -> pb.Book:
        """Return a book of levels ``(price, quantity, order_count)``."""
        return pb.Book(symbol=symbol, bids=_levels(bids), asks=_levels(asks))

    def instruments(self, shards: int) -> pb.ListInstrumentsResponse:
        """Return every instrument with its shard."""
        return pb.ListInstrumentsResponse(
            instruments=[
                pb.Instrument(
                    symbol=symbol,
                    tick_size=spec.tick,
                    lot_size=spec.lot,
                    price_scale=spec.scale,
                    min_price=spec.instrument.min_price or 0,
                    max_price=spec.instrument.max_price or 0,
                    shard=spec.shard,
                )
                for symbol, spec in sorted(self.specs.items())
            ],
            shards=shards,
        )

    @staticmethod
    def admin_response(events: Iterable[tuple[int, Event]]) -> pb.AdminResponse:
        """Summarise the events of an admin command over the shards it went to."""
        response = pb.AdminResponse(applied=True)
        cancelled = 0
        for shard, event in events:
            kind = type(event)
            if kind is OrderRejected:
                response.applied = False
                response.reject_code = _reject_code(event.code)  # type: ignore[union-attr]
                response.text = event.text  # type: ignore[union-attr]
            elif kind is OrderCancelled:
                cancelled += 1
            elif kind in _ADMIN_EVENTS:
                response.seqs[shard] = event.seq
        response.cancelled_orders = cancelled
        return response

    @staticmethod
    def status(
        gateway: str,
        shards: Sequence[GatewayShardRow],
        supervisors: Sequence[SupervisorStatusRow],
    ) -> pb.GetStatusResponse:
        """Return the cluster's status as the gateway gathered it (children sorted by name)."""
        return pb.GetStatusResponse(
            gateway=gateway,
            shards=[_shard_status(row) for row in shards],
            supervisors=[
                pb.SupervisorStatus(
                    name=row.name,
                    state=row.state,
                    children=[
                        pb.SupervisedChild(name=child.name, up=child.up,
                                           restarts=child.restarts, last_error=child.last_error)
                        for child in sorted(row.children, key=lambda child: child.name)
                    ],
                )
                for row in supervisors
            ],
        )


# ------------------------------------------------------------------------------ helpers

_REPORTED: Final = (OrderAccepted, OrderRejected, OrderCancelled, OrderReplaced)
_ADMIN_EVENTS: Final = (SymbolHaltSet, KillSwitchSet, RiskLimitsSet)


def _levels(levels: Sequence[Sequence[int]]) -> list[pb.Level]:
    return [pb.Level(price=level[0], quantity=level[1], order_count=level[2]) for level in levels]


def _report(event: Event, shard: int) -> pb.ExecutionReport:
    kind = type(event)
    if kind is OrderAccepted:
        accepted: OrderAccepted = event  # type: ignore[assignment]
        return pb.ExecutionReport(
            shard=shard, seq=accepted.seq, ts_ns=accepted.ts_ns,
            type=pb.EXECUTION_TYPE_ACCEPTED, account=accepted.account,
            symbol=accepted.symbol, order_id=accepted.order_id,
            client_order_id=accepted.client_order_id,
            side=_PB_SIDE.get(accepted.side, pb.SIDE_UNSPECIFIED),
            order_type=_PB_ORDER_TYPE.get(accepted.order_type, pb.ORDER_TYPE_UNSPECIFIED),
            time_in_force=_PB_TIME_IN_FORCE.get(
                accepted.time_in_force, pb.TIME_IN_FORCE_UNSPECIFIED
            ),
            price=accepted.price, quantity=accepted.quantity,
            leaves_quantity=accepted.quantity,
        )
    if kind is OrderRejected:
        rejected: OrderRejected = event  # type: ignore[assignment]
        return pb.ExecutionReport(
            shard=shard, seq=rejected.seq, ts_ns=rejected.ts_ns,
            type=pb.EXECUTION_TYPE_REJECTED, account=rejected.account,
            symbol=rejected.symbol, order_id=rejected.order_id,
            client_order_id=rejected.client_order_id, request_id=rejected.client_order_id,
            request_kind=_PB_REQUEST_KIND.get(
                rejected.request, pb.REQUEST_KIND_UNSPECIFIED
            ),
            reject_code=_reject_code(rejected.code),
            text=rejected.text,
        )
    if kind is OrderCancelled:
        cancelled: OrderCancelled = event  # type: ignore[assignment]
        return pb.ExecutionReport(
            shard=shard, seq=cancelled.seq, ts_ns=cancelled.ts_ns,
            type=pb.EXECUTION_TYPE_CANCELLED, account=cancelled.account,
            symbol=cancelled.symbol, order_id=cancelled.order_id,
            client_order_id=cancelled.client_order_id, request_id=cancelled.request_id,
            side=_PB_SIDE.get(cancelled.side, pb.SIDE_UNSPECIFIED), price=cancelled.price,
            quantity=cancelled.quantity,
            cancel_reason=_cancel_reason(cancelled.reason),
        )
    replaced: OrderReplaced = event  # type: ignore[assignment]
    return pb.ExecutionReport(
        shard=shard, seq=replaced.seq, ts_ns=replaced.ts_ns,
        type=pb.EXECUTION_TYPE_REPLACED, account=replaced.account, symbol=replaced.symbol,
        order_id=replaced.order_id, client_order_id=replaced.client_order_id,
        request_id=replaced.request_id, side=_PB_SIDE.get(replaced.side, pb.SIDE_UNSPECIFIED),
        price=replaced.price,
        quantity=replaced.quantity, leaves_quantity=replaced.quantity,
        previous_price=replaced.old_price, previous_quantity=replaced.old_quantity,
        priority_kept=replaced.priority_kept,
    )


def _fills(
    trade: Trade, shard: int, accounts: Collection[str] | None, out: list[pb.ExecutionReport]
) -> None:
    # maker first: it was in the book before the taker arrived
    if accounts is None or trade.maker_account in accounts:
        out.append(pb.ExecutionReport(
            shard=shard, seq=trade.seq, ts_ns=trade.ts_ns, type=pb.EXECUTION_TYPE_FILL,
            account=trade.maker_account, symbol=trade.symbol, order_id=trade.maker_order_id,
            client_order_id=trade.maker_client_order_id,
            side=_PB_SIDE[_OPPOSITE[trade.aggressor_side]], last_price=trade.price,
            last_quantity=trade.quantity, leaves_quantity=trade.maker_leaves,
            liquidity=pb.LIQUIDITY_MAKER,
        ))
    if accounts is None or trade.taker_account in accounts:
        out.append(pb.ExecutionReport(
            shard=shard, seq=trade.seq, ts_ns=trade.ts_ns, type=pb.EXECUTION_TYPE_FILL,
            account=trade.taker_account, symbol=trade.symbol, order_id=trade.taker_order_id,
            client_order_id=trade.taker_client_order_id,
            side=_PB_SIDE.get(trade.aggressor_side, pb.SIDE_UNSPECIFIED),
            last_price=trade.price, last_quantity=trade.quantity,
            leaves_quantity=trade.taker_leaves, liquidity=pb.LIQUIDITY_TAKER,
        ))


def _reject_code(code: RejectCode) -> pb.RejectCode:
    return _PB_REJECT_CODE.get(code, pb.REJECT_CODE_UNSPECIFIED)


def _cancel_reason(reason: CancelReason) -> pb.CancelReason:
    return _PB_CANCEL_REASON.get(reason, pb.CANCEL_REASON_UNSPECIFIED)


def _shard_status(row: GatewayShardRow) -> pb.ShardStatus:
    book = row.book
    return pb.ShardStatus(
        shard=row.shard,
        up=row.up,
        error=row.error,
        symbols=book.symbols if book is not None else [],
        next_seq=book.next_seq if book is not None else 0,
        resting_orders=book.resting_orders if book is not None else 0,
        halted_symbols=row.halted_symbols,
        killed_accounts=row.killed_accounts,
        gateway_next_seq=row.gateway_next_seq,
    )
