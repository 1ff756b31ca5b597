"""The verbs of API.md, on one object.

`api.call("VM.create", {"vmID": ..., "vmParams": ...})` and
`api.VM.create(vmID=..., vmParams=...)` are the same call, with the same
results and the same errors (VdsmError subclasses carrying VDSM's codes) as
the JSON-RPC server gives.

A request is validated here and becomes a typed job (flows/), which
reserves what it needs (job.reserve: its vmId staged, or the public VM
claimed) before it is queued; the verb returns at once and the pool runs
the job's flow. VM.destroy is not a job: destroy.py.

Each verb is declared where it is implemented: `@verb(name, params...)`
on the API method builds the verb table (VERBS), which the JSON-RPC
dispatcher, `api.VM.create(...)` and `vmjobs call --list` read.
"""

import copy
import dataclasses
import logging
import threading

import workers

from . import domxml, policy, statefiles
from .arrivals import LateArrivals
from .budget import Budget
from .client import Client
from .config import Config
from .destroy import destroy
from .errors import (
    GeneralException,
    InvalidParams,
    JobNotActive,
    JobNotDone,
    MissParam,
    NoSuchJob,
    Recovering,
    ResourceExhausted,
    UnknownMethod,
    VdsmError,
)
from .flows import (
    CreateJob,
    HibernateJob,
    MigrationDestinationJob,
    MigrationSourceJob,
    OutgoingSlots,
    RestoreJob,
)
from .guests import GuestWatch
from .host import host_stats, vm_list
from .hypervisor import Hypervisor
from .metrics import Metrics
from .notifications import Notifications
from .ownership import Ownership
from .params import (
    parse_create,
    parse_graceful_attempts,
    parse_migrate,
    parse_migration,
    parse_vm_id,
    reject_surrogates,
)
from .recovery import Recovery
from .registry import VmRegistry

log = logging.getLogger("vmjobs.api")

# The bytes of domain XML the jobs not ended may keep, all together: an
# engine's XML is 10 to 50 KB, so a thousand queued creations (API.md) keep
# under 50 MiB; a caller's 4 MiB requests kept 8 MiB each, 36 MiB with one
# emoji among ASCII, and the queue takes 1,000 (pool.queue_size): 36 GB (a
# hostile-caller audit, round 14). Counted as Python holds them.
KEPT_XML_BYTES = 256 * 1024 * 1024

# verb -> (API method, parameter names in positional order), built by
# @verb below; and the verbs that answer while recovery at start-up runs
# (everything else answers `recovery` (99) until every recover job ended).
VERBS = {}
OPEN_DURING_RECOVERY = set()


def verb(name, *param_names, during_recovery=False):
    """Declare the API method it decorates as verb `name` of API.md,
    taking `param_names` (by name, or by position in this order)."""
    def declare(method):
        VERBS[name] = (method.__name__, param_names)
        if during_recovery:
            OPEN_DURING_RECOVERY.add(name)
        return method
    return declare


