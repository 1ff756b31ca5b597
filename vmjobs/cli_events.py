"""The command line's live view of a running service, from GET /events
(API.md "Events"): `vmjobs events`, one line per notification as
`virsh event --loop` prints them (or --json), and `vmjobs jobs --watch`,
the job table kept up to date by the notifications instead of polling."""

import json
import queue
import sys
import threading
import time

from .cli_call import client, jobs_params, positive, visible_table
from .cli_errors import vm_id
from .logs import one_line
from .notifications import JOB_STATUS, RESYNC, VM_STATUS, SubscriptionCut

# Seconds: the table is redrawn once the stream has been quiet this long,
# and at least this often while it is busy; and every REDRAW_IDLE on a
# quiet service, for its ages and the ended jobs that time hides.
REDRAW_QUIET = 0.1
REDRAW_BUSY = 0.5
REDRAW_IDLE = 1.0


def add_flags(parser):
    parser.add_argument("--json", action="store_true", help="print each "
                        "notification as its JSON-RPC message (one line)")
    parser.add_argument("--vm", action="append", metavar="VM_ID",
                        type=vm_id, help="only this VM's notifications and "
                        "its jobs' (repeatable)")
    parser.add_argument("--job", action="append", metavar="JOB_ID",
                        help="only this job's notifications (repeatable)")
    parser.add_argument("--last-event-id", type=int, metavar="ID",
                        help="start after this event (what the buffer "
                        "still holds), not with the live ones")
    parser.add_argument("--count", type=positive, metavar="N",
                        help="exit after N notifications (default: until "
                        "the service stops or ^C)")


def events(args, out=sys.stdout):
    """Print the notifications until the service ends the stream (exit 0),
    --count of them, or ^C; a cut-off stream is resumed where it was."""
    printed = 0
    for notification in follow(args, args.last_event_id):
        if not wanted(notification, args.vm, args.job):
            continue
        print(json.dumps(notification.message()) if args.json
              else line(notification), file=out, flush=True)
        printed += 1
        if args.count is not None and printed >= args.count:
            break
    return 0


def follow(args, last_id=None, subscribed=None):
    """The notifications of the service of `args` after `last_id`, resumed
    (with Last-Event-ID) whenever the stream is cut off, until the service
    ends it. `subscribed` (a threading.Event) is set once the service has
    answered the first subscription."""
    while True:
        with client(args) as c:
            try:
                stream = c.events(last_id)
                if subscribed is not None:
                    subscribed.set()
                for notification in stream:
                    last_id = notification.id
                    yield notification
                return
            except SubscriptionCut as cut:
                last_id = cut.last_id
                print(f"vmjobs {args.command}: the stream was cut off "
                      f"({one_line(cut.__cause__ or 'fell behind')}); "
                      f"resuming after event {last_id}", file=sys.stderr)


def wanted(notification, vm_ids, job_ids):
    if not vm_ids and not job_ids:
        return True
    method, params = notification.method, notification.params
    if method.startswith(VM_STATUS):
        return bool(vm_ids) and method[len(VM_STATUS):] in vm_ids
    if method.startswith(JOB_STATUS):
        job_id = method[len(JOB_STATUS):]
        info = params.get(job_id) if isinstance(params, dict) else None
        return job_id in (job_ids or ()) or isinstance(info, dict) and \
            info.get("vm_id") in (vm_ids or ())
    return True   # a resync concerns everybody


# The longest line printed for one event (a job's error is bounded
# already; this bounds what a hostile server could make of the rest).
MAX_LINE = 1 << 16


def line(notification):
    """One readable line: when, the event's id, and what changed; what the
    server sent is escaped (a control character, `\x1b` of a terminal's
    escape sequences or a newline, is shown, never played: a server or a
    guest's name is not trusted with the operator's terminal)."""
    return one_line(_line(notification), MAX_LINE)


def _line(notification):
    when = time.strftime("%H:%M:%S", time.localtime()) + \
        f".{int(time.time() * 1000) % 1000:03d}"
    head = f"{when} event {notification.id}:"
    try:
        return _known_line(head, notification)
    except (KeyError, TypeError, AttributeError):
        # Not of the shape API.md gives it: shown as it came.
        return f"{head} {notification.method} " \
            f"{json.dumps(notification.params)}"


def _known_line(head, notification):
    method, params = notification.method, notification.params
    if method.startswith(VM_STATUS):
        vm = params[method[len(VM_STATUS):]]
        staged = " (staged)" if vm["staging"] else ""
        return f"{head} VM {vm['vmId']} {vm['status']}{staged}"
    if method.startswith(JOB_STATUS):
        info = params[method[len(JOB_STATUS):]]
        error = info.get("error", {}).get("message")
        return (f"{head} job {info['id']} {info['job_type']} "
                f"{info['status']} step {info['step']} VM "
                f"{info.get('vm_id', '-')}" + (f": {error}" if error else ""))
    if method == RESYNC:
        return (f"{head} resync: events were missed; re-read the state "
                "(Host.getAllVmStats, Host.getJobs)")
    return f"{head} {method} {json.dumps(params)}"


def watch_jobs(args, out=sys.stdout):
    """`vmjobs jobs --watch`: the table, redrawn as notifications change
    it, until ^C or the service stops."""
    changes = queue.Queue()
    subscribed = threading.Event()

    def read():
        try:
            for notification in follow(args, subscribed=subscribed):
                changes.put(notification)
            changes.put(None)
        except Exception as exc:   # raised again in the main thread
            changes.put(exc)
        finally:
            subscribed.set()

    with client(args) as c:
        # Subscribed first, then read: nothing that changes in between is
        # missed (a notification older than the table only repeats it).
        threading.Thread(target=read, name="vmjobs-watch",
                         daemon=True).start()
        subscribed.wait()
        if not changes.empty() and isinstance(changes.queue[0], Exception):
            raise changes.get()
        table = c.call("Host.getJobs", jobs_params(args))
        dirty, drawn = True, 0.0
        while True:
            timeout = REDRAW_QUIET if dirty else max(
                0.0, drawn + REDRAW_IDLE - time.monotonic())
            try:
                notification = changes.get(timeout=timeout)
            except queue.Empty:
                notification = False
            if notification is None:
                return 0
            if isinstance(notification, Exception):
                raise notification
            if notification:
                method = notification.method
                if method.startswith(JOB_STATUS):
                    table.update(notification.params)
                elif method == RESYNC:
                    table = c.call("Host.getJobs", jobs_params(args))
                dirty = True
            now = time.monotonic()
            if dirty and (notification is False or
                          now - drawn >= REDRAW_BUSY) or \
                    now - drawn >= REDRAW_IDLE:
                print("\x1b[H\x1b[2J" + visible_table(table, args,
                                                      time.time()),
                      file=out, flush=True)
                dirty, drawn = False, now
