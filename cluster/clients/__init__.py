"""Clients of a running raytrade: `ray_client.Client` (a driver on the cluster's Ray) and
`grpc_client.TradingClient` (anyone who reaches a gateway over gRPC)."""
