"""An execution stream read by a background thread, for the gateway integration tests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from cluster.clients.grpc_client import ExecutionStream


@dataclass
class Follower:
    """An execution stream read by a background thread."""

    stream: ExecutionStream
    seen: list[tuple[int, int, int, int]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> dict[int, int]:
        iterator = iter(self.stream)
        start = dict(next(iterator).cursor)

        def run() -> None:
            try:
                for batch in iterator:
                    self.seen.extend((r.shard, r.seq, r.type, r.order_id) for r in batch.reports)
            except BaseException as error:
                self.errors.append(error)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return start

    def wait_for(self, heads: dict[int, int], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.errors:
            if all(self.stream.cursor.get(shard, 0) >= seq for shard, seq in heads.items()):
                return
            time.sleep(0.05)
        raise AssertionError(f"stream stuck at {self.stream.cursor}, wanted {heads}; "
                             f"errors {self.errors}")

    def stop(self) -> None:
        self.stream.close()
        if self.thread is not None:
            self.thread.join(timeout=5)
