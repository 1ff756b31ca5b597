"""The Debian package: `make deb` builds it offline from Debian's own
packages; it holds the command, the unit (with the paths it installs),
the man pages, the example configuration, the bash completion and the
logrotate file; lintian finds nothing but what debian/ explains. Then,
installed into a scratch root: the command runs (`vmjobs --version`,
`vmjobs config --show` on the shipped configuration, with Debian's own
python3 and its packaged dependencies) and `systemd-analyze verify`
accepts the installed unit."""

import glob
import os
import shutil
import subprocess

import pytest

from serve import ROOT
from vmjobs import __version__, config

NEEDED = ("dpkg-buildpackage", "dh", "systemd-analyze", "lintian")
missing = [tool for tool in NEEDED if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(
    bool(missing) and not os.environ.get("CI"),
    reason=f"not installed: {', '.join(missing)} (`make test` installs "
    "them; on CI they must be there)")

# Debian's python3, not another one earlier on PATH.
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def deb():
    result = subprocess.run(["make", "-s", "deb"], cwd=ROOT,
                            stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    path = os.path.join(ROOT, "build", "deb", f"vmjobs_{__version__}_all.deb")
    assert os.path.exists(path), os.listdir(os.path.dirname(path))
    return path


@pytest.fixture(scope="module")
def root(deb, tmp_path_factory):
    """The package unpacked into a scratch root, with what systemd-analyze
    needs of a system beside it (the host's targets, kill)."""
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True)
    units = root / "lib" / "systemd" / "system"
    for target in glob.glob("/lib/systemd/system/*.target"):
        shutil.copy(target, units)
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy("/bin/kill", root / "bin" / "kill")
    return root


def test_package_holds_what_an_operator_needs(deb):
    listing = subprocess.run(["dpkg-deb", "-c", deb], check=True,
                             capture_output=True, text=True).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for path in ("/usr/bin/vmjobs",
                 "/lib/systemd/system/vmjobs.service",
                 "/usr/share/man/man8/vmjobs.8.gz",
                 "/usr/share/man/man5/vmjobs.conf.5.gz",
                 "/etc/vmjobs/vmjobs.conf",
                 "/usr/share/bash-completion/completions/vmjobs",
                 "/etc/logrotate.d/vmjobs",
                 "/usr/share/doc/vmjobs/README.md.gz",
                 "/usr/share/doc/vmjobs/copyright",
                 "/usr/share/doc/vmjobs/examples/vmjobs.rules.yml",
                 "/usr/share/doc/vmjobs/examples/grafana-dashboard.json",
                 "/usr/lib/python3/dist-packages/vmjobs/service.py",
                 "/usr/lib/python3/dist-packages/workers/pool.py",
                 "/var/lib/vmjobs/states/", "/var/lib/vmjobs/images/"):
        assert path in files, path
    modes = {line.split()[-1].lstrip("."): line.split()[0]
             for line in listing.splitlines()}
    assert modes["/var/lib/vmjobs/states/"] == "drwx------"
    assert modes["/var/lib/vmjobs/images/"] == "drwx--x--x"
    fields = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], check=True,
                            capture_output=True, text=True).stdout
    # Debian's own packages, not a bundled copy.
    for package in ("python3-libvirt", "python3-defusedxml",
                    "python3-portalocker",
                    "python3-prometheus-client",
                    "python3-concurrent-log-handler"):
        assert package in fields


def test_lintian_is_clean_but_for_what_debian_explains(deb):
    changes = glob.glob(os.path.join(os.path.dirname(deb), "*.changes"))[0]
    result = subprocess.run(["lintian", "--fail-on", "error,warning",
                             changes], capture_output=True, text=True,
                            timeout=600)
    tags = [line for line in result.stdout.splitlines()
            if line[:2] in ("E:", "W:")]
    assert result.returncode == 0 and not tags, result.stdout


