# mypy: ignore-errors
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]

class OrderType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_TYPE_UNSPECIFIED: _ClassVar[OrderType]
    ORDER_TYPE_LIMIT: _ClassVar[OrderType]
    ORDER_TYPE_MARKET: _ClassVar[OrderType]

class TimeInForce(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_IN_FORCE_UNSPECIFIED: _ClassVar[TimeInForce]
    TIME_IN_FORCE_GTC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_IOC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_FOK: _ClassVar[TimeInForce]

class SelfTradePrevention(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SELF_TRADE_PREVENTION_NONE: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_CANCEL_RESTING: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_CANCEL_AGGRESSING: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_CANCEL_BOTH: _ClassVar[SelfTradePrevention]

class ExecutionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_TYPE_UNSPECIFIED: _ClassVar[ExecutionType]
    EXECUTION_TYPE_ACCEPTED: _ClassVar[ExecutionType]
    EXECUTION_TYPE_REJECTED: _ClassVar[ExecutionType]
    EXECUTION_TYPE_FILL: _ClassVar[ExecutionType]
    EXECUTION_TYPE_CANCELLED: _ClassVar[ExecutionType]
    EXECUTION_TYPE_REPLACED: _ClassVar[ExecutionType]

class RequestKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_KIND_UNSPECIFIED: _ClassVar[RequestKind]
    REQUEST_KIND_NEW_ORDER: _ClassVar[RequestKind]
    REQUEST_KIND_CANCEL: _ClassVar[RequestKind]
    REQUEST_KIND_REPLACE: _ClassVar[RequestKind]
    REQUEST_KIND_ADMIN: _ClassVar[RequestKind]

class CancelReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CANCEL_REASON_UNSPECIFIED: _ClassVar[CancelReason]
    CANCEL_REASON_USER: _ClassVar[CancelReason]
    CANCEL_REASON_IOC_REMAINDER: _ClassVar[CancelReason]
    CANCEL_REASON_MARKET_REMAINDER: _ClassVar[CancelReason]
    CANCEL_REASON_SELF_TRADE_PREVENTION: _ClassVar[CancelReason]
    CANCEL_REASON_KILL_SWITCH: _ClassVar[CancelReason]
    CANCEL_REASON_MASS_CANCEL: _ClassVar[CancelReason]
    CANCEL_REASON_DISCONNECT: _ClassVar[CancelReason]

class Liquidity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIQUIDITY_UNSPECIFIED: _ClassVar[Liquidity]
    LIQUIDITY_MAKER: _ClassVar[Liquidity]
    LIQUIDITY_TAKER: _ClassVar[Liquidity]

class RejectCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REJECT_CODE_UNSPECIFIED: _ClassVar[RejectCode]
    REJECT_CODE_RISK_MAX_ORDER_QUANTITY: _ClassVar[RejectCode]
    REJECT_CODE_RISK_MAX_ORDER_NOTIONAL: _ClassVar[RejectCode]
    REJECT_CODE_RISK_PRICE_COLLAR: _ClassVar[RejectCode]
    REJECT_CODE_RISK_MAX_POSITION: _ClassVar[RejectCode]
    REJECT_CODE_RISK_MAX_OPEN_ORDERS: _ClassVar[RejectCode]
    REJECT_CODE_RISK_ORDER_RATE: _ClassVar[RejectCode]
    REJECT_CODE_RISK_ACCOUNT_KILLED: _ClassVar[RejectCode]
    REJECT_CODE_RISK_SYMBOL_HALTED: _ClassVar[RejectCode]
    REJECT_CODE_RISK_INVALID_LIMITS: _ClassVar[RejectCode]
    REJECT_CODE_UNKNOWN_SYMBOL: _ClassVar[RejectCode]
    REJECT_CODE_INVALID_QUANTITY: _ClassVar[RejectCode]
    REJECT_CODE_INVALID_PRICE: _ClassVar[RejectCode]
    REJECT_CODE_PRICE_OUT_OF_BAND: _ClassVar[RejectCode]
    REJECT_CODE_INVALID_ORDER_TYPE: _ClassVar[RejectCode]
    REJECT_CODE_INVALID_SIDE: _ClassVar[RejectCode]
    REJECT_CODE_INVALID_TIME_IN_FORCE: _ClassVar[RejectCode]
    REJECT_CODE_POST_ONLY_WOULD_TAKE: _ClassVar[RejectCode]
    REJECT_CODE_FOK_NOT_FILLABLE: _ClassVar[RejectCode]
    REJECT_CODE_NO_LIQUIDITY: _ClassVar[RejectCode]
    REJECT_CODE_UNKNOWN_ORDER: _ClassVar[RejectCode]
    REJECT_CODE_ORDER_NOT_OPEN: _ClassVar[RejectCode]
    REJECT_CODE_ORDER_NOT_OWNED: _ClassVar[RejectCode]
    REJECT_CODE_LEVEL_QUANTITY_OVERFLOW: _ClassVar[RejectCode]
    REJECT_CODE_DUPLICATE_CLIENT_ORDER_ID: _ClassVar[RejectCode]
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side
ORDER_TYPE_UNSPECIFIED: OrderType
ORDER_TYPE_LIMIT: OrderType
ORDER_TYPE_MARKET: OrderType
TIME_IN_FORCE_UNSPECIFIED: TimeInForce
TIME_IN_FORCE_GTC: TimeInForce
TIME_IN_FORCE_IOC: TimeInForce
TIME_IN_FORCE_FOK: TimeInForce
SELF_TRADE_PREVENTION_NONE: SelfTradePrevention
SELF_TRADE_PREVENTION_CANCEL_RESTING: SelfTradePrevention
SELF_TRADE_PREVENTION_CANCEL_AGGRESSING: SelfTradePrevention
SELF_TRADE_PREVENTION_CANCEL_BOTH: SelfTradePrevention
EXECUTION_TYPE_UNSPECIFIED: ExecutionType
EXECUTION_TYPE_ACCEPTED: ExecutionType
EXECUTION_TYPE_REJECTED: ExecutionType
EXECUTION_TYPE_FILL: ExecutionType
EXECUTION_TYPE_CANCELLED: ExecutionType
EXECUTION_TYPE_REPLACED: ExecutionType
REQUEST_KIND_UNSPECIFIED: RequestKind
REQUEST_KIND_NEW_ORDER: RequestKind
REQUEST_KIND_CANCEL: RequestKind
REQUEST_KIND_REPLACE: RequestKind
REQUEST_KIND_ADMIN: RequestKind
CANCEL_REASON_UNSPECIFIED: CancelReason
CANCEL_REASON_USER: CancelReason
CANCEL_REASON_IOC_REMAINDER: CancelReason
CANCEL_REASON_MARKET_REMAINDER: CancelReason
CANCEL_REASON_SELF_TRADE_PREVENTION: CancelReason
CANCEL_REASON_KILL_SWITCH: CancelReason
CANCEL_REASON_MASS_CANCEL: CancelReason
CANCEL_REASON_DISCONNECT: CancelReason
LIQUIDITY_UNSPECIFIED: Liquidity
LIQUIDITY_MAKER: Liquidity
LIQUIDITY_TAKER: Liquidity
REJECT_CODE_UNSPECIFIED: RejectCode
REJECT_CODE_RISK_MAX_ORDER_QUANTITY: RejectCode
REJECT_CODE_RISK_MAX_ORDER_NOTIONAL: RejectCode
REJECT_CODE_RISK_PRICE_COLLAR: RejectCode
REJECT_CODE_RISK_MAX_POSITION: RejectCode
REJECT_CODE_RISK_MAX_OPEN_ORDERS: RejectCode
REJECT_CODE_RISK_ORDER_RATE: RejectCode
REJECT_CODE_RISK_ACCOUNT_KILLED: RejectCode
REJECT_CODE_RISK_SYMBOL_HALTED: RejectCode
REJECT_CODE_RISK_INVALID_LIMITS: RejectCode
REJECT_CODE_UNKNOWN_SYMBOL: RejectCode
REJECT_CODE_INVALID_QUANTITY: RejectCode
REJECT_CODE_INVALID_PRICE: RejectCode
REJECT_CODE_PRICE_OUT_OF_BAND: RejectCode
REJECT_CODE_INVALID_ORDER_TYPE: RejectCode
REJECT_CODE_INVALID_SIDE: RejectCode
REJECT_CODE_INVALID_TIME_IN_FORCE: RejectCode
REJECT_CODE_POST_ONLY_WOULD_TAKE: RejectCode
REJECT_CODE_FOK_NOT_FILLABLE: RejectCode
REJECT_CODE_NO_LIQUIDITY: RejectCode
REJECT_CODE_UNKNOWN_ORDER: RejectCode
REJECT_CODE_ORDER_NOT_OPEN: RejectCode
REJECT_CODE_ORDER_NOT_OWNED: RejectCode
REJECT_CODE_LEVEL_QUANTITY_OVERFLOW: RejectCode
REJECT_CODE_DUPLICATE_CLIENT_ORDER_ID: RejectCode

class ExecutionReport(_message.Message):
    __slots__ = ("shard", "seq", "ts_ns", "type", "account", "symbol", "order_id", "client_order_id", "request_id", "side", "order_type", "time_in_force", "price", "quantity", "last_price", "last_quantity", "leaves_quantity", "liquidity", "request_kind", "reject_code", "text", "cancel_reason", "previous_price", "previous_quantity", "priority_kept")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LAST_PRICE_FIELD_NUMBER: _ClassVar[int]
    LAST_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LEAVES_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LIQUIDITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_KIND_FIELD_NUMBER: _ClassVar[int]
    REJECT_CODE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_PRICE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_KEPT_FIELD_NUMBER: _ClassVar[int]
    shard: int
    seq: int
    ts_ns: int
    type: ExecutionType
    account: str
    symbol: str
    order_id: int
    client_order_id: str
    request_id: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    quantity: int
    last_price: int
    last_quantity: int
    leaves_quantity: int
    liquidity: Liquidity
    request_kind: RequestKind
    reject_code: RejectCode
    text: str
    cancel_reason: CancelReason
    previous_price: int
    previous_quantity: int
    priority_kept: bool
    def __init__(self, shard: _Optional[int] = ..., seq: _Optional[int] = ..., ts_ns: _Optional[int] = ..., type: _Optional[_Union[ExecutionType, str]] = ..., account: _Optional[str] = ..., symbol: _Optional[str] = ..., order_id: _Optional[int] = ..., client_order_id: _Optional[str] = ..., request_id: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., order_type: _Optional[_Union[OrderType, str]] = ..., time_in_force: _Optional[_Union[TimeInForce, str]] = ..., price: _Optional[int] = ..., quantity: _Optional[int] = ..., last_price: _Optional[int] = ..., last_quantity: _Optional[int] = ..., leaves_quantity: _Optional[int] = ..., liquidity: _Optional[_Union[Liquidity, str]] = ..., request_kind: _Optional[_Union[RequestKind, str]] = ..., reject_code: _Optional[_Union[RejectCode, str]] = ..., text: _Optional[str] = ..., cancel_reason: _Optional[_Union[CancelReason, str]] = ..., previous_price: _Optional[int] = ..., previous_quantity: _Optional[int] = ..., priority_kept: _Optional[bool] = ...) -> None: ...

class NewOrderRequest(_message.Message):
    __slots__ = ("account", "client_order_id", "symbol", "side", "order_type", "time_in_force", "quantity", "price", "price_decimal", "post_only", "self_trade_prevention")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    PRICE_DECIMAL_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    SELF_TRADE_PREVENTION_FIELD_NUMBER: _ClassVar[int]
    account: str
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: int
    price: int
    price_decimal: str
    post_only: bool
    self_trade_prevention: SelfTradePrevention
    def __init__(self, account: _Optional[str] = ..., client_order_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., order_type: _Optional[_Union[OrderType, str]] = ..., time_in_force: _Optional[_Union[TimeInForce, str]] = ..., quantity: _Optional[int] = ..., price: _Optional[int] = ..., price_decimal: _Optional[str] = ..., post_only: _Optional[bool] = ..., self_trade_prevention: _Optional[_Union[SelfTradePrevention, str]] = ...) -> None: ...

class SubmitOrderResponse(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[ExecutionReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[ExecutionReport, _Mapping]]] = ...) -> None: ...

class SubmitOrdersRequest(_message.Message):
    __slots__ = ("orders", "packed_orders")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    PACKED_ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[NewOrderRequest]
    packed_orders: bytes
    def __init__(self, orders: _Optional[_Iterable[_Union[NewOrderRequest, _Mapping]]] = ..., packed_orders: _Optional[bytes] = ...) -> None: ...

class SubmitOrdersResponse(_message.Message):
    __slots__ = ("order_ids", "filled_quantities", "open_quantities", "rejections")
    ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    FILLED_QUANTITIES_FIELD_NUMBER: _ClassVar[int]
    OPEN_QUANTITIES_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    order_ids: _containers.RepeatedScalarFieldContainer[int]
    filled_quantities: _containers.RepeatedScalarFieldContainer[int]
    open_quantities: _containers.RepeatedScalarFieldContainer[int]
    rejections: _containers.RepeatedCompositeFieldContainer[OrderRejection]
    def __init__(self, order_ids: _Optional[_Iterable[int]] = ..., filled_quantities: _Optional[_Iterable[int]] = ..., open_quantities: _Optional[_Iterable[int]] = ..., rejections: _Optional[_Iterable[_Union[OrderRejection, _Mapping]]] = ...) -> None: ...

class OrderRejection(_message.Message):
    __slots__ = ("index", "code", "text", "order_id")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    index: int
    code: RejectCode
    text: str
    order_id: int
    def __init__(self, index: _Optional[int] = ..., code: _Optional[_Union[RejectCode, str]] = ..., text: _Optional[str] = ..., order_id: _Optional[int] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("account", "client_order_id", "symbol", "order_id")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    account: str
    client_order_id: str
    symbol: str
    order_id: int
    def __init__(self, account: _Optional[str] = ..., client_order_id: _Optional[str] = ..., symbol: _Optional[str] = ..., order_id: _Optional[int] = ...) -> None: ...

class CancelOrderResponse(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[ExecutionReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[ExecutionReport, _Mapping]]] = ...) -> None: ...

class ReplaceOrderRequest(_message.Message):
    __slots__ = ("account", "client_order_id", "symbol", "order_id", "price", "price_decimal", "quantity")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    PRICE_DECIMAL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    account: str
    client_order_id: str
    symbol: str
    order_id: int
    price: int
    price_decimal: str
    quantity: int
    def __init__(self, account: _Optional[str] = ..., client_order_id: _Optional[str] = ..., symbol: _Optional[str] = ..., order_id: _Optional[int] = ..., price: _Optional[int] = ..., price_decimal: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class ReplaceOrderResponse(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[ExecutionReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[ExecutionReport, _Mapping]]] = ...) -> None: ...

class MassCancelRequest(_message.Message):
    __slots__ = ("account", "client_order_id", "symbol")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    account: str
    client_order_id: str
    symbol: str
    def __init__(self, account: _Optional[str] = ..., client_order_id: _Optional[str] = ..., symbol: _Optional[str] = ...) -> None: ...

class MassCancelResponse(_message.Message):
    __slots__ = ("reports", "cancelled_orders")
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_ORDERS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[ExecutionReport]
    cancelled_orders: int
    def __init__(self, reports: _Optional[_Iterable[_Union[ExecutionReport, _Mapping]]] = ..., cancelled_orders: _Optional[int] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("order_id", "account", "client_order_id", "symbol", "side", "price", "open_quantity")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    OPEN_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    account: str
    client_order_id: str
    symbol: str
    side: Side
    price: int
    open_quantity: int
    def __init__(self, order_id: _Optional[int] = ..., account: _Optional[str] = ..., client_order_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., price: _Optional[int] = ..., open_quantity: _Optional[int] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("account", "order_id")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    account: str
    order_id: int
    def __init__(self, account: _Optional[str] = ..., order_id: _Optional[int] = ...) -> None: ...

class ListOpenOrdersRequest(_message.Message):
    __slots__ = ("account", "symbol")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    account: str
    symbol: str
    def __init__(self, account: _Optional[str] = ..., symbol: _Optional[str] = ...) -> None: ...

class ListOpenOrdersResponse(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("account", "symbol", "net_quantity", "cost", "realized_pnl", "unrealized_pnl", "mark_price", "traded_quantity", "traded_notional", "fees")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    NET_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    REALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    UNREALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    MARK_PRICE_FIELD_NUMBER: _ClassVar[int]
    TRADED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TRADED_NOTIONAL_FIELD_NUMBER: _ClassVar[int]
    FEES_FIELD_NUMBER: _ClassVar[int]
    account: str
    symbol: str
    net_quantity: int
    cost: str
    realized_pnl: str
    unrealized_pnl: str
    mark_price: int
    traded_quantity: int
    traded_notional: str
    fees: str
    def __init__(self, account: _Optional[str] = ..., symbol: _Optional[str] = ..., net_quantity: _Optional[int] = ..., cost: _Optional[str] = ..., realized_pnl: _Optional[str] = ..., unrealized_pnl: _Optional[str] = ..., mark_price: _Optional[int] = ..., traded_quantity: _Optional[int] = ..., traded_notional: _Optional[str] = ..., fees: _Optional[str] = ...) -> None: ...

class GetPositionsRequest(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: str
    def __init__(self, account: _Optional[str] = ...) -> None: ...

class GetPositionsResponse(_message.Message):
    __slots__ = ("positions",)
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedCompositeFieldContainer[Position]
    def __init__(self, positions: _Optional[_Iterable[_Union[Position, _Mapping]]] = ...) -> None: ...

class Level(_message.Message):
    __slots__ = ("price", "quantity", "order_count")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDER_COUNT_FIELD_NUMBER: _ClassVar[int]
    price: int
    quantity: int
    order_count: int
    def __init__(self, price: _Optional[int] = ..., quantity: _Optional[int] = ..., order_count: _Optional[int] = ...) -> None: ...

class GetBookRequest(_message.Message):
    __slots__ = ("symbol", "depth")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    depth: int
    def __init__(self, symbol: _Optional[str] = ..., depth: _Optional[int] = ...) -> None: ...

class Book(_message.Message):
    __slots__ = ("symbol", "bids", "asks")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    bids: _containers.RepeatedCompositeFieldContainer[Level]
    asks: _containers.RepeatedCompositeFieldContainer[Level]
    def __init__(self, symbol: _Optional[str] = ..., bids: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[Level, _Mapping]]] = ...) -> None: ...

class Instrument(_message.Message):
    __slots__ = ("symbol", "tick_size", "lot_size", "price_scale", "min_price", "max_price", "shard")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TICK_SIZE_FIELD_NUMBER: _ClassVar[int]
    LOT_SIZE_FIELD_NUMBER: _ClassVar[int]
    PRICE_SCALE_FIELD_NUMBER: _ClassVar[int]
    MIN_PRICE_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    tick_size: int
    lot_size: int
    price_scale: int
    min_price: int
    max_price: int
    shard: int
    def __init__(self, symbol: _Optional[str] = ..., tick_size: _Optional[int] = ..., lot_size: _Optional[int] = ..., price_scale: _Optional[int] = ..., min_price: _Optional[int] = ..., max_price: _Optional[int] = ..., shard: _Optional[int] = ...) -> None: ...

class ListInstrumentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListInstrumentsResponse(_message.Message):
    __slots__ = ("instruments", "shards")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[Instrument]
    shards: int
    def __init__(self, instruments: _Optional[_Iterable[_Union[Instrument, _Mapping]]] = ..., shards: _Optional[int] = ...) -> None: ...

class StreamExecutionsRequest(_message.Message):
    __slots__ = ("accounts", "after_seq", "cancel_on_disconnect")
    class AfterSeqEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ON_DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedScalarFieldContainer[str]
    after_seq: _containers.ScalarMap[int, int]
    cancel_on_disconnect: bool
    def __init__(self, accounts: _Optional[_Iterable[str]] = ..., after_seq: _Optional[_Mapping[int, int]] = ..., cancel_on_disconnect: _Optional[bool] = ...) -> None: ...

class ExecutionBatch(_message.Message):
    __slots__ = ("reports", "cursor")
    class CursorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[ExecutionReport]
    cursor: _containers.ScalarMap[int, int]
    def __init__(self, reports: _Optional[_Iterable[_Union[ExecutionReport, _Mapping]]] = ..., cursor: _Optional[_Mapping[int, int]] = ...) -> None: ...

class StreamMarketDataRequest(_message.Message):
    __slots__ = ("symbols",)
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    symbols: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, symbols: _Optional[_Iterable[str]] = ...) -> None: ...

class BookSnapshot(_message.Message):
    __slots__ = ("bids", "asks")
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    bids: _containers.RepeatedCompositeFieldContainer[Level]
    asks: _containers.RepeatedCompositeFieldContainer[Level]
    def __init__(self, bids: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[Level, _Mapping]]] = ...) -> None: ...

