"""docs/architecture.md names only what the code defines: every code name
it cites in backquotes (a module or file, `Class`, `Class.member`,
`module.name`, `function()`, a test `file.py::test_name`, a bare
lower-case name: a module, a parameter, a step) must exist, and so must
the classes, members and files of the request's diagram, or the page has
drifted from the code (it once named a method that no longer existed).
Verb names and configuration keys are checked against the verb table and
the configuration's settings."""

import ast
import fnmatch
import pathlib
import re

import libvirt
import pytest

from vmjobs import config as vmjobs_config
from vmjobs.api import VERBS

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"
SOURCES = [*ROOT.joinpath("vmjobs").rglob("*.py"),
           *ROOT.joinpath("workers").rglob("*.py")]
TESTS = list(ROOT.joinpath("tests").rglob("*.py"))
NAME = r"[A-Za-z_]\w*"


class Index:
    """What the code defines: modules (by short and dotted name), their
    top-level names, classes and the members each defines (methods,
    class attributes, attributes set on self), with their bases."""

    def __init__(self):
        self.modules = {}    # name -> set of top-level names
        self.classes = {}    # name -> (members, base names)
        self.parameters = set()   # every function's
        self.strings = set()      # every string literal (tests' too)
        for path in TESTS:
            if path != pathlib.Path(__file__).resolve():   # its controls
                self.strings.update(self._strings(ast.parse(
                    path.read_text())))
        for path in SOURCES:
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            tree = ast.parse(path.read_text())
            names = self._top_level(tree)
            self.strings.update(self._strings(tree))
            for i in range(len(parts)):
                self.modules.setdefault(".".join(parts[i:]), set()).update(
                    names)
            if len(parts) > 1:   # a package lists its modules
                self.modules.setdefault(".".join(parts[:-1]), set()).add(
                    parts[-1])
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    self.classes[node.name] = (self._members(node), [
                        base.id if isinstance(base, ast.Name) else
                        getattr(base, "attr", "") for base in node.bases])
                elif isinstance(node, ast.arg):
                    self.parameters.add(node.arg)

    @staticmethod
    def _strings(tree):
        return {node.value for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and
                isinstance(node.value, str)}

    @staticmethod
    def _top_level(tree):
        names = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) \
                    else [node.target]
                for target in targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            names.add(name.id)
            elif isinstance(node, ast.ImportFrom):
                names.update(alias.asname or alias.name
                             for alias in node.names)
        return names

    @staticmethod
    def _members(cls):
        members = set()
        for node in cls.body:    # methods, nested classes, class attributes
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                members.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) \
                    else [node.target]
                members.update(name.id for target in targets
                               for name in ast.walk(target)
                               if isinstance(name, ast.Name))
        for node in ast.walk(cls):   # attributes set on self
            if isinstance(node, ast.Attribute) and \
                    isinstance(node.ctx, ast.Store) and \
                    isinstance(node.value, ast.Name) and \
                    node.value.id == "self":
                members.add(node.attr)
        return members

    def class_has(self, cls, member):
        seen = set()
        while cls in self.classes and cls not in seen:
            seen.add(cls)
            members, bases = self.classes[cls]
            if member in members:
                return True
            if any(self.class_has(base, member) for base in bases):
                return True
        return False

    def defines(self, name):
        """`name` is defined somewhere: a module, a class, a top-level
        name or a member of a class."""
        return name in self.modules or name in self.classes or any(
            name in names for names in self.modules.values()) or any(
            name in members for members, _ in self.classes.values())

    def names(self, word):
        """A bare lower-case `word` is something the code names: a module,
        a definition or a parameter, or a string it holds (a step, a key,
        a subcommand); or libvirt's, which the page names too."""
        return self.defines(word) or word in self.parameters or \
            word in self.strings or hasattr(libvirt, word)

    def resolves(self, dotted):
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):   # the longest module prefix
            module = ".".join(parts[:i])
            if module in self.modules:
                rest = parts[i:]
                if not rest:
                    return True
                if rest[0] in self.classes and rest[0] in \
                        self.modules[module]:
                    return len(rest) == 1 or self.class_has(rest[0], rest[1])
                return len(rest) == 1 and rest[0] in self.modules[module]
        if parts[0] in self.classes:
            return len(parts) == 1 or (len(parts) == 2 and
                                       self.class_has(parts[0], parts[1]))
        return False


def config_keys():
    return {f"{setting.section}.{setting.key}"
            for setting in vmjobs_config.SETTINGS}


def cited():
    """Every backquoted span of the page that reads as a code name."""
    text = PAGE.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)   # the diagram
    yield from re.findall(r"`([^`\n]+)`", text)


