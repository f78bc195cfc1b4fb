"""The deployment files (cluster/deploy/onprem and aks) are what Ray, Kubernetes and raytrade
accept, and agree with each other.

* ray-cluster.yaml passes Ray's own cluster-launcher preparation and schema (the checks
  `ray up` runs: `prepare_config`, then `validate_config` against the ray-schema.json that Ray
  ships), and the same checks refuse a broken copy;
* every `ray start` in it and in the systemd units parses with Ray's own command-line parser
  (click), and the custom resources they give the nodes are the ones raytrade.toml places
  books and gateways on; the health-check settings are those the README and
  test_node_failover.py use;
* raytrade.toml loads as a raytrade cluster config; the path ray-cluster.yaml mounts it at
  is the path raytrade.service passes to `raytrade up --config`;
* AKS: the core kinds and the Ray pod templates validate against Kubernetes' own schemas
  (kubernetes-validate), the RayCluster goes through KubeRay's autoscaler code in Ray
  (`_derive_autoscaling_config_from_ray_cr`) and Ray's schema, and image, Ray version,
  secrets, volumes, ports, labels and the Job's `raytrade up` agree across the files.
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
from cluster.edge.handles import RAY_SYSTEM_CONFIG

ONPREM = Path(__file__).resolve().parents[2] / "cluster" / "deploy" / "onprem"
HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 4,
          "health_check_timeout_ms": 500, **RAY_SYSTEM_CONFIG}
"""The head's Ray settings: health checks that find a dead node within ~2 s, and the settings
raytrade gives the local Ray it starts (`cluster.edge.handles.RAY_SYSTEM_CONFIG`)."""


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
            assert resources == {placement.book_resource: 1, placement.reader_resource: 1}, name
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


# ---------------------------------------------------------------------------- AKS + KubeRay

AKS = ONPREM.parent / "aks"
KUBERNETES = "1.30"
"""The Kubernetes version the core kinds are validated against (AKS's supported line)."""


def _aks_objects() -> dict[str, dict[str, Any]]:
    objects = {}
    for path in ("raytrade.yaml", "raycluster.yaml"):
        for document in yaml.safe_load_all((AKS / path).read_text()):
            objects[document["kind"]] = document
    return objects


def _pod_templates(ray_cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = ray_cluster["spec"]
    templates = {"head": spec["headGroupSpec"]["template"]}
    for group in spec["workerGroupSpecs"]:
        templates[group["groupName"]] = group["template"]
    return templates


def test_core_kinds_and_the_ray_pods_validate_against_kubernetes_schemas() -> None:
    import kubernetes_validate

    objects = _aks_objects()
    for kind in ("ConfigMap", "StorageClass", "PersistentVolumeClaim", "Service", "Job"):
        kubernetes_validate.validate(objects[kind], KUBERNETES, strict=True)
    for name, template in _pod_templates(objects["RayCluster"]).items():
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, **template["metadata"]}, "spec": template["spec"]}
        kubernetes_validate.validate(pod, KUBERNETES, strict=True)
    broken = copy.deepcopy(objects["Service"])
    broken["spec"]["ports"][0]["port"] = "four-four-three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_the_raycluster_derives_a_valid_ray_config_with_the_placed_resources(
    tmp_path: Path,
) -> None:
    """KubeRay's autoscaler code turns the RayCluster into a Ray cluster config, which Ray's
    schema accepts; its node types offer what raytrade.toml (the ConfigMap) places on them."""
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    objects = _aks_objects()
    derived = _derive_autoscaling_config_from_ray_cr(objects["RayCluster"])
    validate_config(derived)
    config_path = tmp_path / "raytrade.toml"
    config_path.write_text(objects["ConfigMap"]["data"]["raytrade.toml"])
    placement = load_cluster_config(config_path, {}).placement
    types = derived["available_node_types"]
    assert types["headgroup"]["resources"][placement.gateway_resource] == 1
    assert types["books"]["resources"][placement.book_resource] == 1
    assert types["books"]["resources"][placement.reader_resource] == 1
    assert placement.books_per_node == 1
    head_params = objects["RayCluster"]["spec"]["headGroupSpec"]["rayStartParams"]
    assert json.loads(json.loads(head_params["system-config"])) == HEALTH