class LevelUpdate(_message.Message):
    __slots__ = ("side", "price", "quantity", "order_count")
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDER_COUNT_FIELD_NUMBER: _ClassVar[int]
    side: Side
    price: int
    quantity: int
    order_count: int
    def __init__(self, side: _Optional[_Union[Side, str]] = ..., price: _Optional[int] = ..., quantity: _Optional[int] = ..., order_count: _Optional[int] = ...) -> None: ...

class TradePrint(_message.Message):
    __slots__ = ("price", "quantity", "aggressor_side")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AGGRESSOR_SIDE_FIELD_NUMBER: _ClassVar[int]
    price: int
    quantity: int
    aggressor_side: Side
    def __init__(self, price: _Optional[int] = ..., quantity: _Optional[int] = ..., aggressor_side: _Optional[_Union[Side, str]] = ...) -> None: ...

class MarketDataUpdate(_message.Message):
    __slots__ = ("symbol", "seq", "previous_seq", "ts_ns", "snapshot", "level", "trade")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRADE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    seq: int
    previous_seq: int
    ts_ns: int
    snapshot: BookSnapshot
    level: LevelUpdate
    trade: TradePrint
    def __init__(self, symbol: _Optional[str] = ..., seq: _Optional[int] = ..., previous_seq: _Optional[int] = ..., ts_ns: _Optional[int] = ..., snapshot: _Optional[_Union[BookSnapshot, _Mapping]] = ..., level: _Optional[_Union[LevelUpdate, _Mapping]] = ..., trade: _Optional[_Union[TradePrint, _Mapping]] = ...) -> None: ...

