"""Pool servers: N jobs on two pool servers vs one, and the failover time when a server dies.

    python -m benchmarks.pool_servers [--quick] [--jobs N] [--rounds R] [--seconds S] [--no-check]

Real CPU tritonservers as pool servers run (gRPC with mutual TLS on 127.0.0.2 and 127.0.0.3, a CA each,
HTTP on loopback for readiness; model control explicit with only the benchmark's model loaded, instead of
a pool server's ``none``, which would load every benchmark model), each pinned to its own core from its
start (its python-backend stub inherits the pin). The model (``models/burn``) burns 10 ms of the server's
CPU per request, so the servers are the bottleneck. The jobs are processes (one BLAS thread each) that call
``connect(pool=True, models=["burn"])`` on a pool.json in their sandbox, which lists both servers or only
the first:

* throughput: N jobs (4 by default) inferring for S seconds on two servers vs on one, in rounds that
  alternate which side goes first; the median of the rounds per side (goal: two >= 1.8x one). The jobs are
  not pinned: on a 2-core machine they share the servers' cores, which costs the two-server side most;
* failover: a client inferring in a loop on server A (B publishes a high queue time, so A is chosen);
  A gets SIGKILL; the time from the kill to the next call that succeeds (on B); A is started again for
  each repetition (goal: the slowest < 5 s).

Exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from glidein_triton.local import pytriton
from glidein_triton.worker import processes, sandbox_protocol
from tests.pool_authority import (  # the tests' certificates (openssl)
    Authority,
    make_authority,
    make_key,
    pool_server_options,
)

from .sharing import HERE, SINGLE_THREAD

MODEL = "burn"
ADDRESSES = ("127.0.0.2", "127.0.0.3")
SIDES = ("one server", "two servers")
THROUGHPUT_GOAL = 1.8
FAILOVER_GOAL_S = 5.0
#: The queue time server B publishes in the failover runs: high, so that clients choose A while it lives.
HIGH_QUEUE_MS = 5000.0
STARTUP_TIMEOUT_S = 120.0
FAILOVER_TIMEOUT_S = 30.0


@dataclass
class Throughput:
    """Inferences per second of each round, per side, and the jobs' CPU time per inference (ms)."""

    jobs: int
    rounds: dict[str, list[float]] = field(default_factory=lambda: {side: [] for side in SIDES})
    client_cpu_ms: list[float] = field(default_factory=list)
    #: The CPU the servers of a side got, in cores' worth (CPU seconds / wall seconds), per round.
    server_cores: dict[str, list[float]] = field(default_factory=lambda: {side: [] for side in SIDES})

    def value(self, side: str) -> float:
        return statistics.median(self.rounds[side])

    @property
    def ratio(self) -> float:
        return self.value("two servers") / self.value("one server")

    def per_core(self, side: str) -> float:
        """Median of the rounds' inferences per second per core's worth of server CPU: what the servers
        did with the CPU the machine left them."""
        return statistics.median(
            rate / cores for rate, cores in zip(self.rounds[side], self.server_cores[side])
        )

    @property
    def spread(self) -> tuple[float, float]:
        """Lowest and highest two / one ratio of the rounds, pair by pair."""
        ratios = [two / one for one, two in zip(self.rounds["one server"], self.rounds["two servers"])]
        return min(ratios), max(ratios)

    @property
    def met(self) -> bool:
        return self.ratio >= THROUGHPUT_GOAL


@dataclass
class Failover:
    """Seconds from SIGKILL to the next successful call, per repetition (inf: none within the timeout)."""

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def slowest(self) -> float:
        return max(self.seconds)

    @property
    def met(self) -> bool:
        return self.slowest < FAILOVER_GOAL_S


