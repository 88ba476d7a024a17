"""ClassAds in the old syntax (``Name = expression`` a line), the one home of their literals.

Read: a job ad's literal values (string literals unescaped). Written: the machine ad's attributes, through
condor_vars.lst (condor_startup.sh quotes them) and the startd cron's ``Name = value`` lines; their
strings on one line, without quotes or backslashes.
"""

from __future__ import annotations

import re

#: the longest string value the plugin puts in the machine ad
MAX_STRING = 500


def string_literal(expression: str) -> str | None:
    """The value of a string literal (``"a \\"b\\""``: a backslash keeps the next character as it is);
    None when ``expression`` is not one plain string literal."""
    text = expression.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return None
    characters: list[str] = []
    escaped = False
    for character in text[1:-1]:
        if escaped:
            characters.append(character)
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == '"':
            return None  # two literals, or an expression: not one plain string
        else:
            characters.append(character)
    return "".join(characters)


def quoted(text: str) -> str:
    """``text`` as a ClassAd string literal for an expression (a ``-constraint``): backslash and double
    quote escaped with a backslash, other control characters as octal escapes, so that no value can end
    the literal and add to the expression."""
    characters = []
    for character in text:
        if character in '"\\':
            characters.append("\\" + character)
        elif ord(character) < 0x20 or ord(character) == 0x7F:
            characters.append(f"\\{ord(character):03o}")
        else:
            characters.append(character)
    return '"' + "".join(characters) + '"'


def literal_values(text: str, names: tuple[str, ...]) -> dict[str, str]:
    """The values of ``names`` in the ad ``text``: string literals unquoted, other expressions as written.

    ClassAd attribute names are case-insensitive; the keys of the result are spelled as in ``names``.
    """
    wanted = {name.lower(): name for name in names}
    values = {}
    for line in text.splitlines():
        name, separator, expression = line.partition("=")
        key = wanted.get(name.strip().lower())
        if separator and key:
            string = string_literal(expression)
            values[key] = expression.strip() if string is None else string
    return values


def machine_ad_string(text: str) -> str:
    """``text`` as a string value of the machine ad: one line, no quotes or backslashes (safe
    inside condor_startup.sh's quoting and a cron line's), at most MAX_STRING characters."""
    return " ".join(re.sub(r"[\"'\\]", "", text).split())[:MAX_STRING]


def attribute_line(name: str, value: object) -> str:
    """One ``Name = value`` line of the startd cron: strings quoted (see :func:`machine_ad_string`), the
    rest as Python writes them (``True``, ``12``, ``0.25``)."""
    if isinstance(value, str):
        return f'{name} = "{machine_ad_string(value)}"'
    return f"{name} = {value}"
