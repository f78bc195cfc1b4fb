"""Configuration: the instrument registry, the shard map and the cluster settings.

Everything is a frozen msgspec struct loaded from TOML, validated on load with errors that
name the file and the field. The defaults ship with the package
(``cluster/defaults/instruments.toml``), so ``raytrade demo`` and ``raytrade up`` run with no
configuration at all.

The shard map is part of the data's identity: a symbol's shard decides which journal holds
its orders and which bits its order ids carry. It must not change while journals exist.
"""

from __future__ import annotations

import tomllib
import zlib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Literal

import msgspec

from protocols.errors import ConfigError as ConfigError  # re-exported; defined once there
from protocols.messages import Instrument, RiskLimitsConfig

DEFAULT_INSTRUMENTS = "defaults/instruments.toml"


class _InstrumentEntry(Instrument, frozen=True, kw_only=True, forbid_unknown_fields=True):
    shard: int | None = None
    """Pin the symbol to this shard instead of hashing it."""


class _InstrumentFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    instrument: list[_InstrumentEntry]


class InstrumentRegistry(msgspec.Struct, frozen=True):
    """The tradable instruments and any explicit shard pins."""

    instruments: tuple[Instrument, ...]
    pins: Mapping[str, int] = msgspec.field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> InstrumentRegistry:
        """Load a TOML file of ``[[instrument]]`` tables; the packaged demo set if no path."""
        if path is None:
            text = resources.files("cluster").joinpath(DEFAULT_INSTRUMENTS).read_text()
            source = f"<packaged {DEFAULT_INSTRUMENTS}>"
        else:
            try:
                text = Path(path).read_text()
            except OSError as error:
                raise ConfigError(f"cannot read instrument file {path}: {error}") from error
            source = str(path)
        try:
            data = tomllib.loads(text)
            entries = msgspec.convert(data, _InstrumentFile).instrument
        except (tomllib.TOMLDecodeError, msgspec.ValidationError) as error:
            raise ConfigError(f"{source}: {error}") from error
        instruments = []
        pins = {}
        for entry in entries:
            fields = msgspec.structs.asdict(entry)
            shard = fields.pop("shard")
            instrument = Instrument(**fields)
            _validate_instrument(instrument, source)
            instruments.append(instrument)
            if shard is not None:
                pins[instrument.symbol] = shard
        symbols = [instrument.symbol for instrument in instruments]
        duplicates = sorted({symbol for symbol in symbols if symbols.count(symbol) > 1})
        if duplicates:
            raise ConfigError(f"{source}: duplicate symbols {duplicates}")
        if not instruments:
            raise ConfigError(f"{source}: no [[instrument]] tables")
        return cls(tuple(instruments), pins)

    @property
    def symbols(self) -> list[str]:
        return [instrument.symbol for instrument in self.instruments]

    def get(self, symbol: str) -> Instrument | None:
        """Return the instrument named ``symbol``, or None."""
        for instrument in self.instruments:
            if instrument.symbol == symbol:
                return instrument
        return None


def _validate_instrument(instrument: Instrument, source: str) -> None:
    where = f"{source}: instrument {instrument.symbol!r}"
    if not instrument.symbol or len(instrument.symbol) > 32:
        raise ConfigError(f"{where}: symbol must have 1 to 32 characters")
    for name in ("tick_size", "lot_size"):
        if getattr(instrument, name) <= 0:
            raise ConfigError(f"{where}: {name} must be positive")
    if not 0 <= instrument.price_scale <= 18:
        raise ConfigError(f"{where}: price_scale must be between 0 and 18")
    low, high = instrument.min_price, instrument.max_price
    if low is not None and high is not None and low > high:
        raise ConfigError(f"{where}: min_price {low} is above max_price {high}")
    for name in ("maker_fee_bps", "taker_fee_bps"):
        if not 0 <= getattr(instrument, name) <= 10_000:
            raise ConfigError(f"{where}: {name} must be between 0 and 10000")


class ShardMap(msgspec.Struct, frozen=True):
    """Which shard owns a symbol.

    A pinned symbol goes to its pin; any other to ``crc32(symbol) % shard_count``. CRC-32 of
    the UTF-8 symbol is stable across processes, machines and Python versions (Python's own
    ``hash`` of a string is salted per process, so it cannot be used).
    """

    shard_count: int
    pins: Mapping[str, int] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.shard_count < 1:
            raise ConfigError(f"shard count must be at least 1, not {self.shard_count}")
        for symbol, shard in self.pins.items():
            if not 0 <= shard < self.shard_count:
                last = self.shard_count - 1
                raise ConfigError(f"{symbol!r} is pinned to shard {shard}; shards are 0..{last}")

    def shard_of(self, symbol: str) -> int:
        """Return the shard that owns ``symbol``."""
        pinned = self.pins.get(symbol)
        if pinned is not None:
            return pinned
        return zlib.crc32(symbol.encode()) % self.shard_count