class MarketDataBatch(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[MarketDataUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[MarketDataUpdate, _Mapping]]] = ...) -> None: ...

class HaltSymbolRequest(_message.Message):
    __slots__ = ("symbol", "halted")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    HALTED_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    halted: bool
    def __init__(self, symbol: _Optional[str] = ..., halted: _Optional[bool] = ...) -> None: ...

class SetKillSwitchRequest(_message.Message):
    __slots__ = ("account", "engaged")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    ENGAGED_FIELD_NUMBER: _ClassVar[int]
    account: str
    engaged: bool
    def __init__(self, account: _Optional[str] = ..., engaged: _Optional[bool] = ...) -> None: ...

class RiskLimits(_message.Message):
    __slots__ = ("max_order_quantity", "max_order_notional", "price_collar_bps", "max_position", "max_open_orders", "max_orders_per_second", "order_burst")
    MAX_ORDER_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    MAX_ORDER_NOTIONAL_FIELD_NUMBER: _ClassVar[int]
    PRICE_COLLAR_BPS_FIELD_NUMBER: _ClassVar[int]
    MAX_POSITION_FIELD_NUMBER: _ClassVar[int]
    MAX_OPEN_ORDERS_FIELD_NUMBER: _ClassVar[int]
    MAX_ORDERS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ORDER_BURST_FIELD_NUMBER: _ClassVar[int]
    max_order_quantity: int
    max_order_notional: int
    price_collar_bps: int
    max_position: int
    max_open_orders: int
    max_orders_per_second: int
    order_burst: int
    def __init__(self, max_order_quantity: _Optional[int] = ..., max_order_notional: _Optional[int] = ..., price_collar_bps: _Optional[int] = ..., max_position: _Optional[int] = ..., max_open_orders: _Optional[int] = ..., max_orders_per_second: _Optional[int] = ..., order_burst: _Optional[int] = ...) -> None: ...