class API:
    def __init__(self, config=None, *, hypervisor=None, step_hook=None):
        """`hypervisor`: an adapter the caller owns (and closes); by default
        one is opened on config.uri and closed by close(). `step_hook(job,
        step)` runs at every step boundary of every job (for tests)."""
        self.config = config or Config()
        self._owns_hypervisor = hypervisor is None
        self.hv = hypervisor or Hypervisor(
            self.config.uri, connections=self.config.workers + 1,
            domain_type=self.config.domain_type)
        self.notifications = Notifications(self.config.events_buffer)
        self.subscribe = self.notifications.subscribe  # GET /events, here
        self.registry = VmRegistry(self.config.publish, self.notifications)
        # VM.migrate's jobs in call order: max_outgoing migrate at once.
        self.outgoing = OutgoingSlots(self.config.max_outgoing)
        self.metrics = Metrics()
        self.jobs = workers.JobTable(self.config.autodelete_delay,
                                     self.config.max_ended,
                                     on_ended=self.metrics.job_ended)
        # Which domains are ours: marked, or left unmarked by a migration
        # we were asked to receive (its jobs are the table's of that type).
        self.ownership = Ownership(self.hv, self.jobs,
                                   MigrationDestinationJob.job_type)
        # The domain XML the jobs not ended keep (their verbs' checks done,
        # libvirt not yet given it): taken as a job is queued, given back
        # as it ends; past it a verb is refused, ResourceExhausted.
        self.kept_xml = Budget(KEPT_XML_BYTES)
        self.pool = workers.Pool(self.config.workers, self.config.queue_size,
                                 name="vmjobs",
                                 admission_controller=_controller(
                                     self.config))
        self._step_hook = step_hook
        # Set once the service starts stopping (GET /healthz answers 503).
        self.stopping = threading.Event()
        self.Host = Namespace(self, "Host")
        self.VM = Namespace(self, "VM")
        self.Job = Namespace(self, "Job")
        recover_args = dict(
            self._job_args(),
            settle_timeout=self.config.recovery_settle_timeout)
        self.recovery = Recovery(
            self.hv, self.registry, self.jobs, self.pool, recover_args,
            self.notifications.job_changed)
        self.metrics.watch(self)
        # A guest paused, resumed or stopped outside vmjobs (by its user,
        # by libvirt on an I/O error, by a crash): its VM follows, from now
        # on (guests.py: not on the test driver).
        self.guests = GuestWatch(self.hv, self.registry) \
            if self.hv.shared_with_others else None
        # A guest migrated here after the job that expected it ended is
        # adopted by a recover job (arrivals.py: not on the test driver,
        # which cannot migrate).
        self.arrivals = LateArrivals(self.hv, self.registry, self.recovery) \
            if self.hv.shared_with_others else None
        try:
            self.recovery.start()
        except BaseException:
            # Without knowing what runs here the service must not start.
            self.close()
            raise

    def wait_recovered(self, timeout=None):
        """Wait until recovery at start-up ended; True if it has."""
        return self.recovery.wait(timeout)

    def close(self, stop_mode=workers.ABORT):
        """Stop: queued jobs are aborted (or, with DRAIN, run), running ones
        reach a safe end; public VMs are left running."""
        self.stopping.set()
        if self.arrivals is not None:
            # First: the pool takes no job once it stops (a guest that
            # arrives from now on is the next recovery's).
            self.arrivals.close()
        self.pool.shutdown(stop_mode)
        if self.guests is not None:
            self.guests.close()
        self.notifications.close()
        if self._owns_hypervisor:
            self.hv.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def call(self, method, params=None):
        """Run verb `method` with named (dict) or positional (list) params;
        a refusal (a VdsmError) is counted in vmjobs_refused_total, as one
        answered over JSON-RPC is. The answer is the caller's own, as one
        read off the wire is: a copy, so that changing it changes nothing
        here (VM.getStats' params are the VM's own, which the next answer
        and the domain's metadata must still agree on)."""
        try:
            return copy.deepcopy(self.answer(method, params))
        except VdsmError as exc:
            self.metrics.refused(exc.code)
            raise

    def answer(self, method, params=None):
        """call() without counting a refusal: the JSON-RPC dispatcher's
        (rpc.py), which counts each call by the code its answer carries
        (-32603 when that answer is too large to send)."""
        try:
            name, param_names = VERBS[method]
        except (KeyError, TypeError):
            raise UnknownMethod(f"no such method {method!r}") from None
        if method not in OPEN_DURING_RECOVERY and not self.recovery.done:
            raise Recovering("recovering the VMs found at start-up: "
                             "try again when Host.getStats shows "
                             "recovering false")
        if params is not None:
            reject_surrogates(params, param_names)
        args, kwargs = bind(method, param_names, params)
        try:
            return getattr(self, name)(*args, **kwargs)
        except VdsmError:
            raise
        except Exception as exc:
            log.exception("%s failed unexpectedly", method)
            raise GeneralException(f"{method} failed: {exc}") from exc

    # -- Host -----------------------------------------------------------------

    @verb("Host.ping", during_recovery=True)
    def host_ping(self):
        return True

    @verb("Host.getVMList", "fullStatus", "vmList", "onlyUUID")
    def host_get_vm_list(self, fullStatus=False, vmList=None,
                         onlyUUID=False):
        return vm_list(self.registry, fullStatus, vmList, onlyUUID)

    @verb("Host.getAllVmStats")
    def host_get_all_vm_stats(self):
        return [vm.stats() for vm in self.registry.listed()]

    @verb("Host.getJobs", "job_type", "job_ids", during_recovery=True)
    def host_get_jobs(self, job_type=None, job_ids=None):
        """{id: info} of the listed jobs, optionally only those of
        `job_type` or among `job_ids`."""
        if job_type is not None and not isinstance(job_type, str):
            raise InvalidParams("job_type", "must be a string")
        if job_ids is not None and (
                not isinstance(job_ids, list) or
                not all(isinstance(i, str) for i in job_ids)):
            raise InvalidParams("job_ids", "must be a list of job ids")
        # An empty filter is no filter, as in VDSM's jobs.info (whose
        # default job_ids is an empty list).
        found = self.jobs.some(map(_job_id, job_ids)) if job_ids \
            else self.jobs.jobs()
        return {job.id: job.info() for job in found
                if not job_type or job.job_type == job_type}

    @verb("Host.getStats", during_recovery=True)
    def host_get_stats(self):
        return host_stats(self.pool, self.registry, self.recovery, self.hv,
                          self.ownership)

    # -- VM -------------------------------------------------------------------

    @verb("VM.create", "vmID", "vmParams")
    def vm_create(self, vmID=None, vmParams=None):
        spec = parse_create(vmID, vmParams)
        # A duplicate is exist (4) whatever else is wrong with the request
        # (a state file that cannot be read, an XML refused).
        self.registry.refuse_known(spec.vm_id)
        # The host paths the domain will hold (hostpaths.py) are taken
        # with the vmId's stage (job.reserve).
        if spec.restore_state is not None:
            domain_xml, paths = policy.checked_state_xml(
                self.hv, spec.restore_state, self.config)
            job = RestoreJob(spec, domain_xml, self.hv, self.registry,
                             paths=paths, **self._job_args())
        else:
            checked = policy.check_host_access(spec, self.hv, self.config)
            try:
                domain_xml = domxml.compose(spec, self.hv.guest,
                                            checked.chains)
            except domxml.BadDomainXML as exc:
                raise InvalidParams("xml", str(exc)) from None
            # The engine's XML is in domain_xml now: a queued job keeps
            # one copy (4 MiB of request made two of 8 MiB, or of 36 MiB
            # with one emoji among ASCII: four bytes a character).
            if spec.xml is not None:
                spec = dataclasses.replace(spec, xml=None)
            job = CreateJob(spec, domain_xml, self.hv, self.registry,
                            paths=checked.paths, **self._job_args())
        # Adaptive: a startup counts against the moving admission limit
        # for its whole run, and its run time is what moves it.
        job.admission = self.config.adaptive
        self._queue(job)
        return {"vmId": spec.vm_id, "status": str(job.staged_status),
                "jobId": job.id}

    @verb("VM.migrationCreate", "vmID", "params", "incomingLimit")
    def vm_migration_create(self, vmID=None, params=None, incomingLimit=None):
        spec = parse_migration(vmID, params)
        limit = self.config.max_incoming if incomingLimit is None \
            else incomingLimit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidParams("incomingLimit", "must be an integer >= 1")
        # A caller may ask for less than the host allows, never for more.
        limit = min(limit, self.config.max_incoming)
        # A duplicate is exist (4) whatever its XML, as for VM.create.
        self.registry.refuse_known(spec.vm_id)
        checked = policy.check_host_access(spec, self.hv, self.config,
                                           incoming=True)
        job = MigrationDestinationJob(
            spec, self.hv, self.registry,
            incoming_limit=limit,
            arrival_timeout=self.config.migration_destination_timeout,
            check_interval=self.config.migration_check_interval,
            late_arrivals=self.arrivals, paths=checked.paths,
            **self._job_args())
        self._queue(job)
        return {"migrationPort": 0,
                "params": {"vmId": spec.vm_id,
                           "status": str(job.staged_status),
                           "jobId": job.id}}

    @verb("VM.migrate", "vmID", "params")
    def vm_migrate(self, vmID=None, params=None):
        config = self.config
        vm_id, target = parse_migrate(
            vmID, params, config.migration_socket_dirs,
            config.migration_networks,
            (config.migration_port_min, config.migration_port_max),
            config.image_dirs)
        job = MigrationSourceJob(
            vm_id, target, self.hv, self.registry, connect=self._peer,
            default_timeout=self.config.migration_source_timeout,
            slots=self.outgoing, **self._job_args())
        self._queue(job)
        return {"jobId": job.id}

    @verb("VM.hibernate", "vmID", "hibernationVolHandle")
    def vm_hibernate(self, vmID=None, hibernationVolHandle=None):
        vm_id = parse_vm_id(vmID)
        if hibernationVolHandle is None:
            raise MissParam("missing parameter 'hibernationVolHandle'")
        path = statefiles.confined(hibernationVolHandle,
                                   "hibernationVolHandle",
                                   self.config.state_dirs,
                                   self.config.image_dirs)
        job = HibernateJob(vm_id, path, self.hv, self.registry,
                           **self._job_args())
        self._queue(job)
        return {"jobId": job.id}

    @verb("VM.destroy", "vmID", "gracefulAttempts")
    def vm_destroy(self, vmID=None, gracefulAttempts=0):
        return destroy(self.hv, self.registry, parse_vm_id(vmID),
                       parse_graceful_attempts(gracefulAttempts),
                       owner=self.ownership)

    @verb("VM.getStats", "vmID")
    def vm_get_stats(self, vmID=None):
        return self.registry.get(parse_vm_id(vmID)).stats()

    # -- Job ------------------------------------------------------------------

    # They look jobs up in the job table and translate the table's and the
    # job's exceptions (workers/ knows no VDSM codes) into VdsmErrors.

    @verb("Job.abort", "jobId")
    def job_abort(self, jobId=None):
        """Ask the job to stop; an ended job answers JobNotActive."""
        job = _lookup(self.jobs, jobId)
        try:
            job.abort()
        except workers.JobEnded:
            raise JobNotActive(f"job {job.id} already ended "
                               f"({job.status})") from None
        return True

    @verb("Job.delete", "jobId")
    def job_delete(self, jobId=None):
        """Forget an ended job; an active one answers JobNotDone."""
        job_id = _lookup(self.jobs, jobId).id
        try:
            self.jobs.delete(job_id)
        except workers.JobStillActive:
            raise JobNotDone(f"job {job_id} has not ended yet") from None
        except workers.UnknownJob:
            raise NoSuchJob(f"no job {job_id}") from None
        return True

    # -- internals --------------------------------------------------------------

    def _peer(self, server, timeout):
        """A client of another vmjobs service (a migration's destination),
        with this service's own TLS credentials when it has them."""
        config = self.config
        return Client(server, cert=config.tls_cert, key=config.tls_key,
                      ca=config.tls_ca, timeout=timeout, whole_call=True,
                      max_answer_bytes=PEER_ANSWER_BYTES)

    def _job_args(self):
        return {"on_step": self._step_hook,
                "timeout": self.config.job_timeout}

    def _queue(self, job):
        """Take the job's place in the queue, reserve what the job needs
        (refused: its own VdsmError), queue, observe (notifications) and
        list it. The place comes first: a full queue refuses before
        anything is staged, so a refused request leaves no trace, not even
        a status event; only what refuses the request whatever the queue
        holds (job.refuse_early: a VM that is not here) comes before it,
        and before a stop's refusal."""
        # What refuses the request whatever the queue or a stop (a VM
        # that is not here) first: no retry makes it good.
        job.refuse_early()
        if self.stopping.is_set():
            # Before anything is staged: a job accepted now would never run
            # (or, draining, run after the caller was told the service
            # stops). Kept connections still bring requests meanwhile.
            raise ResourceExhausted("the service is stopping: try again "
                                    "once it is back")
        try:
            place = self.pool.place(job.priority)
        except (workers.QueueFull, workers.PoolClosed) as exc:
            raise _cannot_take(exc) from None
        with place:
            kept = job.kept_xml_bytes()
            if not self.kept_xml.take(kept):
                raise ResourceExhausted(
                    f"the jobs not ended keep {self.kept_xml.held} bytes of "
                    f"domain XML, and this one's {kept} would pass their "
                    f"bound ({self.kept_xml.total}): try again later")
            try:
                job.reserve()
            except BaseException:
                self.kept_xml.give(kept)
                raise
            self.jobs.add(job)
            # Submitted even if a VM.destroy aborted it meanwhile (its
            # staged VM named it): the pool then counts it ended without
            # queueing it, as the job table does (the metrics), and the
            # verb answers its error below.
            try:
                place.submit(job)
            except workers.PoolClosed as exc:   # a stop began meanwhile
                self.jobs.discard(job)
                job.release()
                self.kept_xml.give(kept)
                raise _cannot_take(exc) from None
        # Given back as it ends (at once if a VM.destroy ended it already).
        job.add_end_callback(lambda _: self.kept_xml.give(kept))
        job.observe(self.notifications.job_changed)
        _refuse_if_aborted(job)
        self.registry.accept(job.vm_id, job)


