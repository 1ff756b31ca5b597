"""A whole number written in decimal by someone else (an HTTP
Content-Length, a count in a domain XML), read one way: ASCII digits
only, since str.isdigit() takes '²' and other digits that int() then
refuses; and never handed whole to int(), which refuses a text of more
than 4300 digits (a ValueError where the caller's number should be
refused by name)."""


def parse(text, most_digits):
    """The number `text` says, or None if it is not ASCII decimal digits
    only (or empty). A number of more than `most_digits` digits, leading
    zeros aside, is read as 10 ** most_digits: larger than any number of
    `most_digits` digits, which is all the caller takes."""
    if not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0")
    if len(digits) > most_digits:
        return 10 ** most_digits
    return int(digits or "0")
