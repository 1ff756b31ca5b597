"""A set of words as an enum whose members are their strings."""

import enum


class StrEnum(str, enum.Enum):
    """Members equal, print, format, hash and go to JSON as their plain
    string value, so a status compares with an engine's string and keys a
    dict as cheaply as one (Enum's own hash is a Python call)."""
    __str__ = str.__str__
    __format__ = str.__format__  # type: ignore[assignment]
    __hash__ = str.__hash__