class SetRiskLimitsRequest(_message.Message):
    __slots__ = ("account", "symbol", "limits")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    account: str
    symbol: str
    limits: RiskLimits
    def __init__(self, account: _Optional[str] = ..., symbol: _Optional[str] = ..., limits: _Optional[_Union[RiskLimits, _Mapping]] = ...) -> None: ...

class AdminResponse(_message.Message):
    __slots__ = ("applied", "reject_code", "text", "cancelled_orders", "seqs")
    class SeqsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REJECT_CODE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_ORDERS_FIELD_NUMBER: _ClassVar[int]
    SEQS_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    reject_code: RejectCode
    text: str
    cancelled_orders: int
    seqs: _containers.ScalarMap[int, int]
    def __init__(self, applied: _Optional[bool] = ..., reject_code: _Optional[_Union[RejectCode, str]] = ..., text: _Optional[str] = ..., cancelled_orders: _Optional[int] = ..., seqs: _Optional[_Mapping[int, int]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardStatus(_message.Message):
    __slots__ = ("shard", "up", "error", "symbols", "next_seq", "resting_orders", "halted_symbols", "killed_accounts", "gateway_next_seq")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQ_FIELD_NUMBER: _ClassVar[int]
    RESTING_ORDERS_FIELD_NUMBER: _ClassVar[int]
    HALTED_SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    KILLED_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_NEXT_SEQ_FIELD_NUMBER: _ClassVar[int]
    shard: int
    up: bool
    error: str
    symbols: _containers.RepeatedScalarFieldContainer[str]
    next_seq: int
    resting_orders: int
    halted_symbols: _containers.RepeatedScalarFieldContainer[str]
    killed_accounts: _containers.RepeatedScalarFieldContainer[str]
    gateway_next_seq: int
    def __init__(self, shard: _Optional[int] = ..., up: _Optional[bool] = ..., error: _Optional[str] = ..., symbols: _Optional[_Iterable[str]] = ..., next_seq: _Optional[int] = ..., resting_orders: _Optional[int] = ..., halted_symbols: _Optional[_Iterable[str]] = ..., killed_accounts: _Optional[_Iterable[str]] = ..., gateway_next_seq: _Optional[int] = ...) -> None: ...

class SupervisedChild(_message.Message):
    __slots__ = ("name", "up", "restarts", "last_error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    up: bool
    restarts: int
    last_error: str
    def __init__(self, name: _Optional[str] = ..., up: _Optional[bool] = ..., restarts: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class SupervisorStatus(_message.Message):
    __slots__ = ("name", "state", "children")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    children: _containers.RepeatedCompositeFieldContainer[SupervisedChild]
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., children: _Optional[_Iterable[_Union[SupervisedChild, _Mapping]]] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("gateway", "shards", "supervisors")
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    SUPERVISORS_FIELD_NUMBER: _ClassVar[int]
    gateway: str
    shards: _containers.RepeatedCompositeFieldContainer[ShardStatus]
    supervisors: _containers.RepeatedCompositeFieldContainer[SupervisorStatus]
    def __init__(self, gateway: _Optional[str] = ..., shards: _Optional[_Iterable[_Union[ShardStatus, _Mapping]]] = ..., supervisors: _Optional[_Iterable[_Union[SupervisorStatus, _Mapping]]] = ...) -> None: ...