def test_every_cited_code_name_exists():
    index = Index()
    keys = config_keys()
    missing = []
    file = None     # the last test file cited: `::test` is one of its
    for span in cited():
        name = span[:-2] if span.endswith("()") else span
        if "::" in span:                 # a test: file.py::test_name
            cited_file, test = span.split("::", 1)
            file = cited_file or file
            path = ROOT / "tests" / (file or "?")
            if not path.exists() or not re.search(
                    rf"^def {re.escape(test.lstrip(':'))}\(",
                    path.read_text(), re.M):
                missing.append(span)
        elif span.endswith(".py"):       # a file, or files (cli*.py)
            file = span.rsplit("/", 1)[-1]
            paths = [p.relative_to(ROOT).as_posix() for p in SOURCES + TESTS]
            if not any(fnmatch.fnmatch(p, span) or
                       fnmatch.fnmatch(p, f"*/{span}") for p in paths):
                missing.append(span)
        elif span.endswith("/"):         # a package
            if not any((base / span).is_dir()
                       for base in (ROOT, ROOT / "vmjobs")):
                missing.append(span)
        elif name in VERBS or name in keys:
            continue
        elif re.fullmatch(rf"{NAME}(\.{NAME})+", name):
            if not index.resolves(name):
                missing.append(span)
        elif re.fullmatch(NAME, name) and (
                span.endswith("()") or name[0].isupper() and
                any(c.islower() for c in name)):
            if not index.defines(name):  # a class or a function
                missing.append(span)
        elif re.fullmatch(NAME, name) and not name.isupper():
            if not index.names(name):    # a module, a parameter, a step
                missing.append(span)
    assert missing == [], missing


def diagram():
    """The request's diagram (the page's fenced block)."""
    return "\n".join(re.findall(r"```(.*?)```", PAGE.read_text(), re.S))


def test_the_diagram_names_what_exists():
    """The diagram is not backquoted: its classes (`CreateJob`), their
    members (`Pool._startable`) and its files (`rpc.py`) are looked up
    all the same. (`job.run()` and the like name an instance's method:
    their classes are the members' check.)"""
    index = Index()
    paths = [p.relative_to(ROOT).as_posix() for p in SOURCES]
    text = diagram()
    missing = [name for name in re.findall(rf"\b[A-Z]\w*\.{NAME}", text)
               if not index.resolves(name)]
    missing += [name for name in re.findall(r"\b[A-Z][a-z]+[A-Z]\w*", text)
                if not index.defines(name)]
    missing += [name for name in re.findall(r"\b\w+\.py\b", text)
                if not any(p.endswith("/" + name) for p in paths)]
    assert missing == [], missing


@pytest.mark.parametrize("name,exists", [
    ("Pool._startable", True), ("Pool._normal_may_run", False),
    ("Job.wait_for", True), ("Job.park", False),
    ("workers.Job._lock", True), ("hypervisor.DomainState", True),
    ("VmRegistry.listed", True), ("VmRegistry.staged", False),
])
def test_the_check_tells_a_name_that_is_gone(name, exists):
    # Positive and negative controls for the resolver the test uses.
    assert Index().resolves(name) is exists


@pytest.mark.parametrize("word,exists", [
    ("rundir", True), ("one_line", True), ("unless", True),
    ("wait-slot", True), ("_make_private", False), ("listeners", False),
])
def test_the_check_tells_a_bare_name_that_is_gone(word, exists):
    # A module, a function, a parameter, a step; then a helper removed
    # (the run directory's, now rundir.prepare) and a word the code
    # never names.
    assert Index().names(word) is exists


def layer_rows():
    """{package cell: its row's text} of the page's table of layers."""
    text = PAGE.read_text()
    table = text.split("## The layers", 1)[1].split("\n\n", 2)[1]
    return {row.split("|")[1].strip(): row
            for row in table.splitlines()[2:] if row.startswith("|")}


def test_every_module_is_named_in_its_layer():
    """The table of layers is where a newcomer looks a module up: each
    module is named (backquoted) in the row of its package, so that a new
    module (the storm over several hosts, the strict JSON reader) is not
    left out of the map (two were)."""
    rows = layer_rows()
    packages = {"workers": "`workers/`", "vmjobs": "`vmjobs/` core",
                "vmjobs/flows": "`vmjobs/flows/`",
                "vmjobs/hypervisor": "`vmjobs/hypervisor/`",
                "vmjobs/tools": "`vmjobs/tools/`"}
    missing = []
    for folder, cell in packages.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            name = path.stem
            if name in ("__init__", "__main__"):
                continue
            command_line = folder == "vmjobs" and (
                name == "cli" or name.startswith("cli_"))
            row = rows["the command line" if command_line else cell]
            if not re.search(rf"`{name}(\.py)?`", row):
                missing.append(f"{folder}/{path.name}")
    assert missing == [], missing
