"""The layers stay apart: workers/ knows nothing of VMs or libvirt; only
the adapter package (vmjobs/hypervisor/) imports libvirt, apart from the
tooling; the core never imports the tooling (vmjobs/tools/), which only
the command line (vmjobs/cli*.py) may. And what a module calls on a
sibling module (`hostfiles.resolve_inside`) exists there."""

import ast
import importlib
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


def sibling_modules(path):
    """{local name: dotted module} of the vmjobs modules `path` imports
    whole (`from . import hostfiles`, `from .. import domxml as d`)."""
    package = list(path.relative_to(ROOT).parts[:-1])
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            parent = package[:len(package) - node.level + 1]
            base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                name = f"{base}.{alias.name}"
                if (ROOT / (name.replace(".", "/") + ".py")).exists() or \
                        (ROOT / name.replace(".", "/") / "__init__.py"
                         ).exists():
                    found[alias.asname or alias.name] = name
    return found


@pytest.mark.parametrize("path", modules("vmjobs"), ids=str)
def test_what_a_module_calls_on_a_sibling_exists(path):
    """`hostfiles.resolve_inside(...)` names a function hostfiles has: a
    rename that missed a caller (resolve_inside became resolveinside, and
    every qcow2 image with a backing or data file made VM.create answer
    GeneralException (100) instead of accepting it or refusing it with
    -32602 as API.md's "Host files and domain XML" says) fails here, not
    in the one test whose XML reaches that line."""
    siblings = sibling_modules(path)
    if not siblings:
        return
    loaded = {local: importlib.import_module(name)
              for local, name in siblings.items()}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and \
                isinstance(node.value, ast.Name) and \
                node.value.id in loaded:
            module = loaded[node.value.id]
            assert hasattr(module, node.attr), \
                f"{path}:{node.lineno}: {node.value.id}.{node.attr} " \
                f"does not exist in {module.__name__}"


MARK_NAMES = {"METADATA_NS", "METADATA_PREFIX", "metadata_element"}


@pytest.mark.parametrize("path", [
    p for p in modules("vmjobs")
    if "tools" not in p.relative_to(ROOT).parts and
    p.name not in ("domxml.py", "ownership.py")], ids=str)
def test_only_ownership_reads_or_writes_our_mark(path):
    """Whether a domain is ours is decided in vmjobs/ownership.py, the one
    module that asks libvirt for vmjobs' metadata or sets it (domxml.py
    writes the element into the XML it composes): a module that named the
    namespace itself would answer "is it ours?" its own way (seven did,
    two of them with the received migrations, five without)."""
    for node in ast.walk(ast.parse(path.read_text())):
        name = node.attr if isinstance(node, ast.Attribute) else \
            node.id if isinstance(node, ast.Name) else None
        assert name not in MARK_NAMES, \
            f"{path}:{node.lineno}: names {name}; ask vmjobs.ownership"
