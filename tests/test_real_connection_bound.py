"""libvirtd serves at most 5 requests in flight per client connection
(max_client_requests); vmjobs never has more on one: each call borrows a
connection of its own (workers + 1 of them), the events have theirs, and
a migration opens one for itself. Checked on the private real daemon,
with every libvirt connection wrapped in a counter of the calls in flight
on it (the domains it hands out count against it too)."""

import threading

from libvirt_counting import counting_open
from vmjobs.hypervisor import Hypervisor, connections

LIBVIRTD_MAX_CLIENT_REQUESTS = 5
CALLERS = 16
ROUNDS = 20
WAIT = 120


def test_calls_in_flight_per_connection_stay_bounded(daemon, monkeypatch):
    counters = []
    monkeypatch.setattr(connections.libvirt, "open", counting_open(counters))
    hv = Hypervisor(daemon.uri, connections=3)
    try:
        token = hv.subscribe("00000000-0000-0000-0000-000000000000",
                             lambda event, detail: None)
        go = threading.Barrier(CALLERS)
        errors = []

        def caller():
            try:
                go.wait(WAIT)
                for _ in range(ROUNDS):
                    hv.list_domains("urn:vmjobs:domain:1")
                    hv.state("00000000-0000-0000-0000-000000000001")
            except Exception as exc:   # reported below
                errors.append(exc)

        threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert not errors
        hv.unsubscribe("00000000-0000-0000-0000-000000000000", token)
    finally:
        hv.close()
    # The 3 pooled and the events' own: more callers than connections,
    # every call on one of them, never more than one at once on any.
    assert len(counters) == 4
    assert sum(c.calls for c in counters) >= CALLERS * ROUNDS * 2
    assert max(c.most for c in counters) == 1
    assert max(c.most for c in counters) <= LIBVIRTD_MAX_CLIENT_REQUESTS
