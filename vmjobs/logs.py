"""Logging: concurrent-log-handler's rotating file (safe with several
processes on one file), every line of a job's work tagged with its job id
and vm id.

One record is one line, whatever a caller sent: the message has every
control character (newline, carriage return, escape, DEL, C1, the Unicode
line and paragraph separators) written as an escape, and is cut at
MAX_MESSAGE characters with a mark; a traceback's lines are each prefixed
with TRACEBACK_PREFIX, and the traceback is cut at MAX_TRACEBACK. So no
value (a method name, a libvirt message echoing an XML value, an
exception's text) can forge a log or audit line, and no request can make
a line larger than these bounds: flushing the log and its backups (the
audit trail) takes thousands of requests, each of which leaves its own
audit line (docs/security.md)."""

import datetime
import errno
import logging
import os
import re
import stat
import sys

from concurrent_log_handler import ConcurrentRotatingFileHandler

import workers

from . import config, rundir
from .settings import ConfigError

log = logging.getLogger("vmjobs.logs")

FORMAT = ("%(asctime)s %(levelname)-7s %(threadName)s %(name)s "
          "[job=%(job_id)s vm=%(vm_id)s] %(message)s")

MAX_MESSAGE = 8 * 1024          # characters of one record's message
MAX_TRACEBACK = 16 * 1024       # characters of its traceback
TRACEBACK_PREFIX = "  | "
# What cannot appear raw in a line: C0 and C1 controls, DEL, and what
# str.splitlines() and some viewers also break lines at.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text, limit=MAX_MESSAGE):
    """`text` on one line (control characters escaped as \\n, \\x1b...),
    at most `limit` characters and a mark saying it was cut."""
    text = str(text)
    line = _CONTROL.sub(_escape, text[:limit])
    if len(text) <= limit and len(line) <= limit:
        return line
    return f"{line[:limit]}...[cut: {len(text)} characters in all]"


def _escape(match):
    return match.group().encode("unicode_escape").decode("ascii")


class IsoFormatter(logging.Formatter):
    """ISO-8601 timestamps with the local offset, to the millisecond; one
    line per record (see above)."""

    def formatTime(self, record, datefmt=None):
        return datetime.datetime.fromtimestamp(record.created).astimezone() \
            .isoformat(timespec="milliseconds")

    def format(self, record):
        # The record is shared with other handlers: restored after.
        saved = record.msg, record.args
        record.msg, record.args = one_line(record.getMessage()), None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = saved

    def formatException(self, ei):
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info):
        return _indented(stack_info)


