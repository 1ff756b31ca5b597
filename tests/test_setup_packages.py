"""The Makefile installs what its targets need on a fresh Debian machine,
which has none of it: here, what `make deb` needs, read from the package's
own declaration (debian/control), the way dpkg-buildpackage checks it."""

import re
import subprocess

from serve import ROOT


def make_variable(name):
    """A Makefile variable as make expands it."""
    return subprocess.run(
        ["make", "--no-print-directory", "--eval",
         "print-%: ; @echo $($*)", f"print-{name}"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()


def build_depends():
    """debian/control's Build-Depends, as package names."""
    with open(f"{ROOT}/debian/control") as f:
        field = re.search(r"^Build-Depends:(.*?)^\S", f.read(),
                          re.MULTILINE | re.DOTALL).group(1)
    names = [re.match(r"\s*([a-z0-9][a-z0-9+.-]*)", entry).group(1)
             for entry in field.split(",") if entry.strip()]
    # debhelper-compat is a virtual package: debhelper provides it.
    return {"debhelper" if name == "debhelper-compat" else name
            for name in names}


def test_make_deb_installs_what_dpkg_buildpackage_checks():
    """dpkg-checkbuilddeps wants the Build-Depends and build-essential
    (Debian Policy 4.2: every build needs it, so no package names it);
    dpkg-dev does not pull it in, and a fresh machine does not have it."""
    installed = set(make_variable("DEB_PACKAGES"))
    needed = build_depends() | {"build-essential"}
    assert {"debhelper", "dh-python"} <= needed   # the parse read the field
    assert needed - installed == set()
