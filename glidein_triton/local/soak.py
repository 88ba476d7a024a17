"""``glidein-triton soak``: start/stop cycles of a simulated glidein on the real server; nothing may grow.

Each cycle lays out a new glidein directory, runs the startup script (server ready, endpoint published),
runs the cleanup scripts and removes the directory, as glideins come and go on a node. The server, its
models and the stand-in image are prepared once, as a node or an image has them. After every cycle
nothing of the glidein may be left (:mod:`glidein_triton.local.leftovers`); after the last one, processes,
open descriptors, listening ports, /dev/shm and disk usage are compared with their values before the first
measured cycle (after a warm-up cycle). Exit code 1 when a cycle failed or left something, or a
measurement grew by more than its tolerance.

Extension point: :class:`CycleHooks` ``while_ready`` runs with the server ready, before cleanup (the
tests use it to leak on purpose; concurrent jobs per cycle would go there).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from glidein_triton.local import demo
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.local.leftovers import Watch
from glidein_triton.local.node_usage import Metric, metrics
from glidein_triton.worker.word_rules import plain_text

EXIT_OK = 0
EXIT_GROWTH = 1


@dataclass
class CycleHooks:
    """What a cycle does besides start and stop (the default: nothing)."""

    #: Runs with the server ready, before the cleanup scripts: concurrent pre-jobs (issue 4) go here.
    while_ready: Callable[[demo.DemoGlidein], None] = lambda _glidein: None


@dataclass
class Cycle:
    """One start/stop cycle: whether the server got ready, how long each half took, what was left."""

    number: int
    ready: bool
    startup_seconds: float
    cleanup_seconds: float
    leftovers: list[str] = field(default_factory=list)
    failure: str = ""

    @property
    def ok(self) -> bool:
        return self.ready and not self.leftovers


def run_cycle(
    number: int,
    work_dir: Path,
    settings: Mapping[str, str],
    environment: Mapping[str, str],
    hooks: CycleHooks,
) -> Cycle:
    """Start and stop one glidein in ``work_dir``; whatever it leaves is reported, then killed."""
    root = work_dir / f"glidein-{number}"
    glidein = SimulatedGlidein(root).layout()
    glidein.install_payload()
    for key, value in settings.items():
        glidein.set(key, value)
    with Watch(root) as watch:
        started = time.monotonic()
        result = glidein.run_startup(environment)
        ready = result.returncode == 0 and glidein.published()[0].get("HasTriton") == "True"
        if ready:
            hooks.while_ready(demo.DemoGlidein(glidein, dict(environment)))
        stopping = time.monotonic()
        glidein.run_cleanup(environment)
        stopped = time.monotonic()
    leftovers = watch.leftovers(glidein.config_path, settings.get("SINGULARITY_PATH", ""), environment)
    watch.kill_leftovers()
    shutil.rmtree(root, ignore_errors=True)
    failure = "" if ready else result.metrics.get("TritonFailureDetail") or result.stderr[-500:]
    return Cycle(number, ready, stopping - started, stopped - stopping, leftovers, failure)


def table(rows: Sequence[tuple[Metric, float, float]]) -> tuple[str, bool]:
    """The before/after table, and whether every growth is within its tolerance."""
    width = max(len(metric.label) for metric, _, _ in rows)
    lines = [
        f"{'measurement':<{width}}  {'before':>10}  {'after':>10}  {'growth':>9}  {'tolerance':>9}  verdict"
    ]
    grown = False
    for metric, before, after in rows:
        growth = after - before
        bad = growth > metric.tolerance
        grown |= bad
        lines.append(
            f"{metric.label:<{width}}  {before:>10.0f}  {after:>10.0f}  {growth:>+9.0f}  "
            f"{metric.tolerance:>9g}  {'GREW' if bad else 'ok'}"
        )
    return "\n".join(lines), not grown


def summary(cycles: Sequence[Cycle]) -> str:
    ready = [cycle for cycle in cycles if cycle.ready]
    left = [cycle for cycle in cycles if cycle.leftovers]
    text = f"cycles: {len(cycles)} measured, {len(ready)} ready, {len(left)} left something behind"
    if ready:
        startup = sum(cycle.startup_seconds for cycle in ready) / len(ready)
        cleanup = sum(cycle.cleanup_seconds for cycle in ready) / len(ready)
        text += f"; mean startup {startup:.2f} s, mean cleanup {cleanup:.2f} s"
    return text


def run(
    work_dir: Path,
    cycles: int,
    runtime: str = "process",
    tolerances: dict[str, float] | None = None,
    hooks: CycleHooks | None = None,
    warmup: int = 1,
    out: TextIO = sys.stdout,
) -> int:
    """The whole soak in ``work_dir``; returns the exit code."""
    hooks = hooks or CycleHooks()
    measurements = metrics(work_dir.resolve(), tolerances)
    settings, environment = demo.server_settings(work_dir, runtime)
    done: list[Cycle] = []
    before: list[float] = []
    for number in range(-warmup, cycles):
        if number == 0:
            before = [metric.measure() for metric in measurements]
        cycle = run_cycle(number, work_dir, settings, environment, hooks)
        state = "ready" if cycle.ready else f"NOT READY: {cycle.failure.strip()[:300]}"
        left = "nothing left" if not cycle.leftovers else "LEFT: " + "; ".join(cycle.leftovers)
        label = "warm-up" if number < 0 else f"cycle {number + 1}/{cycles}"
        times = f"in {cycle.startup_seconds:.2f} s, cleanup {cycle.cleanup_seconds:.2f} s"
        print(f"{label}: {state} {times}, {left}", file=out, flush=True)
        if number >= 0 or not cycle.ok:
            done.append(cycle)
    if not before:
        before = [metric.measure() for metric in measurements]
    after = [metric.measure() for metric in measurements]
    text, within = table(list(zip(measurements, before, after)))
    print(f"\n{text}\n{summary(done)}", file=out)
    passed = within and all(cycle.ok for cycle in done)
    print("soak passed: nothing grew" if passed else "SOAK FAILED", file=out)
    return EXIT_OK if passed else EXIT_GROWTH


def parse_tolerance(text: str) -> tuple[str, float]:
    key, separator, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not separator or number < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: use METRIC=NUMBER (NUMBER >= 0)")
    return key, number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="glidein-triton soak",
        description=plain_text((__doc__ or "").split("\n\n")[0]),
        epilog="metrics (for --tolerance): processes, descriptors, ports, shm-files, shm-kib, work-dir-kib, "
        "tmp-kib. Exit code 0: nothing grew; 1: a cycle failed or left something, or a measurement grew.",
    )
    parser.add_argument("--cycles", type=int, default=200, help="measured cycles (default: %(default)s)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="cycles before measuring (default: %(default)s)"
    )
    parser.add_argument(
        "--runtime",
        choices=("process", "apptainer"),
        default="process",
        help="process: run tritonserver directly; apptainer: through the stand-in apptainer "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--work-dir", type=Path, help="where the glideins are laid out (default: a new temp dir)"
    )
    parser.add_argument(
        "--tolerance",
        type=parse_tolerance,
        action="append",
        default=[],
        metavar="METRIC=NUMBER",
        help="allowed growth of one measurement (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.warmup < 0:
        parser.error("--cycles must be at least 1 and --warmup at least 0")
    tolerances = dict(args.tolerance)
    try:
        metrics(Path(), tolerances)
    except ValueError as error:
        parser.error(str(error))
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        return run(args.work_dir.resolve(), args.cycles, args.runtime, tolerances, warmup=args.warmup)
    root = Path(tempfile.mkdtemp(prefix="glidein-triton-soak-"))
    try:
        return run(root, args.cycles, args.runtime, tolerances, warmup=args.warmup)
    finally:
        shutil.rmtree(root, ignore_errors=True)