def rows(throughput: Throughput, failover: Failover) -> list[str]:
    """The table: each measurement, its goal, PASS or FAIL."""
    low, high = throughput.spread
    one, two = throughput.value("one server"), throughput.value("two servers")
    return [
        "| measurement | result | spread | goal | met |",
        "|---|---|---|---|---|",
        f"| {throughput.jobs} jobs: two servers / one ({two:.0f} / {one:.0f} inferences/s, median of "
        f"{len(throughput.rounds['one server'])} rounds) | {throughput.ratio:.2f}x | {low:.2f} - {high:.2f} "
        f"| >= {THROUGHPUT_GOAL}x | {'PASS' if throughput.met else '**FAIL**'} |",
        *(
            [
                f"| the jobs' own CPU per inference (median) | {statistics.median(throughput.client_cpu_ms):.1f} ms "
                "| - | - | - |"
            ]
            if throughput.client_cpu_ms
            else []
        ),
        *(
            [
                "| the servers' CPU, cores' worth (median): one server / two servers "
                f"| {statistics.median(throughput.server_cores['one server']):.2f} / "
                f"{statistics.median(throughput.server_cores['two servers']):.2f} | - | - | - |",
                "| inferences/s per core's worth of server CPU (median): one server / two servers "
                f"| {throughput.per_core('one server'):.0f} / {throughput.per_core('two servers'):.0f} "
                "| - | - | - |",
            ]
            if all(throughput.server_cores.values())
            else []
        ),
        f"| failover after SIGKILL ({len(failover.seconds)} repetitions): median / slowest "
        f"| {failover.median * 1000:.0f} / {failover.slowest * 1000:.0f} ms "
        f"| {min(failover.seconds) * 1000:.0f} - {failover.slowest * 1000:.0f} ms "
        f"| < {FAILOVER_GOAL_S:g} s | {'PASS' if failover.met else '**FAIL**'} |",
    ]


def misses(throughput: Throughput, failover: Failover) -> list[str]:
    found = []
    if not throughput.met:
        found.append(f"pool servers: two / one = {throughput.ratio:.2f}x, goal >= {THROUGHPUT_GOAL}x")
    if not failover.met:
        found.append(f"pool servers: slowest failover {failover.slowest:.2f} s, goal < {FAILOVER_GOAL_S:g} s")
    return found


@dataclass
class Server:
    address: str
    core: int
    authority: Authority
    grpc_port: int
    http_port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"{self.address}:{self.grpc_port}"


def start_server(root: Path, launcher: Path, address: str, core: int, authority: Authority) -> Server:
    """A pool server's tritonserver on ``address``, pinned to ``core``, once it answers ready."""
    options, grpc_port, http_port = pool_server_options(root, address, authority)
    argv = [
        str(launcher),
        f"--model-repository={HERE / 'models'}",
        "--model-control-mode=explicit",
        f"--load-model={MODEL}",
        *options,
    ]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **SINGLE_THREAD},
        start_new_session=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),  # noqa: PLW1509 (before exec: the stub inherits it)
    )
    server = Server(address, core, authority, grpc_port, http_port, process)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready(server):
        if process.poll() is not None or time.monotonic() > deadline:
            kill(server)
            raise RuntimeError(f"the pool server on {address} did not start: {' '.join(argv)}")
        time.sleep(0.1)
    return server


def ready(server: Server) -> bool:
    try:
        url = f"http://127.0.0.1:{server.http_port}/v2/models/{MODEL}/ready"
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def kill(server: Server) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


def write_pool_file(
    sandbox: Path, servers: Sequence[Server], client_key: Path, queue_ms: Sequence[float]
) -> Path:
    """The pool.json a client glidein's agent would write (format: glidein_triton.worker.pool_discovery),
    with the client certificate each server's CA issued for ``client_key``."""
    job_dir = sandbox / sandbox_protocol.JOB_DIR
    job_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for server, queue in zip(servers, queue_ms):
        cert = server.authority.issue(client_key, sandbox / f"client-{server.address}.pem")
        entries.append(
            {
                "url": server.url,
                "name": server.address,
                "ca_pem": server.authority.cert.read_text(),
                "client_cert_pem": cert.read_text(),
                "models": [MODEL],
                "queue_time_ms": queue,
            }
        )
    document = {"pool": "benchmark", "local": "", "client_key": str(client_key), "servers": entries}
    path = job_dir / sandbox_protocol.POOL_FILE
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path


