"""An agent simulation in simulated time, against a real local cluster (`raytrade sim`).

Researchers study strategies against raytrade's own matching, risk and position logic: the
agents of `cluster.research.agents` (market makers around a latent fair value, noise takers,
a momentum trader) trade through the Python client (`cluster.clients.ray_client.Client`) with
a running cluster, and a coordinator steps simulated time::

    for each step (every tick_ns of simulated time):
        the fair value moves                                  (seeded random walk, jumps)
        every agent actor, asked at once, answers with its    (the market after the last
          commands                                             step, its own events)
        the commands are stamped with the step's ts_ns and submitted as one batch, agent
          actors in a fixed order, agents in a fixed order within each
        the events update the mirrored books and the PnL ledger, and are routed to the
          agents they concern, for the next step

Determinism. Nothing reads a clock or a global random generator: every agent and the fair
value draw from their own ``random.Random`` seeded from the seed and their name; commands
carry the simulated ``ts_ns``; client order ids are ``f"{agent}-{n}"``; shards number order
ids deterministically; and each step's events are ordered by symbol before anyone sees them
(each symbol's events come from one shard, in sequence), so what an agent sees does not
depend on how the symbols are sharded. The same `SimConfig` therefore gives the same journal,
byte for byte (`SimResult.journal_sha256`), and the same series with any shard count. What
could break it: a cluster configured with non-default ``default_limits`` (the book journals
them at start stamped with wall-clock time; `run_sim` warns), a data dir that already holds
journals (refused by `main`), an agent actor that Ray restarts mid-run (it comes back with
fresh agents; the run then fails or diverges, loudly in the journal digest).

Few actors, on purpose: one actor per agent kind (makers, takers, momentum), not one per
agent. Each Ray worker costs 6.5-8 ms of CPU a second idle and each call ~0.8 ms of CPU a side
(docs/DESIGN.md, issue 10); one actor per agent would make every step a call per agent on a
2-core laptop. The actors of a step are asked concurrently; their answers are put together in
a fixed order, so concurrency changes nothing in the result.

Series are integers in the instruments' price units (``10**-price_scale``) and quantity units;
PnL is cash plus positions marked to the mid (else the last trade), gross of fees, summed over
symbols (the demo instruments share one price scale). `plot` draws them with matplotlib (the
``bench`` extra); `save_data` writes the run's market data as Parquet and its events as numpy
arrays, replayed from the journals (`cluster.research.recorder.record_journal`,
`cluster.research.arrays.load_run`); `main` is the ``raytrade sim`` command.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from tqdm import tqdm

from actors.core.positions import Position
from cluster.clients.ray_client import Client
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge import handles
from cluster.edge.handles import AgentHandle
from cluster.edge.local_run import Interrupted, LocalRun, raise_interrupted
from cluster.edge.wiring import Cluster
from cluster.research.agents import (
    AgentGroup,
    FairValue,
    FairValueParams,
    Ledger,
    MakerParams,
    MarketMaker,
    MarketState,
    MomentumParams,
    MomentumTrader,
    NoiseTaker,
    TakerParams,
    Trader,
    accounts_of,
    encode_market,
)
from cluster.research.arrays import ARRAY_NAMES, load_run
from cluster.research.flow import demo_instruments
from cluster.research.recorder import record_journal
from cluster.storage import layout
from cluster.storage.journal_files import list_segments
from cluster.storage.shard import shard_directory
from protocols.errors import ConfigError, RaytradeError
from protocols.messages import (
    Event,
    Instrument,
    OrderRejected,
    RiskLimitsConfig,
    Trade,
    decode_commands,
    encode,
)

log = logging.getLogger(__name__)

NAMESPACE = "raytrade-sim"
"""The Ray namespace `main` starts its cluster in."""
STEP_TIMEOUT_S = 60.0
"""How long a step waits for an agent actor's answer."""
MARKET_DATA = "market-data"
"""The folder of ``--out`` that `main` records the run's market data into (Parquet)."""
ARRAYS = "arrays.npz"
"""The file of ``--out`` that `main` writes the run's events into (numpy arrays)."""


class SimConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One simulation: time, market, agents and shards. The same config, the same run."""

    seed: int = 7
    steps: int = 2_000
    tick_ns: int = 100_000_000
    """Simulated time per step (100 ms)."""
    start_ts_ns: int = 1_767_225_600_000_000_000
    """Simulated time of step 0 (2026-01-01T00:00:00Z)."""
    symbols: int = 4
    """Instruments `demo_instruments` makes (tick 1, lot 1, 2 decimals, 100.00 to start)."""
    shards: int = 2
    """Shards of the cluster `main` starts (`run_sim` checks the cluster it is given)."""
    market_makers: int = 2
    noise_takers: int = 4
    momentum_traders: int = 1
    fair_value: FairValueParams = FairValueParams()
    maker: MakerParams = MakerParams()
    taker: TakerParams = TakerParams()
    momentum: MomentumParams = MomentumParams()
    depth: int = 5
    """Price levels a side agents are shown."""

    def __post_init__(self) -> None:
        for field in ("steps", "tick_ns", "start_ts_ns", "symbols", "shards", "depth"):
            if getattr(self, field) < 1:
                raise ConfigError(f"{field} must be at least 1, not {getattr(self, field)}")
        counts = (self.market_makers, self.noise_takers, self.momentum_traders)
        if min(counts) < 0 or not sum(counts):
            raise ConfigError(f"agent counts must not be negative and not all 0: {counts}")

    @property
    def duration_s(self) -> float:
        """Simulated seconds the run covers."""
        return self.steps * self.tick_ns / 1e9

    def instruments(self) -> list[Instrument]:
        """Return the simulation's instruments (start the cluster with these)."""
        return demo_instruments(self.symbols)

    def registry(self) -> InstrumentRegistry:
        """Return the instruments pinned to shards in turn (``SYMk`` on shard ``k % shards``).

        By hash, few symbols may all land on one shard (the four demo symbols all hash to shard
        1 of 2), which leaves the other shards idle; `run_sim` works with any placement.
        """
        instruments = tuple(self.instruments())
        return InstrumentRegistry(instruments, {instrument.symbol: index % self.shards
                                                for index, instrument in enumerate(instruments)})

    def cluster_config(self, data_dir: str, namespace: str = NAMESPACE) -> ClusterConfig:
        """Return the config of a cluster to run this simulation on (default limits)."""
        return ClusterConfig(shards=self.shards, namespace=namespace, data_dir=data_dir)


class SymbolSeries(msgspec.Struct, frozen=True, kw_only=True):
    """One symbol's per-step series, each as long as the run, taken after the step's batch."""

    fair_value: list[int]
    mid: list[int | None]
    """Mid price rounded down; None while a side is empty."""
    spread: list[int | None]
    """Best ask minus best bid; None while a side is empty."""
    volume: list[int]
    """Quantity traded in the step."""


class SimResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a simulation produced. Everything but ``elapsed_s`` is a function of the config."""

    config: SimConfig
    ts_ns: list[int]
    """Simulated time of each step."""
    symbols: dict[str, SymbolSeries]
    pnl: dict[str, list[int]]
    """Per agent, after each step: cash plus positions marked to the mid (else the last
    trade), gross of fees, in price units x quantity."""
    net_positions: dict[str, dict[str, int]]
    """Final net quantity per agent and symbol, from the simulation's own ledger."""
    positions: list[Position]
    """Final positions from the cluster's position read models (every shard)."""
    commands: int
    trades: int
    rejects: dict[str, int]
    """Rejected requests by reject code."""
    journal_sha256: dict[str, str]
    """Per shard (``"shard-k"``), SHA-256 over the journal's segment files in order."""
    elapsed_s: float
    """Wall-clock seconds of the run (not reproducible, of course)."""

    def summary(self) -> dict[str, Any]:
        """Return the run's summary as JSON-ready builtins (no per-step series)."""
        scales = {i.symbol: 10 ** i.price_scale for i in self.config.instruments()}
        scale = max(scales.values())
        return {
            "config": msgspec.to_builtins(self.config),
            "simulated_s": self.config.duration_s,
            "elapsed_s": round(self.elapsed_s, 3),
            "commands": self.commands,
            "trades": self.trades,
            "volume": {symbol: sum(s.volume) for symbol, s in self.symbols.items()},
            "rejects": self.rejects,
            "final_pnl": {agent: series[-1] / scale for agent, series in self.pnl.items()},
            "final_fair_value": {symbol: s.fair_value[-1] / scales[symbol]
                                 for symbol, s in self.symbols.items()},
            "positions": [msgspec.to_builtins(row) for row in self.positions],
            "journal_sha256": self.journal_sha256,
        }


