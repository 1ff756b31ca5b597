"""The service's settings: defaults, INI files in the spirit of vdsm.conf
(/etc/vmjobs/vmjobs.conf, then vmjobs.conf.d/*.conf in name order), and
command-line flags, each overriding the one before.

Every key a file may hold is in SETTINGS (section, type, bounds, comment);
an unknown section or key, or a bad value, is reported with its file,
line, key and what is allowed, and the service does not start on it. Each
value remembers where it came from, for `vmjobs config --show`.
"""

import dataclasses
import glob
import os
import stat

from . import hostfiles
from .settings import ConfigError, Setting, parse_listen, read_ini

__all__ = ["Config", "ConfigError", "SETTINGS", "load", "load_text", "dump",
           "load_default", "parse_listen", "DEFAULT_PATH", "DEFAULT_URI"]

DEFAULT_PATH = "/etc/vmjobs/vmjobs.conf"
# The host's hypervisor, as libvirtd's and VDSM's own tools default to.
DEFAULT_URI = "qemu:///system"
# The host's own trees, which no image directory may hold (it may be
# inside one): what a guest would reach through a domain XML naming a
# file there.
HOST_TREES = (
    ("/etc", "the host's configuration"),
    ("/root", "root's home"),
    ("/boot", "the host's kernels"),
    ("/proc", "the host's processes"),
    ("/sys", "the host's kernel objects"),
    ("/var/lib/libvirt/qemu", "libvirt's state: each guest's firmware "
     "variables, master key, snapshots"),
    ("/run/libvirt", "libvirt's sockets and running state"),
    ("/etc/vmjobs", "vmjobs' configuration and keys"),
)
DEFAULT = "default"


def default_workers():   # measured: see Config.workers
    return 2 * (os.cpu_count() or 1)


