"""``glidein-triton demo``: a whole glidein lifecycle on the real local tritonserver.

1. lay out a throwaway glidein work directory (glidein_config, helper scripts, .gwms.d) and install the
   plugin's payload as a factory entry would;
2. run the startup script with the bundled ``simple`` model and print the published attributes;
3. match a job's Requirements against the published machine ad with the ``classad2`` module;
4. run a sample job: inference over gRPC and HTTP with tritonclient, using only the job environment;
5. run the cleanup scripts and confirm that nothing is left running.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import classad2
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from glidein_triton.local import pytriton as local_server
from glidein_triton.local.glidein import GlideinDied, ScriptResult, SimulatedGlidein, classad_text
from glidein_triton.worker import glidein_paths, processes
from glidein_triton.worker.ports import is_listening
from glidein_triton.worker.state import ServerState
from glidein_triton.worker.word_rules import plain_text

MODELS_DIR = Path(__file__).resolve().parent / "models"
STANDIN_APPTAINER = Path(__file__).resolve().parent / "standins" / "apptainer"
JOB_REQUIREMENTS = (
    'HasTriton =?= True && versioncmp(TritonVersion, "2.40") >= 0 && TritonGRPCURL =!= undefined'
)


@dataclass
class DemoGlidein:
    """A simulated glidein set up to start the local server, with the environment its scripts run in."""

    glidein: SimulatedGlidein
    environment: dict[str, str]


def make_standin_image(root: Path, launcher: Path) -> Path:
    """A sandbox 'image' for the stand-in apptainer: the launcher at /opt/tritonserver/bin/tritonserver,
    and a python3 (this one) at /usr/bin/python3, as in Triton's images (the front door's relay runs it)."""
    image = root / "tritonserver.sandbox"
    binary = image / "opt" / "tritonserver" / "bin" / "tritonserver"
    binary.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(launcher, binary)
    binary.chmod(0o755)
    python = image / "usr" / "bin" / "python3"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.unlink(missing_ok=True)
    python.symlink_to(os.path.realpath(sys.executable))
    return image


def prepare(root: Path, runtime: str = "process", settings: Mapping[str, str] | None = None) -> DemoGlidein:
    """A glidein under ``root`` whose startup script will run the real local tritonserver."""
    glidein = SimulatedGlidein(root).layout()
    glidein.install_payload()
    values, environment = server_settings(root, runtime)
    values.update(settings or {})
    for key, value in values.items():
        glidein.set(key, value)
    return DemoGlidein(glidein, environment)


def server_settings(home: Path, runtime: str = "process") -> tuple[dict[str, str], dict[str, str]]:
    """(glidein_config settings, environment) that run the local server laid out under ``home``.

    The launcher, a copy of the bundled models and, for the apptainer runtime, the stand-in's image.
    """
    launcher = local_server.prepare(home / "tritonserver-home")
    repository = home / "model_repository"
    shutil.copytree(MODELS_DIR, repository, dirs_exist_ok=True)
    environment = dict(os.environ)
    values = {
        "GLIDEIN_TRITON": "True",
        "GLIDEIN_TRITON_RUNTIME": runtime,
        "GLIDEIN_TRITON_MODEL_REPOSITORY": str(repository),
        "GLIDEIN_TRITON_MODELS": "simple",
        "GLIDEIN_TRITON_READY_TIMEOUT": "120",
    }
    if runtime == "process":
        values["GLIDEIN_TRITON_SERVER_BINARY"] = str(launcher)
    else:
        # What singularity_setup.sh would publish, pointing at the stand-in (see standins/apptainer); it
        # does so only when the frontend's GLIDEIN_Singularity_Use lets containers run.
        values["GLIDEIN_Singularity_Use"] = "PREFERRED"
        values["SINGULARITY_PATH"] = str(STANDIN_APPTAINER)
        values["HAS_SINGULARITY"] = "True"
        values["GLIDEIN_TRITON_IMAGE"] = str(make_standin_image(home / "images", launcher))
        # The plugin gives its own commands its config dir; this one is for any other apptainer command.
        environment["APPTAINER_CONFIGDIR"] = str(home / "apptainer-config")
    return values, environment


def job_requirements_match(attributes: Mapping[str, str], requirements: str = JOB_REQUIREMENTS) -> bool:
    """Evaluate a job's Requirements against the machine ad built from the published attributes."""
    machine = classad2.parseOne(classad_text(attributes))
    job = classad2.ClassAd({"Requirements": classad2.ExprTree(requirements)})
    return bool(machine.matches(job))  # the job's Requirements, evaluated against the machine


