"""StreamExecutions resumed from its own cursors, on a real gateway (grpc.aio in a Ray actor)
in front of two real shards (issue 9, items 1, 8 and 9).

The deployment keeps a tiny ring (`ring_events`), and shard 1 makes far more events than it
holds before shard 0 makes a few, so a stream from the start serves shard 0 from the ring and
shard 1 from the journal in the same pass: the case where a cursor used to count ring events
that a journal chunk overtook. The rules (docs/GATEWAY.md, "The stream contract"): a client
that reconnects from the cursor of every batch it receives sees every report once; a cursor
beyond the journal's end is OUT_OF_RANGE; cancelling a stream during a journal replay is clean.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import ray

from cluster.clients.grpc_client import TradingClient, new_order
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge.wiring import Cluster, GatewayGroup, start_cluster, start_gateways
from cluster.gateway.auth import hash_token
from cluster.gateway.config import GatewayConfig, TokenEntry
from cluster.gateway.history import JournalHistory
from cluster.gateway.streams import concerns
from cluster.storage.shard import shard_directory
from protocols.convert import Converter
from protocols.generated import trading_pb2 as pb
from protocols.generated import trading_pb2_grpc as pb_grpc
from tests.integration.ports import free_port

pytestmark = [pytest.mark.ray, pytest.mark.grpc, pytest.mark.slow]

ACCOUNT = "erin"
TOKEN = "erin-token"
OTHER_TOKEN = "frank-token"
"""Another account's flow: journal batches that an erin stream replays and sends nothing of."""
METADATA = (("authorization", f"Bearer {TOKEN}"),)
RING_EVENTS = 50
Report = tuple[int, int, int, int]




@dataclass
class Deployment:
    cluster: Cluster
    gateways: GatewayGroup
    data_dir: Path
    address: str
    heads: dict[int, int]
    """Each shard's last event once the flow was entered."""


def crossing_orders(symbol: str, price: int, count: int, prefix: str
                    ) -> list[pb.NewOrderRequest]:
    return [new_order(symbol, "buy" if index % 2 else "sell", 1 + index % 3, price=price,
                      client_order_id=f"{prefix}-{index}") for index in range(count)]


@pytest.fixture(scope="module")
def deployment(ray_session: None, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("stream-resume")
    namespace = f"stream-resume-{uuid.uuid4().hex[:8]}"
    cluster = start_cluster(ClusterConfig(shards=2, namespace=namespace, data_dir=str(data_dir)),
                            InstrumentRegistry.load())
    port = free_port()
    gateways = start_gateways(cluster, [GatewayConfig(
        port=port,
        tokens=[TokenEntry(sha256=hash_token(TOKEN), name=ACCOUNT, accounts=[ACCOUNT]),
                TokenEntry(sha256=hash_token(OTHER_TOKEN), name="frank", accounts=["frank"])],
        ring_events=RING_EVENTS, heartbeat_s=0.2, health_check_s=0.2,
        requests_per_second=1_000_000, request_burst=1_000_000,
    )])
    try:
        assert cluster.shard_map.shard_of("AAPL") == 0
        assert cluster.shard_map.shard_of("MSFT") == 1
        address = f"127.0.0.1:{port}"
        with TradingClient(address, OTHER_TOKEN) as other:
            for batch in range(20):  # a long replay with nothing for erin in it
                other.submit_orders(crossing_orders("MSFT", 40100, 200, f"f{batch}"))
        with TradingClient(address, TOKEN) as client:
            for batch in range(4):  # shard 1 first, far past the ring
                client.submit_orders(crossing_orders("MSFT", 40000, 300, f"m{batch}"))
            client.submit_orders(crossing_orders("AAPL", 18950, 6, "a"))  # within the ring
        pings = ray.get([book.ping.remote() for book in cluster.books])
        heads = {shard: next_seq - 1 for shard, (_, next_seq) in enumerate(pings)}
        assert heads[1] > 10 * RING_EVENTS and 0 < heads[0] < RING_EVENTS
        yield Deployment(cluster, gateways, data_dir, address, heads)
    finally:
        gateways.stop()
        cluster.stop()


def journal_reports(deployment: Deployment) -> list[Report]:
    """The account's reports as the journals say, in order per shard."""
    registry = InstrumentRegistry.load()
    shard_map = deployment.cluster.shard_map
    converter = Converter(registry.instruments,
                          {i.symbol: shard_map.shard_of(i.symbol) for i in registry.instruments})
    out: list[Report] = []
    for shard in range(2):
        history = JournalHistory(
            shard_directory(deployment.data_dir, shard), shard,
            [i for i in registry.instruments if shard_map.shard_of(i.symbol) == shard],
            deployment.cluster.topology.config.client_order_id_window,
        )
        for events in history.events(1):
            fresh = [event for event in events if concerns(event, {ACCOUNT})]
            out.extend((r.shard, r.seq, r.type, r.order_id)
                       for r in converter.reports(fresh, shard, (ACCOUNT,)))
    return out


def wait_until_followed(deployment: Deployment) -> None:
    """Wait until the gateway's feeds have folded every event entered."""
    gateway = deployment.gateways.handle("gateway-0")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        feeds = ray.get(gateway.status.remote())["feeds"]
        if all(feed["next_seq"] > deployment.heads[feed["shard"]] for feed in feeds):
            assert feeds[1]["ring_start_seq"] > 1 and feeds[0]["ring_start_seq"] == 1
            return
        time.sleep(0.1)
    raise AssertionError(f"the gateway did not catch up: {feeds}")


def test_reconnecting_from_every_cursor_sees_every_report_once(deployment: Deployment) -> None:
    """Issue 9, item 1: reconnect after every batch with that batch's cursor, from the start
    of both shards (shard 0 from the ring, shard 1 from the journal): each of the account's
    journaled reports arrives exactly once."""
    wait_until_followed(deployment)
    cursor = {0: 0, 1: 0}
    seen: list[Report] = []
    with grpc.insecure_channel(deployment.address) as channel:
        stub = pb_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]
        for _ in range(500):
            if all(cursor[shard] >= head for shard, head in deployment.heads.items()):
                break
            call = stub.StreamExecutions(
                pb.StreamExecutionsRequest(accounts=[ACCOUNT], after_seq=cursor),
                metadata=METADATA, timeout=30,
            )
            try:
                opening = next(call)
                assert dict(opening.cursor) == cursor and not opening.reports
                batch = next(call)
            finally:
                call.cancel()
            seen.extend((r.shard, r.seq, r.type, r.order_id) for r in batch.reports)
            cursor = dict(batch.cursor)
    assert all(cursor[shard] >= head for shard, head in deployment.heads.items()), cursor
    assert len(seen) == len(set(seen)), "a report was delivered twice"
    assert sorted(seen) == sorted(journal_reports(deployment))