@dataclasses.dataclass
class Config:
    # libvirt URI. None (from Python only: the load test, the tests) is a
    # private instance of the test driver; no file or flag can give it.
    uri: str | None = DEFAULT_URI
    # The guests' domain type: kvm, qemu (TCG) or test; empty: the fastest
    # the connection offers (kvm where available). Nested in a VM, as on
    # the machines measured here, an idle KVM guest costs about 8% of a
    # core and an idle TCG one well under 1%: qemu packs more tiny VMs.
    domain_type: str | None = None
    # Jobs running at once. Measured (docs/benchmarks.md, section 3, the
    # median of three rounds): 100 real VMs on 2 cores took 32.6 s with 1
    # worker, 23.2 with 2, 24.2 with 3, 23.2 with 4, 24.0 with 6 and 24.3
    # with 8; the best plain libvirt threads 23.4: two per core is as fast
    # as any, and the steadiest from round to round.
    workers: int = dataclasses.field(default_factory=default_workers)
    # Jobs waiting; more are refused at once with ResourceExhausted.
    queue_size: int = 1000
    # Startups (create, restore) at most an admission limit at once, moved
    # between 1 and `workers` by what it measures (workers.adaptive).
    adaptive: bool = False
    # A job running longer than this (seconds) is reported stuck.
    job_timeout: float = 600.0
    # Seconds recovery waits for a domain that libvirt is migrating or
    # saving to settle; past it that VM's recover job fails and the rest of
    # the host is served (docs/recovery.md).
    recovery_settle_timeout: float = 120.0
    # Ended jobs stay queryable this long (seconds), at most max_ended.
    autodelete_delay: float = 3600.0
    max_ended: int = 10000
    # Incoming migrations at once (incomingLimit's default and bound). A
    # parked migration holds no worker: this does not depend on `workers`.
    max_incoming: int = 2
    # Seconds an incoming migration may take to arrive.
    migration_destination_timeout: float = 21600.0
    # Outgoing migrations at once; more VM.migrate calls wait their turn,
    # parked (no worker held). The bound keeps the destinations' incoming
    # slots and the network from being flooded.
    max_outgoing: int = 2
    # Seconds an outgoing migration may take (VM.migrate's default
    # timeout): retrying a busy destination and the transfer itself.
    migration_source_timeout: float = 600.0
    # Where VM.migrate's dst and dstUri may name a unix socket (a second
    # host on this machine, as in the tests); none by default.
    migration_socket_dirs: list = dataclasses.field(default_factory=list)
    # Where VM.migrate's migrationUri may send a guest's memory besides
    # dstUri's own host: the destinations' migration networks (VDSM's
    # dstqemu), as CIDRs; none by default. And the ports it may name: the
    # destination libvirtd's migration ports (qemu.conf's migration_port_min
    # and _max, whose defaults these are).
    migration_networks: list = dataclasses.field(default_factory=list)
    migration_port_min: int = 49152
    migration_port_max: int = 49215
    # Seconds between safety-net lookups while waiting for an arrival (the
    # wait is driven by libvirt's events; this only covers a lost event).
    migration_check_interval: float = 1.0
    # JSON-RPC: unix:/path (only root reaches the default) or HOST:PORT,
    # which needs mutual TLS (tls_*), or `insecure` and a loopback address.
    listen: str = "unix:/run/vmjobs/vmjobs.sock"
    insecure: bool = False
    # A second listener serving GET /metrics and /healthz only, never a
    # verb: unix:/path (made 0666) or plain TCP on a loopback HOST:PORT.
    metrics_listen: str | None = None
    max_request_bytes: int = 4 * 1024 * 1024
    # Seconds a client may take to send its request (or the TLS handshake).
    request_timeout: float = 30.0
    # Connections served at once (at the cap the longest idle makes room).
    max_connections: int = 64
    max_batch: int = 100      # calls in a batch; the largest answer built:
    max_response_bytes: int = 16 * 1024 * 1024   # rpc.py
    events_buffer: int = 10_000   # GET /events: kept for Last-Event-ID
    max_subscribers: int = 16     # GET /events streams open at once
    # Mutual TLS: all three, or none.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    # The only directories a caller may name state files in
    # (hibernationVolHandle, restoreState), and the only ones a domain XML
    # may name host files (disks, kernels, sockets...) in.
    state_dirs: list = dataclasses.field(
        default_factory=lambda: ["/var/lib/vmjobs/states"])
    image_dirs: list = dataclasses.field(
        default_factory=lambda: ["/var/lib/vmjobs/images"])
    # The only hosts a network disk may name (the host connects to them on
    # the guest's behalf): none by default.
    network_hosts: list = dataclasses.field(default_factory=list)
    # On SIGTERM/SIGINT: abort what is queued and running (rolled back at
    # its next step) or drain it (what has not ended by the last minute of
    # stop_timeout is aborted then). Public VMs keep running either way.
    stop_mode: str = "abort"
    # Seconds a stop waits for the running jobs to reach a safe end; past
    # it the service exits with them still running (below the unit's
    # TimeoutStopSec, 15 min, so that systemd never kills it -9).
    stop_timeout: float = 840.0
    # Held while serving: a second service of the same libvirt refuses to
    # start. None: the hypervisor's own (instance_lock.default_path).
    lock_file: str | None = None
    # When the list verbs show a VM: at its job's commit, or (accept) once
    # its verb answered, with its staged status, as VDSM did before staging.
    publish: str = "commit"
    # Logging: a file path, "-" for stderr, None for no handler of ours.
    log_file: str | None = None
    log_level: str = "INFO"
    log_max_bytes: int = 20 * 1024 * 1024
    log_backups: int = 5
    # field -> where its value came from: FILE:LINE or "flag --x"; absent:
    # the default. The files read, in order (absent ones too).
    origins: dict = dataclasses.field(default_factory=dict, compare=False,
                                      repr=False)
    # A list key's field -> where each item came from (FILE:LINE).
    item_origins: dict = dataclasses.field(default_factory=dict,
                                           compare=False, repr=False)
    sources: list = dataclasses.field(default_factory=list, compare=False,
                                      repr=False)

    def origin(self, field):
        return self.origins.get(field, DEFAULT)

    def set_flag(self, field, value, flag):
        setattr(self, field, value)
        self.origins[field] = f"flag {flag}"
        self.item_origins.pop(field, None)

    def _refuse_overlapping_dirs(self):
        """State files and guests' disks apart: a guest writes its disk,
        and a disk named as a state file would have its bytes restored
        into QEMU (a hostile-caller audit, with both set to one dir).
        Migration sockets and guests' files apart too: a guest's chardev
        socket named as dst or dstUri made the service send the VM to the
        guest (a hostile-caller audit, round 7)."""
        for field, section_key, why in (
                ("state_dirs", "storage.state_dirs",
                 "keep state files apart from guests' disks"),
                ("migration_socket_dirs", "migration.socket_dirs",
                 "a socket in an image directory may be a guest's (a "
                 "chardev or console QEMU listens on), and VM.migrate "
                 "would send it the VM and take its answer for the "
                 "destination's")):
            for directory in getattr(self, field):
                for image_dir in self.image_dirs:
                    if hostfiles.overlapping(directory, image_dir):
                        raise ConfigError(
                            f"{self.origin(field)}, "
                            f"{self.origin('image_dirs')}: {section_key} "
                            f"{directory} and storage.image_dirs "
                            f"{image_dir} overlap: {why}")

    def _refuse_image_dirs_holding_the_hosts_own(self):
        """An image directory holds guests' files, never the host's own:
        one that holds a tree of HOST_TREES (`/`, `/var/lib/libvirt`,
        libvirt's state directory given whole, where an engine's channels
        need only its `channels/`) made every file there one a domain XML
        may name: another guest's firmware variables and master key, the
        host's configuration (a hostile-caller audit, round 9). One inside
        such a tree (libvirt's `channels/`) is the operator's choice."""
        for image_dir in self.image_dirs:
            for tree, what in HOST_TREES:
                # inside() resolves the image dir's symlinks itself.
                if hostfiles.inside(os.path.realpath(tree), [image_dir]):
                    raise ConfigError(
                        f"{self.origin('image_dirs')}: storage.image_dirs "
                        f"{image_dir} holds {tree} ({what}): a domain XML "
                        "could name any file there")

    def validate(self):
        for name, setting in SETTINGS_BY_FIELD.items():
            setting.check(getattr(self, name), self.origin(name))
        if len({self.tls_cert is None, self.tls_key is None,
                self.tls_ca is None}) != 1:
            where = ", ".join(sorted({self.origin(f) for f in (
                "tls_cert", "tls_key", "tls_ca")}))
            raise ConfigError(f"{where}: rpc.tls_cert, tls_key and tls_ca "
                              "go together: give all three or none")
        self._refuse_image_dirs_holding_the_hosts_own()
        self._refuse_overlapping_dirs()
        if self.migration_port_min > self.migration_port_max:
            raise ConfigError(
                f"{self.origin('migration_port_max')}: migration.port_max "
                f"= {self.migration_port_max} is below migration.port_min "
                f"= {self.migration_port_min}")
        try:
            parse_listen(self.listen)
        except ConfigError as exc:
            raise ConfigError(f"{self.origin('listen')}: rpc.{exc}") \
                from None
        if self.metrics_listen is not None:
            try:
                parse_listen(self.metrics_listen)
            except ConfigError as exc:
                raise ConfigError(f"{self.origin('metrics_listen')}: "
                                  f"rpc.metrics_{exc}") from None
        return self


