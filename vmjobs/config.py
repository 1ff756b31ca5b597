"""The service's settings: defaults, an INI file in the spirit of
vdsm.conf, and command-line flags, each overriding the one before.

Every key the file may hold is in SETTINGS, with its section, type and
bounds; an unknown section or key, or a bad value, is reported by name and
the service does not start on it.
"""

import configparser
import dataclasses
import os


class ConfigError(ValueError):
    pass


@dataclasses.dataclass
class Config:
    # libvirt URI; None: a private instance of libvirt's test driver.
    uri: str | None = None
    # The guests' domain type: kvm, qemu (TCG) or test; empty: the fastest
    # the connection offers (kvm where available). Nested in a VM, as on
    # the machines measured here, an idle KVM guest costs about 8% of a
    # core and an idle TCG one well under 1%: qemu packs more tiny VMs.
    domain_type: str | None = None
    # Jobs running at once. Measured (docs/benchmarks.md, real storm): 100
    # real VMs on 2 cores took 57 s with 1 worker, 34 s with 2, 32 s with 4
    # (the CPU bound is 30 s) and 38 s with 8: about two per core is
    # fastest; more only makes libvirtd and QEMU fight for the cores.
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
    # JSON-RPC: unix:/path (only root reaches the default) or HOST:PORT,
    # which needs mutual TLS (tls_*), or `insecure` and a loopback address.
    listen: str = "unix:/run/vmjobs/vmjobs.sock"
    insecure: bool = False
    max_request_bytes: int = 4 * 1024 * 1024
    # Seconds a client may take to send its request (or the TLS handshake).
    request_timeout: float = 30.0
    # Connections served at once; more are refused (503) at once.
    max_connections: int = 64
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
    # On SIGTERM/SIGINT: abort what is queued and running (rolled back at
    # its next step) or drain it. Public VMs keep running either way.
    stop_mode: str = "abort"
    # When the list verbs show a VM: at its job's commit, or (accept) as
    # soon as its verb answered, with its staged status, as VDSM did
    # before the staging area. Nothing else differs (API.md "Publish mode").
    publish: str = "commit"
    # Logging: a file path, "-" for stderr, None for no handler of ours.
    log_file: str | None = None
    log_level: str = "INFO"
    log_max_bytes: int = 20 * 1024 * 1024
    log_backups: int = 5

    def validate(self):
        for name, setting in SETTINGS_BY_FIELD.items():
            setting.check(getattr(self, name))
        if len({self.tls_cert is None, self.tls_key is None,
                self.tls_ca is None}) != 1:
            raise ConfigError("rpc: tls_cert, tls_key and tls_ca go "
                              "together: give all three or none")
        parse_listen(self.listen)
        return self


_KIND_NAMES = {int: "an integer", float: "a number", str: "text",
               bool: "true or false", list: "a list of absolute paths"}
_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True,
             "false": False, "no": False, "off": False, "0": False}


def _parse_bool(text):
    try:
        return _BOOLEANS[text.lower()]
    except KeyError:
        raise ValueError(text) from None


def _parse_paths(text):
    """Paths one per line or separated by commas."""
    return [p.strip() for p in text.replace(",", "\n").splitlines()
            if p.strip()]


_PARSERS = {bool: _parse_bool, list: _parse_paths}


@dataclasses.dataclass(frozen=True)
class Setting:
    section: str
    key: str
    field: str
    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    optional: bool = False   # may be empty (None)

    @property
    def name(self):
        return f"{self.section}.{self.key}"

    def parse(self, text):
        text = text.strip()
        if self.optional and text == "":
            return None
        try:
            value = _PARSERS.get(self.kind, self.kind)(text)
        except ValueError:
            raise ConfigError(f"{self.name}: {text!r} is not "
                              f"{_KIND_NAMES[self.kind]}") from None
        self.check(value)
        return value

    def check(self, value):
        if value is None:
            if self.optional:
                return
            raise ConfigError(f"{self.name}: a value is required")
        if self.kind in (int, float) and (
                isinstance(value, bool) or
                not isinstance(value, (int, float))):
            raise ConfigError(f"{self.name}: {value!r} is not a number")
        if self.low is not None and value < self.low:
            raise ConfigError(f"{self.name}: {value} is below {self.low}")
        if self.high is not None and value > self.high:
            raise ConfigError(f"{self.name}: {value} is above {self.high}")
        if self.kind is bool and not isinstance(value, bool):
            raise ConfigError(f"{self.name}: {value!r} is not true or false")
        if self.kind is list and (
                not isinstance(value, (list, tuple)) or not value or
                not all(isinstance(p, str) and os.path.isabs(p)
                        for p in value)):
            raise ConfigError(f"{self.name}: {value!r} is not a list of "
                              "absolute paths")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{self.name}: {value!r} is not one of "
                              f"{', '.join(self.choices)}")


