"""docs/allowlist.md from vmjobs/allowlist.py's table, so the document is
the table itself (tests/test_allowlist_doc.py fails while it is stale).

    python -m vmjobs.tools.allowlist_doc [--check] [PATH]
"""

import argparse
import os
import sys

from vmjobs import allowlist

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "..", "docs",
                       "allowlist.md")


def render():
    kinds = {}
    lines = [
        "# The domain XML vmjobs accepts",
        "",
        "Generated from `vmjobs/allowlist.py` by "
        "`python -m vmjobs.tools.allowlist_doc`; do not edit by hand.",
        "",
        "An element, attribute or text that is not listed here is refused "
        "with -32602 (param `xml`, or `restoreState` for the XML inside a "
        "state file), naming it. So are an element with both text and "
        "child elements, a carriage return in a text (`&#13;`: libvirt "
        "reads it as a newline from what vmjobs writes), nesting deeper "
        "than "
        f"{allowlist.MAX_DEPTH} levels, more than "
        f"{allowlist.MAX_DEVICES} devices (controllers apart), and any "
        "namespace outside "
        "`<metadata>` (whose content libvirt keeps and never reads).",
        "",
        "## Refused with a reason, wherever they appear",
        "",
        "| element | why |",
        "|---|---|",
    ]
    lines += [f"| `<{tag}>` | {why} |"
              for tag, why in allowlist.REFUSED.items()]
    lines += ["", "## Elements", "",
              "| element | attributes | text | rule |", "|---|---|---|---|"]
    for key, spec in allowlist.TABLE.items():
        attrs = ", ".join(
            f"`{name}`: {_kind(kind, kinds)}" + (
                f" (absent: libvirt reads `{spec.defaults[name]}`, checked "
                "as written)" if name in spec.defaults else "")
            for name, kind in spec.attrs.items())
        text = _kind(spec.text, kinds) if spec.text is not None else ""
        if spec.opaque:
            text = "anything (not read by libvirt; namespaced)"
        rule = (spec.rule.__doc__ or "").split("\n\n")[0] if spec.rule \
            else ""
        if spec.once:
            rule = ("At most one (libvirt reads its children across all "
                    "of them). " + rule).strip()
        lines.append(f"| `{key}` | {attrs} | {text} | "
                     f"{' '.join(rule.split())} |")
    lines += ["", "## Types", "", "| type | values |", "|---|---|"]
    lines += [f"| {name} | {doc} |" for name, doc in sorted(kinds.items())]
    lines += ["", "## Host path slots", "",
              "Every slot libvirt reads as a host path, each confined to "
              "`storage.image_dirs` (absolute, normalized, no control "
              "characters, inside once symlinks are resolved, not an image "
              "directory itself):", ""]
    lines += [f"- `{key}`" + (f" `{attr}`" if attr else " (text)")
              for key, attr, _ in allowlist.host_path_slots()]
    return "\n".join(lines) + "\n"


def _kind(kind, kinds):
    names = {id(v): k for k, v in vars(allowlist).items()
             if isinstance(v, allowlist.Kind) and k.isupper()}
    name = names.get(id(kind))
    if name is None:
        return kind.doc
    kinds[name] = kind.doc
    return name


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("path", nargs="?", default=os.path.normpath(DEFAULT))
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if PATH is not what would be written")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        with open(args.path, encoding="utf-8") as f:
            return 0 if f.read() == text else 1
    with open(args.path, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