def test_installed_command_runs_on_debians_python(root):
    env = dict(os.environ, PATH=DEBIAN_PATH, PYTHONPATH=str(
        root / "usr" / "lib" / "python3" / "dist-packages"))
    env.pop("VIRTUAL_ENV", None)
    command = str(root / "usr" / "bin" / "vmjobs")
    with open(command) as f:
        assert f.readline().strip() == "#!/usr/bin/python3"
    version = subprocess.run([command, "--version"], env=env, cwd="/",
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"vmjobs {__version__}"
    conf = str(root / "etc" / "vmjobs" / "vmjobs.conf")
    shown = subprocess.run([command, "config", "--show", "--config", conf],
                           env=env, cwd="/", capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert f"; read: {conf}" in shown.stdout
    assert f"uri = {config.DEFAULT_URI}" in shown.stdout


def test_systemd_analyze_verify_accepts_the_installed_unit(root):
    def verify():
        return subprocess.run(
            ["systemd-analyze", "verify", "--man=no", f"--root={root}",
             "/lib/systemd/system/vmjobs.service"],
            capture_output=True, text=True, timeout=60)
    result = verify()
    assert result.returncode == 0 and result.stderr == "", result.stderr
    unit = (root / "lib/systemd/system/vmjobs.service").read_text()
    assert "ExecStart=/usr/bin/vmjobs serve\n" in unit
    assert "Documentation=man:vmjobs(8) man:vmjobs.conf(5)\n" in unit
    for hardening in ("UMask=0077", "LogsDirectoryMode=0700",
                      "NoNewPrivileges=yes"):
        assert f"{hardening}\n" in unit
    # Negative control: a unit whose ExecStart is not installed is refused
    # (as the old /usr/local/bin one was).
    command = root / "usr" / "bin" / "vmjobs"
    command.rename(root / "usr" / "bin" / "vmjobs.moved")
    try:
        refused = verify()
    finally:
        (root / "usr" / "bin" / "vmjobs.moved").rename(command)
    assert refused.returncode != 0
    assert "/usr/bin/vmjobs is not executable" in refused.stderr


def test_the_units_commands_are_the_packages_or_its_dependencies(deb, root):
    """Every program the installed unit runs (ExecStart=, ExecReload=...)
    is shipped by the package or by a package it depends on: a fresh
    Debian lacked procps, whose /bin/kill the unit's reload runs (so
    `systemctl reload vmjobs`, and logrotate's postrotate, would fail)."""
    listing = subprocess.run(["dpkg-deb", "-c", deb], check=True,
                             capture_output=True, text=True).stdout
    shipped = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    depends = {entry.split()[0] for entry in subprocess.run(
        ["dpkg-deb", "-f", deb, "Depends"], check=True, capture_output=True,
        text=True).stdout.replace("|", ",").split(",") if entry.strip()}
    unit = (root / "lib/systemd/system/vmjobs.service").read_text()
    programs = [line.partition("=")[2].split()[0].lstrip("-@:+!")
                for line in unit.splitlines() if line.startswith("Exec")]
    assert "/usr/bin/vmjobs" in programs and len(programs) >= 2
    for program in programs:
        if program in shipped:
            continue
        owner = subprocess.run(["dpkg", "-S", program], capture_output=True,
                               text=True)
        assert owner.returncode == 0, owner.stderr
        package = owner.stdout.partition(":")[0]
        assert package in depends, (program, package, sorted(depends))


HARDENING = ("ProtectSystem=full", "ProtectKernelTunables=yes",
             "ProtectKernelModules=yes", "ProtectControlGroups=yes",
             "RestrictSUIDSGID=yes", "RestrictNamespaces=yes",
             "LockPersonality=yes", "SystemCallArchitectures=native",
             "LimitNOFILE=65536")


def exposure(root):
    """systemd-analyze security's overall exposure of the installed unit
    (0 safest, 10 the least)."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--root={root}",
         "--no-pager", "/lib/systemd/system/vmjobs.service"],
        capture_output=True, text=True, timeout=60)
    line = [line for line in result.stdout.splitlines()
            if "Overall exposure level" in line]
    assert line, result.stdout + result.stderr
    return float(line[0].split(":")[1].split()[0])


def test_the_unit_is_hardened_without_cutting_libvirt_off(root, tmp_path):
    """An operator audit found the unit at 9.4 (UNSAFE): root with the
    whole system writable and every kernel interface open. It keeps
    what libvirt access needs (no PrivateNetwork, /run/libvirt
    reachable, AF_UNIX and AF_INET allowed) and is below 7."""
    unit_path = root / "lib/systemd/system/vmjobs.service"
    unit = unit_path.read_text()
    for line in HARDENING:
        assert f"\n{line}\n" in unit, line
    settings = [line for line in unit.splitlines()
                if line and not line.startswith("#")]
    for cut_off in ("PrivateNetwork=", "PrivateDevices=",
                    "InaccessiblePaths=", "ProtectSystem=strict", "User=",
                    "ProtectHome=", "PrivateTmp="):
        assert not any(line.startswith(cut_off) for line in settings)
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in unit
    # Each setting once (a merge had written the hardening block twice).
    keys = [line.partition("=")[0] for line in settings if "=" in line]
    assert len(keys) == len(set(keys)), sorted(
        k for k in set(keys) if keys.count(k) > 1)
    assert exposure(root) < 7.0
    # The control: the same unit without the hardening is scored UNSAFE.
    bare = root.parent / (root.name + "-bare")
    shutil.copytree(root, bare, symlinks=True)
    kept = [line for line in unit.splitlines()
            if not line.startswith(("Protect", "Restrict", "Lock",
                                    "SystemCall", "LimitNOFILE"))]
    (bare / "lib/systemd/system/vmjobs.service").write_text(
        "\n".join(kept) + "\n")
    assert exposure(bare) >= 9.0


def listing_modes(deb):
    listing = subprocess.run(["dpkg-deb", "-c", deb], check=True,
                             capture_output=True, text=True).stdout
    return {line.split()[-1].lstrip("."): line.split()[0]
            for line in listing.splitlines()}


def test_the_log_directory_is_shipped_root_s_alone(deb):
    """An operator audit found /var/log/vmjobs shipped 0755: every user
    could list it (and read a log a tool made there with the default
    umask) until the unit's LogsDirectoryMode=0700 first ran, and
    `vmjobs serve` run by hand never ran it."""
    modes = listing_modes(deb)
    assert modes["/var/log/vmjobs/"] == "drwx------"
    # The control: the directories others must reach stay reachable.
    assert modes["/var/lib/vmjobs/images/"] == "drwx--x--x"
    assert modes["/etc/vmjobs/"] == "drwxr-xr-x"


def run_postrm(deb, tmp_path, action, dpkg_root):
    """The package's postrm with `action`, on the scratch root
    `dpkg_root` (DPKG_ROOT), with systemctl and deb-systemd-helper
    stubbed out: this host's systemd state is left alone."""
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", deb, str(control)], check=True)
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    for stub in ("systemctl", "deb-systemd-helper", "deb-systemd-invoke"):
        (stubs / stub).write_text("#!/bin/sh\nexit 0\n")
        (stubs / stub).chmod(0o755)
    return subprocess.run(
        ["sh", str(control / "postrm"), action],
        env={"PATH": f"{stubs}:{DEBIAN_PATH}", "DPKG_ROOT": str(dpkg_root)},
        capture_output=True, text=True, timeout=60)


def installed_with_data(tmp_path):
    """A scratch root as a host has it after a while: logs, a state file,
    a guest's image, a log directory moved elsewhere by a symlink."""
    host = tmp_path / "host"
    for path, text in (("var/log/vmjobs/vmjobs.log", "audit\n"),
                       ("var/log/vmjobs/vmjobs.log.1", "older\n"),
                       ("var/lib/vmjobs/states/vm.state", "memory\n"),
                       ("var/lib/vmjobs/images/disk.qcow2", "disk\n")):
        (host / path).parent.mkdir(parents=True, exist_ok=True)
        (host / path).write_text(text)
    return host


def test_purge_removes_the_logs_and_never_guests_data(deb, tmp_path):
    """An operator audit found purge left /var/log/vmjobs and its logs
    (Debian Policy 10.8: log files go at purge). Guests' state files and
    images stay: they are the VMs' data."""
    host = installed_with_data(tmp_path)
    # The control: remove (not purge) keeps the logs.
    result = run_postrm(deb, tmp_path, "remove", host)
    assert result.returncode == 0, result.stderr
    assert (host / "var/log/vmjobs/vmjobs.log").read_text() == "audit\n"
    result = run_postrm(deb, tmp_path, "purge", host)
    assert result.returncode == 0, result.stderr
    assert not (host / "var/log/vmjobs").exists()
    assert (host / "var/lib/vmjobs/states/vm.state").read_text() == \
        "memory\n"
    assert (host / "var/lib/vmjobs/images/disk.qcow2").read_text() == \
        "disk\n"


def test_purge_does_not_follow_a_symlinked_log_directory(deb, tmp_path):
    host = installed_with_data(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kept").write_text("not ours\n")
    log_dir = host / "var/log/vmjobs"
    shutil.rmtree(log_dir)
    log_dir.symlink_to(elsewhere)
    result = run_postrm(deb, tmp_path, "purge", host)
    assert result.returncode == 0, result.stderr
    assert not os.path.lexists(log_dir)
    assert (elsewhere / "kept").read_text() == "not ours\n"


def gives_up_within_the_start_limit(unit):
    """Whether systemd's start limit (StartLimitBurst=5 starts within
    StartLimitIntervalSec=10 s, its defaults, unless the unit sets them)
    stops the restarts of a service that fails at once, RestartSec apart
    (default 100 ms)."""
    def value(key, default):
        for line in unit.splitlines():
            if line.startswith(key + "="):
                return line.split("=", 1)[1]
        return default

    def seconds(text):
        return float(text[:-2]) / 1000 if text.endswith("ms") else \
            float(text.rstrip("s"))
    burst = int(value("StartLimitBurst", "5"))
    interval = seconds(value("StartLimitIntervalSec", "10s"))
    restart = seconds(value("RestartSec", "100ms"))
    return (burst - 1) * restart <= interval


def test_a_service_that_fails_at_start_is_retried_not_given_up(root):
    """An operator audit: `listen` on an address not configured yet (at
    boot, network.target does not wait for addresses) or libvirtd not
    answering yet makes `vmjobs serve` exit 2 at once; with
    Restart=on-failure and systemd's default RestartSec=100ms, five
    tries within 10 s hit the start limit and the service stayed down."""
    unit = (root / "lib/systemd/system/vmjobs.service").read_text()
    assert "\nRestart=on-failure\n" in unit
    assert not gives_up_within_the_start_limit(unit)
    # The control: the same unit at systemd's default RestartSec.
    bare = "\n".join(line for line in unit.splitlines()
                     if not line.startswith("RestartSec="))
    assert gives_up_within_the_start_limit(bare)
