"""raytrade's gRPC edge: gateways that authenticate, validate, batch and stream.

The modules, from the wire inwards:

    config      GatewayConfig: address, TLS, tokens, limits, batching (TOML)
    auth        bearer tokens -> Principal (accounts, admin role); per-account rate limits
    server      the grpc.aio server: services, health, reflection, TLS (run by the Ray actor
                actors.gateway_actor.GatewayActor)
    service     TradingService and AdminService: authenticate, convert, check, call the core
    core        routing to shards, the gateway's own checks, attachment to the shards' logs
    batching    coalescing of concurrent requests into one batch per shard
    streams     per-shard feeds (ring, market data) and the execution/market-data followers
    history     the shard journals, for start-up and for resumes older than the ring
    shards      the gateway's async view of one shard (through cluster.edge.handles)

Start gateways over a running cluster with `cluster.edge.wiring.start_gateways`, or run a
local cluster with a gateway with ``raytrade up --gateway gateway.toml``.
"""
