"""The service's JSON-RPC client, for the tools: the core's own, which a
migration's source also uses to call its destination."""

from ..client import DEFAULT_SERVER, Client, RemoteError

__all__ = ["DEFAULT_SERVER", "Client", "RemoteError"]
