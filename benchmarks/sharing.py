"""Sharing gain: N jobs sending inference to one glidein server, versus the same jobs sending it to a bare
tritonserver (the same binary and model, launched by hand: what the plugin costs), versus N jobs each running
the model (what sharing saves).

Every side runs the same ~100 MB MLP (models/mlp) with one BLAS thread per job process, as grid jobs get one
core each. Throughput, latency percentiles, and memory (PSS summed over every process of the side: the
jobs, plus the server and its python-backend stub) are measured side by side in one run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from glidein_triton.local import demo
from glidein_triton.worker import glidein_paths, processes
from glidein_triton.worker.ports import Ports, allocate
from glidein_triton.worker.state import ServerState

from .overhead import launch_by_hand, stop_by_hand

HERE = Path(__file__).resolve().parent
SINGLE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_CORETYPE": "Zen",
}


@dataclass
class SideResult:
    """One side (in-process or server) at one number of jobs."""

    mode: str
    jobs: int
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    memory_mb: float


def pss_mb(pids: list[int]) -> float:
    """Proportional set size of the processes, summed (shared pages counted once overall)."""
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_full_info().pss
        except psutil.Error:
            continue
    return total / 2**20


def combined(results: list[SideResult], latencies_ms: list[float]) -> SideResult:
    """Rounds of one side merged: mean throughput, latency percentiles over all requests, largest memory."""
    first = results[0]
    percentiles = np.percentile(np.array(latencies_ms), [50, 95, 99])
    throughput = float(np.mean([result.throughput for result in results]))
    return SideResult(first.mode, first.jobs, throughput, *percentiles, max(r.memory_mb for r in results))


def run_jobs(
    mode: str,
    jobs: int,
    seconds: float,
    environment: dict[str, str],
    server_pids: list[int],
    url: str,
    model: str = "mlp",
    options: Sequence[str] = (),
) -> tuple[int, list[float], float]:
    """(inferences, latencies in seconds, memory in MB) of one round of ``jobs`` job processes; ``options``:
    more of sharing_job's (``--protocol``, ``--shape``)."""
    argv = [
        sys.executable,
        "-m",
        "benchmarks.sharing_job",
        "--mode",
        "in-process" if mode == "in-process" else "server",
        "--url",
        url,
        "--model",
        model,
        *options,
    ]
    children = [
        subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment, cwd=HERE.parent
        )
        for _ in range(jobs)
    ]
    for child in children:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a {mode} job did not start")
    for child in children:
        assert child.stdin is not None
        child.stdin.write(f"go {seconds}\n")
        child.stdin.flush()
    memory: list[float] = []
    sampler = threading.Timer(
        seconds / 2, lambda: memory.append(pss_mb([c.pid for c in children] + server_pids))
    )
    sampler.start()
    latencies: list[float] = []
    count = 0
    for child in children:
        output, _ = child.communicate(timeout=seconds + 120)
        result = json.loads(output.strip().splitlines()[-1])
        count += result["count"]
        latencies += result["latencies"]
    sampler.join()
    return count, latencies, memory[0]


@contextlib.contextmanager
def bare_server(launcher: Path, model: str, environment: dict[str, str]) -> Iterator[tuple[str, list[int]]]:
    """A tritonserver launched by hand with ``model`` and the plugin's basic options: (gRPC URL,
    its processes) while it runs."""
    ports = allocate(Ports(0, 0, 0))
    process = launch_by_hand(
        launcher, HERE / "models", ports, [model], environment, ("--allow-metrics=false",)
    )
    try:
        yield f"127.0.0.1:{ports.grpc}", processes.group_members(process.pid)
    finally:
        stop_by_hand(process)


def run(
    job_counts: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
    seconds: float = 5.0,
    repeats: int = 2,
    model: str = "mlp",
    settings: dict[str, str] | None = None,
    bare: bool = True,
) -> list[SideResult]:
    """Every side at each number of jobs, with one glidein server started through the real startup script.

    ``model`` is the server's (``mlp_gpu`` for the GPU check), ``settings`` more glidein_config values;
    ``bare``: also the jobs with a bare tritonserver.
    """
    environment = {**os.environ, **SINGLE_THREAD, "PYTHONPATH": str(HERE.parent)}
    results = []
    with tempfile.TemporaryDirectory(prefix="glidein-triton-bench-") as root:
        prepared = demo.prepare(
            Path(root) / "glidein",
            settings={
                "GLIDEIN_TRITON_MODEL_REPOSITORY": str(HERE / "models"),
                "GLIDEIN_TRITON_MODELS": model,
                **(settings or {}),
            },
        )
        # The shared server may use every core of the glidein (the jobs get one each).
        prepared.environment.update({**SINGLE_THREAD, "OPENBLAS_NUM_THREADS": str(os.cpu_count() or 1)})
        started = prepared.glidein.run_startup(prepared.environment)
        if started.returncode != 0 or started.metrics.get("HasTriton") != "True":
            raise RuntimeError(f"the glidein server did not start:\n{started.stderr[-2000:]}")
        try:
            state = ServerState.load(glidein_paths.state_file(prepared.glidein.root))
            assert state is not None
            _, job_environment = prepared.glidein.published()
            sides = {
                "in-process": ("", []),
                "server": (job_environment["TRITON_GRPC_URL"], processes.group_members(state.pgid)),
            }
            with contextlib.ExitStack() as stack:
                if bare:
                    launcher = prepared.glidein.root / "tritonserver-home" / "bin" / "tritonserver"
                    url, pids = stack.enter_context(bare_server(launcher, model, prepared.environment))
                    sides["bare"] = (url, pids)
                for jobs in job_counts:
                    results += sides_at(jobs, sides, seconds, repeats, environment, model)
                    print(f"  sharing: {jobs} jobs done", file=sys.stderr, flush=True)
        finally:
            prepared.glidein.run_cleanup(prepared.environment)
    return results


def sides_at(
    jobs: int,
    sides: dict[str, tuple[str, list[int]]],
    seconds: float,
    repeats: int,
    environment: dict[str, str],
    model: str,
) -> list[SideResult]:
    """Every side with ``jobs`` jobs, alternating, ``repeats`` rounds each, so that load changes hit all alike.

    The in-process jobs (which churn memory the most) go first; the servers take turns in coming right after
    them, so that neither is always the one that does.
    """
    rounds: dict[str, list[SideResult]] = {mode: [] for mode in sides}
    latencies: dict[str, list[float]] = {mode: [] for mode in sides}
    first, *servers = sides
    for repeat in range(repeats):
        turn = repeat % len(servers) if servers else 0
        for mode in [first, *servers[turn:], *servers[:turn]]:
            url, pids = sides[mode]
            count, round_latencies, memory = run_jobs(mode, jobs, seconds, environment, pids, url, model)
            rounds[mode].append(SideResult(mode, jobs, count / seconds, 0, 0, 0, memory))
            latencies[mode] += [value * 1000 for value in round_latencies]
    return [combined(rounds[mode], latencies[mode]) for mode in sides]
