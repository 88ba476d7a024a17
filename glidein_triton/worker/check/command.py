"""``glidein-triton check``: can Triton run on this node? Run it on a worker node or inside a test glidein.

It looks at what the startup script would use, without starting anything: the container runtime and its
instance commands, the server image, the GPUs and driver against the image's CUDA, what ``--nv`` would bind,
free ports, the Python, space in the work directory and the model repository. Standard library only, so it
also runs from an untarred worker payload: ``python3 -m glidein_triton.worker.check``.

Exit code: 0 Triton can run (warnings allowed), 1 it cannot, 2 bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from glidein_triton import __version__
from glidein_triton.worker import cuda_support, cvmfs
from glidein_triton.worker.check import container_checks, node_checks, pool_checks
from glidein_triton.worker.check import findings as check_report
from glidein_triton.worker.check.findings import FAIL, INFO, WARN, Finding
from glidein_triton.worker.errors import ConfigError, CorruptionError
from glidein_triton.worker.glidein_config import GlideinConfig
from glidein_triton.worker.settings import Settings, retired_settings, unknown_settings
from glidein_triton.worker.word_rules import plain_text

GIB = 1024**3


def release(text: str) -> str:
    """argparse type of --triton-release: ``yy.mm``."""
    if not cuda_support.valid_release(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a Triton release: use yy.mm, e.g. 24.10")
    return text


def gigabytes(text: str) -> float:
    """argparse type of --min-free-gb: a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GiB >= 0")
    return value


class JsonUsageParser(argparse.ArgumentParser):
    """With ``--json`` on the command line, a usage error is a JSON document too (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        document = {"can_run": None, "exit_code": 2, "usage_error": f"{self.prog}: {message}"}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        self.exit(2)


def parser(json_output: bool = False) -> argparse.ArgumentParser:
    arguments = (JsonUsageParser if json_output else argparse.ArgumentParser)(
        prog="glidein-triton check",
        description=plain_text((__doc__ or "").split("\n\n")[0]),
        epilog="Exit code: 0 Triton can run (warnings allowed), 1 it cannot, 2 bad usage.",
    )
    arguments.add_argument(
        "--glidein-config",
        metavar="PATH",
        help="a glidein's glidein_config: its GLIDEIN_TRITON_* settings and SINGULARITY_PATH are checked",
    )
    arguments.add_argument("--image", help="server image to check (default: the one the settings name)")
    arguments.add_argument(
        "--triton-release",
        type=release,
        metavar="YY.MM",
        help="Triton release of the image, for the driver check (default: read from the image name)",
    )
    arguments.add_argument(
        "--work-dir",
        metavar="DIR",
        help="directory whose free space is checked (default: the glidein_config's, else the current one)",
    )
    arguments.add_argument(
        "--min-free-gb", type=gigabytes, default=1.0, metavar="GIB", help="free space needed (default: 1)"
    )
    arguments.add_argument("--json", action="store_true", help="print the report as JSON, for scripts")
    return arguments


def read_settings(config: Mapping[str, str], source: str) -> tuple[Finding, Settings]:
    """The settings of ``config``; with an invalid value, the failure and the defaults for the rest."""
    try:
        settings = Settings.from_config(config)
    except ConfigError as error:
        return Finding("settings", FAIL, error.message), Settings.from_config({})
    if not source:
        return Finding("settings", INFO, "no --glidein-config: the default settings"), settings
    summary = f"{source}: runtime {settings.runtime}, GPU {settings.gpu_mode}"
    if not settings.enabled:
        return Finding("settings", INFO, f"{summary}; GLIDEIN_TRITON is off (checked as if on)"), settings
    return Finding("settings", check_report.OK, f"{summary}; GLIDEIN_TRITON is on"), settings


def check_setting_names(config: Mapping[str, str]) -> Finding:
    """Keys of glidein_config that look like settings but are none: ignored by the startup script."""
    unknown = unknown_settings(config)
    retired = retired_settings(config)
    if not unknown and not retired:
        return Finding("keys", check_report.OK, "every GLIDEIN_TRITON* key is a setting")
    notes = tuple(f"{key}: retired, {why}" for key, why in retired) + tuple(
        f"{key}: did you mean {close}?" if close else f"{key}: no setting is close (docs/settings.md)"
        for key, close in unknown
    )
    keys = ", ".join(key for key, _note in [*retired, *unknown])
    return Finding("keys", WARN, f"not settings, ignored: {keys}", notes)


def run_checks(context: node_checks.NodeContext, settings_finding: Finding) -> list[Finding]:
    """Every check, in the order of the report."""
    runtime_finding, server = container_checks.check_runtime(context)
    gpus_finding, found = node_checks.find_gpus(context)
    return [
        node_checks.check_python(),
        settings_finding,
        check_setting_names(context.config),
        container_checks.check_containers(context),
        runtime_finding,
        container_checks.check_instances(server),
        container_checks.check_image(context, server),
        container_checks.check_release(context, server),
        gpus_finding,
        node_checks.check_driver(context, found),
        node_checks.check_compute_capability(context, found),
        container_checks.check_nv(context, server, found),
        node_checks.check_ports(context),
        node_checks.check_front_door(server.kind),
        node_checks.check_disk(context.work_dir, context.min_free_bytes),
        node_checks.check_models(context.settings),
        *pool_checks.check_pool(context, server),
    ]


def main(argv: Sequence[str] | None = None, environment: Mapping[str, str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    arguments = parser(json_output="--json" in words)
    args = arguments.parse_args(words)
    config: Mapping[str, str] = {}
    work_dir = Path.cwd()
    if args.glidein_config:
        try:
            glidein_config = GlideinConfig.read(args.glidein_config)
        except CorruptionError as error:
            arguments.error(error.message)
        config, work_dir = glidein_config, glidein_config.work_dir
    settings_finding, settings = read_settings(config, str(args.glidein_config or ""))
    if args.image:
        settings = dataclasses.replace(settings, image=cvmfs.resolve(args.image, cvmfs.mount_dir(config)))
    context = node_checks.NodeContext(
        settings=settings,
        config=config,
        environment=os.environ if environment is None else environment,
        work_dir=Path(args.work_dir).resolve() if args.work_dir else work_dir,
        release=args.triton_release or cuda_support.release_from_image(settings.image),
        min_free_bytes=int(args.min_free_gb * GIB),
    )
    findings = run_checks(context, settings_finding)
    if args.json:
        extra: dict[str, object] = {
            "glidein_triton_version": __version__,
            "host": socket.gethostname(),
            "work_dir": str(context.work_dir),
            "image": settings.image,
            "triton_release": context.release,
        }
        sys.stdout.write(check_report.as_json(findings, extra))
    else:
        title = f"glidein-triton {__version__} node check on {socket.gethostname()}"
        sys.stdout.write(check_report.table(findings, title))
    return check_report.exit_code(findings)


if __name__ == "__main__":
    sys.exit(main())
