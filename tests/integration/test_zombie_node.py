"""A Ray node that freezes and comes back cannot write to the journal its book left behind.

Issue 11, item 3 (epoch fencing). A partitioned node is worse than a dead one: Ray declares it
dead and starts its book on another node, while the old book process may still hold a batch
it was sent and may still reach the shared journal when the node comes back. A subprocess
starts three real raylets on loopback (a head without the book resource and two book nodes),
a 1-shard cluster trades part of a seeded flow, then:

1. the book's process is stopped (SIGSTOP) and a batch is sent to it: it sits unread;
2. the book's raylet and every process under it are stopped too: to the cluster the node is
   gone (no health-check answers), so Ray restarts the book on the other book node, which
   takes a new epoch on the journal and serves;
3. the refused batch is sent again (same client order ids) and the rest of the flow follows;
4. the frozen processes are continued: the zombie book may run the batch it was holding.

Then the journal must hold no batch of the old epoch after the new writer's `EpochStarted`
(and no record of the old epoch at all after the freeze), the book must equal the same flow
run without faults, every order acknowledged once with the fault-free id, and the zombie's
processes must be gone (a raylet that Ray declared dead exits when it learns so). Whether the
zombie tried to write (and was fenced) is read from its log and printed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.integration.raylets import run_on_raylets

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.chaos]

SCRIPT = textwrap.dedent("""
    import glob, json, os, signal, sys, time
    from pathlib import Path
    from cluster.edge import handles  # RAY_AUTH_MODE=token before Ray is imported
    handles.prepare_local_nodes()
    import ray
    from ray.cluster_utils import Cluster as RayNodes

    from actors.book_actor import BookActor
    from cluster.clients.ray_client import Client
    from cluster.config import ClusterConfig, InstrumentRegistry, Placement
    from cluster.edge.handles import BookHandle
    from cluster.edge.wiring import start_cluster
    from cluster.research.flow import FlowConfig, demo_instruments, generate_flow
    from cluster.storage.journal_readers import read_frames
    from cluster.storage.shard import shard_directory
    from protocols.errors import ActorUnavailableError, ShardUnavailableError
    from protocols.journal_format import CommandBatch, EpochStarted, decode_record
    from protocols.messages import OrderAccepted, OrderRejected, RejectCode, decode_events, encode

    HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 4,
              "health_check_timeout_ms": 500}
    ray_tmp, data_dir = sys.argv[1], sys.argv[2]
    nodes = RayNodes(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "temp_dir": ray_tmp,
        "_system_config": HEALTH})
    book_nodes = [nodes.add_node(num_cpus=1, resources={"raytrade_book": 1}) for _ in range(2)]
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, namespace="zombie")

    instruments = demo_instruments(2)
    registry = InstrumentRegistry(tuple(instruments))
    config = ClusterConfig(shards=1, namespace="zombie", data_dir=data_dir,
                           placement=Placement(book_resource="raytrade_book", books_per_node=1))
    cluster = start_cluster(config, registry)
    flow = generate_flow(instruments, FlowConfig(operations=2000, seed=5, accounts=6))
    batches = [flow[i : i + 100] for i in range(0, len(flow), 100)]
    client = Client(cluster)

    def children_of(pid):
        found = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                child = int(stat.split("/")[2])
                found += [child, *children_of(child)]
        return found

    def alive(pid):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    acks = {}
    def keep(events):
        for event in events:
            if type(event) is OrderAccepted:
                key = event.account + "/" + event.client_order_id
                assert key not in acks, f"{key} acknowledged twice"
                acks[key] = event.order_id
            elif (type(event) is OrderRejected
                  and event.code == RejectCode.DUPLICATE_CLIENT_ORDER_ID):
                acks.setdefault(event.account + "/" + event.client_order_id, event.order_id)

    def send(batch):
        deadline = time.monotonic() + 120
        while True:
            try:
                return client.submit_async(batch).result(timeout_s=60)
            except (ShardUnavailableError, ActorUnavailableError):
                assert time.monotonic() < deadline, "the shard stayed away for 2 minutes"
                time.sleep(0.2)

    frozen = []
    try:
        third = len(batches) // 3
        for batch in batches[:third]:
            keep(send(batch))
        before = cluster.placements()["book-0"]
        victim = next(node for node in book_nodes if node.node_id == before.node_id)
        raylet = victim.all_processes["raylet"][0].process.pid
        incarnation = BookHandle(0, "zombie").ping().result(30)[0]
        os.kill(before.pid, signal.SIGSTOP)
        frozen.append(before.pid)
        held = client.submit_async(batches[third])  # reaches the frozen book, or nobody
        time.sleep(0.5)
        for pid in [raylet, *children_of(raylet)]:
            if pid not in frozen:
                os.kill(pid, signal.SIGSTOP)
                frozen.append(pid)
        frozen_at = time.monotonic()
        book = BookHandle(0, "zombie", timeout_s=2.0)
        while True:
            try:
                if book.ping().result(2.0)[0] != incarnation:
                    break
            except Exception:
                pass
            assert time.monotonic() - frozen_at < 120, "book-0 did not come back in 2 minutes"
            time.sleep(0.05)
        serving_s = time.monotonic() - frozen_at
        try:
            keep(held.result(timeout_s=30))
            held_outcome = "answered"
        except (ShardUnavailableError, ActorUnavailableError) as error:
            held_outcome = type(error).__name__
            keep(send(batches[third]))  # the same client order ids: entered at most once
        after = cluster.placements()["book-0"]
        half = (len(batches) + third) // 2
        for batch in batches[third + 1 : half]:
            keep(send(batch))
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        continued = time.monotonic()
        while alive(before.pid) and time.monotonic() - continued < 20:
            time.sleep(0.1)
        book_gone_s = None if alive(before.pid) else round(time.monotonic() - continued, 2)
        # The raylet, told by the GCS that its node is dead, exits; its workers follow when
        # they see their parent gone, once it is reaped (here by us, as systemd or a
        # container runtime would; an unreaped child still counts as alive to them).
        while any(alive(pid) for pid in frozen) and time.monotonic() - continued < 60:
            for info in victim.all_processes.get("raylet", []):
                info.process.poll()
            time.sleep(0.2)
        zombies_left = [Path(f"/proc/{pid}/cmdline").read_text().replace("\\0", " ")[:120]
                        for pid in frozen if alive(pid)]
        for batch in batches[half:]:
            keep(send(batch))
        live = cluster.book(0).state_hashes().result(30)["books"]
        still = cluster.placements()["book-0"]
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        cluster.stop()
        ray.shutdown()
        try:
            nodes.shutdown()
        except Exception as error:  # the frozen node is already gone
            print("shutdown:", error, file=sys.stderr)

    epochs = []  # (epoch, kind) in journal order
    for frame in read_frames(shard_directory(data_dir, 0) / "journal"):
        record = decode_record(frame.payload)
        if isinstance(record, EpochStarted):
            epochs.append((record.epoch, "start"))
        elif isinstance(record, CommandBatch):
            epochs.append((record.epoch, "batch"))
    new_epoch = max(epoch for epoch, kind in epochs if kind == "start")
    marker = epochs.index((new_epoch, "start"))
    stale_after_marker = sum(1 for epoch, _ in epochs[marker:] if epoch < new_epoch)
    zombie_log = ""
    for path in glob.glob(os.path.join(ray_tmp, "**", f"*{before.pid}*"), recursive=True):
        try:
            zombie_log += Path(path).read_text(errors="replace")
        except OSError:
            pass

    reference = BookActor(0, instruments)
    expected = {}
    for batch in batches:
        for event in decode_events(reference.apply_batch(encode(batch))):
            if type(event) is OrderAccepted:
                expected[event.account + "/" + event.client_order_id] = event.order_id
    print(json.dumps({
        "victim": victim.node_id, "book_nodes": [node.node_id for node in book_nodes],
        "before": before.node_id, "after": after.node_id, "still": still.node_id,
        "serving_s": round(serving_s, 2), "held": held_outcome,
        "epochs": sorted({epoch for epoch, _ in epochs}), "new_epoch": new_epoch,
        "stale_after_marker": stale_after_marker, "zombies_left": zombies_left,
        "zombie_fenced": "JournalFenced" in zombie_log,
        "zombie_ended_itself": "ending process" in zombie_log, "book_gone_s": book_gone_s,
        "acks": len(acks), "acks_equal": acks == expected,
        "books_equal": live == reference.state_hashes()["books"],
    }), flush=True)
""")


def test_a_frozen_node_that_comes_back_is_fenced_from_the_journal(tmp_path: Path) -> None:
    report = run_on_raylets(SCRIPT, tmp_path / "data", timeout_s=420)
    print(report)  # time to serving, and whether the zombie tried to write
    survivor = next(node for node in report["book_nodes"] if node != report["victim"])
    assert report["before"] == report["victim"]
    assert report["after"] == survivor and report["still"] == survivor
    assert len(report["epochs"]) >= 2, report  # the new incarnation took a new epoch
    assert report["stale_after_marker"] == 0, report
    assert report["zombies_left"] == [], report
    if report["zombie_fenced"]:  # it ran the batch it held (the usual case): and then ended
        assert report["zombie_ended_itself"] and report["book_gone_s"] is not None, report
    assert report["acks"] > 0 and report["acks_equal"], report
    assert report["books_equal"], report
