"""The files an install ships that say what the code says: the man pages
vmjobs(8) (from the command line's parser) and vmjobs.conf(5) (from the
settings table), the example /etc/vmjobs/vmjobs.conf (every key,
commented, at its default) and the bash completion. They are generated,
committed, and checked current by tests/test_shipped_files.py, so they
cannot drift from the code:

    python -m vmjobs.tools.shipped .     # rewrites them in the source tree
"""

import argparse
import os
import sys

from .. import __version__
from .. import config as configuration

# path in the source tree -> the function that makes its text
FILES = {}
# The flags whose value is a path: bash completes file names for them.
PATH_FLAGS = frozenset({"--config", "--log-file", "--lock-file", "--cert",
                        "--key", "--ca", "--state-dir", "--image-dir",
                        "--json", "--plot", "-f", "--file"})


def shipped(path):
    def register(function):
        FILES[path] = function
        return function
    return register


def _roff(text):
    """Plain text as roff: backslashes and leading dots/quotes escaped."""
    text = str(text).replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line
                     for line in text.splitlines())


def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices, {a.dest: a.help
                                    for a in action._choices_actions}
    return {}, {}


def _options(parser):
    """(synopsis of the option, its help) for each documented option."""
    for action in parser._actions:
        if action.help in (None, argparse.SUPPRESS) or \
                isinstance(action, (argparse._HelpAction,
                                    argparse._SubParsersAction)):
            continue
        if action.option_strings:
            names = ", ".join(action.option_strings)
            if action.nargs != 0:
                names += " " + (action.metavar or action.dest.upper())
        else:
            names = action.metavar or action.dest
        help_text = action.help
        if "%(default)s" in help_text:
            help_text = help_text % {"default": action.default}
        if action.choices and not action.option_strings:
            help_text += " (" + ", ".join(action.choices) + ")"
        elif action.choices:
            help_text += " (one of " + ", ".join(action.choices) + ")"
        yield names, help_text


def _usage(parser):
    usage = parser.format_usage().strip()
    return " ".join(usage.removeprefix("usage: ").split())


@shipped("man/vmjobs.8")
def vmjobs_8():
    from ..cli import build_parser
    parser = build_parser()
    commands, helps = _subcommands(parser)
    out = [f'.TH VMJOBS 8 "" "vmjobs {__version__}" "System Administration"',
           ".SH NAME", "vmjobs \\- a host agent's VM\\-startup engine",
           ".SH SYNOPSIS", ".B vmjobs", "[\\fB\\-\\-debug\\fR] "
           "\\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
           ".SH DESCRIPTION", _roff(
               "vmjobs turns an engine's verbs (VM.create, "
               "VM.migrationCreate, VM.migrate, VM.hibernate) into typed "
               "jobs on a bounded queue, run by a fixed pool of workers, and "
               "serves them over JSON-RPC (VDSM's verb names, error codes "
               "and job schema). A VM being started is staged privately and "
               "listed only once it is up; nothing half-made is left "
               "behind."),
           ".PP", _roff(
               "vmjobs serve drives the host's hypervisor, "
               f"{configuration.DEFAULT_URI}, unless --uri names another "
               "libvirt URI; with libvirt's test driver (--uri "
               "test:///default) no VM is real, and the service says so at "
               "start and in Host.getStats (uri)."),
           ".SH OPTIONS"]
    for names, text in _options(parser):
        if names == "COMMAND":
            continue
        out += [".TP", f"\\fB{_roff(names)}\\fR", _roff(text)]
    out.append(".SH COMMANDS")
    for name, sub in commands.items():
        out += [f".SS {name}", _roff(helps[name] + "."), ".PP",
                f"\\fB{_roff(_usage(sub))}\\fR"]
        for names, text in _options(sub):
            if names == "--debug":
                continue
            out += [".TP", f"\\fB{_roff(names)}\\fR", _roff(text)]
    out += [
        ".SH FILES",
        ".TP", f"\\fI{configuration.DEFAULT_PATH}\\fR, "
        f"\\fI{configuration.DEFAULT_PATH}.d/*.conf\\fR",
        _roff("The configuration, read in that order; see vmjobs.conf(5). "
              "Flags override it."),
        ".TP", "\\fI/run/vmjobs/vmjobs.sock\\fR",
        _roff("The default listener (mode 0600: root only)."),
        ".TP", "\\fI/var/lib/vmjobs/states\\fR, \\fI/var/lib/vmjobs/images"
        "\\fR", _roff("The directories a caller may name state files and a "
                      "domain XML's host files in."),
        ".SH SIGNALS",
        _roff("SIGTERM and SIGINT stop the service cleanly (public VMs keep "
              "running; the next start recovers them); SIGHUP reopens the "
              "log file."),
        ".SH EXIT STATUS",
        _roff("0 on success; 1 when the service answered a call with an "
              "error, when serve stopped with jobs still running past "
              "service.stop_timeout (they are named in its log), when a "
              "sandbox action failed, or when chaos found a violation; 2 "
              "when the command itself failed (one line on stderr says "
              "what and what to try); 130 when a command other than serve "
              "was interrupted (Ctrl-C)."),
        ".SH SEE ALSO", "\\fBvmjobs.conf\\fR(5), \\fBlibvirtd\\fR(8), "
        "\\fBsystemctl\\fR(1)", ""]
    return "\n".join(out)


