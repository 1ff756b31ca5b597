"""contrib/prometheus: the alert rules pass `promtool check rules`, the
Grafana dashboard is valid JSON, and every vmjobs or process metric either
queries is one the service's /metrics serves."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import WAIT, new_id, vm_params
from test_health import request
from vmjobs.client import Client, RemoteError
from vmjobs.config import Config
from vmjobs.server import Server

CONTRIB = Path(__file__).resolve().parent.parent / "contrib" / "prometheus"
RULES = CONTRIB / "vmjobs.rules.yml"
DASHBOARD = CONTRIB / "grafana-dashboard.json"
# The service's own names and prometheus_client's process collector's;
# `up` and the like are Prometheus' own.
METRIC = re.compile(r"\b((?:vmjobs|process)_[a-z_]+)\b")


def promtool():
    found = shutil.which("promtool") or shutil.which(
        "promtool", path=os.path.dirname(sys.executable))
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool missing: `make setup` installs it")
        pytest.skip("promtool missing: `make setup` installs it")
    return found


@pytest.fixture
def served_names(api, tmp_path):
    """The sample names of a service's /metrics that ran a job and
    refused a verb (labelled counters show only once counted)."""
    assert api.wait_recovered(WAIT)
    server = Server(api, Config(listen=f"unix:{tmp_path}/s.sock"))
    server.start()
    try:
        with Client(server.address) as client:
            vm_id = new_id()
            client.call("VM.create", [vm_id, vm_params(vm_id)])
            with pytest.raises(RemoteError):
                client.call("VM.getStats", [new_id()])
            assert api.pool.wait_idle(WAIT)
        status, _, body = request(server.address, "GET", "/metrics")
        assert status == 200
        text = body.decode()
    finally:
        server.stop()
    return {sample.name for family in text_string_to_metric_families(text)
            for sample in family.samples}


def queried(exprs):
    return {name for expr in exprs for name in METRIC.findall(expr)}


def test_alert_rules_pass_promtool():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_promtool_refuses_a_broken_rule(tmp_path):
    """The control: promtool does fail on a bad expression."""
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace(
        "vmjobs_stuck_jobs > 0", "vmjobs_stuck_jobs >"))
    result = subprocess.run([promtool(), "check", "rules", str(broken)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_rules_query_only_served_metrics(served_names):
    exprs = re.findall(r"^\s*expr:\s*(.+)$", RULES.read_text(), re.M)
    names = queried(exprs)
    assert {"vmjobs_stuck_jobs", "vmjobs_refused_total",
            "vmjobs_recovery_seconds",
            "vmjobs_event_subscribers_cut_total"} <= names
    assert names <= served_names, names - served_names


def test_dashboard_queries_only_served_metrics(served_names):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"]
             for target in panel["targets"]]
    names = queried(exprs)
    assert len(names) >= 10
    assert names <= served_names, names - served_names
