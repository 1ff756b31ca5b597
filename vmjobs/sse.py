"""Server-Sent Events, the wire format of GET /events (API.md "Events"):
a notification as a frame of `id:`, `event:` and `data:` lines, and the
frames of a stream read back into notifications (for the client)."""

import json
import time

from . import decimals
from .notifications import Notification

CONTENT_TYPE = "text/event-stream"
# A comment line: keeps an idle stream's connection (and proxies) awake
# and lets the service notice a subscriber that went away.
KEEPALIVE = b": keep-alive\n\n"
# The longest frame (or line) a client takes: a notification is a few KiB
# (a job's error at most 4 KiB). A server that sends more is refused, not
# held in memory (a hostile server made `vmjobs events`, root, grow
# without end on one endless line).
MAX_FRAME_BYTES = 1 << 20


# The most digits of an event's id: ours start from the clock in
# microseconds (16 digits) and grow by one per event.
ID_DIGITS = 19


class FrameTooLarge(ValueError):
    """A stream's frame (or line) longer than MAX_FRAME_BYTES."""


def frame(notification):
    """The notification as one SSE frame (bytes), made once for all the
    streams (a race makes it twice at worst, the same)."""
    text = notification.sse
    if text is None:
        text = notification.sse = (
            f"id: {notification.id}\nevent: {notification.method}\n"
            f"data: {notification.json()}\n\n").encode()
    return text


def position(event_id):
    """A frame of an id alone: it sets where the client is (its
    Last-Event-ID) without an event, as SSE has it."""
    return f"id: {event_id}\n\n".encode()


def read(readline, where=None):
    """The notifications of a stream, as `readline()` (bytes, b"" at the
    end) gives its lines; each with the time it was read
    (time.monotonic()). Comments are skipped; a frame without data or
    whose data is not a JSON-RPC notification is skipped, as SSE says
    of what a client does not understand. `where` (a list of one), if
    given, is set to the id of every frame that has one, data or not:
    where the client is, to resume from."""
    fields = {}
    data = []
    size = 0      # of the frame's lines so far
    while True:
        line = readline()
        if not line:
            return
        size += len(line)
        if size > MAX_FRAME_BYTES:
            raise FrameTooLarge(f"a frame of the event stream longer than "
                                f"{MAX_FRAME_BYTES} bytes")
        # As SSE decodes a stream: bytes that are not UTF-8 replaced, not
        # an error (a client took that for a cut, and resumed without end
        # against a server that sends them).
        line = line.decode("utf-8", "replace").rstrip("\r\n")
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value
            continue
        event_id = _event_id(fields)
        if where is not None and event_id is not None:
            where[0] = event_id
        if data:
            notification = _parse(event_id, "\n".join(data))
            if notification is not None:
                yield notification
        fields, data, size = {}, [], 0


def _event_id(fields):
    """The frame's id, or None if it has none that an event of ours can
    have: ASCII digits (decimals.parse: str.isdigit() takes '\u00b2' and
    int() '+7', '1_0' and blanks) of at most ID_DIGITS, 64 bits' worth.
    What a server sends past that is no id to resume from (int() of a
    5,000-digit one raised)."""
    event_id = decimals.parse(fields.get("id", ""), ID_DIGITS)
    return None if event_id is None or event_id >= 10 ** ID_DIGITS \
        else event_id


def _parse(event_id, data):
    if event_id is None:
        return None
    try:
        message = json.loads(data)
    except ValueError:
        return None
    if not isinstance(message, dict) or "method" not in message:
        return None
    return Notification(event_id, message["method"],
                        message.get("params", {}), time.monotonic())
