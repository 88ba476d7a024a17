"""How long the hooks take on the real local tritonserver: ``python benchmarks/hooks.py [--runs N]``.

Each hook runs as GlideinWMS runs it, as a new process. A pre-job run starts when the job's sandbox and job
ad are made (as HTCondor's starter makes them) and ends when the hook has the agent's answer: the time
includes the agent noticing the sandbox (it looks every 20 ms) and loading or checking the model.

Each measurement starts after the machine settled (SETTLE_SECONDS) and one warm-up run.

* pre-job, nothing asked for: the job wrapper runs the hook before every job;
* pre-job, a model that is loaded already (and held by the earlier jobs): target <= 50 ms;
* pre-job, a job model that has to be linked and loaded (the first job that asks for it; measured when run as
  root, which can give the repository to another user, as the policy requires);
* periodic script on a healthy server, as script_wrapper.sh runs it: target <= 100 ms.

Prints the median, 90th percentile and maximum of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from glidein_triton.local import demo
from glidein_triton.local import gwms_hooks as hooks_sim
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker import glidein_paths
from glidein_triton.worker import install as hooks

NOBODY = 65534

JOB_NUMBERS = itertools.count()


def add_model(repository: Path, name: str) -> None:
    """A copy of the bundled ``simple`` model under another name, owned by another user (the policy refuses
    models the glidein's user can change) with no bytecode cache (root would write one)."""
    shutil.copytree(
        demo.MODELS_DIR / "simple", repository / name, ignore=shutil.ignore_patterns("__pycache__")
    )
    config = repository / name / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "simple"', f'name: "{name}"'))
    (repository / name / "1" / "__pycache__").touch()
    for path in [repository, *repository.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)


NOTHING_ASKED = "pre-job, nothing asked for"
MODEL_LOADED = "pre-job, model loaded already"
FIRST_LOAD = "pre-job, job model linked and loaded"
PERIODIC = "periodic script, healthy server"
#: The targets, in milliseconds (the others are reported without one).
TARGETS_MS = {MODEL_LOADED: 50.0, PERIODIC: 100.0}

SETTLE_SECONDS = 3.0  # after the server started or loaded models (python stubs starting take the CPUs)


def timed(action: Callable[[], None], runs: int) -> list[float]:
    """Wall times of ``runs`` calls, after the machine settled and one warm-up call."""
    time.sleep(SETTLE_SECONDS)
    action()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure_once(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def show(name: str, times: list[float]) -> None:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    print(
        f"{name:52} median {statistics.median(ordered):7.1f}  p90 {p90:7.1f}  max {ordered[-1]:7.1f} ms"
        f"  ({len(ordered)} runs)"
    )


def prejob_runner(glidein: SimulatedGlidein, environment: Mapping[str, str], ad: str) -> Callable[[], None]:
    """Run the installed hook as gwms_process_scripts does, for a new job (sandbox, job ad) each time."""
    prejob_dir = glidein_paths.phase_dir(glidein.root, "prejob")
    hook = hooks.PREJOB_FILES[0][1]

    def run() -> None:
        sandbox = glidein.root / "execute" / f"dir_bench_{next(JOB_NUMBERS)}"
        sandbox.mkdir(parents=True)
        hooks_sim.write_new(sandbox / ".job.ad", f'GlobalJobId = "bench#{sandbox.name}"\n{ad}')
        env = {**environment, "_CONDOR_SCRATCH_DIR": str(sandbox), "_CONDOR_JOB_AD": str(sandbox / ".job.ad")}
        result = subprocess.run(
            [f"./{hook}", str(glidein.config_path)],
            cwd=prejob_dir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or (ad and "models ready" not in result.stderr):
            raise RuntimeError(f"pre-job failed: {result.stderr}")

    return run


def run(runs: int = 50) -> dict[str, list[float]]:
    """Timings in milliseconds of each hook, by name, on one glidein started through the real startup."""
    root = Path(tempfile.mkdtemp(prefix="glidein-triton-bench-"))
    repository = root / "job_repository"
    prepared = demo.prepare(root / "glidein", settings={"GLIDEIN_TRITON_CODE_REPOSITORIES": str(repository)})
    glidein, environment = prepared.glidein, prepared.environment
    timings: dict[str, list[float]] = {}
    try:
        result = glidein.run_startup(environment)
        if result.returncode != 0:
            raise RuntimeError(f"startup failed:\n{result.stderr}")
        job_environment = {**environment, **glidein.published()[1]}
        print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        timings[NOTHING_ASKED] = timed(prejob_runner(glidein, job_environment, ""), runs)
        loaded = prejob_runner(glidein, job_environment, 'TritonModels = "simple"\n')
        timings[MODEL_LOADED] = timed(loaded, runs)
        if os.geteuid() == 0:
            names = [f"bench{number}" for number in range(3)]
            for name in names:
                add_model(repository, name)
            first_loads = [
                prejob_runner(
                    glidein,
                    job_environment,
                    f'TritonModelRepository = "{repository}"\nTritonModels = "{name}"\n',
                )
                for name in names
            ]
            timings[FIRST_LOAD] = [measure_once(load) for load in first_loads]
        script = glidein.install_periodic().path
        workdir = Path(tempfile.mkdtemp(dir=glidein.root))
        periodic_env = {**environment, "GLIDEIN_PERIODIC_SCRIPT": "true"}

        def periodic() -> None:
            result = subprocess.run(
                [str(script), str(glidein.config_path), "entry"],
                cwd=workdir,
                env=periodic_env,
                capture_output=True,
                text=True,
                check=False,
            )
            if "TritonReady = True" not in result.stdout:
                raise RuntimeError(f"periodic run: {result.stdout} {result.stderr}")

        timings[PERIODIC] = timed(periodic, max(10, runs // 2))
    finally:
        glidein.run_cleanup(environment)
        shutil.rmtree(root, ignore_errors=True)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)
    for name, times in run(args.runs).items():
        show(name, times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