@shipped("man/vmjobs.conf.5")
def vmjobs_conf_5():
    out = [f'.TH VMJOBS.CONF 5 "" "vmjobs {__version__}" "File Formats"',
           ".SH NAME", "vmjobs.conf \\- the vmjobs service's configuration",
           ".SH SYNOPSIS", f"\\fI{configuration.DEFAULT_PATH}\\fR, "
           f"\\fI{configuration.DEFAULT_PATH}.d/*.conf\\fR",
           ".SH DESCRIPTION", _roff(
               "An INI file: [section] lines, then key = value lines. "
               "Comments start with ; or # (at the start of a line, or "
               "after a blank). vmjobs serve reads the file, then each "
               ".conf file of the .d directory in name order; a later file "
               "overrides an earlier one, and the command line's flags "
               "override them all. An unknown section or key, or a bad "
               "value, stops the service with the file, line and what is "
               "allowed. A file (or the directory it is in) that a user "
               "other than root may write is refused: the service runs "
               "as root with what it says. vmjobs config --show prints "
               "every key, its value and where it came from."),
           ".SH KEYS"]
    defaults = configuration.Config()
    section = None
    for setting in configuration.SETTINGS:
        if setting.section != section:
            section = setting.section
            out.append(f".SS [{section}]")
        out += [".TP", f"\\fB{setting.key}\\fR = "
                f"\\fI{_roff(_default(defaults, setting))}\\fR",
                _roff(f"{setting.comment[:1].upper()}{setting.comment[1:]}"
                      f". Allowed: {setting.allowed()}.")]
    out += [".SH SEE ALSO", "\\fBvmjobs\\fR(8)", ""]
    return "\n".join(out)


def _default(config, setting):
    value = getattr(config, setting.field)
    if setting.field == "workers":
        return "2 x the cores"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return " ".join(value)
    return "" if value is None else str(value)


@shipped("contrib/vmjobs.conf")
def example_config():
    lines = ["# /etc/vmjobs/vmjobs.conf: the vmjobs service's configuration "
             "(vmjobs.conf(5)).",
             "# Every key is here, commented out, at its default: uncomment "
             "a line to change it.",
             "# Files in /etc/vmjobs/vmjobs.conf.d/*.conf are read after "
             "this one, in name order.",
             "# `vmjobs config --show` prints the effective value of each "
             "key and where it came from.", ""]
    defaults = configuration.Config()
    section = None
    for setting in configuration.SETTINGS:
        if setting.section != section:
            if section is not None:
                lines.append("")
            section = setting.section
            lines.append(f"[{section}]")
        lines.append(f"# {setting.comment}; {setting.allowed()}")
        values = getattr(defaults, setting.field)
        for value in ((values or [""]) if setting.repeatable else [None]):
            shown = value if setting.repeatable else \
                _default(defaults, setting)
            if setting.field == "workers":   # the default depends on cores
                lines.append("# (default: 2 x the cores; for example:)")
                shown = "4"
            lines.append(f";{setting.key} = {shown}".rstrip())
    return "\n".join(lines) + "\n"


@shipped("contrib/bash-completion/vmjobs")
def bash_completion():
    from ..cli import build_parser
    commands, _ = _subcommands(build_parser())
    cases = []
    for name, sub in commands.items():
        flags = [o for a in sub._actions for o in a.option_strings]
        choices = {o: a.choices for a in sub._actions if a.choices
                   for o in a.option_strings}
        positional = [a for a in sub._actions if not a.option_strings
                      and a.choices]
        words = " ".join(flags)
        body = []
        for flag, values in sorted(choices.items()):
            body.append(f'        {flag}) COMPREPLY=($(compgen -W '
                        f'"{" ".join(values)}" -- "$cur")); return;;')
        files = [o for a in sub._actions for o in a.option_strings
                 if o in PATH_FLAGS and a.nargs != 0]
        if files:
            body.append(f'        {"|".join(sorted(set(files)))}) '
                        'COMPREPLY=($(compgen -f -- "$cur")); return;;')
        extra = ""
        if positional:
            extra = " ".join(positional[0].choices)
        if name == "call":
            extra = ("$(vmjobs call --list 2>/dev/null | tail -n +2 | "
                     "cut -d' ' -f1)")
        cases.append(f"    {name})\n        case \"$prev\" in\n"
                     + "\n".join(body + ["    esac"]).replace(
                         "    esac", "        esac")
                     + f'\n        COMPREPLY=($(compgen -W "{words} {extra}"'
                     ' -- "$cur"));;')
    return f"""# bash completion for vmjobs(8); generated by vmjobs.tools.shipped
_vmjobs() {{
    local cur prev command i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    command=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            -*) ;;
            *) command="${{COMP_WORDS[i]}}"; break;;
        esac
    done
    case "$command" in
    "")
        COMPREPLY=($(compgen -W "--help --version --debug {' '.join(commands)}" -- "$cur"));;
{chr(10).join(cases)}
    esac
}}
complete -F _vmjobs vmjobs
"""


def main(argv=None):
    root = (argv or sys.argv[1:] or ["."])[0]
    for path, make in FILES.items():
        target = os.path.join(root, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write(make())
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
