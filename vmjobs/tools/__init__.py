"""Tooling around the service, never imported by it: the load test and
its report, the real-daemon sandbox, the simulated incoming migration
(the test driver cannot migrate), the chaos run and what is shipped."""