class PlottingUnavailableError(RaytradeError):
    """Raised by `plot` (and `main` before it starts anything) when matplotlib is missing."""


# ------------------------------------------------------------------------------ the agents


def build_agents(config: SimConfig) -> list[tuple[str, list[Trader]]]:
    """Return the agent groups, one per kind with agents, in the order they are asked and their
    commands submitted: makers (so their quotes follow the fair value first), takers, momentum.
    """
    makers: list[Trader] = [
        MarketMaker(f"mm{k}", config.seed, config.maker, extra_half_spread_ticks=k)
        for k in range(config.market_makers)
    ]
    takers: list[Trader] = [NoiseTaker(f"noise{k}", config.seed, config.taker)
                            for k in range(config.noise_takers)]
    momentum: list[Trader] = [MomentumTrader(f"momentum{k}", config.seed, config.momentum)
                              for k in range(config.momentum_traders)]
    groups = [("makers", makers), ("takers", takers), ("momentum", momentum)]
    return [(label, agents) for label, agents in groups if agents]


def agent_actor_name(label: str) -> str:
    """Return the actor name of a simulation's agent group."""
    return f"sim-agents-{label}"


# ------------------------------------------------------------------------------ the run


def run_sim(cluster: Cluster, config: SimConfig, progress: bool = True) -> SimResult:
    """Run the simulation on ``cluster`` (started with ``config.instruments()``, e.g. as
    ``config.registry()`` pins them, and empty journals) and return its series; the agent
    actors are stopped at the end.

    Raise `ConfigError` if the cluster's shards or instruments are not the config's.
    """
    instruments = config.instruments()
    symbols = [instrument.symbol for instrument in instruments]
    cluster_config = cluster.topology.config
    if cluster.shards != config.shards:
        raise ConfigError(f"the cluster runs {cluster.shards} shards, the simulation wants "
                          f"{config.shards}")
    if [i.symbol for i in cluster.topology.instruments] != symbols:
        raise ConfigError(f"the cluster's instruments are not the simulation's {symbols}")
    if cluster_config.default_limits not in (None, RiskLimitsConfig()):
        log.warning("the cluster sets default_limits: each book journals them at start with a "
                    "wall-clock ts_ns, so the journal will differ from run to run")
    client = Client(cluster)
    groups = build_agents(config)
    names = [agent_actor_name(label) for label, _ in groups]
    namespace = cluster.namespace
    started = time.perf_counter()
    try:
        for (label, agents), name in zip(groups, names, strict=True):
            handles.kill(name, namespace)  # left over from an interrupted run
            handles.spawn(AgentGroup, name, namespace, agents, label)
        actors = [AgentHandle(name, namespace, timeout_s=STEP_TIMEOUT_S) for name in names]
        handles.wait_all([actor.ping() for actor in actors])
        result = _Run(config, client, actors, groups).run(progress)
    finally:
        for name in names:
            try:
                handles.kill(name, namespace)
            except Exception as error:  # stopping is best effort: stop the others
                log.warning("stopping %s: %s", name, error)
    client.wait_for_readers()
    positions = sorted(client.all_positions(), key=lambda row: (row.account, row.symbol))
    return SimResult(
        config=config,
        ts_ns=result.ts_ns,
        symbols=result.series,
        pnl=result.pnl,
        net_positions={account: {symbol: quantity for symbol, quantity in held.items()
                                 if quantity}
                       for account, held in result.ledger.positions.items()},
        positions=positions,
        commands=result.commands,
        trades=result.trades,
        rejects=dict(sorted(result.rejects.items())),
        journal_sha256=journal_digest(cluster_config.data_dir, config.shards),
        elapsed_s=time.perf_counter() - started,
    )


