"""The files an install ships that say what the code says (man pages, the
example configuration, bash completion) are current: generated from the
parser and the settings table, and what the generator makes is what is
committed (`python -m vmjobs.tools.shipped .` rewrites them)."""

import configparser
import os
import shutil
import subprocess

import pytest

from serve import ROOT
from vmjobs import config
from vmjobs.tools import shipped


@pytest.mark.parametrize("path", sorted(shipped.FILES))
def test_committed_file_is_current(path):
    with open(os.path.join(ROOT, path)) as f:
        committed = f.read()
    assert committed == shipped.FILES[path](), (
        f"{path} is stale: run `python -m vmjobs.tools.shipped .`")


def test_example_config_names_every_key_and_loads_as_the_defaults(tmp_path):
    path = os.path.join(ROOT, "contrib", "vmjobs.conf")
    loaded = config.load(path)
    assert loaded == config.Config()
    with open(path) as f:
        text = f.read()
    for setting in config.SETTINGS:
        assert f"[{setting.section}]" in text
        assert f"\n;{setting.key} =" in text, setting.name
    # Each section once: strict INI tools (configparser, crudini) refuse
    # a section given twice.
    strict = configparser.ConfigParser(strict=True)
    strict.read_string(text)
    assert strict.sections() == list(dict.fromkeys(
        setting.section for setting in config.SETTINGS))
    # Each commented key, uncommented, is a valid line of its section:
    # an operator may uncomment any of them.
    uncommented = "".join(line[1:] if line.startswith(";") else line
                          for line in text.splitlines(keepends=True))
    (tmp_path / "all.conf").write_text(uncommented)
    every = config.load(str(tmp_path / "all.conf"))
    assert every.uri == config.DEFAULT_URI and every.workers == 4
    for setting in config.SETTINGS:
        assert every.origin(setting.field).startswith(str(tmp_path))


def test_man_pages_name_every_command_flag_and_key():
    from vmjobs.cli import build_parser
    page = shipped.vmjobs_8()
    commands, _ = shipped._subcommands(build_parser())
    for name, sub in commands.items():
        assert f".SS {name}\n" in page
        for action in sub._actions:
            if action.help == "show this help message and exit":
                continue
            for flag in action.option_strings:
                assert flag.replace("-", "\\-") in page, (name, flag)
    conf = shipped.vmjobs_conf_5()
    for setting in config.SETTINGS:
        assert f"\\fB{setting.key}\\fR" in conf


@pytest.mark.skipif(shutil.which("groff") is None, reason="no groff")
@pytest.mark.parametrize("page", ["man/vmjobs.8", "man/vmjobs.conf.5"])
def test_man_pages_render_without_warnings(page):
    result = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8",
                             os.path.join(ROOT, page)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def complete(*words):
    """What bash completes for `vmjobs WORDS` (the last word is the one
    being completed), with the shipped completion file."""
    script = (f"source {ROOT}/contrib/bash-completion/vmjobs\n"
              f"COMP_WORDS=(vmjobs {' '.join(repr(w) for w in words)})\n"
              f"COMP_CWORD={len(words)}\n_vmjobs\n"
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    result = subprocess.run(["bash", "-c", script], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_bash_completion_completes_commands_flags_and_choices():
    assert complete("se") == ["serve"]
    assert "--queue-size" in complete("serve", "--q")
    assert complete("serve", "--stop-mode", "") == ["drain", "abort"]
    assert complete("sandbox", "st") == ["start", "stop"]
    # A flag of another command is not offered.
    assert "--watch" not in complete("serve", "--")
    assert "--watch" in complete("jobs", "--")
