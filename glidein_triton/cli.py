"""glidein-triton: a Triton Inference Server for the jobs of a GlideinWMS glidein. One subcommand per task."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, NamedTuple

from glidein_triton import __version__, install_hint


class Command(NamedTuple):
    """A subcommand: its one-line help, ``module:function`` (the remaining arguments -> exit code), and the
    extra of pyproject.toml that installs what it imports beyond the standard library (empty: none)."""

    help: str
    target: str
    extra: str = ""


#: the commands of the people who run glidein-triton: factory and frontend operators, physicists
COMMANDS: dict[str, Command] = {
    "demo": Command(
        "run a whole glidein lifecycle on the real local Triton server",
        "glidein_triton.local.demo:main",
        "local",
    ),
    "factory-xml": Command(
        "add glidein-triton to factory entries in glideinWMS.xml",
        "glidein_triton.operator.factory_cli:main",
        "operator",
    ),
    "frontend-xml": Command(
        "add Triton images and a Triton group to frontend.xml",
        "glidein_triton.operator.frontend_cli:main",
        "operator",
    ),
    "payload": Command(
        "build the files the factory serves, and print their XML",
        "glidein_triton.operator.payload_cli:main",
        "operator",
    ),
    "discover": Command(
        "list the Triton-capable slots of an HTCondor pool", "glidein_triton.job.discover:main", "job"
    ),
    "submit-example": Command(
        "write a submit description and job script for a job that uses Triton",
        "glidein_triton.job.submit_example:main",
    ),
    "local-job": Command(
        "run a command as a job of a simulated glidein with the real local Triton server",
        "glidein_triton.local.local_job:main",
        "local",
    ),
    "pool": Command(
        "pool mode's operator tools: envoy-eds (a site gateway's endpoints from the collector)",
        "glidein_triton.operator.pool_cli:main",
    ),
    "check": Command(
        "check whether Triton can run on this node (worker node or test glidein)",
        "glidein_triton.worker.check.command:main",
    ),
}

#: the developers' commands (docs/testing.md): runnable, not listed in ``--help``
DEVELOPER_COMMANDS: dict[str, Command] = {
    "settings-doc": Command(
        "print the settings reference (docs/settings.md)", "glidein_triton.operator.settings_doc:main"
    ),
    "troubleshooting-doc": Command(
        "print the message tables of docs/troubleshooting.md (from the failure catalogue)",
        "glidein_triton.operator.troubleshooting_doc:main",
    ),
    "reliability-doc": Command(
        "print the table of faults tried and what happens (docs/reliability.md)",
        "glidein_triton.local.fault_table:main",
    ),
    "soak": Command(
        "run start/stop cycles of a simulated glidein and check that nothing grows",
        "glidein_triton.local.soak:main",
        "local",
    ),
}

#: the top-level modules that the extras install
EXTRA_MODULES = {
    "lxml": "operator",
    "jinja2": "operator",
    "numpy": "job",
    "tritonclient": "job",
    "grpc": "job",
    "htcondor2": "job",
    "classad2": "job",
    "psutil": "local",
    "pytriton": "local",
}


def missing_extra(command: str, spec: Command, error: ImportError) -> str | None:
    """The message for a command that cannot import a package of an extra; None if not such a package."""
    module = (getattr(error, "name", None) or "").split(".")[0]
    extra = EXTRA_MODULES.get(module)
    if extra is None:
        return None
    extra = spec.extra or extra
    return (
        f"glidein-triton {command}: needs the [{extra}] extra of glidein-triton ({module} is not installed "
        f"in {sys.prefix}): {install_hint(extra)}"
    )


def _load(target: str) -> Callable[[list[str]], int]:
    module_name, function_name = target.split(":")
    function: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), function_name)
    return function


def run(command: str, spec: Command, rest: list[str]) -> int:
    """Run ``command``; a missing package of an extra, or the local server, is one line naming the extra."""
    from glidein_triton.local.pytriton import ServerNotInstalledError  # noqa: PLC0415 (standard library only)

    try:
        return _load(spec.target)(rest)
    except ImportError as error:
        message = missing_extra(command, spec, error)
        if message is None:
            raise
    except ServerNotInstalledError as error:
        message = f"glidein-triton {command}: {error}"
    print(message, file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in DEVELOPER_COMMANDS:
        return run(arguments[0], DEVELOPER_COMMANDS[arguments[0]], arguments[1:])
    parser = argparse.ArgumentParser(
        prog="glidein-triton",
        description=__doc__,
        epilog="Developer commands (docs/testing.md): " + ", ".join(DEVELOPER_COMMANDS) + ".",
    )
    parser.add_argument("--version", action="version", version=f"glidein-triton {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, spec in COMMANDS.items():
        subcommands.add_parser(name, help=spec.help, add_help=False)
    args, rest = parser.parse_known_args(arguments)
    if args.command is None:
        parser.print_help()
        return 2
    return run(args.command, COMMANDS[args.command], rest)


if __name__ == "__main__":
    sys.exit(main())
