"""The command behind each generated documentation page: print it, write it, or check it is current."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from glidein_triton.operator.xmlpatch.command import EXIT_CHANGES, EXIT_OK, EXIT_USAGE
from glidein_triton.worker.word_rules import plain_text


def main(
    command: str, description: str | None, markdown: Callable[[], str], argv: Sequence[str] | None
) -> int:
    """``glidein-triton <command> [--output FILE | --check FILE]`` for the page ``markdown()`` makes."""
    return main_in_place(command, description, lambda _current: markdown(), argv)


def main_in_place(
    command: str, description: str | None, update: Callable[[str | None], str], argv: Sequence[str] | None
) -> int:
    """The same command for a page of which only parts are generated: ``update(text)`` is the page
    ``text`` with its generated parts made current (ValueError when it cannot be), ``update(None)`` the
    generated parts alone (what the command prints)."""
    parser = argparse.ArgumentParser(
        prog=f"glidein-triton {command}", description=plain_text(description or "")
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--output", type=Path, metavar="FILE", help="write the page to FILE (else: print it)")
    action.add_argument(
        "--check", type=Path, metavar="FILE", help=f"exit {EXIT_CHANGES} when FILE is out of date"
    )
    arguments = parser.parse_args(argv)
    page = arguments.check or arguments.output
    current = page.read_text(encoding="utf-8") if page and page.is_file() else ""
    try:
        text = update(current if page else None)
    except ValueError as error:
        print(f"glidein-triton {command}: {page}: {error}", file=sys.stderr)
        return EXIT_USAGE
    if arguments.check:
        if current != text:
            print(f"glidein-triton: {page} is out of date: run {command} --output", file=sys.stderr)
            return EXIT_CHANGES
        return EXIT_OK
    if arguments.output:
        arguments.output.write_text(text, encoding="utf-8")
        return EXIT_OK
    sys.stdout.write(text)
    return EXIT_OK