SETTINGS = [
    Setting("pool", "workers", "workers", int, 1, 1024,
            comment="jobs running at once"),
    Setting("pool", "queue_size", "queue_size", int, 1, 10_000_000,
            comment="jobs waiting, of each priority (creations, restores, "
            "hibernations; migrations and recovery, which go first); more "
            "are refused at once (error 1100)"),
    Setting("pool", "adaptive", "adaptive", bool,
            comment="startups at most a measured limit at once"),
    Setting("libvirt", "uri", "uri", str,
            comment="libvirt URI; test:///default: the test driver, no real VM"),
    Setting("libvirt", "domain_type", "domain_type", str,
            choices=("kvm", "qemu", "test"), optional=True,
            comment="the guests' domain type; empty: the fastest offered"),
    Setting("jobs", "timeout", "job_timeout", float, 0,
            comment="seconds; a job running longer is reported stuck"),
    Setting("jobs", "autodelete_delay", "autodelete_delay", float, 0,
            comment="seconds an ended job stays queryable"),
    Setting("jobs", "max_ended", "max_ended", int, 0,
            comment="ended jobs kept at most"),
    Setting("recovery", "settle_timeout", "recovery_settle_timeout", float,
            0, comment="seconds recovery waits for a migrating or saving "
            "domain"),
    Setting("migration", "max_incoming", "max_incoming", int, 1,
            comment="incoming migrations at once (82 beyond)"),
    Setting("migration", "destination_timeout",
            "migration_destination_timeout", float, 0,
            comment="seconds an incoming migration may take to arrive"),
    Setting("migration", "max_outgoing", "max_outgoing", int, 1,
            comment="outgoing migrations at once (more wait their turn)"),
    Setting("migration", "source_timeout", "migration_source_timeout",
            float, 0, comment="seconds an outgoing migration may take"),
    Setting("migration", "check_interval", "migration_check_interval",
            float, 0.01,
            comment="safety-net lookup while waiting for an arrival"),
    Setting("migration", "socket_dirs", "migration_socket_dirs", list,
            optional=True,
            comment="where dst/dstUri may name a unix socket (none)"),
    Setting("migration", "networks", "migration_networks", list,
            optional=True, items="network",
            comment="networks (CIDR) migrationUri may name a host in, "
            "besides dstUri's host (none)"),
    Setting("migration", "port_min", "migration_port_min", int, 1, 65535,
            comment="the lowest port migrationUri may name"),
    Setting("migration", "port_max", "migration_port_max", int, 1, 65535,
            comment="the highest port migrationUri may name"),
    Setting("rpc", "listen", "listen", str,
            comment="unix:/path, or HOST:PORT (mutual TLS or insecure)"),
    Setting("rpc", "insecure", "insecure", bool,
            comment="plain TCP without TLS, on a loopback address only"),
    Setting("rpc", "metrics_listen", "metrics_listen", str, optional=True,
            comment="GET /metrics and /healthz only: unix:/path (0666) "
            "or loopback HOST:PORT"),
    Setting("rpc", "max_request_bytes", "max_request_bytes", int, 1,
            comment="larger request bodies are refused (413)"),
    Setting("rpc", "request_timeout", "request_timeout", float, 0.01,
            comment="seconds to send a request (and finish TLS)"),
    Setting("rpc", "max_connections", "max_connections", int, 1,
            comment="connections served at once"),
    Setting("rpc", "max_batch", "max_batch", int, 1,
            comment="calls in one batch; more: -32600, none runs"),
    Setting("rpc", "max_response_bytes", "max_response_bytes", int, 1024,
            comment="largest answer; calls past it answer -32603"),
    Setting("rpc", "tls_cert", "tls_cert", str, optional=True,
            comment="mutual TLS: the server's certificate"),
    Setting("rpc", "tls_key", "tls_key", str, optional=True,
            comment="its private key"),
    Setting("rpc", "tls_ca", "tls_ca", str, optional=True,
            comment="the CA a client's certificate must be signed by"),
    Setting("events", "buffer", "events_buffer", int, 1, 10_000_000,
            comment="notifications kept for Last-Event-ID"),
    Setting("events", "max_subscribers", "max_subscribers", int, 1,
            comment="GET /events streams open at once"),
    Setting("storage", "state_dirs", "state_dirs", list,
            comment="where hibernationVolHandle/restoreState may be"),
    Setting("storage", "image_dirs", "image_dirs", list,
            comment="where a domain XML may name host files"),
    Setting("storage", "network_hosts", "network_hosts", list,
            optional=True, items="host",
            comment="hosts a network disk may name, reached with this "
            "host's own identity (default none)"),
    Setting("registry", "publish", "publish", str,
            choices=("commit", "accept"),
            comment="accept: list a VM, staged, once its verb answered"),
    Setting("service", "stop_mode", "stop_mode", str,
            choices=("drain", "abort"),
            comment="on SIGTERM: abort or drain the jobs"),
    Setting("service", "stop_timeout", "stop_timeout", float, 0,
            comment="seconds a stop waits for running jobs"),
    Setting("service", "lock_file", "lock_file", str, optional=True,
            comment="held (flock) while serving: one service per libvirt; "
            "empty: the URI's own in /run/vmjobs (none: test:///)"),
    Setting("log", "file", "log_file", str, optional=True,
            comment="empty or '-': stderr"),
    Setting("log", "level", "log_level", str,
            choices=("DEBUG", "INFO", "WARNING", "ERROR"),
            comment="the least severe level logged"),
    Setting("log", "max_bytes", "log_max_bytes", int, 1024,
            comment="the log file is rotated at this size"),
    Setting("log", "backups", "log_backups", int, 0,
            comment="rotated log files kept"),
]
SETTINGS_BY_FIELD = {s.field: s for s in SETTINGS}
_BY_SECTION: dict[str, dict[str, Setting]] = {}
for _s in SETTINGS:
    _BY_SECTION.setdefault(_s.section, {})[_s.key] = _s


