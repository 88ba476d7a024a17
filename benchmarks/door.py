"""What the front door costs: one real tritonserver reached directly and through the front door, side by side.

    python -m benchmarks.door [--quick] [--rounds N] [--seconds S] [--no-check]

The door is ``glidein_triton/worker/door.py`` with the job routes a glidein gives it (``grpc@`` and ``http@``:
loopback listeners that admit our own uid and pass every connection through the job filter), in a process
of its own, without the server's namespace (the same forwarding, one hop). Each workload runs
in rounds that alternate the two sides (direct first in even rounds, the door first in odd ones):

* sharing: the sharing benchmark's jobs (one BLAS thread each) inferring one event at a time on the ~100 MB
  MLP, over gRPC and HTTP: throughput through the door / direct, the median of the rounds (goal >= 0.91,
  i.e. the door costs <= 1.1x);
* 1 MiB: an identity model sent 1 MiB float32 requests by 1 and 8 clients: median latency through the door /
  direct, over every request of the rounds (goal <= 1.2).

The spread is the lowest and highest ratio of the rounds taken pairwise. Exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from glidein_triton.local import pytriton as local_server
from glidein_triton.worker import door as front_door
from glidein_triton.worker.ports import LOOPBACK, Ports, allocate

from .overhead import launch_by_hand, stop_by_hand
from .sharing import HERE, SINGLE_THREAD, run_jobs

THROUGHPUT_GOAL = 0.91
LATENCY_GOAL = 1.2
MIB_FLOATS = 2**20 // 4
MODELS = ["mlp", "identity"]
SIDES = ("direct", "door")


@dataclass(frozen=True)
class Workload:
    """What the jobs do: ``jobs`` processes calling ``model`` over ``protocol`` with float32 events of
    ``shape``; judged on throughput (door / direct >= ``goal``) or on median latency (<= ``goal``)."""

    name: str
    model: str
    jobs: int
    protocol: str
    shape: str
    measure: str
    goal: float


@dataclass
class Round:
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


@dataclass
class DoorResult:
    """Both sides of one workload, round by round, and the door's CPU time over its own rounds."""

    workload: Workload
    rounds: dict[str, list[Round]] = field(default_factory=lambda: {side: [] for side in SIDES})
    door_cpu_seconds: float = 0.0

    def value(self, side: str) -> float:
        """Median throughput of the rounds (inferences/s), or median latency of every request (ms)."""
        if self.workload.measure == "throughput":
            return statistics.median(r.throughput for r in self.rounds[side])
        return statistics.median(ms for r in self.rounds[side] for ms in r.latencies_ms)

    @property
    def ratio(self) -> float:
        return self.value("door") / self.value("direct")

    @property
    def spread(self) -> tuple[float, float]:
        """Lowest and highest door / direct ratio of the rounds, pair by pair."""
        pairs = zip(self.rounds["door"], self.rounds["direct"])
        if self.workload.measure == "throughput":
            ratios = [door.throughput / direct.throughput for door, direct in pairs]
        else:
            ratios = [statistics.median(d.latencies_ms) / statistics.median(r.latencies_ms) for d, r in pairs]
        return min(ratios), max(ratios)

    @property
    def met(self) -> bool:
        if self.workload.measure == "throughput":
            return self.ratio >= self.workload.goal
        return self.ratio <= self.workload.goal

    @property
    def door_cpu_us_per_request(self) -> float:
        requests = sum(r.requests for r in self.rounds["door"])
        return self.door_cpu_seconds / max(requests, 1) * 1e6


def workloads(quick: bool = False) -> list[Workload]:
    """The sharing benchmark's 8 jobs over gRPC and HTTP, and 1 MiB requests from 1 and 8 clients
    (``quick``: 2 jobs, 1 MiB over gRPC only)."""
    many = 2 if quick else 8
    one_mib = str(MIB_FLOATS)
    chosen = [
        Workload(f"sharing, {many} jobs, gRPC", "mlp", many, "grpc", "1,1024", "throughput", THROUGHPUT_GOAL),
        Workload(f"sharing, {many} jobs, HTTP", "mlp", many, "http", "1,1024", "throughput", THROUGHPUT_GOAL),
        Workload("1 MiB, 1 client, gRPC", "identity", 1, "grpc", one_mib, "latency", LATENCY_GOAL),
        Workload(f"1 MiB, {many} clients, gRPC", "identity", many, "grpc", one_mib, "latency", LATENCY_GOAL),
        Workload("1 MiB, 1 client, HTTP", "identity", 1, "http", one_mib, "latency", LATENCY_GOAL),
        Workload(f"1 MiB, {many} clients, HTTP", "identity", many, "http", one_mib, "latency", LATENCY_GOAL),
    ]
    return [w for w in chosen if not quick or w.protocol == "grpc" or w.model == "mlp"]


