"""An XML file as its original bytes plus the exact position of every element, for edits in place.

lxml parses the file (well-formedness, decoded attribute values, XPath) and is used only to find what to
change. A small scanner over the same bytes records where each element's start tag, attributes and end tag
are, so that an edit replaces exactly those bytes and everything else (comments, quotes, attribute order,
line breaks, non-ASCII text) stays byte-identical. Both see the same elements in the same document order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

_NAME = re.compile(rb"[^\s/>=]+")
_SPACE = re.compile(rb"\s*")
#: Encodings in which the XML markup bytes are ASCII bytes, so that the scanner can work on bytes.
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\x00<\x00?", b"<\x00?\x00")


class PatchError(Exception):
    """A file cannot be patched: the message says which file and what is wrong; nothing was written."""


@dataclass
class AttributeSpan:
    """Where one XML attribute's value is (between the quotes), and which quote delimits it."""

    value_start: int
    value_end: int
    quote: str


@dataclass
class ElementSpan:
    """Where one element is: ``start`` is its ``<``, ``end`` is just after its end tag (or ``/>``).

    ``close_start`` is the ``<`` of the end tag; for a self-closing element it equals ``end``.
    """

    tag: str
    start: int
    start_tag_end: int = 0
    end: int = 0
    close_start: int = 0
    self_closing: bool = False
    attributes: dict[str, AttributeSpan] = field(default_factory=dict)
    children: list[ElementSpan] = field(default_factory=list)


def _find(data: bytes, token: bytes, start: int) -> int:
    position = data.find(token, start)
    if position < 0:
        raise ValueError(f"unterminated markup at byte {start}: no {token.decode()!r}")
    return position


def _match(pattern: re.Pattern[bytes], data: bytes, position: int) -> re.Match[bytes]:
    found = pattern.match(data, position)
    if found is None:
        raise ValueError(f"unexpected character at byte {position}")
    return found


def _start_tag(data: bytes, start: int) -> ElementSpan:
    """Scan ``<name attr="value" ...>`` or ``<name .../>``."""
    name = _match(_NAME, data, start + 1)
    element = ElementSpan(name.group().decode(), start)
    position = name.end()
    while True:
        position = _match(_SPACE, data, position).end()
        if data.startswith(b"/>", position):
            element.start_tag_end = element.end = element.close_start = position + 2
            element.self_closing = True
            return element
        if data.startswith(b">", position):
            element.start_tag_end = position + 1
            return element
        attribute = _match(_NAME, data, position)
        position = _match(_SPACE, data, attribute.end()).end()
        if not data.startswith(b"=", position):
            raise ValueError(f"attribute without a value at byte {attribute.start()}")
        position = _match(_SPACE, data, position + 1).end()
        quote = data[position : position + 1]
        if quote not in (b'"', b"'"):
            raise ValueError(f"unquoted attribute value at byte {position}")
        value_end = _find(data, quote, position + 1)
        key = attribute.group().decode()
        element.attributes[key] = AttributeSpan(position + 1, value_end, quote.decode())
        position = value_end + 1


def _skip_declaration(data: bytes, start: int) -> int:
    """Skip ``<!DOCTYPE name ...>``; an internal subset (``[...]``) could define elements: refused."""
    end = _find(data, b">", start)
    if b"[" in data[start:end]:
        raise PatchError("a DOCTYPE with an internal subset ([...]) is not supported")
    return end + 1


def scan_elements(data: bytes) -> list[ElementSpan]:
    """Every element of a well-formed document, in document order, with its byte positions."""
    elements: list[ElementSpan] = []
    open_elements: list[ElementSpan] = []
    position = data.find(b"<")
    while position >= 0:
        if data.startswith(b"<!--", position):
            end = _find(data, b"-->", position + 4) + 3
        elif data.startswith(b"<![CDATA[", position):
            end = _find(data, b"]]>", position) + 3
        elif data.startswith(b"<?", position):
            end = _find(data, b"?>", position) + 2
        elif data.startswith(b"<!", position):
            end = _skip_declaration(data, position)
        elif data.startswith(b"</", position):
            end = _find(data, b">", position) + 1
            closed = open_elements.pop()
            closed.close_start, closed.end = position, end
        else:
            element = _start_tag(data, position)
            if open_elements:
                open_elements[-1].children.append(element)
            elements.append(element)
            if not element.self_closing:
                open_elements.append(element)
            end = element.start_tag_end
        position = data.find(b"<", end)
    return elements


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


class SourceDocument:
    """One XML file: its bytes, the lxml tree to search, and the byte span of every element."""

    def __init__(self, data: bytes, label: str) -> None:
        self.data = data
        self.label = label
        if data.startswith(_WIDE_BOMS):
            raise PatchError(f"{label}: UTF-16/UTF-32 files are not supported; convert the file to UTF-8")
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, remove_comments=False, huge_tree=True
        )
        try:
            self.root = etree.fromstring(data, parser)
        except etree.XMLSyntaxError as error:
            raise PatchError(f"{label}: not well-formed XML: {error}") from error
        self.encoding = self.root.getroottree().docinfo.encoding or "UTF-8"
        self.newline = "\r\n" if b"\r\n" in data else "\n"
        try:
            spans = scan_elements(data)
        except (ValueError, IndexError) as error:
            raise PatchError(f"{label}: cannot locate the elements in the text: {error}") from error
        except PatchError as error:
            raise PatchError(f"{label}: {error}") from error
        elements = [element for element in self.root.iter() if isinstance(element.tag, str)]
        if len(elements) != len(spans) or any(
            _local_name(element.tag) != _local_name(span.tag) for element, span in zip(elements, spans)
        ):
            raise PatchError(f"{label}: cannot match the parsed elements to the text (entities or encoding?)")
        self._spans = dict(zip(elements, spans))

    def span(self, element: etree._Element) -> ElementSpan:
        return self._spans[element]

    def require_root(self, tag: str, kind: str) -> None:
        """PatchError unless the root element is ``<tag>`` (the file is a ``kind`` configuration)."""
        if self.root.tag != tag:
            raise PatchError(
                f"{self.label}: the root element is <{self.root.tag}>, not <{tag}>: "
                f"not a {kind} configuration"
            )

    def text(self, start: int, end: int) -> str:
        return self.data[start:end].decode(self.encoding)

    def line_start(self, position: int) -> int:
        return self.data.rfind(b"\n", 0, position) + 1

    def indent_before(self, position: int) -> str | None:
        """The blanks before ``position`` when only blanks precede it on its line, else None."""
        before = self.text(self.line_start(position), position)
        return before if before.strip(" \t") == "" else None

    def encode(self, text: str) -> bytes:
        return text.encode(self.encoding, errors="xmlcharrefreplace")