def _indented(text):
    """A traceback, each line escaped and prefixed: none can pass for a
    record of its own."""
    cut = len(text) - MAX_TRACEBACK
    if cut > 0:
        text = text[:MAX_TRACEBACK // 2] + f"\n...[{cut} characters cut]\n" \
            + text[-MAX_TRACEBACK // 2:]
    return "\n".join(TRACEBACK_PREFIX + one_line(line, MAX_TRACEBACK)
                     for line in text.split("\n"))


class JobContext(logging.Filter):
    """Tags each record with the job the logging thread is running, so that
    every line of a job's work (libvirt adapter included) names it."""

    def filter(self, record):
        job = workers.current_job()
        record.job_id = job.id if job is not None else "-"
        record.vm_id = getattr(job, "vm_id", "-")
        return True


def configure(path, level="INFO", max_bytes=20 * 1024 * 1024, backups=5,
              lock_dir=None):
    """Send vmjobs' and workers' logs to `path` ("-": stderr). Returns the
    handler, to be passed to `unconfigure`.

    concurrent-log-handler serialises its writers with a lock file, by
    default a hidden `.__NAME.lock` beside the log, world-readable, in a
    directory meant for logs. `lock_dir` puts it where a process's private
    files go instead (the service's run directory); it is made 0700 if it
    does not exist (rundir.prepare). Every process writing one log must
    give the same `lock_dir`, as they do by sharing a configuration."""
    if path == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        check_log_file(path)
        if lock_dir is not None:
            rundir.prepare(lock_dir)
        # 0600, whatever the umask: the log holds the audit trail and
        # what callers sent (a hostile-caller audit found it 0644).
        handler = LogFile(
            path, maxBytes=max_bytes, backupCount=backups,
            lock_file_directory=lock_dir, chmod=LOG_FILE_MODE)
    handler.setFormatter(IsoFormatter(FORMAT))
    handler.addFilter(JobContext())
    for name in ("vmjobs", "workers"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
    return handler


LOG_FILE_MODE = 0o600


class LogFile(ConcurrentRotatingFileHandler):
    """The log file. A line it cannot write (its disk full, its file
    system read-only) is lost: the first of a run of them is said on
    stderr (the journal) in one line, and the first line written
    afterwards is followed, in the log and on stderr, by how many were
    lost, so that the audit trail shows its gap. logging's default wrote a
    traceback of about 2 KiB on stderr for every lost line, and made each
    verb twice as slow, while /var/log was full; and a stderr that blocks
    (a full pipe) would have stopped every thread that logs.

    `_lost` and `_since` are guarded by the handler's lock, which
    logging.Handler.handle holds around emit() (and so around
    handleError())."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lost = 0        # lines lost since the last one written
        self._since = None    # when the first of them was lost, and why

    def emit(self, record):
        lost = self._lost
        super().emit(record)
        if lost and self._lost == lost:   # written: the run of losses ended
            self._lost = 0
            gap = f"{lost} lines lost since {self._since}"
            _say(f"log file {self.baseFilename}: written again, {gap}")
            note = logging.LogRecord(log.name, logging.WARNING, __file__, 0,
                                     "log: %s", (gap,), None)
            note.job_id = note.vm_id = "-"
            super().emit(note)

    def handleError(self, record):
        if not self._lost:
            why = one_line(str(sys.exc_info()[1]), 512)
            when = datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="milliseconds")
            self._since = f"{when} ({why})"
            _say(f"log file {self.baseFilename}: cannot write a line "
                 f"({why}); lines are lost until it can")
        self._lost += 1


def _say(text):
    """A line on stderr; never raises (stderr may be gone)."""
    try:
        sys.stderr.write(f"vmjobs: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def check_log_file(path):
    """Open (create, 0600) the log file now, so that a path the service
    cannot write stops it at start, saying so in one line: the handler
    opens its file only at the first line, and a missing directory left
    the service running without its audit trail, each line a traceback
    on stderr (an operability audit). A symlink is refused too, not
    followed: the handler would chmod its target, as root. So is a file
    or a directory another user may change (config.untrusted)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT |
                     os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     LOG_FILE_MODE)
    except OSError as exc:
        why = "it is a symlink, which the log file never follows" \
            if exc.errno == errno.ELOOP else exc.strerror
        raise ConfigError(
            f"log.file {path}: cannot open it: {why}; give a file in an "
            "existing directory root may write ([log] file, or "
            "--log-file; '-' for stderr)") from None
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            f"log.file {path}: not a regular file; give a file path "
            "([log] file, or --log-file; '-' for stderr)")
    # A file another user left there (or may replace) would give them
    # the audit trail to read and to rewrite: root writes it, rotates
    # it and chmods it. A sticky directory such as /tmp is fine once the
    # file is root's own.
    fault = config.untrusted(path, info)
    if fault is not None:
        at, problem = fault
        raise ConfigError(
            f"log.file {at}: {problem}: refusing to write the audit trail "
            "where another user may change it; give a file in a "
            "directory only root may write ([log] file, or --log-file)")


def unconfigure(handler):
    for name in ("vmjobs", "workers"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def reopen():
    """Close our log files; the next line reopens each by its path (after
    logrotate moved it, say). Returns the paths."""
    paths = []
    for handler in logging.getLogger("vmjobs").handlers:
        if isinstance(handler, ConcurrentRotatingFileHandler):
            with handler.lock:   # no line is being written meanwhile
                if handler.stream is not None:
                    handler.stream.close()
                    handler.stream = None
            paths.append(handler.baseFilename)
    return paths