def _lookup(jobs, job_id):
    """The job `job_id` of table `jobs`, or the verb's documented error."""
    if job_id is None:
        raise MissParam("missing parameter 'jobId'")
    if not isinstance(job_id, str):
        raise InvalidParams("jobId", "must be a string")
    try:
        return jobs.get(_job_id(job_id))
    except workers.UnknownJob:
        raise NoSuchJob(f"no job {job_id}") from None


def _job_id(value):
    """The id of the job a caller names `value`: a job id is a UUID
    (workers.new_id), taken in any form a vmID is taken in (capitals,
    braces...) as its canonical one; anything else as it is, which names
    no job."""
    try:
        return parse_vm_id(value, "jobId")
    except InvalidParams:
        return value


def bind(method, param_names, params):
    """(args, kwargs) for verb `method`, taking `param_names`, called with
    `params`: named (a dict), positional (a list) or none."""
    if params is None:
        return (), {}
    if isinstance(params, dict):
        for key in params:
            if key not in param_names:
                raise InvalidParams(key, f"{method} takes no such parameter")
        return (), params
    if isinstance(params, (list, tuple)):
        if len(params) > len(param_names):
            # The array is what is malformed, not its last known member.
            raise InvalidParams("params", f"{method} takes at most "
                                f"{len(param_names)} parameter(s)")
        return tuple(params), {}
    raise InvalidParams("params", "must be an object or an array")


