"""The layers stay apart: workers/ knows nothing of VMs or libvirt; only
the adapter package (vmjobs/hypervisor/) imports libvirt, apart from the
tooling; the core never imports the tooling (vmjobs/tools/), which only
the command line (vmjobs/cli*.py) may."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def imported_modules(path):
    """Every module `path` imports, as absolute dotted names."""
    package = list(path.relative_to(ROOT).parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:   # relative: from the level-th package up
                parent = package[:len(package) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def modules(folder):
    return sorted((ROOT / folder).rglob("*.py"))


def within(name, package):
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("path", modules("workers"), ids=str)
def test_workers_import_nothing_of_vmjobs_or_libvirt(path):
    for name in imported_modules(path):
        assert not within(name, "vmjobs"), f"{path} imports {name}"
        assert not within(name, "libvirt"), f"{path} imports {name}"


@pytest.mark.parametrize("path", [
    p for p in modules("vmjobs")
    if "tools" not in p.relative_to(ROOT).parts], ids=str)
def test_core_imports_libvirt_only_in_the_adapter_and_no_tooling(path):
    parts = path.relative_to(ROOT).parts
    for name in imported_modules(path):
        if "hypervisor" not in parts:
            assert not within(name, "libvirt"), f"{path} imports {name}"
        if not path.name.startswith("cli"):   # cli.py, cli_call.py...
            assert not within(name, "vmjobs.tools"), \
                f"{path} imports {name}"
