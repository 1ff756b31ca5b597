"""The VM.create path, traced: one VM.create sent over a socket to a
service on libvirt's test driver, every call into vmjobs/ and workers/
recorded (sys.setprofile, every thread) from the request's arrival to the
job's end. Prints the project modules the request passes through and the
deepest stacks of project frames (the request's thread, up to the answer;
the worker's, at defineXML and at the commit).

    python tests/benchmarks/create_path.py
"""

import json
import os
import sys
import threading
import urllib.request
import uuid

from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.hypervisor import Hypervisor
from vmjobs.server import Server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PROJECT = tuple(os.path.join(ROOT, p) + os.sep for p in ("vmjobs", "workers"))


def module_of(code):
    path = code.co_filename
    if not path.startswith(PROJECT):
        return None
    return os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")


def project_stack(frame):
    names = []
    while frame is not None:
        module = module_of(frame.f_code)
        if module is not None:
            names.append(f"{module}.{frame.f_code.co_qualname}")
        frame = frame.f_back
    return names[::-1]


def main():
    modules, functions, stacks = set(), set(), {}
    lock = threading.Lock()
    tracing = threading.Event()

    def profile(frame, event, arg):
        if tracing.is_set():
            record(frame, event, arg)

    # Before any thread starts: threading.setprofile reaches new threads.
    threading.setprofile(profile)
    sys.setprofile(profile)
    hv = Hypervisor()
    api = API(Config(workers=2, listen="127.0.0.1:0", insecure=True), hypervisor=hv)
    server = Server(api, Config(workers=2, listen="127.0.0.1:0", insecure=True))
    server.start()
    def record(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "defineXML":
            with lock:
                stacks["worker, at defineXML"] = project_stack(frame)
            return
        if event != "call":
            return
        module = module_of(frame.f_code)
        if module is None:
            return
        with lock:
            modules.add(module)
            name = frame.f_code.co_qualname
            functions.add((module, name))
            if name == "VmRegistry.commit" and module == "vmjobs.registry":
                stacks["worker, at the commit"] = project_stack(frame)
            if name.endswith("submit") and module == "workers.pool":
                stacks["request, at submit"] = project_stack(frame)

    vm_id = str(uuid.uuid4())
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "VM.create",
                       "params": {"vmID": vm_id, "vmParams": {
                           "vmId": vm_id, "vmName": "traced",
                           "memSize": 64}}}).encode()
    tracing.set()
    request = urllib.request.Request(
        f"http://{server.address}/", data=body,
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    job = api.jobs.get(answer["result"]["jobId"])
    assert job.wait(60), "the job did not end"
    tracing.clear()
    sys.setprofile(None)
    threading.setprofile(None)
    print(f"job {job.status}; {len(modules)} project modules, "
          f"{len(functions)} project functions called:")
    for module in sorted(modules):
        print(f"  {module}")
    for where, stack in sorted(stacks.items()):
        print(f"{where}: {len(stack)} frames")
        for name in stack:
            print(f"    {name}")
    server.stop()
    api.close()
    hv.close()


if __name__ == "__main__":
    main()
