"""Every test the documentation names exists, and every threat of docs/security.md names one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: ``tests/test_x.py::name``, ``test_x.py::name``, ``test_x.py::Class::name``, ``...::name[param-id]``
REFERENCE = re.compile(r"(?<![\w/.])(?:tests/)?(test_\w+\.py)((?:::\w+)+)")
#: The tables of docs/security.md whose rows are attacks: their first column is one of these.
THREAT_HEADINGS = ("threat", "finding", "attack")


def references(text: str) -> list[tuple[str, list[str]]]:
    """The ``(file, [names])`` of each test reference in ``text``."""
    return [(match[1], match[2].split("::")[1:]) for match in REFERENCE.finditer(text)]


def defined(path: Path) -> set[tuple[str, ...]]:
    """The test functions of ``path``, as name paths: ``(function,)`` and ``(Class, method)``."""
    names: set[tuple[str, ...]] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add((node.name,))
        elif isinstance(node, ast.ClassDef):
            names.add((node.name,))
            names.update(
                (node.name, item.name)
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            )
    return names


def stale(text: str, tests: Path) -> list[str]:
    """The references in ``text`` whose file or function does not exist under ``tests``."""
    found = []
    for file, names in references(text):
        path = tests / file
        if not path.is_file():
            found.append(f"{file}::{'::'.join(names)} (no such file)")
        elif tuple(names) not in defined(path):
            found.append(f"{file}::{'::'.join(names)} (no such test in {file})")
    return found


def threat_rows(text: str) -> list[str]:
    """The body rows of every table whose first column heading is a threat, finding or attack."""
    rows: list[str] = []
    in_threats = False
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|"):
            in_threats = False
        elif cells[0] in THREAT_HEADINGS:
            in_threats = True
        elif in_threats and not set(cells[0]) <= set("-: "):
            rows.append(line.strip())
    return rows


def test_every_test_the_docs_name_exists() -> None:
    problems = [
        f"{page.name}: {problem}" for page in DOCS for problem in stale(page.read_text(), REPO / "tests")
    ]
    assert problems == []
    assert len([ref for page in DOCS for ref in references(page.read_text())]) > 50


def test_a_stale_reference_is_found(tmp_path: Path) -> None:
    (tmp_path / "test_door.py").write_text(
        "def test_kept():\n    pass\n\nclass TestDoor:\n    def test_method(self):\n        pass\n"
    )
    text = (
        "`tests/test_door.py::test_kept`, `test_door.py::TestDoor::test_method`, "
        "`test_door.py::test_kept[param-id]`, `tests/test_door.py::test_renamed`, "
        "`tests/test_gone.py::test_kept`, `test_door.py::TestDoor::test_other`, `other/test_door.py::test_x`"
    )
    assert stale(text, tmp_path) == [
        "test_door.py::test_renamed (no such test in test_door.py)",
        "test_gone.py::test_kept (no such file)",
        "test_door.py::TestDoor::test_other (no such test in test_door.py)",
    ]


def test_every_threat_in_the_security_page_names_its_test() -> None:
    rows = threat_rows((REPO / "docs" / "security.md").read_text())
    assert len(rows) > 40
    assert [row for row in rows if not references(row)] == []


def test_a_threat_row_without_a_test_is_found() -> None:
    text = (
        "| threat | test |\n|---|---|\n| tested | `tests/test_a.py::test_b` |\n| untested | none |\n\n"
        "| setting | effect |\n|---|---|\n| `X` | none |\n"
    )
    assert [row for row in threat_rows(text) if not references(row)] == ["| untested | none |"]