def run_sample_job(job_environment: Mapping[str, str], requests: int = 5) -> list[str]:
    """What a job would do: find the server from its environment, infer over gRPC and HTTP, check the sums."""
    first = np.arange(16, dtype=np.int32).reshape(1, 16)
    second = np.ones((1, 16), dtype=np.int32)
    lines = []
    for protocol, client_module, url in (
        ("gRPC", grpcclient, job_environment["TRITON_GRPC_URL"]),
        ("HTTP", httpclient, job_environment["TRITON_HTTP_URL"]),
    ):
        client = client_module.InferenceServerClient(url=url)
        started = time.perf_counter()
        for _ in range(requests):
            inputs = [
                client_module.InferInput("INPUT0", [1, 16], "INT32"),
                client_module.InferInput("INPUT1", [1, 16], "INT32"),
            ]
            inputs[0].set_data_from_numpy(first)
            inputs[1].set_data_from_numpy(second)
            result = client.infer("simple", inputs)
            if not (
                np.array_equal(result.as_numpy("OUTPUT0"), first + second)
                and np.array_equal(result.as_numpy("OUTPUT1"), first - second)
            ):
                raise RuntimeError(f"wrong inference result over {protocol}")
        elapsed = (time.perf_counter() - started) / requests * 1000
        client.close()
        lines.append(
            f"{protocol:4} {url}: {requests} requests, results correct, {elapsed:.1f} ms per request"
        )
    return lines


def leftovers(state: ServerState | None) -> list[str]:
    """Processes or ports of a recorded server that are still there."""
    if state is None:
        return []
    found = [f"pid {pid}" for pid in processes.group_members(state.pgid)] if state.pgid else []
    return found + [
        f"port {p}" for p in (state.http_port, state.grpc_port, state.metrics_port) if is_listening(p)
    ]


def show(result: ScriptResult) -> None:
    print(
        f"  exit code {result.returncode}; error_gen status {result.status or '(none)'}; "
        f"metrics {result.metrics}"
    )
    if result.detail:
        print(f"  detail: {result.detail}")


def run(root: Path, runtime: str) -> int:
    print(f"== glidein work directory: {root}")
    demo = prepare(root, runtime)
    glidein = demo.glidein
    print(f"== 1. startup script ({runtime} runtime): main/glidein_triton_setup.sh glidein_config main")
    started = time.perf_counter()
    result = glidein.run_startup(demo.environment, condor=False)
    print(f"  took {time.perf_counter() - started:.2f} s")
    show(result)
    failures = []
    print("== condor_startup.sh: the work directory's log/ and execute/ (mkdir log execute)")
    try:
        glidein.start_condor()
        print("  made by HTCondor's start-up, as it needs them")
    except GlideinDied as error:
        failures.append(f"the real glidein would have died here: {error}")
    state = ServerState.load(glidein_paths.state_file(glidein.root))
    attributes, job_environment = glidein.published()
    print("== 2. published machine ad attributes (condor_vars.lst + glidein_config):")
    for name, value in attributes.items():
        print(f"  {name} = {value}")
    print("  job environment: " + " ".join(f"{k}={v}" for k, v in job_environment.items()))
    if result.returncode != 0 or attributes.get("HasTriton") != "True":
        failures.append("startup did not publish a ready server:\n" + result.stderr[-3000:])
    else:
        print(f"== 3. job Requirements: {JOB_REQUIREMENTS}")
        matched = job_requirements_match(attributes)
        print(f"  classad2 match against the machine ad: {matched}")
        if not matched:
            failures.append("the job's Requirements did not match the published ad")
        print("== 4. sample job (tritonclient, endpoint from the job environment)")
        for line in run_sample_job(job_environment):
            print(f"  {line}")
    print("== 5. cleanup (.gwms.d/exec/cleanup, as gwms_process_scripts runs it)")
    started = time.perf_counter()
    for cleanup in glidein.run_cleanup(demo.environment):
        print(
            f"  {cleanup.stderr.strip().splitlines()[-1] if cleanup.stderr.strip() else cleanup.returncode}"
        )
    print(f"  took {time.perf_counter() - started:.2f} s")
    left = leftovers(state)
    print(f"  left running: {', '.join(left) if left else 'nothing'}")
    if left:
        failures.append(f"left running after cleanup: {left}")
    for failure in failures:
        print(f"DEMO FAILED: {failure}", file=sys.stderr)
    if not failures:
        print(
            "== demo passed: startup -> ready -> published -> matched -> inference -> cleanup, nothing left"
        )
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="glidein-triton demo", description=plain_text(__doc__.split("\n")[0])
    )
    parser.add_argument(
        "--runtime",
        choices=("process", "apptainer"),
        default="process",
        help="process: run tritonserver directly; apptainer: through the stand-in apptainer",
    )
    parser.add_argument(
        "--work-dir", type=Path, help="where to lay out the glidein (default: a temporary dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    args = parser.parse_args(argv)
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        return run(args.work_dir, args.runtime)
    root = Path(tempfile.mkdtemp(prefix="glidein-triton-demo-"))
    try:
        return run(root, args.runtime)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