class _Run:
    def __init__(self, config: SimConfig, client: Client, actors: Sequence[AgentHandle],
                 groups: Sequence[tuple[str, Sequence[Trader]]]) -> None:
        self.config = config
        self.client = client
        self.actors = list(actors)
        instruments = config.instruments()
        self.order = {instrument.symbol: index for index, instrument in enumerate(instruments)}
        self.fair_value = FairValue(instruments, config.fair_value, config.seed)
        self.state = MarketState(instruments)
        self.ledger = Ledger()
        self.group_of = {agent.name: index for index, (_, agents) in enumerate(groups)
                         for agent in agents}
        self.accounts = [agent.name for _, agents in groups for agent in agents]
        self.ts_ns: list[int] = []
        self.series = {symbol: SymbolSeries(fair_value=[], mid=[], spread=[], volume=[])
                       for symbol in self.order}
        self.pnl: dict[str, list[int]] = {account: [] for account in self.accounts}
        self.commands = 0
        self.trades = 0
        self.rejects: dict[str, int] = {}

    def run(self, progress: bool) -> _Run:
        config = self.config
        inboxes: list[list[Event]] = [[] for _ in self.actors]
        for step in tqdm(range(config.steps), unit="step", desc="simulating",
                         disable=not progress):
            ts_ns = config.start_ts_ns + step * config.tick_ns
            fair = self.fair_value.step()
            market = encode_market(self.state.view(step, ts_ns, fair, config.depth))
            answers = handles.wait_all([actor.step(market, encode(inbox))
                                        for actor, inbox in zip(self.actors, inboxes,
                                                                strict=True)])
            commands = [msgspec.structs.replace(command, ts_ns=ts_ns)
                        for answer in answers for command in decode_commands(answer)]
            events = self.client.submit(commands) if commands else []
            # each symbol's events in sequence, symbols in a fixed order: the same whatever
            # the shards (sorted is stable)
            events.sort(key=lambda event: self.order.get(getattr(event, "symbol", ""), -1))
            self.commands += len(commands)
            inboxes = self._route(events)
            self._record(ts_ns, fair, events)
        return self

    def _route(self, events: list[Event]) -> list[list[Event]]:
        inboxes: list[list[Event]] = [[] for _ in self.actors]
        for event in events:
            groups = {self.group_of[account] for account in accounts_of(event)
                      if account in self.group_of}
            for group in sorted(groups):
                inboxes[group].append(event)
        return inboxes

    def _record(self, ts_ns: int, fair: dict[str, int], events: list[Event]) -> None:
        state = self.state
        state.apply(events)
        self.ledger.apply(events)
        for event in events:
            if type(event) is Trade:
                self.trades += 1
            elif type(event) is OrderRejected:
                self.rejects[event.code.name] = self.rejects.get(event.code.name, 0) + 1
        self.ts_ns.append(ts_ns)
        volume = state.take_volume()
        marks: dict[str, int | None] = {}
        for symbol, series in self.series.items():
            bid, ask = state.best(symbol)
            series.fair_value.append(fair[symbol])
            if bid is not None and ask is not None:
                series.mid.append((bid + ask) // 2)
                series.spread.append(ask - bid)
            else:
                series.mid.append(None)
                series.spread.append(None)
            series.volume.append(volume[symbol])
            marks[symbol] = state.mark(symbol)
        for account in self.accounts:
            self.pnl[account].append(self.ledger.pnl(account, marks))


def journal_digest(data_dir: str | Path, shards: int) -> dict[str, str]:
    """Return, per shard, the SHA-256 of its journal: every segment's name and bytes, in order.

    Two runs of the same `SimConfig` on fresh data dirs give the same digests.
    """
    digests = {}
    for shard in range(shards):
        digest = hashlib.sha256()
        journal = shard_directory(Path(data_dir).resolve(), shard) / "journal"
        for segment in list_segments(journal) if journal.exists() else []:
            digest.update(segment.name.encode())
            digest.update(segment.read_bytes())
        digests[f"shard-{shard}"] = digest.hexdigest()
    return digests


# ------------------------------------------------------------------------------ plots


def _figure_class() -> Callable[..., Any]:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise PlottingUnavailableError(
            "plotting needs matplotlib, which comes with the bench extra: "
            "pip install 'raytrade[bench]' (or pass --no-plots)"
        ) from error
    figure: Callable[..., Any] = Figure  # typed even where matplotlib (and its stubs) is absent
    return figure


def plot(result: SimResult, out_dir: str | Path) -> list[Path]:
    """Draw the run as PNG files in ``out_dir`` (made if missing); return their paths.

    ``prices.png`` (fair value and mid per symbol), ``spread.png``, ``volume.png`` and
    ``pnl.png`` (per agent), in the instruments' currency over simulated seconds. Raise
    `PlottingUnavailableError` without matplotlib.
    """
    figure_class = _figure_class()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = result.config
    seconds = [index * config.tick_ns / 1e9 for index in range(len(result.ts_ns))]
    scales = {i.symbol: 10 ** i.price_scale for i in config.instruments()}
    ticks = {i.symbol: i.tick_size for i in config.instruments()}
    scale = max(scales.values())
    symbols = list(result.symbols)
    written = []

    def save(figure: Any, name: str) -> None:
        figure.tight_layout()
        path = out / name
        figure.savefig(path, dpi=110)
        written.append(path)

    def money(values: Sequence[int | None], symbol: str) -> list[float]:
        return [float("nan") if value is None else value / scales[symbol] for value in values]

    figure = figure_class(figsize=(10, 2.4 * len(symbols)))
    for index, symbol in enumerate(symbols):
        axes = figure.add_subplot(len(symbols), 1, index + 1)
        series = result.symbols[symbol]
        axes.plot(seconds, money(series.fair_value, symbol), label="fair value", linewidth=1,
                  drawstyle="steps-post")
        axes.plot(seconds, money(series.mid, symbol), label="mid", linewidth=1,
                  drawstyle="steps-post")
        axes.ticklabel_format(axis="y", useOffset=False)
        axes.set_ylabel(symbol)
        axes.legend(loc="upper left", fontsize="small")
    figure.axes[-1].set_xlabel("simulated seconds")
    figure.suptitle(f"mid and latent fair value (seed {config.seed})")
    save(figure, "prices.png")

    figure = figure_class(figsize=(10, 4))
    axes = figure.add_subplot(1, 1, 1)
    for symbol in symbols:
        tick = ticks[symbol]
        axes.plot(seconds, [float("nan") if value is None else value / tick
                            for value in result.symbols[symbol].spread],
                  label=symbol, linewidth=0.8, drawstyle="steps-post")
    axes.set_xlabel("simulated seconds")
    axes.set_ylabel("best ask - best bid (ticks)")
    axes.set_title("spread")
    axes.legend(fontsize="small")
    save(figure, "spread.png")

    # binned, so that a long run still shows bars: about 150 of them
    steps_per_bin = max(1, len(seconds) // 150)
    bin_s = steps_per_bin * config.tick_ns / 1e9
    starts = seconds[::steps_per_bin]
    figure = figure_class(figsize=(10, 4))
    axes = figure.add_subplot(1, 1, 1)
    bottom = [0] * len(starts)
    for symbol in symbols:
        volume = result.symbols[symbol].volume
        binned = [sum(volume[low : low + steps_per_bin])
                  for low in range(0, len(volume), steps_per_bin)]
        axes.bar(starts, binned, width=bin_s, bottom=bottom, label=symbol, align="edge")
        bottom = [low + high for low, high in zip(bottom, binned, strict=True)]
    axes.set_xlabel("simulated seconds")
    axes.set_ylabel(f"quantity per {bin_s:g} s")
    axes.set_title("volume")
    axes.legend(fontsize="small")
    save(figure, "volume.png")

    figure = figure_class(figsize=(10, 4))
    axes = figure.add_subplot(1, 1, 1)
    for agent, values in result.pnl.items():
        axes.plot(seconds, [value / scale for value in values], label=agent, linewidth=1)
    axes.ticklabel_format(axis="y", useOffset=False)
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.set_xlabel("simulated seconds")
    axes.set_ylabel("PnL (marked to mid, gross of fees)")
    axes.set_title("PnL per agent")
    axes.legend(fontsize="small", ncol=2)
    save(figure, "pnl.png")
    return written


# ------------------------------------------------------------------------------ data files


def save_data(data_dir: str | Path, out_dir: str | Path, config: SimConfig,
              progress: bool = True) -> list[Path]:
    """Replay the journals of a run of ``config`` in ``data_dir`` into ``out_dir``; return the
    paths written.

    ``market-data/``: trades, top of book and L2 deltas as Parquet (`record_journal`'s layout,
    for `cluster.research.queries.MarketData` and DuckDB); it must not exist yet (a recorder
    resumes a recording it finds, so an earlier run's would hide this one's first events).
    ``arrays.npz``: the arrays of `load_run` (orders, trades, cancels, replaces, rejects,
    levels, top), with ``symbols``, ``accounts`` and ``price_scales`` (per symbol) for the
    indexes they hold; ``np.load`` reads it without pickle. Raise `ConfigError` if
    ``market-data`` exists.
    """
    out = Path(out_dir)
    market_data = out / MARKET_DATA
    if market_data.exists():
        raise ConfigError(f"{market_data} exists: a recording goes into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    registry = config.registry()
    record_journal(data_dir, market_data, registry, progress=progress)
    run = load_run(data_dir, instruments=registry, progress=progress)
    scales = {instrument.symbol: instrument.price_scale for instrument in run.instruments}
    arrays = out / ARRAYS
    np.savez_compressed(
        arrays, **{name: getattr(run, name) for name in ARRAY_NAMES},
        symbols=np.array(run.symbols, dtype=str), accounts=np.array(run.accounts, dtype=str),
        price_scales=np.array([scales.get(symbol, 0) for symbol in run.symbols],
                              dtype=np.int64))
    return [market_data, arrays]


# ------------------------------------------------------------------------------ raytrade sim


def _count(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    return parse


def build_parser(prog: str = "raytrade sim") -> argparse.ArgumentParser:
    """Return the parser of ``raytrade sim``."""
    defaults = SimConfig()
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="start a local cluster, run a seeded agent simulation in simulated time "
                    "(market makers, noise takers, momentum), plot it and summarise")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the run")
    parser.add_argument("--steps", type=_count(1), default=defaults.steps,
                        help=f"steps of {defaults.tick_ns // 1_000_000} ms simulated time")
    parser.add_argument("--shards", type=_count(1), default=defaults.shards, help="shards")
    parser.add_argument("--symbols", type=_count(1), default=defaults.symbols,
                        help="instruments (SYM0, SYM1, ...)")
    parser.add_argument("--makers", type=_count(0), default=defaults.market_makers,
                        help="market makers")
    parser.add_argument("--takers", type=_count(0), default=defaults.noise_takers,
                        help="noise takers")
    parser.add_argument("--momentum", type=_count(0), default=defaults.momentum_traders,
                        help="momentum traders")
    parser.add_argument("--out", type=Path, default=Path("raytrade-sim"),
                        help="folder for the plots, summary.json, series.json, arrays.npz and "
                             "market-data/ (a rerun replaces them)")
    parser.add_argument("--data-dir",
                        help="journals (must hold none yet; kept after the run); default: a "
                             "temporary folder, removed at the end")
    parser.add_argument("--num-cpus", type=_count(1), default=2, help="CPUs the local Ray uses")
    parser.add_argument("--no-plots", action="store_true",
                        help="no PNGs (the JSON, numpy and Parquet files still)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Ray's own logs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``raytrade sim``; return its exit status (0 done, 1 the cluster failed, 2 bad
    arguments, data dir or out folder, or no matplotlib, 130/143 interrupted; everything
    started is stopped in every case)."""
    args = build_parser().parse_args(argv)
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, raise_interrupted)
                    for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _sim(args)
    except (ConfigError, PlottingUnavailableError) as error:
        print(f"raytrade sim: {error}", file=sys.stderr)
        return 2
    except RaytradeError as error:
        print(f"raytrade sim: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:
        signum: int = error.signum if isinstance(error, Interrupted) else signal.SIGINT
        print(f"raytrade sim: interrupted ({signal.Signals(signum).name}); everything it "
              f"started is stopped", file=sys.stderr)
        return 128 + signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _sim(args: argparse.Namespace) -> int:
    config = SimConfig(seed=args.seed, steps=args.steps, shards=args.shards,
                       symbols=args.symbols, market_makers=args.makers,
                       noise_takers=args.takers, momentum_traders=args.momentum)
    if not args.no_plots:
        _figure_class()  # before anything starts: a missing extra is a user's mistake
    out: Path = args.out
    market_data = out / MARKET_DATA
    if market_data.exists() and not (out / "summary.json").exists():
        # replaced below only when an earlier run of this command wrote it (with its summary)
        raise ConfigError(f"{market_data.resolve()} holds files that raytrade sim did not "
                          f"write (no summary.json beside it): name another --out")
    run = LocalRun(verbose=args.verbose)
    try:
        fresh = args.data_dir is None
        data_dir = run.scratch_dir() if fresh else args.data_dir
        cluster_config = config.cluster_config(data_dir)
        if layout.check_data_dir(data_dir, config.shards).holds_events:
            raise ConfigError(
                f"data dir {Path(data_dir).resolve()} already holds journals: a simulation "
                f"starts from empty books (its client order ids would repeat, and its journal "
                f"would not be reproducible); leave out --data-dir, or name a new folder")
        started = time.perf_counter()
        run.start_ray(args.num_cpus, cluster_config.namespace)
        cluster = run.start_cluster(cluster_config, config.registry())
        if not args.quiet:
            print(f"started Ray and {config.shards} shards in "
                  f"{time.perf_counter() - started:.1f} s (journals in {data_dir}"
                  f"{', temporary' if fresh else ''})")
        result = run_sim(cluster, config, progress=not args.quiet)
        # now, while the journals exist (a temporary data dir goes with run.close)
        if market_data.exists():
            shutil.rmtree(market_data)
        data_files = save_data(data_dir, out, config, progress=not args.quiet)
    finally:
        run.close()
    written = [] if args.no_plots else plot(result, out)
    summary = result.summary()
    (out / "summary.json").write_bytes(msgspec.json.format(msgspec.json.encode(summary)))
    (out / "series.json").write_bytes(msgspec.json.encode(result))
    written += [out / "summary.json", out / "series.json", *data_files]
    _print_summary(result, summary, written)
    return 0


def _print_summary(result: SimResult, summary: dict[str, Any], written: list[Path]) -> None:
    config = result.config
    agents = sum(len(agents) for _, agents in build_agents(config))
    print(f"\nraytrade sim: seed {config.seed}, {config.steps:,} steps of "
          f"{config.tick_ns / 1e6:g} ms ({config.duration_s:g} s simulated), {config.symbols} "
          f"symbols on {config.shards} shards, {agents} agents, in {result.elapsed_s:.1f} s")
    volume = sum(summary["volume"].values())
    print(f"  commands {result.commands:,}  trades {result.trades:,} (volume {volume:,})"
          + ("  rejects " + ", ".join(f"{code} {count:,}"
                                      for code, count in result.rejects.items())
             if result.rejects else ""))
    print("  PnL (marked to mid, gross of fees): "
          + "  ".join(f"{agent} {pnl:+,.2f}" for agent, pnl in summary["final_pnl"].items()))
    print("  journal sha256 (the same seed and shards give the same): "
          + "  ".join(f"{shard} {digest[:16]}" for shard, digest in
                      result.journal_sha256.items()))
    print(f"  wrote {', '.join(str(path) for path in written)}")


if __name__ == "__main__":
    sys.exit(main())