SETTINGS = [
    Setting("pool", "workers", "workers", int, 1, 1024),
    Setting("pool", "queue_size", "queue_size", int, 1, 10_000_000),
    Setting("libvirt", "uri", "uri", str, optional=True),
    Setting("libvirt", "domain_type", "domain_type", str,
            choices=("kvm", "qemu", "test"), optional=True),
    Setting("jobs", "timeout", "job_timeout", float, 0),
    Setting("jobs", "autodelete_delay", "autodelete_delay", float, 0),
    Setting("jobs", "max_ended", "max_ended", int, 0),
    Setting("migration", "max_incoming", "max_incoming", int, 1),
    Setting("migration", "destination_timeout",
            "migration_destination_timeout", float, 0),
    Setting("migration", "check_interval", "migration_check_interval",
            float, 0.01),
    Setting("rpc", "listen", "listen", str),
    Setting("rpc", "insecure", "insecure", bool),
    Setting("rpc", "max_request_bytes", "max_request_bytes", int, 1),
    Setting("rpc", "request_timeout", "request_timeout", float, 0.01),
    Setting("rpc", "max_connections", "max_connections", int, 1),
    Setting("rpc", "tls_cert", "tls_cert", str, optional=True),
    Setting("rpc", "tls_key", "tls_key", str, optional=True),
    Setting("rpc", "tls_ca", "tls_ca", str, optional=True),
    Setting("storage", "state_dirs", "state_dirs", list),
    Setting("storage", "image_dirs", "image_dirs", list),
    Setting("registry", "publish", "publish", str,
            choices=("commit", "accept")),
    Setting("service", "stop_mode", "stop_mode", str,
            choices=("drain", "abort")),
    Setting("log", "file", "log_file", str, optional=True),
    Setting("log", "level", "log_level", str,
            choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    Setting("log", "max_bytes", "log_max_bytes", int, 1024),
    Setting("log", "backups", "log_backups", int, 0),
]
SETTINGS_BY_FIELD = {s.field: s for s in SETTINGS}
_BY_SECTION = {}
for _s in SETTINGS:
    _BY_SECTION.setdefault(_s.section, {})[_s.key] = _s


def parse_listen(text):
    """'HOST:PORT' -> ('tcp', (host, port)); 'unix:/path' -> ('unix', path)."""
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not os.path.isabs(path):
            raise ConfigError(f"listen {text!r}: the socket path must be "
                             "absolute")
        return "unix", path
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen {text!r}: expected HOST:PORT or "
                         "unix:/path")
    return "tcp", (host.strip("[]") or "127.0.0.1", int(port))


def load(path, config=None):
    """`config` (default: the defaults) updated from the INI file `path`."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return load_text(text, config, path)


def load_text(text, config=None, path="<config>"):
    config = config or Config()
    parser = configparser.ConfigParser(interpolation=None,
                                       default_section="__no_defaults__")
    try:
        parser.read_string(text, source=path)
    except configparser.Error as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for section in parser.sections():
        keys = _BY_SECTION.get(section)
        if keys is None:
            raise ConfigError(f"{path}: unknown section [{section}] "
                              f"(known: {', '.join(_BY_SECTION)})")
        for key, text in parser.items(section):
            setting = keys.get(key)
            if setting is None:
                raise ConfigError(f"{path}: unknown key {key!r} in "
                                  f"[{section}] (known: {', '.join(keys)})")
            setattr(config, setting.field, setting.parse(text))
    return config.validate()


def dump(config):
    """The effective configuration as an INI text that load() reads back."""
    lines = []
    for section, keys in _BY_SECTION.items():
        lines.append(f"[{section}]")
        for key, setting in keys.items():
            value = getattr(config, setting.field)
            if isinstance(value, list):
                value = ", ".join(value)
            lines.append(f"{key} = {'' if value is None else value}")
        lines.append("")
    return "\n".join(lines)
