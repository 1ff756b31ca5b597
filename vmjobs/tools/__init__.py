"""Tooling around the service, never imported by it: the JSON-RPC client,
the load test and its report, the real-daemon sandbox, and the simulated
incoming migration (the test driver cannot migrate)."""
