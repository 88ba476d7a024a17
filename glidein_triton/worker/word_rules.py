"""The word rules every part of the plugin shares: truth values, model names, plain text.

Standard library free (no imports at all): the pre-job hook imports it before every job.
"""

from __future__ import annotations

#: Truth words as GlideinWMS's ``gconfig_get_bool`` reads them (upper-cased); a number counts too.
TRUE_WORDS = ("TRUE", "T", "YES", "Y")
FALSE_WORDS = ("FALSE", "F", "NO", "N", "")
MODEL_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
#: Said in every error about a model name.
MODEL_NAME_RULE = "letters, digits, '_', '.', '-'; not '.' or '..'; at most 200 characters"
#: Longer names could not be file names (the model's directory, its lock file).
MODEL_NAME_MAX = 200


def truth_value(value: str) -> bool | None:
    """``value`` as ``gconfig_get_bool`` reads it (blanks trimmed, any case, a whole number: non-zero is
    true); None when it is not a truth value."""
    word = value.strip(" \t\n\r").upper()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    if word.isascii() and word.isdigit():  # GlideinWMS's [0-9]+ (str.isdigit alone also takes "²")
        return int(word) != 0
    return None


def is_model_name(name: object) -> bool:
    """A Triton model name that is safe as a directory name, a lock file name and a URL path part.

    Any object may be asked about (a job's claim is JSON of any type): only such a string is a name.
    """
    return (
        isinstance(name, str)
        and 0 < len(name) <= MODEL_NAME_MAX
        and set(name) <= MODEL_NAME_CHARACTERS
        and name not in (".", "..")
    )


#: the reST roles docstrings use; a command's help prints the name alone
RST_ROLES = (":mod:", ":func:", ":class:", ":meth:", ":data:", ":attr:")


def plain_text(docstring: str) -> str:
    """``docstring`` as a command's help prints it: without reST markup (double backquotes, roles)."""
    text = docstring.replace("``", "")
    for role in RST_ROLES:
        start = text.find(role + "`")
        while start >= 0:
            name_start = start + len(role) + 1
            end = text.find("`", name_start)
            if end < 0:
                break
            text = text[:start] + text[name_start:end] + text[end + 1 :]
            start = text.find(role + "`", start)
    return text