def _mounts(template: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Return mount path -> (volume name, volume source) of a pod template's first container."""
    volumes = {volume["name"]: volume for volume in template["spec"]["volumes"]}
    [container] = template["spec"]["containers"]
    return {mount["mountPath"]: (mount["name"], volumes[mount["name"]])
            for mount in container["volumeMounts"]}


def test_the_aks_files_agree_with_each_other_and_with_raytrade(tmp_path: Path) -> None:
    objects = _aks_objects()
    ray_cluster, job, service = objects["RayCluster"], objects["Job"], objects["Service"]
    templates = _pod_templates(ray_cluster)
    job_template = job["spec"]["template"]
    # one image everywhere, built from the Dockerfile on Ray's own image of raytrade's Ray
    dockerfile = (AKS / "Dockerfile").read_text()
    base = next(line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM"))
    assert base == f"rayproject/ray:{ray_cluster['spec']['rayVersion']}-py311"
    import ray

    assert ray_cluster["spec"]["rayVersion"] == ray.__version__
    images = {c["image"] for t in (*templates.values(), job_template)
              for c in t["spec"]["containers"]}
    assert len(images) == 1
    # the ray token and the journals reach every pod at the same paths
    config_map = objects["ConfigMap"]
    with_config = tmp_path / "raytrade.toml"
    with_config.write_text(config_map["data"]["raytrade.toml"])
    data_dir = load_cluster_config(with_config, {}).data_dir
    claim = objects["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # a book may move between pods
    storage = objects["StorageClass"]
    assert claim["spec"]["storageClassName"] == storage["metadata"]["name"]
    assert storage["parameters"]["protocol"] == "nfs"  # locks across clients
    for template in (*templates.values(), job_template):
        mounts = _mounts(template)
        assert mounts["/home/ray/.ray/auth_token"][1]["secret"]["secretName"] == (
            "raytrade-ray-token")
        assert mounts[data_dir][1]["persistentVolumeClaim"]["claimName"] == (
            claim["metadata"]["name"])
        [container] = template["spec"]["containers"]
        assert {"name": "RAY_AUTH_MODE", "value": "token"} in container["env"]
    # the Job runs `raytrade up --address <the head's service>` with files mounted where it says
    args = build_parser().parse_args(job_template["spec"]["containers"][0]["command"][1:])
    assert args.run.__name__ == "_up"
    cluster_name = ray_cluster["metadata"]["name"]
    assert args.address == (f"{cluster_name}-head-svc.{ray_cluster['metadata']['namespace']}"
                            f".svc.cluster.local:6379")
    job_mounts = _mounts(job_template)
    assert job_mounts[str(Path(args.config).parent)][1]["configMap"]["name"] == (
        config_map["metadata"]["name"])
    # the gateways run on the head (its resource), so its certificate must be mounted there too
    head_mounts = _mounts(templates["head"])
    gateway_dir = str(Path(args.gateway[0]).parent)
    for path in (gateway_dir, f"{gateway_dir}/tls"):
        assert head_mounts[path][1] == job_mounts[path][1]
    # the load balancer reaches the head pods' gRPC port
    head_labels = templates["head"]["metadata"]["labels"]
    assert all(head_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    [port] = service["spec"]["ports"]
    head_ports = {p["containerPort"] for p in templates["head"]["spec"]["containers"][0]["ports"]}
    assert port["targetPort"] in head_ports
    # Prometheus scrapes a port every Ray pod names
    monitor = objects["PodMonitor"]
    for template in templates.values():
        assert all(template["metadata"]["labels"].get(k) == v
                   for k, v in monitor["spec"]["selector"]["matchLabels"].items())
        names = {p.get("name") for p in template["spec"]["containers"][0]["ports"]}
        assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in names
    # and the gateway's own /metrics where the gateway runs (the head)
    head_names = {p.get("name"): p["containerPort"]
                  for p in templates["head"]["spec"]["containers"][0]["ports"]}
    assert head_names[monitor["spec"]["podMetricsEndpoints"][1]["port"]] == 9464
