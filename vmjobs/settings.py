"""One configuration key: its section, type, bounds and a one-line
comment; it parses a file's text into a value and checks a value from any
source, with errors that say where the value came from and what is
allowed. Also the syntax of the one key whose value is an address
(`listen`), which the client and the listener read too."""

import dataclasses
import ipaddress
import math
import os
import re

from . import decimals


class ConfigError(ValueError):
    pass


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


# A host name, an IPv4 address or an IPv6 address (a network disk's host).
_HOST = re.compile(r"[A-Za-z0-9.:-]{1,253}")
# What a list's items are, in words.
_ITEMS = {"path": "absolute path", "host": "host name or address",
          "network": "network (CIDR, e.g. 10.0.0.0/24)"}


def _network(text):
    """Whether `text` is a network in CIDR notation (its host bits may be
    set: 10.0.0.1/24 is 10.0.0.0/24)."""
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


@dataclasses.dataclass(frozen=True)
class Setting:
    section: str
    key: str
    field: str
    kind: type            # int, float, str, bool, or list (of str)
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    optional: bool = False   # may be empty (None, or an empty list)
    comment: str = ""
    items: str = "path"      # a list's items: paths, hosts or networks

    @property
    def name(self):
        return f"{self.section}.{self.key}"

    @property
    def repeatable(self):
        """A list key: one item per line; a file that names it replaces
        the list it had before that file."""
        return self.kind is list

    def allowed(self):
        """What the key accepts, in words."""
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        elif self.kind is bool:
            text = "true or false"
        elif self.kind is list:
            text = f"one {_ITEMS[self.items]} per line, the key repeated"
            if self.items == "path":
                text += ", or several on one line apart by blanks"
        elif self.kind in (int, float):
            text = "an integer" if self.kind is int else "a finite number"
            if self.low is not None and self.high is not None:
                text += f" from {_num(self.low)} to {_num(self.high)}"
            elif self.low is not None:
                text += f" >= {_num(self.low)}"
        else:
            text = "text"
        return text + (", or empty" if self.optional else "")

    def error(self, where, shown, problem):
        return ConfigError(f"{where}: {self.name} = {shown}: {problem} "
                           f"(allowed: {self.allowed()})")

    def parse(self, text, where):
        """The value of the file text `text` (comments already stripped);
        `where` (FILE:LINE) names it in an error. A list key's line gives
        a list of its items (items_of)."""
        text = text.strip()
        if self.kind is list:
            return self.items_of(text)
        if self.optional and text == "":
            return None
        if self.kind is bool:
            if text.lower() not in _TRUE + _FALSE:
                raise self.error(where, repr(text), "not true or false")
            return text.lower() in _TRUE
        try:
            value = self.kind(text)
        except ValueError:
            raise self.error(where, repr(text), "not " + (
                "an integer" if self.kind is int else "a number")) from None
        self.check(value, where)
        return value

    def items_of(self, text):
        """The items of a list key's line `text`: one per line is the
        form, but a line of absolute paths apart by blanks is read as
        them (`state_dirs = /a /b`: two directories, as whoever wrote it
        meant; it was one, "/a /b", which exists nowhere, so that every
        state file was refused). A path with a blank in it is one item
        unless each of its pieces is an absolute path (/srv/my states).
        Hosts and networks hold no blank: such a line is refused (check)."""
        if not text:
            return []
        pieces = text.split()
        if len(pieces) > 1 and self.items == "path" and \
                all(os.path.isabs(p) for p in pieces):
            return pieces
        return [text]

    def check(self, value, where):
        if value is None or (value == "" and self.kind is str):
            if self.optional:
                return
            raise self.error(where, "(empty)", "a value is required")
        for text in (value if isinstance(value, list) else [value]):
            if isinstance(text, str) and self.kind is list and \
                    len(self.items_of(text)) > 1:
                raise self.error(
                    where, repr(text), "several items apart by blanks, "
                    "which a configuration file reads as several: give "
                    "each its own")
            if isinstance(text, str) and not _writable(text):
                raise self.error(
                    where, repr(text), "a line break or control "
                    "character, blanks around it, or a ; or # after a "
                    "blank or first: no configuration file can hold it "
                    "(vmjobs config would write another value)")
        if self.kind is list and self.items == "network":
            if not isinstance(value, list) or not all(
                    isinstance(v, str) and _network(v) for v in value):
                raise self.error(where, repr(value),
                                 "not a list of networks (CIDR)")
            return
        if self.kind is list and self.items == "host":
            if not isinstance(value, list) or not all(
                    isinstance(v, str) and _HOST.fullmatch(v)
                    for v in value) or (not value and not self.optional):
                raise self.error(where, repr(value),
                                 "not a list of host names or addresses")
            return
        if self.kind is list:
            # Lists are of directories a caller is confined to: an empty
            # list or a relative path would confine nothing sensible.
            if not isinstance(value, list) or \
                    (not value and not self.optional) or \
                    not all(isinstance(v, str) and os.path.isabs(v)
                            for v in value):
                raise self.error(where, repr(value),
                                 "not a list of absolute paths")
            return
        if self.kind is bool:
            if not isinstance(value, bool):
                raise self.error(where, repr(value), "not true or false")
            return
        if self.kind in (int, float):
            if isinstance(value, bool) or \
                    not isinstance(value, (int, float)):
                raise self.error(where, repr(value), "not a number")
            if not math.isfinite(value):
                raise self.error(where, value, "not a finite number")
            if self.low is not None and value < self.low:
                raise self.error(where, value, "too small")
            if self.high is not None and value > self.high:
                raise self.error(where, value, "too large")
        if self.choices and value not in self.choices:
            raise self.error(where, repr(value), "not an allowed value")


