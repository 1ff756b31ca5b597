"""Logging: concurrent-log-handler's rotating file (safe with several
processes on one file), every line of a job's work tagged with its job id
and vm id."""

import datetime
import logging
import os
import sys

from concurrent_log_handler import ConcurrentRotatingFileHandler

import workers

FORMAT = ("%(asctime)s %(levelname)-7s %(threadName)s %(name)s "
          "[job=%(job_id)s vm=%(vm_id)s] %(message)s")


class IsoFormatter(logging.Formatter):
    """ISO-8601 timestamps with the local offset, to the millisecond."""

    def formatTime(self, record, datefmt=None):
        return datetime.datetime.fromtimestamp(record.created).astimezone() \
            .isoformat(timespec="milliseconds")


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
    does not exist. Every process writing one log must give the same
    `lock_dir`, as they do by sharing a configuration."""
    if path == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        if lock_dir is not None:
            os.makedirs(lock_dir, mode=0o700, exist_ok=True)
        handler = ConcurrentRotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups,
            lock_file_directory=lock_dir)
    handler.setFormatter(IsoFormatter(FORMAT))
    handler.addFilter(JobContext())
    for name in ("vmjobs", "workers"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
    return handler


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
