"""The README starts with what to do, stays short, speaks no team-only
words, and its examples run as written: the test-driver trial from a
checkout, and the first VM on a real host (the private real daemon), each
in a mount namespace of its own, so that the service's default paths
(/run/vmjobs, /var/lib/vmjobs, /etc/vmjobs) are private to the test."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from serve import ROOT

README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")
# Words only the team knew: an issue's number, "the seed" (the first brief),
# a commit as a reference.
TEAM_WORDS = re.compile(r"\bissues? \d+|\bthe seed\b|the commit that says",
                        re.IGNORECASE)


def readme():
    with open(README) as f:
        return f.read()


def example(name):
    text = readme()
    marker = f"<!-- example: {name} -->\n```sh\n"
    start = text.index(marker) + len(marker)
    return text[start:text.index("```", start)]


def test_readme_is_short_and_starts_with_what_to_do():
    lines = readme().splitlines()
    assert len(lines) < 200, len(lines)
    assert lines[0] == "# vmjobs"
    quick = lines.index("## Quick start")
    assert quick < 15
    assert any(line.strip().startswith("make deb")
               for line in lines[quick:quick + 6])


def test_readme_links_lead_somewhere():
    for target in re.findall(r"\]\(([^)#]+)\)", readme()):
        if target.startswith("http"):
            continue
        assert os.path.exists(os.path.join(ROOT, target)), target


@pytest.mark.parametrize("path", ["README.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir(DOCS)
    if name.endswith(".md")))
def test_no_team_only_words(path):
    with open(os.path.join(ROOT, path)) as f:
        found = [(number, line.strip()) for number, line
                 in enumerate(f, 1) if TEAM_WORDS.search(line)]
    assert not found, found


def test_examples_use_distinct_vm_names():
    names = re.findall(r'vmName\\?": \\?"([^"\\]+)', readme())
    with open(os.path.join(DOCS, "api.md")) as f:
        names += re.findall(r'vmName\\?": \\?"([^"\\]+)', f.read())
    assert len(names) >= 3
    assert len(names) == len(set(names)), names


def test_the_verb_table_names_every_verb_and_its_params():
    """docs/api.md documents API.md's verbs again in its own words and
    keeps the two in step: its table names each verb with every param it
    takes, in their positional order (a row may name two verbs)."""
    from vmjobs.api import VERBS
    with open(os.path.join(DOCS, "api.md")) as f:
        rows = [line for line in f if line.startswith("| `")]
    for method, (_, params) in VERBS.items():
        form = f"`{method}({', '.join(params)})`" if params else \
            f"`{method}`"
        assert any(form in row for row in rows), form


root_only = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"),
    reason="runs the service on its default paths, in a mount namespace "
    "(root)")


def run_privately(script):
    """`script` under bash -e in a mount namespace with tmpfs over the
    service's default directories, from the checkout, with the running
    venv's commands first on PATH."""
    # The service makes its runtime and state directories where they are
    # missing (here, as mount points); a host's configuration, if any, is
    # hidden, and where there is none there is nothing to hide.
    private = ["/run/vmjobs", "/var/lib/vmjobs"]
    for directory in private:
        os.makedirs(directory, exist_ok=True)
    if os.path.isdir("/etc/vmjobs"):
        private.append("/etc/vmjobs")
    mounts = "".join(f"mount -t tmpfs tmpfs {d}\n" for d in private)
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    return subprocess.run(
        [shutil.which("unshare"), "--mount", "--propagation", "private",
         "bash", "-e", "-c", mounts + script + "\nwait\n"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@root_only
def test_test_driver_example_runs_as_written():
    script = example("test driver").replace(
        ".venv/bin/vmjobs", os.path.join(os.path.dirname(sys.executable),
                                         "vmjobs"))
    result = run_privately(script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning: libvirt's test driver (test:///default)" in \
        result.stdout
    assert '"uri": "test:///default"' in result.stdout
    assert '"status": "WaitForLaunch"' in result.stdout
    assert "vmjobs: stopped" in result.stdout


def test_first_vm_example_runs_as_written_on_a_real_daemon(daemon):
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("the service's default paths need root")
    serve = (f"vmjobs serve --uri '{daemon.uri}' --log-file - "
             "2>/dev/null &\n"
             "until vmjobs call Host.ping >/dev/null 2>&1; do "
             "sleep 0.1; done\n")
    result = run_privately(serve + example("first VM") + "kill %1\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stdout
    assert '"status": "WaitForLaunch"' in result.stdout
    assert re.search(r"\bcreate\b", result.stdout)   # vmjobs jobs
    assert "vmjobs: stopped" in result.stdout
