"""The failure catalogue is each message's one home: the code words its failures with it, and the tables of
docs/troubleshooting.md are generated from it."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest

from glidein_triton.operator import troubleshooting_doc
from glidein_triton.worker import errors, failure_messages
from glidein_triton.worker.error_gen import FAILURE_TYPES
from glidein_triton.worker.failure_messages import CATALOGUE, SECTIONS, FailureMessage

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "troubleshooting.md"
CATALOGUE_FILE = REPO / "glidein_triton" / "worker" / "failure_messages.py"
ENTRIES = {name: value for name, value in vars(failure_messages).items() if isinstance(value, FailureMessage)}


def code_text(path: Path) -> str:
    """The file with adjacent string literals joined, as the message reads."""
    return re.sub(r'"\s*\n\s*[rf]*"', "", path.read_text(encoding="utf-8"))


def package_code() -> dict[Path, str]:
    return {
        path: code_text(path)
        for pattern in ("glidein_triton/**/*.py", "glidein_triton/scripts/*.sh")
        for path in sorted(REPO.glob(pattern))
        if path != CATALOGUE_FILE
    }


def test_the_page_has_the_generated_tables() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert troubleshooting_doc.update(page) == page, (
        "docs/troubleshooting.md is out of date: run "
        ".venv/bin/glidein-triton troubleshooting-doc --output docs/troubleshooting.md"
    )
    quoted = [line.split("`")[1] for line in page.splitlines() if line.startswith("| `")]
    assert all(troubleshooting_doc.shown_message(entry) in quoted for entry in CATALOGUE)


def test_every_entry_is_in_the_catalogue_in_a_section_of_the_page() -> None:
    assert list(CATALOGUE) == list(ENTRIES.values())
    assert len(CATALOGUE) >= 40
    assert {entry.section for entry in CATALOGUE} == set(SECTIONS)
    assert set(SECTIONS) - {"periodic", "cleanup"} <= set(FAILURE_TYPES)
    for name, entry in ENTRIES.items():
        assert entry.cause, name
        assert entry.fix, name
        parsed = string.Formatter().parse(entry.template)
        fields = {field for _text, field, _spec, _conversion in parsed if field is not None}
        assert set(entry.shown) <= fields, f"{name} shows fields it has not: {set(entry.shown) - fields}"
        assert "{" not in troubleshooting_doc.shown_message(entry), name


def test_the_code_words_each_message_with_the_catalogue() -> None:
    """An entry is used by name; a fixed part of its message is nowhere else (a copy would drift)."""
    code = package_code()
    unused = [
        name
        for name, entry in ENTRIES.items()
        if not entry.literal_in and not any(f"failure_messages.{name}." in text for text in code.values())
    ]
    assert unused == []
    copies = [
        f"{path.relative_to(REPO)}: {part!r}"
        for name, entry in ENTRIES.items()
        if not entry.literal_in
        for part in troubleshooting_doc.fixed_parts(entry.template)
        if len(part.strip()) >= 20
        for path, text in code.items()
        if part in text
    ]
    assert copies == []


def raised_entries(source: str) -> list[tuple[str, str]]:
    """(exception class, catalogue entry) for each ``SomeError(failure_messages.NAME.format(...))`` in
    ``source``, directly or through a variable assigned that value."""

    def entry_of(node: ast.expr, assigned: dict[str, str]) -> str | None:
        if isinstance(node, ast.Name):
            return assigned.get(node.id)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            target = node.func.value
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                return target.attr if target.value.id == "failure_messages" else None
        return None

    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        assigned: dict[str, str] = {}
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
            ):
                name = entry_of(node.value, {})
                if name:
                    assigned[node.targets[0].id] = name
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
                name = entry_of(node.args[0], assigned)
                if name and node.func.id.endswith("Error"):
                    found.append((node.func.id, name))
    return found


def test_each_failure_is_raised_with_the_failure_type_of_its_section() -> None:
    raised = [
        pair
        for path in sorted(REPO.glob("glidein_triton/**/*.py"))
        for pair in raised_entries(path.read_text(encoding="utf-8"))
    ]
    assert len(raised) >= 25
    wrong = [
        f"{name} ({ENTRIES[name].section}) raised as {exception} ({getattr(errors, exception).failure_type})"
        for exception, name in raised
        if getattr(errors, exception).failure_type != ENTRIES[name].section
    ]
    assert wrong == []


def test_a_message_still_written_out_has_every_fixed_part_in_its_file() -> None:
    literal = {name: entry for name, entry in ENTRIES.items() if entry.literal_in}
    assert literal, "none left: drop literal_in and this test"
    missing = [
        f"{name}: {part!r} not in {entry.literal_in}"
        for name, entry in literal.items()
        for part in troubleshooting_doc.fixed_parts(entry.template)
        if len(part.strip()) >= 6 and part not in code_text(REPO / entry.literal_in)
    ]
    assert missing == []


def test_a_message_has_its_fields_put_in() -> None:
    message = failure_messages.NOT_SECONDS.format(
        key="GLIDEIN_TRITON_READY_TIMEOUT", value="x", low=1, high=60.5
    )
    assert message == "GLIDEIN_TRITON_READY_TIMEOUT='x' is not a number of seconds from 1 to 60.5"
    assert troubleshooting_doc.shown_message(failure_messages.NOT_SECONDS) == (
        "<KEY>=<value> is not a number of seconds from <low> to <high>"
    )
    with pytest.raises(KeyError, match="high"):
        failure_messages.NOT_SECONDS.format(key="K", value="x", low=1)


def test_the_command_writes_and_checks_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "troubleshooting.md"
    page = PAGE.read_text(encoding="utf-8")
    stale = page.replace("| a bug |", "| an old cause |")
    assert stale != page
    target.write_text(stale, encoding="utf-8")
    assert troubleshooting_doc.main(["--check", str(target)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert troubleshooting_doc.main(["--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == page
    assert troubleshooting_doc.main(["--check", str(target)]) == 0
    assert troubleshooting_doc.main([]) == 0
    printed = capsys.readouterr().out
    assert all(troubleshooting_doc.table(section) in printed for section in SECTIONS)


def test_a_page_without_a_section_s_table_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "troubleshooting.md"
    begin = troubleshooting_doc.BEGIN.format(section="Network")
    target.write_text(PAGE.read_text(encoding="utf-8").replace(begin, "<!-- a comment -->"), encoding="utf-8")
    assert troubleshooting_doc.main(["--output", str(target)]) == 2
    assert "missing: Network; unknown or repeated: none" in capsys.readouterr().err
