"""Questions researchers ask of recorded market data, answered by DuckDB over the Parquet files.

`cluster.research.recorder` writes hive-partitioned files (``kind=/symbol=/date=``); DuckDB
reads them in place (``read_parquet`` with hive partitioning), prunes by symbol and date, and
aggregates in C++ over many files without loading them. `MarketData` wraps one recording:

* `MarketData.bars`: OHLCV bars at any interval (``"250ms"``, ``"1s"``, ``"1m"``, ``"1h"``);
* `MarketData.vwap`: volume-weighted average price per symbol;
* `MarketData.spread`: spread and top-of-book depth sampled at an interval;
* `MarketData.fills`, `MarketData.fills_by_account`: an account's fills, and totals per account.

Results are pyarrow Tables (no pandas). Prices stay the system's integer prices (units of
``10**-price_scale``; VWAP and mean spreads are floats in those units), exact and comparable
with the events; `MarketData.price_scales` gives each symbol's scale from the files' metadata,
and `main` (the future ``raytrade query``) prints tables with decimal prices::

    raytrade query bars     --data DIR [--symbol S] [--interval 1m] [--start T] [--end T]
    raytrade query vwap     --data DIR [--symbol S] [--start T] [--end T]
    raytrade query spread   --data DIR --symbol S [--interval 1s] [--start T] [--end T]
    raytrade query fills    --data DIR --account A [--symbol S] [--start T] [--end T]
    raytrade query accounts --data DIR [--symbol S] [--start T] [--end T]

Times ``T`` are integer nanoseconds since the epoch or ISO 8601 (UTC unless it says).
Ordering is by ``seq`` within a symbol (one shard numbers all of a symbol's events), so a
bar's open and close are its first and last trade in matching order. A recorder's flush that
was interrupted leaves files that hold correct rows not yet committed; they are visible here
until the recorder reopens, removes them and writes those rows again (never twice at once).
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa

from cluster.research.recorder import (
    TIMESTAMP,
    TOP_OF_BOOK,
    TRADES,
    RecordedFile,
    decimal_price,
)
from cluster.research.times import parse_time_ns

_UNITS: Final = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
                 "h": 3_600 * 10**9, "d": 86_400 * 10**9}
_INTERVAL: Final = re.compile(r"^\s*(\d+)\s*(ns|us|ms|s|m|h|d)\s*$")

_HIVE_TYPES: Final = "{'kind': VARCHAR, 'symbol': VARCHAR, 'date': DATE}"
_EMPTY: Final = {
    TRADES: "SELECT NULL::BIGINT AS seq, NULL::BIGINT AS ts_ns, NULL::BIGINT AS price, "
            "NULL::BIGINT AS quantity, NULL::TINYINT AS aggressor_side, "
            "NULL::BIGINT AS maker_order_id, NULL::VARCHAR AS maker_account, "
            "NULL::VARCHAR AS maker_client_order_id, NULL::BIGINT AS maker_leaves, "
            "NULL::BIGINT AS taker_order_id, NULL::VARCHAR AS taker_account, "
            "NULL::VARCHAR AS taker_client_order_id, NULL::BIGINT AS taker_leaves, "
            "NULL::VARCHAR AS symbol, NULL::DATE AS date WHERE false",
    TOP_OF_BOOK: "SELECT NULL::BIGINT AS seq, NULL::BIGINT AS ts_ns, NULL::BIGINT AS bid_price, "
                 "NULL::BIGINT AS bid_quantity, NULL::BIGINT AS ask_price, "
                 "NULL::BIGINT AS ask_quantity, NULL::VARCHAR AS symbol, NULL::DATE AS date "
                 "WHERE false",
}


def interval_ns(interval: str | int) -> int:
    """Return an interval in nanoseconds: ``"1m"`` is 60e9; units ns, us, ms, s, m, h, d.

    Raise ValueError for anything else or for a zero interval.
    """
    if isinstance(interval, int):
        nanoseconds = interval
    else:
        match = _INTERVAL.match(interval)
        if match is None:
            raise ValueError(f"interval {interval!r}: write a count and a unit, e.g. 1s, 5m, "
                             f"250ms (units: {', '.join(_UNITS)})")
        nanoseconds = int(match.group(1)) * _UNITS[match.group(2)]
    if nanoseconds <= 0:
        raise ValueError(f"interval {interval!r} must be longer than zero")
    return nanoseconds


def _date(ts_ns: int) -> datetime.date:
    return datetime.date(1970, 1, 1) + datetime.timedelta(days=ts_ns // _UNITS["d"])


class MarketData:
    """Query one recording directory (any number of shards recorded into it).

    Each query opens the files present when it runs. ``connection`` is a DuckDB connection
    to use (a private in-memory one if None; set its ``threads`` to bound the CPU it takes).
    """

    def __init__(self, directory: str | Path,
                 connection: duckdb.DuckDBPyConnection | None = None) -> None:
        self.directory = Path(directory)
        self.connection = connection if connection is not None else duckdb.connect()

    # ---------------------------------------------------------------- sources

    def _source(self, kind: str) -> tuple[str, dict[str, Any]]:
        if next(self.directory.glob(f"kind={kind}/*/*/*.parquet"), None) is None:
            return f"({_EMPTY[kind]})", {}
        glob = str(self.directory / f"kind={kind}" / "*" / "*" / "*.parquet")
        return (f"read_parquet($glob_{kind}, hive_partitioning = true, "
                f"hive_types = {_HIVE_TYPES})", {f"glob_{kind}": glob})

    @staticmethod
    def _where(symbol: str | None, start_ns: int | None, end_ns: int | None,
               params: dict[str, Any]) -> str:
        """Filter on symbol and ``start_ns <= ts_ns < end_ns``, pruning partitions by date."""
        clauses = ["true"]
        if symbol is not None:
            clauses.append("symbol = $symbol")
            params["symbol"] = symbol
        if start_ns is not None:
            clauses.append("ts_ns >= $start_ns AND date >= $start_date")
            params.update(start_ns=start_ns, start_date=_date(start_ns))
        if end_ns is not None:
            clauses.append("ts_ns < $end_ns AND date <= $end_date")
            params.update(end_ns=end_ns, end_date=_date(end_ns))
        return " AND ".join(clauses)

    def _run(self, sql: str, params: dict[str, Any]) -> pa.Table:
        relation = self.connection.sql(sql, params=params)
        assert relation is not None
        table: pa.Table = relation.to_arrow_table()
        return table

    @staticmethod
    def _with_time(table: pa.Table, column: str, name: str) -> pa.Table:
        """Add ``name`` as ``timestamp[ns, UTC]`` next to the integer ``column``."""
        index = table.schema.get_field_index(column)
        return table.add_column(index + 1, pa.field(name, TIMESTAMP),
                                table.column(column).cast(TIMESTAMP))

    # ---------------------------------------------------------------- queries

    def bars(self, interval: str | int = "1m", *, symbol: str | None = None,
             start_ns: int | None = None, end_ns: int | None = None) -> pa.Table:
        """Return OHLCV bars of trades, one per symbol and interval that has trades.

        Columns: symbol, bar_ns (start, integer ns), bar (timestamp), open, high, low,
        close (integer prices), volume, trades, vwap (float, price units). Intervals are
        aligned to the epoch; ``open``/``close`` are the first/last trade by seq.
        """
        step = interval_ns(interval)
        source, params = self._source(TRADES)
        params["step"] = step
        where = self._where(symbol, start_ns, end_ns, params)
        table = self._run(
            f"""
            SELECT symbol,
                   (ts_ns // $step) * $step AS bar_ns,
                   arg_min(price, seq) AS open,
                   max(price) AS high,
                   min(price) AS low,
                   arg_max(price, seq) AS close,
                   sum(quantity)::BIGINT AS volume,
                   count(*) AS trades,
                   (sum(price::HUGEINT * quantity) / sum(quantity))::DOUBLE AS vwap
            FROM {source}
            WHERE {where}
            GROUP BY symbol, bar_ns
            ORDER BY symbol, bar_ns
            """,
            params,
        )
        return self._with_time(table, "bar_ns", "bar")

    def vwap(self, *, symbol: str | None = None, start_ns: int | None = None,
             end_ns: int | None = None) -> pa.Table:
        """Return per symbol: vwap (float, price units), volume, notional (exact, price units
        times quantity, decimal128(38, 0)), trades, first_ns and last_ns (of its trades)."""
        source, params = self._source(TRADES)
        where = self._where(symbol, start_ns, end_ns, params)
        return self._run(
            f"""
            SELECT symbol,
                   (sum(price::HUGEINT * quantity) / sum(quantity))::DOUBLE AS vwap,
                   sum(quantity)::BIGINT AS volume,
                   sum(price::HUGEINT * quantity) AS notional,
                   count(*) AS trades,
                   min(ts_ns) AS first_ns,
                   max(ts_ns) AS last_ns
            FROM {source}
            WHERE {where}
            GROUP BY symbol
            ORDER BY symbol
            """,
            params,
        )

    def spread(self, symbol: str, interval: str | int = "1s", *, start_ns: int | None = None,
               end_ns: int | None = None) -> pa.Table:
        """Return ``symbol``'s spread and top-of-book depth at every interval, from its first
        top-of-book update (or ``start_ns``) to its last (or ``end_ns``); intervals are
        aligned to the epoch.

        Columns: bucket_ns (start), bucket (timestamp), then the top of book in force at the
        bucket's end (as of ``ts_ns``, ties by seq): bid_price, bid_quantity, ask_price,
        ask_quantity, spread (null while a side is empty); then over the updates inside the
        bucket: updates, mean_spread, min_spread, max_spread (null without updates).
        """
        step = interval_ns(interval)
        source, params = self._source(TOP_OF_BOOK)
        params["step"] = step
        # the quote in force at the window's start may be older than the window
        before_end = self._where(symbol, None, end_ns, params)
        first = "(SELECT min(ts_ns) FROM quotes)" if start_ns is None else "$start_ns"
        last = "(SELECT max(ts_ns) FROM quotes)" if end_ns is None else "($end_ns - 1)"
        in_window = "true" if start_ns is None else "ts_ns >= $start_ns"
        if start_ns is not None:
            params["start_ns"] = start_ns
        table = self._run(
            f"""
            WITH history AS (
                SELECT seq, ts_ns, bid_price, bid_quantity, ask_price, ask_quantity,
                       ask_price - bid_price AS spread
                FROM {source}
                WHERE {before_end}
            ),
            quotes AS (SELECT * FROM history WHERE {in_window}),
            latest AS (
                SELECT * FROM history
                QUALIFY row_number() OVER (PARTITION BY ts_ns ORDER BY seq DESC) = 1
            ),
            buckets AS (
                SELECT range AS bucket_ns, range + $step - 1 AS bucket_end_ns
                FROM range(({first} // $step) * $step, {last} + 1, $step)
            ),
            stats AS (
                SELECT (ts_ns // $step) * $step AS bucket_ns,
                       count(*) AS updates,
                       avg(spread) AS mean_spread,
                       min(spread) AS min_spread,
                       max(spread) AS max_spread
                FROM quotes
                GROUP BY bucket_ns
            )
            SELECT b.bucket_ns, q.bid_price, q.bid_quantity, q.ask_price, q.ask_quantity,
                   q.spread, coalesce(s.updates, 0) AS updates, s.mean_spread, s.min_spread,
                   s.max_spread
            FROM buckets b
            ASOF LEFT JOIN latest q ON b.bucket_end_ns >= q.ts_ns
            LEFT JOIN stats s ON s.bucket_ns = b.bucket_ns
            ORDER BY b.bucket_ns
            """,
            params,
        )
        return self._with_time(table, "bucket_ns", "bucket")

    def fills(self, account: str, *, symbol: str | None = None, start_ns: int | None = None,
              end_ns: int | None = None) -> pa.Table:
        """Return ``account``'s fills, ordered by time, symbol and seq.

        Columns: seq, ts_ns, ts, symbol, role (``maker``/``taker``), side (``BUY``/``SELL``,
        the account's), price, quantity, order_id, client_order_id, leaves (its open quantity
        after the fill), counterparty. A trade with itself gives two fills.
        """
        source, params = self._source(TRADES)
        params["account"] = account
        where = self._where(symbol, start_ns, end_ns, params)
        table = self._run(
            f"""
            WITH trades AS (SELECT * FROM {source} WHERE {where})
            SELECT seq, ts_ns, symbol, 'taker' AS role,
                   CASE aggressor_side WHEN 1 THEN 'BUY' ELSE 'SELL' END AS side,
                   price, quantity, taker_order_id AS order_id,
                   taker_client_order_id AS client_order_id, taker_leaves AS leaves,
                   maker_account AS counterparty
            FROM trades WHERE taker_account = $account
            UNION ALL
            SELECT seq, ts_ns, symbol, 'maker' AS role,
                   CASE aggressor_side WHEN 1 THEN 'SELL' ELSE 'BUY' END AS side,
                   price, quantity, maker_order_id AS order_id,
                   maker_client_order_id AS client_order_id, maker_leaves AS leaves,
                   taker_account AS counterparty
            FROM trades WHERE maker_account = $account
            ORDER BY ts_ns, symbol, seq, role
            """,
            params,
        )
        return self._with_time(table, "ts_ns", "ts")

    def fills_by_account(self, *, symbol: str | None = None, start_ns: int | None = None,
                         end_ns: int | None = None) -> pa.Table:
        """Return per account and symbol: fills, bought, sold, net (quantities), buy_notional
        and sell_notional (exact, price units times quantity), maker_fills."""
        source, params = self._source(TRADES)
        where = self._where(symbol, start_ns, end_ns, params)
        return self._run(
            f"""
            WITH trades AS (SELECT * FROM {source} WHERE {where}),
            legs AS (
                SELECT taker_account AS account, symbol, aggressor_side = 1 AS buy,
                       false AS maker, price, quantity FROM trades
                UNION ALL
                SELECT maker_account AS account, symbol, aggressor_side = 2 AS buy,
                       true AS maker, price, quantity FROM trades
            )
            SELECT account, symbol, count(*) AS fills,
                   coalesce(sum(quantity) FILTER (WHERE buy), 0)::BIGINT AS bought,
                   coalesce(sum(quantity) FILTER (WHERE NOT buy), 0)::BIGINT AS sold,
                   (bought - sold) AS net,
                   coalesce(sum(price::HUGEINT * quantity) FILTER (WHERE buy), 0)
                       AS buy_notional,
                   coalesce(sum(price::HUGEINT * quantity) FILTER (WHERE NOT buy), 0)
                       AS sell_notional,
                   count(*) FILTER (WHERE maker) AS maker_fills
            FROM legs
            GROUP BY account, symbol
            ORDER BY account, symbol
            """,
            params,
        )

    def price_scales(self) -> dict[str, int]:
        """Return each recorded symbol's ``price_scale``, from one file's metadata per symbol."""
        scales: dict[str, int] = {}
        for kind_folder in sorted(self.directory.glob("kind=*")):
            for symbol_folder in sorted(kind_folder.glob("symbol=*")):
                first = next(iter(sorted(symbol_folder.glob("date=*/shard-*.parquet"))), None)
                if first is not None:
                    info = RecordedFile.read(first)
                    scales.setdefault(info.symbol, info.price_scale)
        return scales


# ------------------------------------------------------------------------------ the command

_PRICE_COLUMNS: Final = {"open", "high", "low", "close", "vwap", "bid_price", "ask_price",
                         "spread", "mean_spread", "min_spread", "max_spread", "price",
                         "notional", "buy_notional", "sell_notional"}
"""Columns in price units (or price units times quantity): shown as decimals."""
_HIDDEN: Final = {"bar_ns", "bucket_ns", "ts_ns", "first_ns", "last_ns"}


def _show(value: Any, column: str, scale: int | None) -> str:
    if value is None:
        return ""
    if column in _PRICE_COLUMNS and scale is not None:
        if isinstance(value, float):
            return str(Decimal(repr(value)).scaleb(-scale).quantize(Decimal(1).scaleb(-scale - 4)))
        return str(decimal_price(int(value), scale))
    return str(value)


def format_time(ts_ns: int) -> str:
    """Return ISO 8601 in UTC to the nanosecond: ``2026-12-02T14:30:00.000000123Z``."""
    seconds, fraction = divmod(ts_ns, 10**9)
    moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
        seconds=seconds)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def _is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind)
                or pa.types.is_decimal(kind))


def format_table(table: pa.Table, scales: dict[str, int], symbol: str | None = None,
                 limit: int = 0) -> str:
    """Return ``table`` as aligned text, prices as decimals (each row's symbol's scale)."""
    names = [name for name in table.column_names if name not in _HIDDEN]
    times = {name for name in names if pa.types.is_timestamp(table.schema.field(name).type)}
    for name in times:  # as integers: Python's datetime stops at microseconds
        table = table.set_column(table.schema.get_field_index(name), name,
                                 table.column(name).cast(pa.int64()))
    rows = table.to_pylist()
    if limit:
        rows = rows[:limit]
    cells = []
    for row in rows:
        row_symbol = row.get("symbol", symbol)
        scale = scales.get(row_symbol) if row_symbol is not None else None
        cells.append([format_time(row[name]) if name in times and row[name] is not None
                      else _show(row[name], name, scale) for name in names])
    widths = [max([len(name)] + [len(line[index]) for line in cells])
              for index, name in enumerate(names)]
    numeric = [name not in times and _is_number(table.schema.field(name).type)
               for name in names]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.rjust(width) if right else value.ljust(width)
                         for value, width, right in zip(values, widths, numeric,
                                                        strict=True)).rstrip()

    lines = [line(names), line(["-" * width for width in widths])]
    lines += [line(values) for values in cells]
    if limit and table.num_rows > limit:
        lines.append(f"... {table.num_rows - limit} more rows")
    if not rows:
        lines.append("(no rows)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``raytrade query``."""
    parser = argparse.ArgumentParser(prog="raytrade query",
                                     description="Query recorded market data (DuckDB).")
    queries = parser.add_subparsers(dest="query", required=True, metavar="QUERY")

    def query(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = queries.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--data", required=True, type=Path,
                         help="the recording directory (kind=trades/..., kind=top_of_book/...)")
        sub.add_argument("--start", type=parse_time_ns,
                         help="from this time (ns since the epoch, or ISO 8601, UTC)")
        sub.add_argument("--end", type=parse_time_ns, help="before this time")
        sub.add_argument("--limit", type=int, default=0, help="print at most N rows (0: all)")
        return sub

    bars = query("bars", "OHLCV bars of trades")
    bars.add_argument("--symbol")
    bars.add_argument("--interval", default="1m", help="bar length: 1s, 5m, 1h, 250ms ...")
    vwap = query("vwap", "volume-weighted average price per symbol")
    vwap.add_argument("--symbol")
    spread = query("spread", "spread and top-of-book depth over time")
    spread.add_argument("--symbol", required=True)
    spread.add_argument("--interval", default="1s", help="sampling interval")
    fills = query("fills", "an account's fills")
    fills.add_argument("--account", required=True)
    fills.add_argument("--symbol")
    accounts = query("accounts", "fills, volumes and notionals per account and symbol")
    accounts.add_argument("--symbol")
    return parser


def run(args: argparse.Namespace, data: MarketData) -> pa.Table:
    """Run the query that ``args`` name on ``data``; return its table."""
    window = {"start_ns": args.start, "end_ns": args.end}
    if args.query == "bars":
        interval_ns(args.interval)
        return data.bars(args.interval, symbol=args.symbol, **window)
    if args.query == "vwap":
        return data.vwap(symbol=args.symbol, **window)
    if args.query == "spread":
        return data.spread(args.symbol, args.interval, **window)
    if args.query == "fills":
        return data.fills(args.account, symbol=args.symbol, **window)
    return data.fills_by_account(symbol=args.symbol, **window)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``raytrade query``; print the table; return 0, or 2 for bad arguments or data."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    if not args.data.is_dir():
        print(f"raytrade query: {args.data} is not a directory", file=sys.stderr)
        return 2
    data = MarketData(args.data)
    try:
        table = run(args, data)
    except (ValueError, duckdb.Error) as error:
        print(f"raytrade query: {error}", file=sys.stderr)
        return 2
    print(format_table(table, data.price_scales(), getattr(args, "symbol", None), args.limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
