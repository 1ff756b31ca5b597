"""The service's settings and their defaults."""

import dataclasses


@dataclasses.dataclass
class Config:
    # libvirt URI; None: a private instance of libvirt's test driver.
    uri: str | None = None
    # Jobs running at once. Each startup is mostly waiting on libvirt and
    # QEMU; past a few per core a host gains nothing but contention.
    workers: int = 4
    # Jobs waiting; more are refused at once with ResourceExhausted.
    queue_size: int = 1000
    # A job running longer than this (seconds) is reported stuck.
    job_timeout: float = 600.0
    # Ended jobs stay queryable this long (seconds), at most max_ended.
    autodelete_delay: float = 3600.0
    max_ended: int = 10000
    # Incoming migrations at once (VM.migrationCreate's incomingLimit
    # default); each holds a worker while it waits, so keep it below
    # `workers`.
    max_incoming: int = 2
    # Seconds an incoming migration may take to arrive.
    migration_destination_timeout: float = 21600.0
    # Seconds between safety-net lookups while waiting for an arrival (the
    # wait is driven by libvirt's events; this only covers a lost event).
    migration_check_interval: float = 1.0
    # Logging: a file path, "-" for stderr, None for no handler of ours.
    log_file: str | None = None
    log_level: str = "INFO"
    log_max_bytes: int = 20 * 1024 * 1024
    log_backups: int = 5
