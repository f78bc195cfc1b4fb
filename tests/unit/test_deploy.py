"""The on-prem deployment files (cluster/deploy/onprem) are what Ray and raytrade accept, and
agree with each other.

* ray-cluster.yaml passes Ray's own cluster-launcher preparation and schema (the checks
  `ray up` runs: `prepare_config`, then `validate_config` against the ray-schema.json that Ray
  ships), and the same checks refuse a broken copy;
* every `ray start` in it and in the systemd units parses with Ray's own command-line parser
  (click), and the custom resources they give the nodes are the ones raytrade.toml places
  books and gateways on; the health-check settings are those the README and
  test_node_failover.py use;
* raytrade.toml loads as a raytrade cluster config; the path ray-cluster.yaml mounts it at
  is the path raytrade.service passes to `raytrade up --config`.
"""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.scripts.scripts import start as ray_start

from cluster.config import load_cluster_config
from cluster.edge.cli import build_parser

ONPREM = Path(__file__).resolve().parents[2] / "cluster" / "deploy" / "onprem"
HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 4,
          "health_check_timeout_ms": 500}


def _launcher_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ONPREM / "ray-cluster.yaml").read_text())
    return config


def _unit(name: str) -> dict[str, list[str]]:
    """Read a systemd unit's ``Key=Value`` lines (repeated keys kept in order)."""
    entries: dict[str, list[str]] = {}
    for line in (ONPREM / name).read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            entries.setdefault(key, []).append(value)
    return entries


def _environment(unit: dict[str, list[str]]) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in unit.get("Environment", []))


def _ray_start_options(command: str, environment: dict[str, str]) -> dict[str, Any]:
    """Parse a `ray start ...` command line with Ray's own parser; return its options."""
    words = shlex.split(command)
    for key, value in environment.items():
        words = [word.replace("${" + key + "}", value).replace("$" + key, value)
                 for word in words]
    words = [word for word in words if not word.startswith("RAY_AUTH_MODE=")]
    start = words.index("start")
    assert words[start - 1].endswith("ray"), command
    context = ray_start.make_context("ray start", words[start + 1 :])
    return dict(context.params)


def test_the_launcher_config_passes_rays_own_checks() -> None:
    prepared = prepare_config(copy.deepcopy(_launcher_config()))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "local"
    assert len(prepared["provider"]["worker_ips"]) == prepared["max_workers"]


def test_rays_checks_refuse_a_broken_copy() -> None:
    broken = _launcher_config()
    broken["provider"]["tyep"] = broken["provider"].pop("type")  # a typo
    with pytest.raises((jsonschema.ValidationError, KeyError, ValueError)):
        validate_config(prepare_config(broken))
    unknown = _launcher_config()
    unknown["head_start_commands"] = unknown.pop("head_start_ray_commands")
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(unknown))


def _start_commands() -> dict[str, tuple[str, dict[str, str]]]:
    config = _launcher_config()
    [head] = [c for c in config["head_start_ray_commands"] if " start " in c]
    [worker] = [c for c in config["worker_start_ray_commands"] if " start " in c]
    commands = {"yaml head": (head, {"RAY_HEAD_IP": "10.0.0.10"}),
                "yaml worker": (worker, {"RAY_HEAD_IP": "10.0.0.10"})}
    for name in ("ray-head.service", "ray-worker.service"):
        unit = _unit(name)
        [command] = unit["ExecStart"]
        commands[name] = (command, _environment(unit))
    return commands


def _json(value: Any) -> Any:
    """Ray's parser turns some JSON options into dicts itself, leaves others as text."""
    return value if isinstance(value, dict) else json.loads(value)


def test_every_ray_start_parses_and_gives_the_nodes_the_placed_resources() -> None:
    placement = load_cluster_config(ONPREM / "raytrade.toml", {}).placement
    for name, (command, environment) in _start_commands().items():
        options = _ray_start_options(command, environment)
        resources = _json(options["resources"])
        if options["head"]:
            assert resources == {placement.gateway_resource: 1}, name
            assert _json(options["system_config"]) == HEALTH, name
            assert options["port"] == 6379, name
        else:
            assert resources == {placement.book_resource: 1}, name
            assert placement.books_per_node == 1
            assert options["address"] == "10.0.0.10:6379", name


def test_raytrade_config_and_the_units_agree() -> None:
    config = load_cluster_config(ONPREM / "raytrade.toml", {})
    assert config.data_dir.startswith("/srv/raytrade/")
    mounted = set(_launcher_config()["file_mounts"])
    service = _unit("raytrade.service")
    environment = _environment(service)
    parser = build_parser()
    [up] = service["ExecStart"]
    [down] = service["ExecStop"]
    up_args = parser.parse_args(shlex.split(up.replace("${RAY_HEAD}", environment["RAY_HEAD"]))[1:])
    down_args = parser.parse_args(
        shlex.split(down.replace("${RAY_HEAD}", environment["RAY_HEAD"]))[1:])
    assert up_args.run.__name__ == "_up" and down_args.run.__name__ == "_down"
    assert str(up_args.config) in mounted
    assert up_args.address == down_args.address == "10.0.0.10:6379"
    assert down_args.namespace == config.namespace
    worker = _unit("ray-worker.service")
    assert _environment(worker)["RAY_HEAD"] == up_args.address
    assert worker["RequiresMountsFor"] == [str(Path(config.data_dir))]
    for unit in (service, worker, _unit("ray-head.service")):
        assert _environment(unit)["RAY_AUTH_MODE"] == "token"
