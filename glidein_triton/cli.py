"""glidein-triton: a Triton Inference Server for the jobs of a GlideinWMS glidein. One subcommand per task."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

from glidein_triton import __version__

#: subcommand -> (one-line help, "module:function" taking the remaining arguments and returning an exit code)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "run a whole glidein lifecycle on the real local Triton server",
        "glidein_triton.local.demo:main",
    ),
    "factory-xml": (
        "add glidein-triton to factory entries in glideinWMS.xml",
        "glidein_triton.operator.factory_cli:main",
    ),
    "frontend-xml": (
        "add Triton images and a Triton group to frontend.xml",
        "glidein_triton.operator.frontend_cli:main",
    ),
    "payload": (
        "build the files the factory serves, and print their XML",
        "glidein_triton.operator.payload_cli:main",
    ),
    "settings-doc": (
        "print the settings reference (docs/settings.md)",
        "glidein_triton.operator.settings_doc:main",
    ),
    "reliability-doc": (
        "print the table of faults tried and what happens (docs/reliability.md)",
        "glidein_triton.local.fault_table:main",
    ),
    "soak": (
        "run start/stop cycles of a simulated glidein and check that nothing grows",
        "glidein_triton.local.soak:main",
    ),
    "discover": ("list the Triton-capable slots of an HTCondor pool", "glidein_triton.job.discover:main"),
    "submit-example": (
        "write a submit description and job script for a job that uses Triton",
        "glidein_triton.job.submit_example:main",
    ),
    "local-job": (
        "run a command as a job of a simulated glidein with the real local Triton server",
        "glidein_triton.local.job:main",
    ),
    "check": (
        "check whether Triton can run on this node (worker node or test glidein)",
        "glidein_triton.worker.check.command:main",
    ),
}


def _load(target: str) -> Callable[[list[str]], int]:
    module_name, function_name = target.split(":")
    function: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), function_name)
    return function


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glidein-triton", description=__doc__)
    parser.add_argument("--version", action="version", version=f"glidein-triton {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, _) in COMMANDS.items():
        subcommands.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return _load(COMMANDS[args.command][1])(rest)


if __name__ == "__main__":
    sys.exit(main())