def load(path, config=None):
    """`config` (default: the defaults) updated from the INI file `path`,
    which must be trusted (check_trusted)."""
    try:
        with open(path) as f:
            check_trusted(path, os.fstat(f.fileno()))
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; give a "
                          "readable file to --config") from None
    except UnicodeDecodeError as exc:
        # Without this the error named no file (an operator audit).
        line = exc.object[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte "
                          f"0x{exc.object[exc.start]:02x}); a "
                          "configuration is a text file") from None
    return load_text(text, config, path)


def check_trusted(path, info):
    """The service runs as root with what the file says (the libvirt URI,
    the directories callers are confined to, the listener): a file, or
    the directory it is in, that a user other than root (or the one
    running vmjobs) may change would make that user root. Such a file is
    refused, as sshd's StrictModes does (an operator audit found a
    world-writable vmjobs.conf read silently). What is not a regular file
    (/dev/null, a pipe of the shell's) holds no text another user left."""
    if not stat.S_ISREG(info.st_mode):
        return
    fault = untrusted(path, info)
    if fault is not None:
        path, problem = fault
        raise ConfigError(
            f"{path}: {problem}: refusing to read a configuration that "
            "another user may change (the service runs as root with it); "
            f"make it root's alone (chown root {path}; chmod go-w {path})")


