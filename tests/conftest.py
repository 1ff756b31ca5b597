"""Shared fixtures: a vmjobs API on a private instance of libvirt's test
driver (a `test:///<file>` host of its own per test), and the checks every
test ends with."""

import hashlib
import os
import stat
import threading
import uuid

import pytest

from vmjobs import domxml, rundir
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.hypervisor import Hypervisor
from workers import Job

# The real-daemon fixtures (daemon, daemon_b, make_real_api).
pytest_plugins = ["realdaemon"]

WAIT = 60   # seconds: a bound on event waits, never a sleep


# Figures the reliability tests gather, printed at the end of the run.
_FIGURES = {"fault points": set(), "crash repetitions": 0,
            "stateful runs": 0}


@pytest.fixture(scope="session")
def reliability_figures():
    return _FIGURES


def pytest_terminal_summary(terminalreporter):
    if _FIGURES["fault points"] or _FIGURES["crash repetitions"]:
        terminalreporter.write_line(
            f"reliability: {len(_FIGURES['fault points'])} distinct fault "
            f"points exercised, {_FIGURES['crash repetitions']} crash "
            "repetitions (kill -9, restart, recovery)")


@pytest.fixture
def run_dirs(tmp_path, monkeypatch):
    """(run, shared): the run directory (rundir.RUN_DIR, moved under
    tmp_path) there before the start and 1777, as a tmpfs mounted over
    /run/vmjobs is; and another existing directory, 0755 (as /tmp may
    be), which the service must leave as it is."""
    run, shared = tmp_path / "run", tmp_path / "shared"
    run.mkdir()
    run.chmod(0o1777)
    shared.mkdir()
    shared.chmod(0o755)
    monkeypatch.setattr(rundir, "RUN_DIR", str(run))
    return run, shared


def new_id():
    return str(uuid.uuid4())


def vm_params(vm_id, **extra):
    params = {"vmId": vm_id, "vmName": f"vm-{vm_id[:8]}", "memSize": 64}
    params.update(extra)
    return params


@pytest.fixture
def hypervisor():
    with Hypervisor() as hv:
        yield hv


# The publish modes (API.md "Publish mode"). A test module marked
# `both_publish_modes` runs each of its tests that uses make_api (or api)
# once per mode: the contract is the same in both, but for when the list
# verbs start showing a VM.
PUBLISH_MODES = ("commit", "accept")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "both_publish_modes: run the test once per publish "
        "mode (registry.publish = commit, accept)")


def pytest_generate_tests(metafunc):
    if "publish" in metafunc.fixturenames and \
            metafunc.definition.get_closest_marker("both_publish_modes"):
        metafunc.parametrize("publish", PUBLISH_MODES, indirect=True)


@pytest.fixture
def publish(request):
    """The publish mode make_api's APIs run in: the default (commit), or
    each mode in turn for a test marked both_publish_modes."""
    return getattr(request, "param", "commit")


@pytest.fixture
def make_api(hypervisor, tmp_path, publish):
    """make_api(**config) -> an API on the test's private test driver, its
    state files and migration sockets confined to the test's tmp_path, in the test's publish
    mode."""
    apis = []

    def make(step_hook=None, hv=None, **config):
        config.setdefault("workers", 4)
        config.setdefault("state_dirs", [str(tmp_path)])
        # Where VM.migrate's dst and dstUri may name unix sockets: the
        # test's other hosts listen in tmp_path.
        config.setdefault("migration_socket_dirs", [str(tmp_path)])
        config.setdefault("publish", publish)
        api = API(Config(**config), hypervisor=hv or hypervisor,
                  step_hook=step_hook)
        apis.append(api)
        return api

    yield make
    for api in apis:
        api.close()


@pytest.fixture
def api(make_api):
    return make_api()


def wait_job(api, job_id):
    job = api.jobs.get(job_id)
    assert job.wait(WAIT), f"job {job_id} did not end"
    return api.Host.getJobs(job_ids=[job_id])[job_id]


def our_domains(hv):
    return [d for d in hv.list_domains(domxml.METADATA_NS)
            if d.metadata is not None]


def files_of(*directories):
    """Every file and directory under `directories`: {path: (kind, inode,
    mtime, size, checksum)}, to show that a refused request touched none
    (equal before and after)."""
    files = {}
    for d in directories:
        for root, dirs, names in os.walk(d):
            for name in dirs + names:
                path = os.path.join(root, name)
                st = os.lstat(path)
                digest = None
                if stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()
                files[path] = (stat.S_IFMT(st.st_mode), st.st_ino,
                               st.st_mtime_ns, st.st_size, digest)
    return files


def assert_quiet_and_clean(api):
    """Nothing staged, nothing in libvirt that is not public, no VM in both
    registries."""
    assert api.pool.wait_idle(WAIT)
    assert api.registry.snapshot()[0] == []
    public = {vm.vm_id for vm in api.registry.snapshot()[1]}
    in_libvirt = {d.uuid for d in our_domains(api.hv)}
    assert in_libvirt == public


class GateJob(Job):
    """A job that holds its worker until released, so a test can look at
    (or act on) the pool while it runs; it appends itself to `order`."""

    def __init__(self, order=None):
        super().__init__()
        self.order = order
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self):
        if self.order is not None:
            self.order.append(self)
        self.started.set()
        assert self.release.wait(WAIT), "gate never released"


class StepGate:
    """A step hook that holds a job at one step until released, so a test
    can look at (or act on) the system while the job is there."""

    def __init__(self, step):
        self.step = step
        self.reached = threading.Event()
        self.release = threading.Event()
        self.job = None

    def __call__(self, job, step):
        if step == self.step and self.job is None:
            self.job = job
            self.reached.set()
            assert self.release.wait(WAIT), "gate never released"


class AtStep:
    """A step hook: at `step`, run `action(job)` (if any), then set
    `reached`."""

    def __init__(self, step, action=None):
        self.step = step
        self.action = action
        self.reached = threading.Event()
        self.job = None

    def __call__(self, job, step):
        if step != self.step:
            return
        self.job = job
        if self.action is not None:
            self.action(job)
        self.reached.set()


class DestroyAt:
    """A step hook: when a job (of `job_type`, if given) reaches `step`,
    VM.destroy is called from another thread, as an engine would, and the
    job goes on only once the destroy has asked it to abort. Set `api`
    before the job runs; `result` gets what destroy answered."""

    def __init__(self, step, job_type=None):
        self.step = step
        self.job_type = job_type
        self.api = None
        self.result = []
        self.thread = None

    def __call__(self, job, step):
        if step != self.step or self.thread is not None or (
                self.job_type is not None and job.job_type != self.job_type):
            return
        self.thread = threading.Thread(
            target=lambda: self.result.append(self.api.VM.destroy(job.vm_id)))
        self.thread.start()
        assert job.wait_abort_requested(WAIT)
