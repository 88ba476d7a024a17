"""Edits placed into the original text: indentation as the file does it, quoting, passes until stable."""

from __future__ import annotations

import pytest
from lxml import etree

from glidein_triton.operator.xmlpatch.edit import (
    Edit,
    Plan,
    apply_edits,
    escape_attribute,
    reindent,
    run_passes,
    wrap,
)
from glidein_triton.operator.xmlpatch.source import PatchError, SourceDocument


def patched(data: bytes, change: object) -> bytes:
    """Apply what ``change(plan, root)`` plans, once."""
    document = SourceDocument(data, "test.xml")
    plan = Plan(document)
    change(plan, document.root)  # type: ignore[operator]
    return apply_edits(document, plan.edits())


def test_a_child_goes_before_the_closing_tag_indented_like_its_siblings() -> None:
    data = b"<r>\n  <list>\n    <item n='1'/>\n    <!-- last -->\n  </list>\n</r>\n"
    result = patched(data, lambda plan, root: plan.insert(root.find("list"), '<item n="2"/>'))
    assert (
        result
        == b"<r>\n  <list>\n    <item n='1'/>\n    <!-- last -->\n    <item n=\"2\"/>\n  </list>\n</r>\n"
    )


def test_a_self_closing_container_is_opened() -> None:
    data = b"<r>\n\t<list/>\n</r>"
    result = patched(data, lambda plan, root: plan.insert(root.find("list"), "<item>\n   <sub/>\n</item>"))
    assert result == b"<r>\n\t<list>\n\t\t<item>\n\t\t\t<sub/>\n\t\t</item>\n\t</list>\n</r>"


def test_an_inline_container_gets_its_new_child_on_a_line_of_its_own() -> None:
    data = b"<r>\n   <list><item/></list>\n</r>"
    result = patched(data, lambda plan, root: plan.insert(root.find("list"), "<new/>"))
    assert result == b"<r>\n   <list><item/>\n      <new/>\n   </list>\n</r>"


def test_crlf_files_get_crlf_lines() -> None:
    data = b"<r>\r\n  <list>\r\n  </list>\r\n</r>\r\n"
    result = patched(data, lambda plan, root: plan.insert(root.find("list"), "<new/>"))
    assert result == b"<r>\r\n  <list>\r\n    <new/>\r\n  </list>\r\n</r>\r\n"


def test_attribute_values_are_replaced_keeping_the_quotes_or_added_after_the_last() -> None:
    data = b"<r a='x&amp;y' b=\"2\"/>"

    def change(plan: Plan, root: etree._Element) -> None:
        plan.set_attribute(root, "a", "it's <1>")
        plan.set_attribute(root, "c", 'say "hi"')

    assert patched(data, change) == b'<r a="it\'s &lt;1>" b="2" c=\'say "hi"\'/>'
    assert (
        patched(data, lambda plan, root: plan.set_attribute(root, "b", "\"'"))
        == b"<r a='x&amp;y' b=\"&quot;'\"/>"
    )


def test_escaping_round_trips_through_a_parser() -> None:
    value = "a & b < c > d \"e\" 'f'\nline\ttab"
    for quote in "\"'":
        element = etree.fromstring(f"<a v={quote}{escape_attribute(value, quote)}{quote}/>")
        assert element.get("v") == value


def test_edits_touching_the_same_bytes_wait_for_the_next_pass() -> None:
    document = SourceDocument(b"<r>abc</r>", "t.xml")
    edits = [Edit(3, 4, "X"), Edit(3, 5, "Y"), Edit(6, 6, "1"), Edit(6, 6, "2")]
    assert apply_edits(document, edits) == b"<r>Xbc1</r>"


def test_passes_repeat_until_nothing_is_left_to_do() -> None:
    calls = []

    def planner(document: SourceDocument) -> list[Edit]:
        calls.append(document.data)
        plan = Plan(document)
        if document.root.find("a") is None:
            plan.insert(document.root, "<a/>")
        if document.root.find("b") is None:
            plan.insert(document.root, "<b/>")
        return plan.edits()

    result, encoding = run_passes(b"<r>\n</r>\n", "t.xml", planner)
    assert result == b"<r>\n   <a/>\n   <b/>\n</r>\n"
    assert encoding == "UTF-8"
    assert calls == [b"<r>\n</r>\n", result]


def test_a_planner_that_never_settles_is_reported() -> None:
    def planner(document: SourceDocument) -> list[Edit]:
        plan = Plan(document)
        plan.insert(document.root, "<again/>")
        return plan.edits()

    with pytest.raises(PatchError, match="did not settle"):
        run_passes(b"<r/>", "t.xml", planner)


def test_an_edit_that_breaks_the_file_is_reported_as_a_bug() -> None:
    with pytest.raises(PatchError, match="a bug"):
        run_passes(b"<r/>", "t.xml", lambda document: [Edit(0, 0, "<")])


def test_reindent_and_wrap_follow_the_three_space_convention() -> None:
    assert reindent("<a>\n   <b/>\n</a>", "\t", "\t") == "<a>\n\t\t<b/>\n\t</a>".replace("<a>", "\t<a>", 1)
    assert (
        wrap("files", ["<file/>", "<x>\n   <y/>\n</x>"])
        == "<files>\n   <file/>\n   <x>\n      <y/>\n   </x>\n</files>"
    )