class Namespace:
    """`api.VM.create(...)` for `api.call("VM.create", ...)`: params by
    position, by name, or the first ones by position and the others by
    name."""

    def __init__(self, api, prefix):
        self._api = api
        self._prefix = prefix

    def __getattr__(self, name):
        method = f"{self._prefix}.{name}"
        if method not in VERBS:
            raise AttributeError(method)

        def call(*args, **kwargs):
            return self._api.call(method, _params_of(method, args, kwargs))
        call.__name__ = name
        return call


def _params_of(method, args, kwargs):
    """The params of a method call `args`, `kwargs`, as a Python method
    takes them: the first params by position (in the verb's order), the
    others by name (a dict then), or all one way."""
    if not kwargs:
        return list(args)
    names = VERBS[method][1]
    if not args or len(args) > len(names):
        # All by name; or more by position than the verb takes, which
        # bind() refuses as it refuses them over JSON-RPC.
        return list(args) if args else kwargs
    for name in names[:len(args)]:
        if name in kwargs:
            raise TypeError(f"{method}() got multiple values for argument "
                            f"{name!r}")
    return dict(zip(names, args, strict=False)) | kwargs


# The longest answer taken from a migration's destination: its answers
# are under a KiB (VM.migrationCreate's, VM.destroy's); a peer that sends
# more is not a vmjobs service (a hostile one sent 6 GiB, read into memory
# until the kernel killed the service).
PEER_ANSWER_BYTES = 1 << 20


def _cannot_take(refusal):
    return ResourceExhausted(f"cannot take the job now: {refusal}; try "
                             "again later")


def _refuse_if_aborted(job):
    """A job aborted (by a VM.destroy) before its verb answered has been
    undone by its end hooks (on_ended): the verb answers the flow's error,
    never success, which would tell an engine (a migration's source) to
    go on."""
    if job.status is workers.JobStatus.ABORTED:
        raise job.error_class(f"VM {job.vm_id} was destroyed before its "
                              "job could start")


def _controller(config):
    """With `adaptive`, what moves the admission limit of startups between 1
    and `workers` (workers.adaptive); without, nothing: `workers` at once."""
    return workers.AdaptiveLimit(config.workers) if config.adaptive else None
