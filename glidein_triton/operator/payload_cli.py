"""``glidein-triton payload DIR``: build what the factory serves, with checksums, and print its XML."""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

from glidein_triton.operator import payload
from glidein_triton.operator.factory_patch import (
    DEFAULT_PERIOD,
    DEFAULT_PERIODIC_PREFIX,
    FactoryOptions,
    snippet,
)
from glidein_triton.operator.xmlpatch.command import EXIT_ERROR, EXIT_OK
from glidein_triton.worker.files import write_atomically

CHECKSUMS = "SHA256SUMS"


def served_files(pythons: Sequence[str] = ()) -> list[tuple[str, bytes, int]]:
    """(name, content, mode) of each file the factory serves; the periodic script when there is one. The
    tarball has bytecode for this Python and ``pythons``."""
    files = [
        (payload.SETUP_SCRIPT, (payload.SCRIPTS_DIR / payload.SETUP_SCRIPT).read_bytes(), 0o755),
        (payload.WORKER_TARBALL, payload.worker_tarball_bytes(pythons), 0o644),
    ]
    periodic = payload.SCRIPTS_DIR / payload.PERIODIC_SCRIPT
    if periodic.is_file():
        files.append((payload.PERIODIC_SCRIPT, periodic.read_bytes(), 0o755))
    return files


def build(directory: Path, pythons: Sequence[str] = ()) -> list[str]:
    """Write the served files and SHA256SUMS (``sha256sum -c`` format) into ``directory``; their names."""
    files = served_files(pythons)
    directory.mkdir(parents=True, exist_ok=True)
    names, sums = [], []
    for name, content, mode in files:
        write_atomically(directory / name, content, mode)  # a reconfiguration never reads half a file
        names.append(name)
        sums.append(f"{hashlib.sha256(content).hexdigest()}  {name}\n")
    write_atomically(directory / CHECKSUMS, "".join(sums).encode(), 0o644)
    return names


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glidein-triton payload",
        description="Write the files the factory serves (startup script, worker tarball, periodic "
        f"script) and {CHECKSUMS} into DIR, and print the glideinWMS.xml elements that reference them.",
        epilog=f"Exit code: {EXIT_OK} written, {EXIT_ERROR} the payload could not be built or written, "
        "2 bad usage.",
    )
    parser.add_argument(
        "directory", type=Path, help="where the factory reads them, e.g. /var/lib/gwms-factory/..."
    )
    parser.add_argument(
        "--period",
        type=int,
        default=DEFAULT_PERIOD,
        help="periodic script period in the XML (default: %(default)s)",
    )
    parser.add_argument("--periodic-prefix", default=DEFAULT_PERIODIC_PREFIX, help="(default: %(default)s)")
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="PYTHON",
        help="also ship the worker code compiled by this interpreter, e.g. the worker nodes' "
        "/usr/bin/python3.9 (repeatable); the one running this command is always included. A node whose "
        "Python matches imports it without compiling (~35 ms of each startup)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser()
    arguments = parser.parse_args(argv)
    if arguments.period <= 0:
        parser.error(f"--period {arguments.period}: use a number of seconds > 0")
    directory = arguments.directory.absolute()
    try:
        names = build(directory, arguments.python)
    except OSError as error:
        print(f"glidein-triton: cannot write the payload into {directory}: {error}", file=sys.stderr)
        return EXIT_ERROR
    except payload.PayloadError as error:
        print(f"glidein-triton: {error}", file=sys.stderr)
        return EXIT_ERROR
    period = arguments.period if payload.PERIODIC_SCRIPT in names else 0
    options = FactoryOptions((), str(directory), period=period, periodic_prefix=arguments.periodic_prefix)
    sys.stdout.write(snippet(options))
    print(
        f"glidein-triton: wrote {', '.join(names)} and {CHECKSUMS} into {directory}; "
        f"check them with: cd {directory} && sha256sum -c {CHECKSUMS}",
        file=sys.stderr,
    )
    if not period:
        print(
            f"glidein-triton: no {payload.PERIODIC_SCRIPT} in this version: left out of the XML",
            file=sys.stderr,
        )
    return EXIT_OK