def job(sandbox: str) -> int:
    """A client job (``--job SANDBOX``): says ready after a first call, infers for the seconds of the ``go``
    line on stdin, prints its count."""
    import numpy as np  # noqa: PLC0415 (the job's imports, not the benchmark's)
    import tritonclient.grpc as grpcclient  # noqa: PLC0415

    from glidein_triton.job.client import connect  # noqa: PLC0415

    client = connect(pool=True, models=[MODEL], environment={"_CONDOR_SCRATCH_DIR": sandbox})
    tensor = grpcclient.InferInput("INPUT", [16], "FP32")
    tensor.set_data_from_numpy(np.ones(16, dtype=np.float32))
    client.infer(MODEL, [tensor])
    print("ready", flush=True)
    seconds = float(sys.stdin.readline().split()[1])
    count, deadline = 0, time.monotonic() + seconds
    cpu = time.process_time()
    while time.monotonic() < deadline:
        client.infer(MODEL, [tensor])
        count += 1
    print(json.dumps({"count": count, "cpu": time.process_time() - cpu}), flush=True)
    client.close()
    return 0


def run_jobs(
    sandbox: Path, servers: Sequence[Server], jobs: int, seconds: float
) -> tuple[float, float, float]:
    """(inferences per second, the jobs' CPU milliseconds per inference, the cores' worth of CPU that
    ``servers`` got while the jobs inferred) of ``jobs`` client jobs on the pool.json in ``sandbox``."""
    argv = [sys.executable, "-m", "benchmarks.pool_servers", "--job", str(sandbox)]
    environment = {**os.environ, **SINGLE_THREAD, "PYTHONPATH": str(HERE.parent)}
    children = [
        subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment, cwd=HERE.parent
        )
        for _ in range(jobs)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a client job did not start on {sandbox}")
        before = server_cpu_seconds(servers)
        for child in children:
            assert child.stdin is not None
            child.stdin.write(f"go {seconds}\n")
            child.stdin.flush()
        server_cores = threading.Timer(
            seconds, lambda: cores.append((server_cpu_seconds(servers) - before) / seconds)
        )
        cores: list[float] = []
        server_cores.start()
        count, cpu = 0, 0.0
        for child in children:
            output, _ = child.communicate(timeout=seconds + 120)
            answer = json.loads(output.strip().splitlines()[-1])
            count, cpu = count + answer["count"], cpu + answer["cpu"]
        server_cores.join()
        return count / seconds, cpu / max(count, 1) * 1000, cores[0]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def server_cpu_seconds(servers: Sequence[Server]) -> float:
    """The CPU time of the servers' processes (tritonserver and its python-backend stub)."""
    total = 0.0
    for server in servers:
        for pid in processes.group_members(server.process.pid):
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                total += times.user + times.system
    return total


def throughput(
    sandboxes: dict[str, Path], servers: dict[str, list[Server]], jobs: int, rounds: int, seconds: float
) -> Throughput:
    result = Throughput(jobs)
    for number in range(rounds):
        for side in SIDES if number % 2 == 0 else SIDES[::-1]:
            rate, cpu_ms, cores = run_jobs(sandboxes[side], servers[side], jobs, seconds)
            result.server_cores[side].append(cores)
            result.rounds[side].append(rate)
            result.client_cpu_ms.append(cpu_ms)
            print(f"  pool servers: round {number + 1}, {side} done", file=sys.stderr, flush=True)
    return result


