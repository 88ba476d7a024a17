"""The XML scanner behind the in-place edits: exact byte spans, the same elements as lxml, bad input."""

from __future__ import annotations

import pytest

from glidein_triton.operator.xmlpatch.source import PatchError, SourceDocument, scan_elements

TRICKY = (
    b'<?xml version="1.0"?>\n'
    b"<!-- <entry name='commented'/> -->\n"
    b"<root a='1' b = \"two > one\"\n"
    b'      c="multi\n   line">\n'
    b"  <![CDATA[ <notanelement/> ]]>\n"
    b"  <?processing <instruction/> ?>\n"
    b"  <child/><child x='&amp;&lt;'>text</child>\n"
    b"  <!-- </root> -->\n"
    b"</root>\n"
)


def test_the_scanner_finds_each_element_and_attribute_exactly() -> None:
    root, first, second = scan_elements(TRICKY)
    assert (root.tag, first.tag, second.tag) == ("root", "child", "child")
    assert TRICKY[root.start : root.start_tag_end].startswith(b"<root a='1'")
    assert TRICKY[root.start_tag_end - 1 : root.start_tag_end] == b">"
    assert TRICKY[root.close_start : root.end] == b"</root>"
    assert root.children == [first, second]
    assert first.self_closing
    assert TRICKY[first.start : first.end] == b"<child/>"
    assert TRICKY[second.start : second.end] == b"<child x='&amp;&lt;'>text</child>"
    spans = {name: TRICKY[span.value_start : span.value_end] for name, span in root.attributes.items()}
    assert spans == {"a": b"1", "b": b"two > one", "c": b"multi\n   line"}
    assert [span.quote for span in root.attributes.values()] == ["'", '"', '"']


def test_the_document_maps_lxml_elements_to_their_spans() -> None:
    document = SourceDocument(TRICKY, "tricky.xml")
    children = document.root.findall("child")
    assert [document.span(child).start for child in children] == [
        TRICKY.index(b"<child/>"),
        TRICKY.index(b"<child x"),
    ]
    assert children[1].get("x") == "&<"
    assert document.encoding == "UTF-8"
    assert document.newline == "\n"


def test_crlf_and_a_declared_latin1_encoding_are_kept() -> None:
    data = '<?xml version="1.0" encoding="ISO-8859-1"?>\r\n<a v="Zürich"/>\r\n'.encode("latin-1")
    document = SourceDocument(data, "latin1.xml")
    assert document.encoding == "ISO-8859-1"
    assert document.newline == "\r\n"
    assert document.root.get("v") == "Zürich"
    assert document.encode("café µ ✓") == "café µ &#10003;".encode("latin-1")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<glidein><entries></glidein>", "not well-formed XML"),
        (b"", "not well-formed XML"),
        (b'<!DOCTYPE a [<!ENTITY e "<b/>">]><a>&e;</a>', "internal subset"),
        ("<a/>".encode("utf-16"), "UTF-16"),
    ],
)
def test_bad_input_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(PatchError, match=message) as raised:
        SourceDocument(data, "bad.xml")
    assert str(raised.value).startswith("bad.xml: ")


def test_indentation_is_read_only_from_blank_line_starts() -> None:
    data = b"<a>\n\t  <b/> <c/>\n</a>"
    document = SourceDocument(data, "x.xml")
    b_element, c_element = document.root
    assert document.indent_before(document.span(b_element).start) == "\t  "
    assert document.indent_before(document.span(c_element).start) is None


def test_a_patch_refuses_a_file_of_the_other_kind() -> None:
    frontend = b"<frontend><groups/></frontend>\n"
    with pytest.raises(
        PatchError, match=r"f.xml: the root element is <frontend>, not <glidein>: not a factory"
    ):
        SourceDocument(frontend, "f.xml").require_root("glidein", "factory")
    SourceDocument(frontend, "f.xml").require_root("frontend", "frontend")
