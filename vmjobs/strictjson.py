"""JSON as a verb reads it: one reading only. NaN and Infinity are not
JSON (Python's parser takes them), and a name given twice in one object is
refused, not read as its last: what one reader takes for a request,
another must not read otherwise (a hostile-caller audit). Bytes are
UTF-8 (RFC 8259, 8.1), a byte order mark before them ignored (as the
RFC allows): json.loads(bytes) also reads UTF-16 and UTF-32, and
surrogates written as UTF-8 bytes, none of which a reader of UTF-8
reads the same (a hostile-caller audit over the wire). For requests
(rpc.py) and for what a domain's metadata gives back (domxml.py), which is
not trusted more than the request that made it."""

import itertools
import json
import re

# The values a request may hold (rpc.py). A parsed value is a Python
# object of up to about 130 bytes while it is read (an empty object, and
# the list of its pairs), so 4 MiB of JSON could take 100 MB or more: 1.4
# million empty arrays did (a hostile-caller audit, round 13). An engine's
# request holds hundreds to thousands; a domain XML is one.
MAX_VALUES = 100_000
# The values (and names) of JSON text, counted without parsing: a string
# (read as the parser reads it: up to its first unescaped quote, so what
# is inside never counts), a '[' or '{' outside one, a number, true, false
# and null. A string left open runs to the end of the text: tried again
# from each of its bytes, one pass each, `"\"\"...` took time quadratic in
# its length (75 s for 160 KB).
_VALUES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|[\[{]'
                     rb'|-?[0-9][0-9.eE+-]*|true|false|null')


def more_values_than(data, limit=MAX_VALUES):
    """True if JSON bytes `data` may hold more than `limit` values (and
    names): counted, not parsed, and at most limit + 1 of them."""
    if len(data) <= limit:
        return False   # each value takes a byte at least
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    # One match at a time (re.subn kept a piece between every two: 27 MiB
    # for a request of empty arrays).
    found = itertools.islice(_VALUES.finditer(data), limit + 1)
    return sum(1 for _ in found) > limit


def loads(text):
    """The value of JSON `text` (str, or UTF-8 bytes); ValueError if it
    is not strict JSON, UnicodeDecodeError (a ValueError) if its bytes
    are not UTF-8 (RecursionError for nesting deeper than the parser
    goes)."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8-sig")
    return json.loads(text, parse_constant=_not_json,
                      object_pairs_hook=_unique_names)


def _not_json(constant):
    raise ValueError(f"{constant} is not JSON")


def _unique_names(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # The first name seen again, in one pass: counting each name among
        # all of them was quadratic (a hostile-caller audit, round 13: 16 s
        # of CPU for 40,000 names, half an hour for a 4 MiB request's).
        seen = set()
        for name, _ in pairs:
            if name in seen:
                raise ValueError(f"a name given twice in one object: "
                                 f"{name!r}")
            seen.add(name)
    return obj