def failover_once(pool_file: Path, a: Server, b: Server) -> float:
    """Seconds from SIGKILL of ``a`` (where the looping client infers) to its next call that succeeds on ``b``."""
    import numpy as np  # noqa: PLC0415 (the client's imports)
    import tritonclient.grpc as grpcclient  # noqa: PLC0415

    from glidein_triton.job.client import connect  # noqa: PLC0415

    client = connect(
        pool=True, models=[MODEL], environment={"_CONDOR_SCRATCH_DIR": str(pool_file.parent.parent)}
    )
    tensor = grpcclient.InferInput("INPUT", [16], "FP32")
    tensor.set_data_from_numpy(np.ones(16, dtype=np.float32))
    successes: list[tuple[float, str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.is_set():
                client.infer(MODEL, [tensor])
                successes.append((time.monotonic(), client.current.url))
        except Exception as error:
            errors.append(error)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + FAILOVER_TIMEOUT_S
        while sum(url == a.url for _, url in successes) < 5:
            if errors or time.monotonic() > deadline:
                raise RuntimeError(f"the client did not infer on {a.url}: {errors}")
            time.sleep(0.01)
        killed = time.monotonic()
        kill(a)
        while time.monotonic() < killed + FAILOVER_TIMEOUT_S and not errors:
            moved = [at for at, url in list(successes) if at > killed and url == b.url]
            if moved:
                return moved[0] - killed
            time.sleep(0.005)
        return float("inf")
    finally:
        stop.set()
        thread.join(FAILOVER_TIMEOUT_S)
        client.close()


@contextlib.contextmanager
def pool(root: Path) -> Iterator[tuple[Path, list[Server], Path]]:
    """Two pool servers on their own cores (the first two this process may use): (launcher, servers,
    client key) while they run."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise RuntimeError("the pool servers benchmark needs two cores, one per server")
    launcher = pytriton.prepare(root / "triton")
    key = make_key(root / "client.key")
    servers: list[Server] = []
    try:
        for address, core in zip(ADDRESSES, cores):
            servers.append(
                start_server(root, launcher, address, core, make_authority(root / f"ca-{address}"))
            )
        yield launcher, servers, key
    finally:
        for server in servers:
            kill(server)


def run(
    quick: bool = False, jobs: int = 4, rounds: int = 3, seconds: float = 5.0, repetitions: int = 5
) -> tuple[Throughput, Failover]:
    """Both measurements on one pair of servers (``quick``: 1 round of 2 s, 2 failovers)."""
    if quick:
        rounds, seconds, repetitions = 1, 2.0, 2
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="glidein-triton-pool-")))
        launcher, servers, key = stack.enter_context(pool(root))
        sandboxes, listed = {}, dict(zip(SIDES, (servers[:1], servers)))
        for side in SIDES:
            sandboxes[side] = root / side.replace(" ", "-")
            write_pool_file(sandboxes[side], listed[side], key, [0.0] * len(listed[side]))
        measured = throughput(sandboxes, listed, jobs, rounds, seconds)
        times = []
        for number in range(repetitions):
            a, b = servers
            if a.process.poll() is not None:
                a = servers[0] = start_server(root, launcher, a.address, a.core, a.authority)
            sandbox = root / f"failover-{number}"
            times.append(failover_once(write_pool_file(sandbox, [a, b], key, [0.0, HIGH_QUEUE_MS]), a, b))
            print(
                f"  pool servers: failover {number + 1}: {times[-1] * 1000:.0f} ms",
                file=sys.stderr,
                flush=True,
            )
    return measured, Failover(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pool_servers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s, 2 failovers")
    parser.add_argument("--jobs", type=int, default=4, help="client jobs (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per side (default 3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per round (default 5)")
    parser.add_argument("--repetitions", type=int, default=5, help="failovers (default 5)")
    parser.add_argument("--no-check", action="store_true", help="exit 0 even when a goal is missed")
    parser.add_argument("--job", metavar="SANDBOX", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        return job(args.job)
    before = os.getloadavg()[0]
    measured, failover = run(args.quick, args.jobs, args.rounds, args.seconds, args.repetitions)
    missed = misses(measured, failover)
    load = f"Load average (1 min) before / after: {before:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores."
    print("\n".join([*rows(measured, failover), "", load, *(missed or ["All goals met."])]))
    return 1 if missed and not args.no_check else 0


if __name__ == "__main__":
    sys.exit(main())
