"""The benchmark report: a table on the terminal, docs/benchmarks.md and its plots."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from . import pool
from .overhead import Comparison
from .sharing import SideResult

DOCS = Path(__file__).resolve().parent.parent / "docs"
IMAGES = DOCS / "images"


def overhead_rows(comparisons: Sequence[Comparison]) -> list[str]:
    rows = [
        "| what | ours (median) | compared with | theirs (median) | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        met = "yes" if c.ratio <= c.target else "**no**"
        rows.append(
            f"| {c.name} | {statistics.median(c.ours) * 1000:.1f} ms | {c.reference_name} | "
            f"{statistics.median(c.reference) * 1000:.1f} ms | {c.ratio:.2f} | <= {c.target} | {met} |"
        )
    return rows


def absolute_rows(timings_ms: dict[str, list[float]], targets_ms: dict[str, float]) -> list[str]:
    """Hook timings (milliseconds) with their targets, where they have one."""
    rows = ["| what | median | p90 | runs | target | met |", "|---|---|---|---|---|---|"]
    for name, values in timings_ms.items():
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        median = statistics.median(values)
        target = targets_ms.get(name)
        judged = (
            ("-", "-") if target is None else (f"<= {target:.0f} ms", "yes" if median <= target else "**no**")
        )
        rows.append(
            f"| {name} | {median:.1f} ms | {p90:.1f} ms | {len(values)} | {judged[0]} | {judged[1]} |"
        )
    return rows


def sharing_rows(results: Sequence[SideResult]) -> list[str]:
    """Per number of jobs: each side's rate, the glidein server's against the bare server's (what the plugin
    costs) and against the jobs' own (what sharing gains), memory, latencies."""
    rows = [
        "| jobs | in-process inferences/s | bare server inferences/s | glidein server inferences/s "
        "| vs bare | vs in-process | in-process MB | glidein server MB | memory ratio "
        "| glidein server p50 / p95 / p99 ms | in-process p50 / p95 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_jobs: dict[int, dict[str, SideResult]] = {}
    for result in results:
        by_jobs.setdefault(result.jobs, {})[result.mode] = result
    for jobs, sides in sorted(by_jobs.items()):
        local, server, bare = sides["in-process"], sides["server"], sides.get("bare")
        rows.append(
            f"| {jobs} | {local.throughput:.0f} | {f'{bare.throughput:.0f}' if bare else '-'} "
            f"| {server.throughput:.0f} | {f'{server.throughput / bare.throughput:.2f}' if bare else '-'} "
            f"| {server.throughput / local.throughput:.2f} "
            f"| {local.memory_mb:.0f} | {server.memory_mb:.0f} | {server.memory_mb / local.memory_mb:.2f} "
            f"| {server.p50_ms:.1f} / {server.p95_ms:.1f} / {server.p99_ms:.1f} "
            f"| {local.p50_ms:.1f} / {local.p95_ms:.1f} / {local.p99_ms:.1f} |"
        )
    return rows


def plot_sharing(results: Sequence[SideResult]) -> Path:
    figure, (throughput, memory) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, marker in (("in-process", "o"), ("bare", "^"), ("server", "s")):
        side = sorted((r for r in results if r.mode == mode), key=lambda r: r.jobs)
        if not side:
            continue
        throughput.plot([r.jobs for r in side], [r.throughput for r in side], marker=marker, label=mode)
        memory.plot([r.jobs for r in side], [r.memory_mb for r in side], marker=marker, label=mode)
    throughput.set(xscale="log", xlabel="concurrent jobs", ylabel="inferences / s", title="Throughput")
    memory.set(xscale="log", xlabel="concurrent jobs", ylabel="MB (PSS, all processes)", title="Memory")
    for axes in (throughput, memory):
        axes.set_xticks([1, 2, 4, 8, 16, 32], labels=["1", "2", "4", "8", "16", "32"])
        axes.legend()
        axes.grid(alpha=0.3)
    return save(figure, "sharing.png")


def plot_pool(scenario: pool.Scenario) -> Path:
    figure, (by_jobs, by_fraction) = plt.subplots(1, 2, figsize=(10, 4))
    jobs = [1, 5, 10, 20, 40, 68, 83, 100, 120, 150, 200, 300]
    for capacity in (123.0, 150.0, 300.0):
        variant = replace(scenario, capacity=capacity)
        by_jobs.plot(
            jobs,
            [pool.analytic_gain(replace(variant, jobs_per_node=n)) for n in jobs],
            label=f"closed form, capacity {capacity:.0f}",
        )
        by_jobs.plot(
            jobs,
            [pool.simulated_gain(replace(variant, jobs_per_node=n), horizon=60) for n in jobs],
            "o",
            markersize=3,
            label=f"simulation, capacity {capacity:.0f}",
        )
    by_jobs.axhline(1, color="grey", linewidth=0.8)
    by_jobs.set(
        xlabel="jobs per GPU", ylabel="pool throughput gain", title="ProtoDUNE-like jobs (f = 0.67, s = 17)"
    )
    fractions = [i / 100 for i in range(0, 91, 3)]
    for overhead in (0.005, 0.02):
        variant = replace(scenario, jobs_per_node=8, overhead=overhead)
        by_fraction.plot(
            fractions,
            [pool.analytic_gain(replace(variant, inference_fraction=f)) for f in fractions],
            label=f"overhead {overhead:g} of a job",
        )
    by_fraction.axhline(1, color="grey", linewidth=0.8)
    by_fraction.set(xlabel="fraction of the job in inference", ylabel="gain", title="8 jobs per GPU, s = 17")
    for axes in (by_jobs, by_fraction):
        axes.legend(fontsize=7)
        axes.grid(alpha=0.3)
    return save(figure, "pool.png")


def save(figure: plt.Figure, name: str) -> Path:
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / name
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
