"""What differs between libvirt's drivers, in one place: a daemon's
(libvirtd with QEMU: qemu:///system, a sandbox) full API, and the quirks
of libvirt's test driver (test:///<file>), which the tests and the load
test run on."""

import os
import tempfile

import libvirt

from .states import DomainState, domain_state

# Undefine also what libvirt keeps beside a domain's definition; the test
# driver knows only the first two flags. Never a file the domain XML
# names: its <nvram> is a file of the image dirs the caller chose (an
# engine keeps a guest's variables there across runs), so KEEP_NVRAM,
# not NVRAM, with which libvirt unlinked it (round 10: a VM.destroy
# deleted whatever image a guest named as its <nvram>).
_UNDEFINE_FLAGS_TEST = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                        libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
_UNDEFINE_FLAGS = (_UNDEFINE_FLAGS_TEST |
                   libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM |
                   libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)


class Daemon:
    """libvirtd: every connection sees the same host, and serves at most 5
    requests in flight (max_client_requests), so each caller borrows one of
    a few connections."""
    shares_one_connection = False
    undefine_flags = _UNDEFINE_FLAGS
    # Others act on its domains too (virsh, libvirt itself on an I/O
    # error): their pauses and resumes are to be followed.
    shared_with_others = True

    # It migrates; its job stats say when a migration runs.
    migrates = True
    # Its guests run in QEMU, whose runstate a failed save may leave
    # stuck (Hypervisor.pause_anew).
    runs_qemu = True

    @staticmethod
    def start_paused(dom):
        dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)

    @staticmethod
    def restore(conn, path, uuid, domain_xml, paused):
        conn.restoreFlags(path, domain_xml, libvirt.VIR_DOMAIN_SAVE_PAUSED
                          if paused else libvirt.VIR_DOMAIN_SAVE_RUNNING)


class TestDriver:
    """libvirt's test driver: every connection to a `test:///<file>` URI is
    a private host of its own, so all callers share one connection (else
    they would not see each other's domains); and it takes fewer flags."""
    shares_one_connection = True
    undefine_flags = _UNDEFINE_FLAGS_TEST
    # A private host in this process: nobody else reaches its domains
    # (following their events would cost every VM's start three wake-ups
    # of the event thread for nothing: docs/benchmarks.md, section 2).
    shared_with_others = False

    # It cannot migrate (NO_SUPPORT, or ARGUMENT_UNSUPPORTED for peer to
    # peer) and has no job stats.
    migrates = False
    runs_qemu = False

    @staticmethod
    def start_paused(dom):
        # It refuses VIR_DOMAIN_START_PAUSED.
        dom.create()
        dom.suspend()

    @staticmethod
    def restore(conn, path, uuid, domain_xml, paused):
        # It takes no flag, and no XML ("xml modification unsupported"):
        # its domains open no host file. Set the state by hand.
        conn.restore(path)
        dom = conn.lookupByUUIDString(uuid)
        state = domain_state(dom.state()[0])
        if paused and state == DomainState.RUNNING:
            dom.suspend()
        elif not paused and state == DomainState.PAUSED:
            dom.resume()


def driver_of(conn):
    return TestDriver if conn.getType().lower() == "test" else Daemon


def private_test_host():
    """A new, empty private instance of the test driver: (its URI, the
    file that holds it, for the caller to remove)."""
    fd, path = tempfile.mkstemp(prefix="vmjobs-testhost-", suffix=".xml")
    with os.fdopen(fd, "w") as f:
        f.write("<node/>\n")
    return "test://" + path, path
