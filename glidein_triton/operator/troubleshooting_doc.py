"""``glidein-triton troubleshooting-doc``: the message tables of docs/troubleshooting.md, generated from
the failure catalogue (glidein_triton/worker/failure_messages.py); the prose around them is kept."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from glidein_triton.operator import generated_doc
from glidein_triton.worker.failure_messages import CATALOGUE, SECTIONS, FailureMessage

#: a generated table sits between these two lines, with blank lines around it
BEGIN = "<!-- generated from the failure catalogue: {section} -->"
END = "<!-- end of the generated table -->"
BLOCK = re.compile(
    re.escape(BEGIN).replace(re.escape("{section}"), r"(?P<section>[^ ]*)") + r"\n.*?" + re.escape(END),
    re.DOTALL,
)
HEADER = "| message | cause | fix |\n|---|---|---|\n"


def fixed_parts(template: str) -> list[str]:
    """The literal text of ``template`` between its fields."""
    return [literal for literal, _name, _spec, _conversion in string.Formatter().parse(template) if literal]


def shown_message(entry: FailureMessage) -> str:
    """The message as the page quotes it: each field as ``<what it is>``."""
    parts = []
    for literal, name, _spec, _conversion in string.Formatter().parse(entry.template):
        parts.append(literal)
        if name is not None:
            parts.append(entry.shown.get(name, f"<{name.replace('_', ' ')}>"))
    return "".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(section: str) -> str:
    """The ``| message | cause | fix |`` table of the entries of ``section``."""
    rows = [
        f"| `{_cell(shown_message(entry))}`{' ' + entry.note if entry.note else ''} | {_cell(entry.cause)} "
        f"| {_cell(entry.fix)} |\n"
        for entry in CATALOGUE
        if entry.section == section
    ]
    return HEADER + "".join(rows)


def block(section: str) -> str:
    return f"{BEGIN.format(section=section)}\n\n{table(section)}\n{END}"


def update(page: str | None) -> str:
    """``page`` with each generated table current; without a page, every table."""
    if page is None:
        return "\n\n".join(block(section) for section in SECTIONS) + "\n"
    found = [match.group("section") for match in BLOCK.finditer(page)]
    if sorted(found) != sorted(SECTIONS):
        missing = [section for section in SECTIONS if section not in found]
        unknown = [section for section in found if section not in SECTIONS or found.count(section) > 1]
        raise ValueError(
            f"the page must have one generated table per section of the catalogue; missing: "
            f"{', '.join(missing) or 'none'}; unknown or repeated: {', '.join(unknown) or 'none'} "
            f"(each begins with {BEGIN!r} and ends with {END!r})"
        )
    return BLOCK.sub(lambda match: block(match.group("section")), page)


def main(argv: Sequence[str] | None = None) -> int:
    return generated_doc.main_in_place("troubleshooting-doc", __doc__, update, argv)