def test_a_cursor_beyond_the_journal_is_out_of_range(deployment: Deployment) -> None:
    """Issue 9, item 9: ``after_seq`` past a shard's last event is refused with OUT_OF_RANGE
    naming the cursor, not echoed back."""
    with grpc.insecure_channel(deployment.address) as channel:
        stub = pb_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]
        for beyond in (2**63 - 1, deployment.heads[0] + 1):
            call = stub.StreamExecutions(
                pb.StreamExecutionsRequest(accounts=[ACCOUNT], after_seq={0: beyond}),
                metadata=METADATA, timeout=30,
            )
            with pytest.raises(grpc.RpcError) as failure:
                next(call)
            assert failure.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert "beyond the end" in (failure.value.details() or "")


def gateway_log(pid: int) -> str:
    """The gateway process's stderr, where its Python logging goes under Ray."""
    node = ray._private.worker._global_node  # Ray has no public API for its logs folder
    assert node is not None
    logs = Path(node.get_logs_dir_path())
    return "".join(path.read_text(errors="replace") for path in logs.glob(f"worker-*-{pid}.err"))


def test_cancelling_a_stream_during_journal_replay_logs_no_error(
    deployment: Deployment,
) -> None:
    """Issue 9, item 8: clients that cancel a stream while the gateway replays shard 1's
    journal leave nothing in the gateway's log (it used to log "ValueError: generator
    already executing"), and the gateway goes on serving."""
    wait_until_followed(deployment)
    pid = ray.get(deployment.gateways.handle("gateway-0").pid.remote())
    before = len(gateway_log(pid))
    with grpc.insecure_channel(deployment.address) as channel:
        stub = pb_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]
        for attempt in range(8):
            call = stub.StreamExecutions(
                pb.StreamExecutionsRequest(accounts=[ACCOUNT], after_seq={0: 0, 1: 0}),
                metadata=METADATA, timeout=30,
            )
            next(call)  # the opening: the replay of frank's batches (~30 ms) begins after it
            time.sleep(0.002 * attempt)  # cancel at several points of it
            call.cancel()
        time.sleep(1.0)  # let the gateway run its cancellations and flush its log
        call = stub.StreamExecutions(pb.StreamExecutionsRequest(accounts=[ACCOUNT]),
                                     metadata=METADATA, timeout=30)
        assert not next(call).reports  # still serving
        call.cancel()
    written = gateway_log(pid)[before:]
    assert "generator already executing" not in written
    assert "Traceback" not in written
