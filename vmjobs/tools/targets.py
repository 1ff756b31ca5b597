"""Where the load test sends its verbs (an API in this process, or a
running `vmjobs serve`), and the source host it plays for the incoming
migrations."""

import queue
import threading

from ..api import API
from ..client import Client
from ..hypervisor import Hypervisor
from . import simulation
from .follow import Follower


class InProcess:
    """The verbs of an API object in this process."""

    def __init__(self, config):
        self.api = API(config)
        self.hv = self.api.hv
        self.description = (
            f"{config.workers} workers, queue {config.queue_size}, on " +
            (self.hv.uri if config.uri else
             "a private instance of libvirt's test driver"))

    def call(self, method, params=None):
        return self.api.call(method, params)

    def follower(self):
        """A Follower of the API's notifications (api.subscribe)."""
        subscriptions = []

        def subscribe(last_id):
            subscriptions.append(self.api.subscribe(last_id))
            return subscriptions[-1]
        return Follower(subscribe, lambda: [s.close() for s in
                                            subscriptions], precise=True)

    def close(self):
        self.api.close()


class Remote:
    """The verbs of a running `vmjobs serve`, over JSON-RPC."""

    def __init__(self, server, uri=None, cert=None, key=None, ca=None):
        self.client = Client(server, cert=cert, key=key, ca=ca)
        self._connect = lambda: Client(server, cert=cert, key=key, ca=ca)
        # The libvirt the server uses, to play the source of migrations.
        self.hv = Hypervisor(uri) if uri else None
        stats = self.call("Host.getStats")
        self.description = (f"{stats['workers']} workers, queue "
                            f"{stats['queue_size']}, served at {server}")

    def call(self, method, params=None):
        return self.client.call(method, params)

    def follower(self, sink=None):
        """A Follower of the server's GET /events, on a connection of its
        own (a new one for each resume)."""
        clients = []

        def subscribe(last_id):
            clients.append(self._connect())
            return clients[-1].events(last_id)
        return Follower(subscribe, lambda: [c.close() for c in clients],
                        precise=False, sink=sink)

    def close(self):
        self.client.close()
        if self.hv is not None:
            self.hv.close()



class SimulatedSource(threading.Thread):
    """Plays the source host of every incoming migration, one at a time."""

    def __init__(self, hv):
        super().__init__(name="loadtest-source", daemon=True)
        self.hv = hv
        self._todo = queue.Queue()
        self.start()

    def migrate(self, domain_xml):
        self._todo.put(domain_xml)

    def stop(self):
        self._todo.put(None)
        self.join()

    def run(self):
        while (domain_xml := self._todo.get()) is not None:
            simulation.simulate_incoming_migration(self.hv, domain_xml)