def untrusted(path, info):
    """(the path at fault, why) if a user other than root (or the one
    running vmjobs) may change the file `path`, whose stat is `info`, or
    replace it in its directory (one that others may write and that is
    not sticky, as /tmp is); None if only root may."""
    problem = _untrusted(info)
    if problem is not None:
        return path, problem
    directory = os.path.dirname(os.path.abspath(path))
    directory_info = os.stat(directory)
    problem = _writable_by_others(directory_info)
    if problem is not None and not directory_info.st_mode & stat.S_ISVTX:
        return directory, "a directory " + problem
    return None


def _untrusted(info):
    if info.st_uid not in (0, os.geteuid()):
        return f"owned by uid {info.st_uid}, neither root nor this user"
    return _writable_by_others(info)


def _writable_by_others(info):
    """Why others may write the file or directory of `info`, or None. A
    group that is root's or this process' own adds no one."""
    mode = stat.S_IMODE(info.st_mode)
    if mode & stat.S_IWOTH:
        return f"writable by every user (mode {mode:04o})"
    if mode & stat.S_IWGRP and info.st_gid not in (0, os.getegid()):
        return f"writable by group {info.st_gid} (mode {mode:04o})"
    return None


def load_default(path=DEFAULT_PATH, config=None):
    """The defaults, updated by `path` if it exists, then by each
    PATH.d/*.conf in name order (as vdsm.conf and vdsm.conf.d)."""
    config = config or Config()
    if os.path.exists(path):
        config = load(path, config)
    else:
        config.sources.append(f"{path} (absent)")
    extras = sorted(glob.glob(os.path.join(path + ".d", "*.conf")))
    if not extras:
        config.sources.append(f"{path}.d/*.conf (none)")
    for extra in extras:
        config = load(extra, config)
    return config.validate()


def load_text(text, config=None, path="<config>"):
    config = config or Config()
    config.sources.append(path)
    seen = {}   # field -> line number, in this file
    for section, key, value, number in read_ini(text, path):
        keys = _BY_SECTION.get(section)
        if keys is None:
            raise ConfigError(f"{path}:{number}: unknown section "
                              f"[{section}] (known: {', '.join(_BY_SECTION)})")
        if key is None:
            continue
        setting = keys.get(key)
        if setting is None:
            raise ConfigError(f"{path}:{number}: unknown key {key!r} in "
                              f"[{section}] (known: {', '.join(keys)})")
        where = f"{path}:{number}"
        parsed = setting.parse(value, where)
        if setting.repeatable:
            if setting.field not in seen:   # this file replaces the list
                setattr(config, setting.field, [])
                config.item_origins[setting.field] = []
            config.item_origins[setting.field] += [where] * len(parsed)
            parsed = getattr(config, setting.field) + parsed
        elif setting.field in seen:
            raise ConfigError(f"{where}: {setting.name} is set twice in "
                              f"this file (line {seen[setting.field]} too)")
        seen[setting.field] = number
        setattr(config, setting.field, parsed)
        config.origins[setting.field] = where
    return config.validate()


def dump(config):
    """The effective configuration as an INI text that load() reads back:
    every key, its value, where the value came from and what it is."""
    lines = [f"; read: {', '.join(config.sources) or '(no file)'}"]
    for section, keys in _BY_SECTION.items():
        lines.append(f"[{section}]")
        for key, setting in keys.items():
            value = getattr(config, setting.field)
            values = value if setting.repeatable else [value]
            origin = config.origin(setting.field)
            if setting.field == "workers" and origin == DEFAULT:
                origin += f": 2 x {os.cpu_count()} cores"
            lines_of = config.item_origins.get(setting.field, [])
            for number, item in enumerate(values or [""]):
                item = str(item).lower() if isinstance(item, bool) else item
                origin = lines_of[number] if number < len(lines_of) \
                    else origin   # a list's item: its own line
                assignment = f"{key} = {'' if item is None else item}"
                lines.append(f"{assignment:<32} ; [{origin}] "
                             f"{setting.comment}")
        lines.append("")
    return "\n".join(lines)
