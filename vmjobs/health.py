"""`GET /healthz`: whether the service is ready to take verbs. Ready once
recovery at start-up has ended, until the service starts stopping; a
probe reads it without authentication on the metrics listener."""


def state(api):
    """(ready, why): ready is False while recovering or stopping."""
    if api.stopping.is_set():
        return False, "stopping"
    if not api.recovery.done:
        return False, "recovering"
    return True, "ready"
