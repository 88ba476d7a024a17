"""``glidein-triton pool COMMAND``: pool mode's operator tools (``envoy-eds``: a site gateway's endpoints)."""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from glidein_triton.operator import envoy_eds
from glidein_triton.worker.pool_discovery import DEFAULT_POOL_NAME, DiscoveryError

EXIT_OK = 0
EXIT_ERROR = 1


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glidein-triton pool", description="Pool mode's operator tools (issue 25)."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    eds = commands.add_parser(
        "envoy-eds",
        help="write Envoy's endpoint discovery file from the pool's server ads",
        description="Query the collector (condor_status -json) for the pool's accepting server glideins and "
        "write one ClusterLoadAssignment (a DiscoveryResponse in JSON) to OUTPUT by rename, as Envoy's "
        "path_config_source expects. Endpoint weight: round(100 / (1 + queue_ms / 10)), 1..100.",
        epilog=f"Exit code: {EXIT_OK} written (with --once), {EXIT_ERROR} the query failed or the file could "
        "not be written, 2 bad usage.",
    )
    eds.add_argument("--output", type=Path, required=True, help="the EDS file Envoy's cluster reads")
    eds.add_argument("--pool", default=DEFAULT_POOL_NAME, help="the pool's name (default: %(default)s)")
    eds.add_argument(
        "--cluster", default=envoy_eds.DEFAULT_CLUSTER, help="Envoy cluster (default: %(default)s)"
    )
    eds.add_argument("--collector", default="", help="condor_status -pool HOST (default: the configured one)")
    eds.add_argument(
        "--condor-status", default="", help="the condor_status command (default: condor_status on PATH)"
    )
    eds.add_argument(
        "--site",
        default="",
        help="the gateway's own site: other sites' servers get priority 1 when it has one (default: none)",
    )
    eds.add_argument(
        "--drain-margin",
        type=float,
        default=600.0,
        help="skip servers that stop serving within this many seconds (default: %(default)s)",
    )
    eds.add_argument(
        "--identities",
        default="*",
        help="comma list of glob patterns an ad's AuthenticatedIdentity must match (default: %(default)s)",
    )
    eds.add_argument(
        "--certificates",
        type=Path,
        default=None,
        metavar="DIR",
        help="list only servers whose CA has the gateway's client certificate DIR/<CA fingerprint hex>.pem "
        "(default: all)",
    )
    eds.add_argument("--once", action="store_true", help="query and write once, then exit")
    eds.add_argument(
        "--interval", type=float, default=60.0, help="seconds between queries (default: %(default)s)"
    )
    return parser


def condor_status_command(given: str) -> str:
    """``given``, else condor_status on PATH; DiscoveryError when there is none."""
    found = given or shutil.which("condor_status")
    if not found:
        raise DiscoveryError("condor_status is not on PATH: install HTCondor's tools or give --condor-status")
    return found


def envoy_eds_main(args: argparse.Namespace) -> int:
    identities = tuple(word.strip() for word in args.identities.split(",") if word.strip()) or ("*",)
    try:
        argv = envoy_eds.query_argv(condor_status_command(args.condor_status), args.pool, args.collector)
    except DiscoveryError as error:
        envoy_eds.log(str(error))
        return EXIT_ERROR
    while True:
        try:
            count, changed, warnings = envoy_eds.refresh(
                argv,
                os.environ,
                args.output,
                args.cluster,
                args.site,
                args.drain_margin,
                identities,
                args.certificates,
            )
        except (DiscoveryError, OSError) as error:
            envoy_eds.log(f"{args.output} not updated: {error}")
            if args.once:
                return EXIT_ERROR
        else:
            for warning in warnings:
                envoy_eds.log(warning)
            state = "written" if changed else "unchanged"
            envoy_eds.log(f"{args.output} {state}: {count} endpoint(s) in cluster {args.cluster}")
            if args.once:
                return EXIT_OK
        time.sleep(max(args.interval, 1.0))


#: Envoy reads a path_config_source by its name's extension; JSON is YAML too.
EDS_SUFFIXES = (".json", ".yaml", ".yml")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.output.suffix not in EDS_SUFFIXES:
        parser.error(f"--output {args.output}: Envoy reads an EDS file by its extension: end it with .json")
    return envoy_eds_main(args)
