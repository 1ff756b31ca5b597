"""The answers an engine retries (ResourceExhausted, migrateLimit), with
backoff, counted by name: the load tests' way of calling a verb."""

import time

RETRIED = {1100: "ResourceExhausted", 82: "migrateLimit"}


def no_retries():
    """{name: 0} for each retried answer: a count to pass to retrying()."""
    return {name: 0 for name in RETRIED.values()}


def retrying(request, retried):
    """(result, latency of the call that was taken), retrying the refusals
    an engine is expected to retry."""
    backoff = 0.001
    while True:
        t0 = time.perf_counter()
        try:
            result = request()
        except Exception as exc:
            name = RETRIED.get(getattr(exc, "code", None))
            if name is None:
                raise
            retried[name] += 1
            time.sleep(backoff)   # an engine's backoff: what is played
            backoff = min(backoff * 2, 0.1)
            continue
        return result, time.perf_counter() - t0