class Placement(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where Ray may run raytrade's actors (``[cluster.placement]`` in the config file).

    Nodes are chosen with Ray custom resources, which an operator gives a node when it starts
    (``ray start --resources '{"raytrade_book": 1}'``, or ``rayStartParams`` in KubeRay). The
    defaults place every actor anywhere: one machine, or a cluster whose nodes are alike.
    """

    book_resource: str = ""
    """The resource a node must offer to host book actors ("": any node)."""
    books_per_node: int = 0
    """With ``book_resource``: at most this many books per unit of it on a node (each book
    takes 1/books_per_node; give book nodes 1 unit and set 1 for one book per node); 0: no
    limit (each book takes a token 0.001)."""
    spread_books: bool = True
    """Ask Ray to spread the books over the eligible nodes rather than pack them (SPREAD)."""
    reader_resource: str = ""
    """The resource a node must offer to host the shards' readers ("": any node; the same as
    ``book_resource`` keeps readers on book nodes, another keeps them off)."""
    gateway_resource: str = ""
    """The resource a node must offer to host gateways (edge nodes): "" for any node."""

    def __post_init__(self) -> None:
        if self.books_per_node < 0:
            raise ConfigError(f"placement.books_per_node must be 0 or more, not "
                              f"{self.books_per_node}")
        if self.books_per_node and not self.book_resource:
            raise ConfigError("placement.books_per_node needs placement.book_resource")
        if self.books_per_node and self.reader_resource == self.book_resource:
            # books_per_node books take a node's whole unit: a reader asking for a share of
            # the same resource fits nowhere once a node is full (after a failover, say)
            raise ConfigError(
                f"placement.reader_resource {self.reader_resource!r} is the book resource, "
                "which books_per_node divides among the books only: give book nodes a second "
                "resource for readers (e.g. raytrade_reader) or leave reader_resource empty"
            )


class ClusterConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How to run a raytrade cluster. Every field has a default fit for a laptop."""

    shards: int = 2
    namespace: str = "raytrade"
    """Ray namespace the named actors live in."""
    data_dir: str = ".raytrade"
    """Journals and snapshots, one folder per shard; may be a shared volume."""
    fsync: Literal["batch", "interval", "none"] = "batch"
    fsync_interval_ms: int = 5
    snapshot_every_events: int = 200_000
    book_num_cpus: float = 0.25
    """Ray CPU reservation of each book actor (the shard's sequencer)."""
    projection_num_cpus: float = 0.0
    """Ray CPU reservation of each shard's reader (the risk and position read models)."""
    default_limits: RiskLimitsConfig | None = None
    """Limits every account gets unless set otherwise (journaled as SetRiskLimits for "*")."""
    client_order_id_window: int = 1_000_000
    """Recent (account, client order id) pairs each shard remembers, for idempotent retries."""
    shard_strategy: Literal["one_for_one", "rest_for_one", "one_for_all"] = "one_for_one"
    """How a shard's supervisor restarts its book actor and reader (in that order)."""
    restart_max: int = 5
    restart_within_s: float = 60.0
    """Restart intensity of every supervisor: more failures than this in the window escalate."""
    placement: Placement = Placement()
    """Which nodes run books, readers and gateways (see `Placement`)."""
    metrics: bool = True
    """Actors and gateways record metrics (`protocols.metrics`; off: for measuring what they
    cost, `benchmarks/bench_metrics.py`)."""
    traces: str = ""
    """Where gateways and book actors export OpenTelemetry spans (`cluster.tracing`): ``""``
    follows ``OTEL_TRACES_EXPORTER`` of the process that starts the cluster (unset: off),
    ``"none"`` is off, else exporter names, comma separated: ``console``, ``file`` (JSON
    lines under ``<data_dir>/traces``), ``otlp`` (needs opentelemetry-exporter-otlp-proto-grpc)
    or any installed OpenTelemetry traces exporter."""
    record_market_data: bool = False
    """Each shard's reader also records trades, top of book and L2 deltas as Parquet files
    under ``<data_dir>/market-data`` (`cluster.research.recorder`; query with `raytrade
    query`). Off the command path, but the reader's CPU per event about doubles."""
    market_data_flush_s: float = 5.0
    """The recorder writes what it holds at least this often while events arrive (and at the
    reader's next health check when they stop)."""

    def __post_init__(self) -> None:
        if self.market_data_flush_s < 0:
            raise ConfigError(f"market_data_flush_s must not be negative, not "
                              f"{self.market_data_flush_s}")
        if self.shards < 1:
            raise ConfigError(f"shards must be at least 1, not {self.shards}")


def shard_instruments(
    registry: InstrumentRegistry, shard_map: ShardMap
) -> dict[int, list[Instrument]]:
    """Group the registry's instruments by owning shard (every shard appears, maybe empty)."""
    grouped: dict[int, list[Instrument]] = {shard: [] for shard in range(shard_map.shard_count)}
    for instrument in registry.instruments:
        grouped[shard_map.shard_of(instrument.symbol)].append(instrument)
    return grouped


def load_cluster_config(path: Path | None, overrides: Mapping[str, object]) -> ClusterConfig:
    """Load ``[cluster]`` from a TOML file (if given) and apply command-line overrides."""
    data: dict[str, object] = {}
    if path is not None:
        try:
            data = dict(tomllib.loads(Path(path).read_text()).get("cluster", {}))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read cluster config {path}: {error}") from error
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return msgspec.convert(data, ClusterConfig)
    except msgspec.ValidationError as error:
        raise ConfigError(f"cluster config: {error}") from error




class Topology(msgspec.Struct, frozen=True, kw_only=True):
    """What every process of a running cluster agrees on: settings, instruments, shards and
    the names of its gateways. The supervision tree's actor, as the cluster's directory, hands it
    to drivers."""

    config: ClusterConfig
    instruments: tuple[Instrument, ...]
    pins: dict[str, int]
    """Symbols pinned to a shard (the rest go by ``crc32(symbol) % shards``)."""
    gateways: tuple[str, ...] = ()
    """Names of the gateway actors (``gateway-0``, ...), if any."""

    @property
    def shard_map(self) -> ShardMap:
        """Return the cluster's symbol -> shard map."""
        return ShardMap(self.config.shards, self.pins)
