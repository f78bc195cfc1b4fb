"""raytrade's cluster side, one room per concern.

* `cluster.config` — instruments, the shard map, the cluster's settings and topology;
* `cluster.storage` — the journal, snapshots and replay of a shard's log;
* `cluster.gateway` — the gRPC gateways (auth, validation, batching, streams);
* `cluster.clients` — the Python client (over Ray) and the gRPC client;
* `cluster.edge` — where raytrade meets Ray: the one module of Ray calls (`cluster.edge.handles`),
  the wiring of actors and supervisors, publication to readers, and the ``raytrade`` CLI;
* `cluster.research` — seeded order flows for simulations, benchmarks and tests.
"""
