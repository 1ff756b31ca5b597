"""kill -9 of `vmjobs serve` at five moments of a 100-VM storm on the real
daemon (while requests are still coming in, and once some VMs are Up),
each followed by a restart: recovery ends with every running vmjobs
domain public, no duplicate, and every vmjobs domain that is defined but
not running reported as stopped (the engine decides), never forgotten."""

import random
import signal
import threading

from realdaemon import require_daemon
from serve import ServeProcess, rpc, storm

VMS = 100
MOMENTS = 5


def serve(daemon, tmp_path, name):
    return ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                        "--uri", daemon.uri,
                        "--config", _config(tmp_path), tmp_path=tmp_path,
                        log_name=name)


def _config(tmp_path):
    path = tmp_path / "crash.conf"
    path.write_text("[libvirt]\ndomain_type = qemu\n[pool]\nworkers = 4\n")
    return str(path)


def test_kill_9_at_five_moments(daemon, tmp_path, reliability_figures):
    require_daemon()
    rng = random.Random(912390)
    for moment in range(MOMENTS):
        server = serve(daemon, tmp_path, f"before-{moment}")
        accepted, reached = [], threading.Event()
        # Odd moments: once some VMs are Up; even ones: while the requests
        # still come in.
        kill_after = VMS if moment % 2 else rng.randrange(1, VMS)
        client = threading.Thread(target=storm, args=(
            server, VMS, accepted, reached, kill_after, 32))
        client.start()
        assert reached.wait(300)
        up = 0
        if moment % 2:
            up = rng.randrange(2, 16)
            # Asked again and again: no event crosses processes.
            while len(rpc(server.url, "Host.getVMList")["result"]) < up:
                pass
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(60)
        client.join(120)

        server = serve(daemon, tmp_path, f"after-{moment}")
        try:
            stats = rpc(server.url, "Host.getStats")["result"]
            jobs = rpc(server.url, "Host.getJobs")["result"]
            while stats["recovering"]:
                # Ask again: each answer is a round trip (no event crosses
                # processes); recovery of a few dozen VMs takes a second.
                stats = rpc(server.url, "Host.getStats")["result"]
            public = rpc(server.url, "Host.getVMList")["result"]
            assert len(public) == len(set(public)), "a VM listed twice"
            assert len(public) >= up, "a VM that was Up was not recovered"
            running, stopped = daemon_vmjobs_domains(daemon)
            assert sorted(public) == sorted(running), \
                f"moment {moment}: public {len(public)}, running {len(running)}"
            assert stats["staged"] == 0, stats
            assert stats["stopped_domains"] == len(stopped)
            assert set(stopped) <= set(accepted)
            assert set(running) <= set(accepted) | set(
                i["vm_id"] for i in jobs.values())
        finally:
            status, _, err = server.stop()
        assert status == 0, err
        daemon.remove_all_domains()
        reliability_figures["crash repetitions"] += 1


def daemon_vmjobs_domains(daemon):
    import libvirt

    from vmjobs import domxml
    conn = libvirt.open(daemon.uri)
    try:
        running, stopped = [], []
        for dom in conn.listAllDomains(0):
            try:
                dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                             domxml.METADATA_NS)
            except libvirt.libvirtError:
                continue   # not ours
            (running if dom.isActive() else stopped).append(dom.UUIDString())
        return running, stopped
    finally:
        conn.close()
