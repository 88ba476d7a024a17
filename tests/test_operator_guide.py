"""docs/operator-guide.md: its worked example is what the commands print, and every option is described."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from glidein_triton import cli
from glidein_triton.operator import factory_cli, frontend_cli

DOCS = Path(__file__).resolve().parent.parent / "docs"
GUIDE = (DOCS / "operator-guide.md").read_text(encoding="utf-8")
#: a ```bash block with one glidein-triton command, then its output in the next ```diff block
EXAMPLE = re.compile(
    r"```bash\n(glidein-triton (?:factory|frontend)-xml .*?)\n```\n.*?```diff\n(.*?)```", re.DOTALL
)


def test_the_guide_has_both_worked_examples() -> None:
    commands = [command.split()[1] for command, _ in EXAMPLE.findall(GUIDE)]
    assert commands == ["factory-xml", "frontend-xml"]


@pytest.mark.parametrize(("command", "diff"), EXAMPLE.findall(GUIDE), ids=["factory", "frontend"])
def test_the_worked_example_prints_what_the_guide_shows(
    command: str, diff: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(DOCS / "examples")
    arguments = shlex.split(command.replace("\\\n", " "))
    before = {path.name: path.read_bytes() for path in Path().iterdir()}
    assert cli.main(arguments[1:]) == 1
    assert capsys.readouterr().out == diff
    assert {path.name: path.read_bytes() for path in Path().iterdir()} == before


@pytest.mark.parametrize("parser", [factory_cli.argument_parser(), frontend_cli.argument_parser()])
def test_every_option_is_in_the_guide(parser: object) -> None:
    options = [
        option
        for action in parser._actions  # type: ignore[attr-defined]
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]
    assert options
    missing = [option for option in options if f"`{option}" not in GUIDE]
    assert missing == []
