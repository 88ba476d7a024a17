"""What factory-xml and frontend-xml share: read a file, patch it, print the diff, write it with a backup."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar

from glidein_triton.operator.xmlpatch.edit import Edit, run_passes
from glidein_triton.operator.xmlpatch.source import PatchError, SourceDocument
from glidein_triton.worker.errors import ConfigError

Options = TypeVar("Options")

EXIT_OK = 0
EXIT_CHANGES = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_CODES = f"""exit codes:
  {EXIT_OK}  nothing to change, or --in-place wrote the changes
  {EXIT_CHANGES}  dry run: the diff above shows changes still to be made (run again with --in-place)
  {EXIT_USAGE}  bad command line
  {EXIT_ERROR}  the file cannot be patched (not well-formed, no such entry or group, conflicting value):
     it was left unchanged"""


@dataclass(frozen=True)
class Patched:
    """A patcher's result: the new bytes, their encoding, and warnings for the operator."""

    data: bytes
    encoding: str
    warnings: list[str] = field(default_factory=list)


Patcher = Callable[[bytes, str], Patched]


def unified_diff(before: bytes, after: bytes, encoding: str, label: str) -> str:
    """A unified diff of two versions of a file, every line ending with a newline."""
    old = before.decode(encoding, errors="replace").splitlines(keepends=True)
    new = after.decode(encoding, errors="replace").splitlines(keepends=True)
    name = label.lstrip("/")  # git's headers: a/etc/x.xml, never a//etc/x.xml (patch -p1 from / applies it)
    lines = difflib.unified_diff(old, new, f"a/{name}", f"b/{name}")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def backup_path(path: Path) -> Path:
    """``FILE.bak``, or ``FILE.bak.N`` with the first free N: an older backup is never overwritten."""
    candidate = path.with_name(f"{path.name}.bak")
    number = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak.{number}")
        number += 1
    return candidate


def write_in_place(path: Path, original: bytes, patched: bytes) -> Path:
    """Write the backup, then replace the file atomically, keeping its mode (and owner, when allowed)."""
    target = path.resolve()
    backup = backup_path(target)
    backup.write_bytes(original)
    shutil.copymode(target, backup)
    temporary = target.with_name(f".{target.name}.glidein-triton.tmp")
    try:
        temporary.write_bytes(patched)
        shutil.copymode(target, temporary)
        status = target.stat()
        # Only root (or the owner, for the group) may keep the owner; otherwise the new file is ours.
        with contextlib.suppress(PermissionError):
            os.chown(temporary, status.st_uid, status.st_gid)
        if target.read_bytes() != original:
            raise PatchError(f"{path} changed while it was being patched; run the command again")
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)
    return backup


def patch_file(path: Path, patcher: Patcher, in_place: bool, out: TextIO, err: TextIO) -> int:
    """Patch ``path``: print the diff; write it (with a backup) only with ``in_place``. An exit code."""
    try:
        original = path.read_bytes()
    except OSError as error:
        print(f"glidein-triton: cannot read {path}: {error.strerror}", file=err)
        return EXIT_ERROR
    try:
        result = patcher(original, str(path))
    except PatchError as error:
        print(f"glidein-triton: {error}\nglidein-triton: {path} was not changed", file=err)
        return EXIT_ERROR
    for warning in result.warnings:
        print(f"glidein-triton: warning: {warning}", file=err)
    if result.data == original:
        print(f"glidein-triton: {path} already has everything; nothing to change", file=err)
        return EXIT_OK
    out.write(unified_diff(original, result.data, result.encoding, str(path)))
    if not in_place:
        print(f"glidein-triton: {path} was not changed (dry run); --in-place writes these changes", file=err)
        return EXIT_CHANGES
    try:
        backup = write_in_place(path, original, result.data)
    except (OSError, PatchError) as error:
        print(
            f"glidein-triton: cannot write {path}: {error}\nglidein-triton: {path} was not changed", file=err
        )
        return EXIT_ERROR
    print(f"glidein-triton: {path} updated; the original is in {backup}", file=err)
    return EXIT_OK


def command_parser(prog: str, description: str, file_help: str) -> argparse.ArgumentParser:
    """The parser both commands start from: the file to patch and the exit codes (then their own options)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"{description} Prints a unified diff; changes the file only with --in-place. Running it "
        "again changes nothing.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help=file_help)
    return parser


def add_write_options(parser: argparse.ArgumentParser) -> None:
    """--overwrite and --in-place, the last options of both commands."""
    parser.add_argument(
        "--overwrite", action="store_true", help="replace conflicting values instead of failing"
    )
    parser.add_argument("--in-place", action="store_true", help="write the changes (after a FILE.bak backup)")


def apply(
    data: bytes,
    label: str,
    options: Options,
    plan_edits: Callable[[SourceDocument, Options], list[Edit]],
    notes: Callable[[SourceDocument, Options], list[str]],
) -> Patched:
    """A command's edits applied to ``data`` (PatchError when they cannot be), with its operator notes."""
    patched, encoding = run_passes(data, label, lambda document: plan_edits(document, options))
    return Patched(patched, encoding, notes(SourceDocument(data, label), options))


def run_command(
    parser: argparse.ArgumentParser,
    options_from: Callable[[argparse.Namespace], Options],
    patch: Callable[[bytes, str, Options], Patched],
    argv: Sequence[str] | None,
) -> int:
    """Parse the command line (a ValueError or ConfigError from ``options_from`` is a usage error), patch,
    report."""
    arguments = parser.parse_args(argv)
    try:
        options = options_from(arguments)
    except (ValueError, ConfigError) as error:
        parser.error(str(error))
    return patch_file(
        arguments.file,
        lambda data, label: patch(data, label, options),
        arguments.in_place,
        sys.stdout,
        sys.stderr,
    )