@contextlib.contextmanager
def server_and_door(root: Path) -> Iterator[tuple[dict[str, dict[str, str]], psutil.Process]]:
    """A bare tritonserver with the benchmark models and a front door before it, in a process of its own:
    ({side: {protocol: URL}}, the door's process) while they run."""
    environment = {**os.environ, **SINGLE_THREAD, "OPENBLAS_NUM_THREADS": str(os.cpu_count() or 1)}
    launcher = local_server.prepare(root / "tritonserver-home")
    ports = allocate(Ports(0, 0, 0))
    server = launch_by_hand(launcher, HERE / "models", ports, MODELS, environment, ("--allow-metrics=false",))
    door_ports = allocate(Ports(0, 0, 0))
    argv = front_door.command(
        *("--route", f"grpc@{LOOPBACK}:{door_ports.grpc}={LOOPBACK}:{ports.grpc}"),
        *("--route", f"http@{LOOPBACK}:{door_ports.http}={LOOPBACK}:{ports.http}"),
    )
    door = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert door.stdout is not None
        if door.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the front door did not start: {' '.join(argv)}")
        urls = {
            "direct": {"grpc": f"{LOOPBACK}:{ports.grpc}", "http": f"{LOOPBACK}:{ports.http}"},
            "door": {"grpc": f"{LOOPBACK}:{door_ports.grpc}", "http": f"{LOOPBACK}:{door_ports.http}"},
        }
        yield urls, psutil.Process(door.pid)
    finally:
        door.terminate()
        door.wait()
        stop_by_hand(server)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def measure(
    workload: Workload, urls: dict[str, dict[str, str]], door: psutil.Process, rounds: int, seconds: float
) -> DoorResult:
    """``rounds`` rounds of each side, alternating which goes first."""
    environment = {**os.environ, **SINGLE_THREAD, "PYTHONPATH": str(HERE.parent)}
    options = ["--protocol", workload.protocol, "--shape", workload.shape]
    result = DoorResult(workload)
    for number in range(rounds):
        for side in SIDES if number % 2 == 0 else SIDES[::-1]:
            before = cpu_seconds(door)
            url = urls[side][workload.protocol]
            count, latencies, _ = run_jobs(
                "server", workload.jobs, seconds, environment, [], url, workload.model, options
            )
            if side == "door":
                result.door_cpu_seconds += cpu_seconds(door) - before
            result.rounds[side].append(Round(count, seconds, [value * 1000 for value in latencies]))
    return result


def run(rounds: int = 3, seconds: float = 4.0, quick: bool = False) -> list[DoorResult]:
    """Every workload, direct and through the door, on one server."""
    results = []
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(tempfile.TemporaryDirectory(prefix="glidein-triton-door-"))
        urls, door = stack.enter_context(server_and_door(Path(root)))
        for workload in workloads(quick):
            results.append(measure(workload, urls, door, rounds, seconds))
            print(f"  door: {workload.name} done", file=sys.stderr, flush=True)
    return results


def rows(results: list[DoorResult]) -> list[str]:
    """Per workload: direct and through the door, their ratio with its spread over the rounds, the goal."""
    table = [
        "| workload | direct | through the door | door / direct | spread (rounds) | goal | met "
        "| door CPU per request |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        throughput = r.workload.measure == "throughput"
        unit, goal = (" inferences/s", ">=") if throughput else (" ms median", "<=")
        low, high = r.spread
        table.append(
            f"| {r.workload.name} | {r.value('direct'):.1f}{unit} | {r.value('door'):.1f}{unit} "
            f"| {r.ratio:.2f} | {low:.2f} - {high:.2f} | {goal} {r.workload.goal} "
            f"| {'PASS' if r.met else '**FAIL**'} | {r.door_cpu_us_per_request:.0f} us |"
        )
    return table


def misses(results: list[DoorResult]) -> list[str]:
    return [
        f"front door, {r.workload.name}: {r.workload.measure} ratio {r.ratio:.2f}, goal "
        f"{'>=' if r.workload.measure == 'throughput' else '<='} {r.workload.goal}"
        for r in results
        if not r.met
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.door", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s, 2 jobs, gRPC for 1 MiB")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side and workload (default 3)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per round (default 4)")
    parser.add_argument("--no-check", action="store_true", help="exit 0 even when a goal is missed")
    args = parser.parse_args(argv)
    rounds, seconds = (1, 1.0) if args.quick else (args.rounds, args.seconds)
    results = run(rounds, seconds, args.quick)
    missed = misses(results)
    print("\n".join([*rows(results), "", *(missed or ["All goals met."])]))
    return 1 if missed and not args.no_check else 0


if __name__ == "__main__":
    sys.exit(main())
