"""``glidein-triton local-job``: run a command as a job of a simulated glidein, against the real local server.

The glidein's startup script starts the local tritonserver (see local_server.py) with the bundled models plus
those of ``--model-repository``; the command then runs with what HTCondor gives a job on that glidein: the
published job environment (``TRITON_GRPC_URL``...) and ``$_CONDOR_MACHINE_AD``. The cleanup script runs
afterwards whatever happens. Examples and tests use this to run job code exactly as on a worker node.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from glidein_triton.local import demo
from glidein_triton.local.glidein import ScriptResult, SimulatedGlidein, classad_text
from glidein_triton.local.pytriton import ServerNotInstalledError
from glidein_triton.worker import glidein_paths
from glidein_triton.worker.word_rules import plain_text

MACHINE_AD_VARIABLE = "_CONDOR_MACHINE_AD"
#: the published variables that carry the server's addresses (what ``--machine-ad-only`` withholds)
ADDRESS_VARIABLES = ("TRITON_GRPC_URL", "TRITON_HTTP_URL", "TRITON_METRICS_URL")


@dataclass(frozen=True)
class LocalGlidein:
    """A started simulated glidein: its published attributes, job environment and machine ad file."""

    glidein: SimulatedGlidein
    startup: ScriptResult
    attributes: dict[str, str]
    job_environment: dict[str, str]
    machine_ad: Path

    @property
    def has_triton(self) -> bool:
        return self.attributes.get("HasTriton") == "True"

    def environment(
        self, base: Mapping[str, str] | None = None, machine_ad_only: bool = False
    ) -> dict[str, str]:
        """``base`` plus the published variables and the machine ad's path; ``machine_ad_only`` leaves out
        the server's addresses, so that the job must find them in the machine ad."""
        published = {
            name: value
            for name, value in self.job_environment.items()
            if not (machine_ad_only and name in ADDRESS_VARIABLES)
        }
        environment = {
            name: value
            for name, value in (os.environ if base is None else base).items()
            if name not in self.job_environment and name not in ADDRESS_VARIABLES
        }
        environment.update(published)
        environment[MACHINE_AD_VARIABLE] = str(self.machine_ad)
        return environment


def add_models(repository: Path, sources: Sequence[Path]) -> None:
    """Copy each source repository's model directories into ``repository``; a name taken twice is an error."""
    for source in sources:
        if not source.is_dir():
            raise ValueError(f"model repository {source} is not a directory")
        for model in sorted(path for path in source.iterdir() if path.is_dir()):
            if (repository / model.name).exists():
                raise ValueError(f"model {model.name!r} of {source} is already in the repository")
            shutil.copytree(model, repository / model.name)


@contextmanager
def local_glidein(
    root: Path,
    repositories: Sequence[Path] = (),
    models: str = "*",
    settings: Mapping[str, str] | None = None,
    say: Callable[[str], None] = lambda _message: None,
) -> Iterator[LocalGlidein]:
    """Run the startup script of a glidein under ``root``; on exit, its cleanup scripts. ``say`` is told
    what the startup waits for before it starts."""
    prepared = demo.prepare(root, "process", {"GLIDEIN_TRITON_MODELS": models, **(settings or {})})
    glidein = prepared.glidein
    config = glidein.config()
    add_models(Path(config["GLIDEIN_TRITON_MODEL_REPOSITORY"]), repositories)
    say(
        f"starting the glidein's Triton server and waiting until it has loaded the models "
        f"{'(all)' if models == '*' else models} of {config['GLIDEIN_TRITON_MODEL_REPOSITORY']} (at most "
        f"{config['GLIDEIN_TRITON_READY_TIMEOUT']} s)..."
    )
    try:
        startup = glidein.run_startup(prepared.environment)
        attributes, job_environment = glidein.published()
        machine_ad = glidein_paths.execute_dir(root) / ".machine.ad"
        machine_ad.parent.mkdir(parents=True, exist_ok=True)
        machine_ad.write_text(classad_text({"Name": f'"slot1@{glidein.entry}"', **attributes}))
        yield LocalGlidein(glidein, startup, attributes, job_environment, machine_ad)
    finally:
        glidein.run_cleanup(prepared.environment)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="glidein-triton local-job",
        description=plain_text(__doc__.split("\n")[0]) if __doc__ else None,
        epilog="example: glidein-triton local-job -- python examples/simple/add_sub.py",
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        action="append",
        default=[],
        help="add the models of this repository to the bundled ones (repeatable)",
    )
    parser.add_argument("--models", default="*", help="models to load at start (default: all)")
    parser.add_argument(
        "--machine-ad-only",
        action="store_true",
        help="do not give the job TRITON_GRPC_URL etc.: it must find the server in $_CONDOR_MACHINE_AD",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGUMENTS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run: add -- COMMAND [ARGUMENTS...]")
    root = Path(tempfile.mkdtemp(prefix="glidein-triton-job-"))
    try:
        say = functools.partial(print, "local-job:", file=sys.stderr, flush=True)
        with local_glidein(root, args.model_repository, args.models, say=say) as local:
            if not local.has_triton:
                print(
                    f"local-job: the glidein has no Triton server "
                    f"(TritonFailure = {local.attributes.get('TritonFailure', '(none)')}):\n"
                    f"{local.startup.stderr[-3000:]}",
                    file=sys.stderr,
                )
                return 1
            print(
                f"local-job: Triton ready at gRPC {local.job_environment.get('TRITON_GRPC_URL')}, "
                f"HTTP {local.job_environment.get('TRITON_HTTP_URL')}; running {command}",
                file=sys.stderr,
            )
            environment = local.environment(machine_ad_only=args.machine_ad_only)
            return subprocess.run(command, env=environment, check=False).returncode
    except (ValueError, OSError, ServerNotInstalledError) as error:
        print(f"local-job: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