def parse_listen(text):
    """'HOST:PORT' -> ('tcp', (host, port)); 'unix:/path' -> ('unix', path)."""
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not os.path.isabs(path):
            raise ConfigError(f"listen {text!r}: the socket path must be "
                             "absolute")
        return "unix", path
    host, sep, port = text.rpartition(":")
    number = decimals.parse(port, 5)
    if not sep or number is None or not 0 <= number <= 65535:
        raise ConfigError(f"listen {text!r}: expected HOST:PORT or "
                         "unix:/path")
    return "tcp", (host.strip("[]") or "127.0.0.1", number)


def _writable(text):
    """Whether `text`, written as `key = TEXT`, reads back as itself: an
    operator audit found a flag's value with a newline (--uri
    $'test:///default\\n[rpc]\\ninsecure = true') accepted, and `vmjobs
    config` writing it as lines of their own; and a value with " ;"
    (--image-dir '/srv/img ;old') read back cut (/srv/img)."""
    if _CONTROL.search(text) or len(text.splitlines()) > 1:
        return False
    line = _strip_comment(f"k = {text}")
    return line.partition("=")[2].strip() == text


# What a value cannot hold: C0 controls but tab, DEL, C1.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _num(value):
    return str(int(value)) if float(value).is_integer() else str(value)


def read_ini(text, path):
    """The (section, key, value, line number) of each assignment in an INI
    text, in order. Whole-line comments start with ';' or '#'; an inline
    comment is ';' or '#' after a blank. Keys may repeat (list keys)."""
    section = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            yield section, None, None, number
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{number}: expected 'key = value' or "
                              f"'[section]', found {raw.strip()!r}")
        if section is None:
            raise ConfigError(f"{path}:{number}: {key.strip()!r} comes "
                              "before any [section]")
        yield section, key.strip(), value.strip(), number


def _strip_comment(line):
    if line.lstrip()[:1] in (";", "#"):
        return ""
    for i, char in enumerate(line):
        if char in ";#" and i > 0 and line[i - 1] in " \t":
            return line[:i]
    return line
