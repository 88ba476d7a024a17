"""Edits placed into the original text of an XML file: insert child elements, set attribute values.

A :class:`Plan` collects what one pass over a :class:`SourceDocument` wants to change; :func:`run_passes`
applies the edits and repeats on the result until a pass wants nothing more (edits that touch the same
bytes wait for the next pass). The last pass proves the result well-formed and the patch idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lxml import etree

from glidein_triton.operator.xmlpatch.source import PatchError, SourceDocument

#: GlideinWMS's own configuration files nest elements by three spaces; so do the templates.
INDENT_UNIT = "   "
MAX_PASSES = 8


@dataclass(frozen=True)
class Edit:
    """Replace the bytes ``start:end`` of the document by ``text`` (an insertion when start == end)."""

    start: int
    end: int
    text: str


def escape_attribute(value: str, quote: str) -> str:
    """``value`` written inside an attribute delimited by ``quote`` (a value parsers read back unchanged)."""
    text = value.replace("&", "&amp;").replace("<", "&lt;")
    text = text.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    return text.replace(quote, "&quot;" if quote == '"' else "&apos;")


def _other_quote(quote: str) -> str:
    return "'" if quote == '"' else '"'


def format_attribute(name: str, value: str) -> str:
    """``name="value"``, or single quotes when the value has double quotes and no single ones."""
    quote = "'" if '"' in value and "'" not in value else '"'
    return f"{name}={quote}{escape_attribute(value, quote)}{quote}"


def reindent(snippet: str, indent: str, unit: str = INDENT_UNIT, newline: str = "\n") -> str:
    """A snippet written from column 0 with three-space nesting, moved to ``indent`` nesting by ``unit``."""
    lines = []
    for line in snippet.splitlines():
        stripped = line.lstrip(" ")
        depth = (len(line) - len(stripped)) // len(INDENT_UNIT)
        lines.append(indent + unit * depth + stripped)
    return newline.join(lines)


def wrap(tag: str, children: Sequence[str]) -> str:
    """A new container element holding the given child snippets (column 0, three-space nesting)."""
    body = "".join(reindent(child, INDENT_UNIT) + "\n" for child in children)
    return f"<{tag}>\n{body}</{tag}>"


class Plan:
    """The edits one pass wants: snippets to insert per container, attribute values to set."""

    def __init__(self, document: SourceDocument) -> None:
        self.document = document
        self._insertions: dict[etree._Element, list[str]] = {}
        self._edits: list[Edit] = []

    def insert(self, container: etree._Element, snippet: str) -> None:
        """Add ``snippet`` as the last child of ``container``, indented like its other children."""
        self._insertions.setdefault(container, []).append(snippet)

    def raw_attribute(self, element: etree._Element, name: str) -> tuple[str, str] | None:
        """The attribute's value exactly as written (entities and line breaks kept), and its quote."""
        attribute = self.document.span(element).attributes.get(name)
        if attribute is None:
            return None
        return self.document.text(attribute.value_start, attribute.value_end), attribute.quote

    def set_raw_attribute(self, element: etree._Element, name: str, raw_value: str) -> None:
        """Replace an existing attribute's text with ``raw_value``, already escaped for its quote."""
        attribute = self.document.span(element).attributes[name]
        self._edits.append(Edit(attribute.value_start, attribute.value_end, raw_value))

    def set_attribute(self, element: etree._Element, name: str, value: str) -> None:
        """Set an attribute: its value replaced in place, or the attribute added after the last one."""
        span = self.document.span(element)
        attribute = span.attributes.get(name)
        if attribute is not None and attribute.quote in value and _other_quote(attribute.quote) not in value:
            # Change the quotes rather than write &quot; (or &apos;) into the value.
            quote = _other_quote(attribute.quote)
            self._edits.append(
                Edit(
                    attribute.value_start - 1,
                    attribute.value_end + 1,
                    quote + escape_attribute(value, quote) + quote,
                )
            )
            return
        if attribute is not None:
            self.set_raw_attribute(element, name, escape_attribute(value, attribute.quote))
            return
        if span.attributes:
            position = max(attribute.value_end for attribute in span.attributes.values()) + 1
        else:
            position = span.start + 1 + len(self.document.encode(span.tag))
        self._edits.append(Edit(position, position, " " + format_attribute(name, value)))

    def edits(self) -> list[Edit]:
        insertions = [
            self._insertion(container, snippets) for container, snippets in self._insertions.items()
        ]
        return [*self._edits, *insertions]

    def _child_indent(self, container: etree._Element, container_indent: str) -> tuple[str, str]:
        """(indentation of the container's children, one nesting step), as the file already does it.

        From the container's first child on a line of its own; else one step more than the container,
        the step being how much deeper the container is than its parent (three spaces if unknown).
        """
        for child in self.document.span(container).children:
            indent = self.document.indent_before(child.start)
            if (
                indent is not None
                and len(indent) > len(container_indent)
                and indent.startswith(container_indent)
            ):
                return indent, indent[len(container_indent) :]
        unit = INDENT_UNIT
        parent = container.getparent()
        if parent is not None:
            parent_indent = self.document.indent_before(self.document.span(parent).start)
            if parent_indent is not None and container_indent.startswith(parent_indent):
                unit = container_indent[len(parent_indent) :] or INDENT_UNIT
        return container_indent + unit, unit

    def _insertion(self, container: etree._Element, snippets: Sequence[str]) -> Edit:
        document = self.document
        span = document.span(container)
        newline = document.newline
        container_indent = document.indent_before(span.start) or ""
        child_indent, unit = self._child_indent(container, container_indent)
        body = "".join(reindent(snippet, child_indent, unit, newline) + newline for snippet in snippets)
        if span.self_closing:
            closing = f">{newline}{body}{container_indent}</{span.tag}>"
            return Edit(span.end - 2, span.end, closing)
        line_start = document.line_start(span.close_start)
        if line_start >= span.start_tag_end and document.indent_before(span.close_start) is not None:
            return Edit(line_start, line_start, body)
        return Edit(span.close_start, span.close_start, newline + body + container_indent)


def apply_edits(document: SourceDocument, edits: Sequence[Edit]) -> bytes:
    """The document with the edits that do not touch each other applied; the others wait a pass."""
    pieces: list[bytes] = []
    position = 0
    previous: Edit | None = None
    for edit in sorted(edits, key=lambda edit: (edit.start, edit.end)):
        same_point = previous is not None and edit.start == edit.end == previous.start == previous.end
        if edit.start < position or same_point:
            continue
        pieces += [document.data[position : edit.start], document.encode(edit.text)]
        position = edit.end
        previous = edit
    pieces.append(document.data[position:])
    return b"".join(pieces)


def run_passes(data: bytes, label: str, planner: Callable[[SourceDocument], list[Edit]]) -> tuple[bytes, str]:
    """Apply the planner's edits until it wants none; (new bytes, encoding). Raises PatchError."""
    for number in range(MAX_PASSES):
        try:
            document = SourceDocument(data, label)
        except PatchError as error:
            if number == 0:
                raise
            raise PatchError(
                f"{label}: the changes would break the file (a bug: please report it): {error}"
            ) from error
        edits = planner(document)
        if not edits:
            return data, document.encoding
        data = apply_edits(document, edits)
    raise PatchError(
        f"{label}: the changes did not settle after {MAX_PASSES} passes (a bug: please report it)"
    )
