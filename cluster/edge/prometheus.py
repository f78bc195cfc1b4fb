"""A real Prometheus on loopback for a running raytrade: start it, ask it, stop it.

For the dashboard picture (benchmarks/plot_dashboard.py) and the tests that scrape a cluster
(tests/integration/test_prometheus.py): the shipped scrape configuration
(cluster/deploy/prometheus/prometheus.yml) with a shorter interval, the file_sd targets that
``raytrade prometheus-targets`` writes (`cluster.edge.wiring.write_prometheus_targets`), the
``prometheus`` binary (Debian's package) on a free port of 127.0.0.1, and its HTTP API
(``/api/v1/query``, ``/api/v1/query_range``). Operators run their own Prometheus; this is
not how a cluster is monitored in production.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from cluster.edge.wiring import write_prometheus_targets

__all__ = [
    "SCRAPE_CONFIG",
    "LocalPrometheus",
    "free_port",
    "query",
    "query_range",
    "targets",
    "wait_for",
]

SCRAPE_CONFIG: Final = (Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
                        / "prometheus.yml")
_SHIPPED_INTERVAL: Final = "scrape_interval: 5s"


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get(base: str, path: str, params: dict[str, str]) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=20) as reply:
        body = json.loads(reply.read())
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {params}: {body}")
    return body["data"]


def query(base: str, expression: str) -> list[dict[str, Any]]:
    """Evaluate ``expression`` now (``/api/v1/query``); return its vector."""
    result: list[dict[str, Any]] = _get(base, "/api/v1/query", {"query": expression})["result"]
    return result


def query_range(base: str, expression: str, start_s: float, end_s: float,
                step_s: float = 1.0) -> list[dict[str, Any]]:
    """Evaluate ``expression`` over a time range (``/api/v1/query_range``); return its matrix."""
    data = _get(base, "/api/v1/query_range", {
        "query": expression, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}",
        "step": f"{step_s:g}",
    })
    result: list[dict[str, Any]] = data["result"]
    return result


def targets(base: str) -> list[tuple[str, str, str]]:
    """Return each active target's scrape URL, health and last error."""
    return [(target["scrapeUrl"], target["health"], target["lastError"])
            for target in _get(base, "/api/v1/targets", {})["activeTargets"]]


def wait_for(base: str, expression: str, wanted: Callable[[list[dict[str, Any]]], Any],
             timeout_s: float = 60.0, every_s: float = 0.5) -> list[dict[str, Any]]:
    """Poll ``expression`` until ``wanted(result)`` holds; return that result. Raise
    `TimeoutError` with the last result and the targets' health after ``timeout_s``.

    Numbers reach Prometheus late: an actor hands them to Ray about once a second (a quiet
    shard at its next batch or health ping), Ray's agent reports each second, and Prometheus
    scrapes at its interval.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = query(base, expression)
        if wanted(result):
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression}: still {result} after {timeout_s} s; "
                               f"targets: {targets(base)}")
        time.sleep(every_s)


class LocalPrometheus:
    """A Prometheus process this program started, scraping one raytrade cluster."""

    def __init__(self, binary: str, folder: Path, gateways: Sequence[dict[str, Any]], *,
                 scrape_interval_s: float = 1.0, ready_timeout_s: float = 30.0) -> None:
        """Write the shipped scrape configuration (its interval set to ``scrape_interval_s``)
        and the targets of the cluster's nodes and ``gateways`` (their status rows) into
        ``folder``, start ``binary`` on a free loopback port and wait until it is ready.

        Raise `RuntimeError` if a kind of target is missing or Prometheus does not get ready
        (with the end of its log); nothing is left running then.
        """
        config = SCRAPE_CONFIG.read_text()
        if _SHIPPED_INTERVAL not in config:
            raise RuntimeError(f"{SCRAPE_CONFIG} no longer says {_SHIPPED_INTERVAL!r}")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "prometheus.yml").write_text(
            config.replace(_SHIPPED_INTERVAL, f"scrape_interval: {scrape_interval_s:g}s"))
        self.found = write_prometheus_targets(folder / "targets", list(gateways))
        """The targets written: ``{"ray": [...], "gateways": [...]}`` (host:port)."""
        if not (self.found["ray"] and self.found["gateways"]):
            raise RuntimeError(f"missing metrics targets: {self.found}")
        self.log_path = folder / "prometheus.log"
        port = free_port()
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [binary, f"--config.file={folder / 'prometheus.yml'}",
                 f"--storage.tsdb.path={folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=log_file,
            )
        self.url = f"http://127.0.0.1:{port}"
        try:
            self._wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus did not become ready in {timeout_s:g} s: "
                                   + self.log_path.read_text()[-2000:])
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop it by its pid: SIGTERM, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
