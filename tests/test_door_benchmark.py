"""The front door benchmark's judgement: medians, ratios, spreads and goals (no server: made-up rounds)."""

from __future__ import annotations

import pytest

from benchmarks import door


def result(measure: str, direct: list[list[float]], through: list[list[float]]) -> door.DoorResult:
    """Rounds of latencies (ms) per side; throughput rounds count their latencies as requests in 1 s."""
    workload = door.Workload("w", "identity", 1, "grpc", "1", measure, door.LATENCY_GOAL)
    if measure == "throughput":
        workload = door.Workload("w", "mlp", 8, "grpc", "1,1024", measure, door.THROUGHPUT_GOAL)
    found = door.DoorResult(workload)
    for side, rounds in (("direct", direct), ("door", through)):
        found.rounds[side] = [door.Round(len(latencies), 1.0, latencies) for latencies in rounds]
    return found


def test_latency_is_the_median_of_every_request_and_judged_at_most_the_goal() -> None:
    judged = result("latency", [[1.0, 1.0, 9.0], [1.0, 2.0, 2.0]], [[1.1, 1.2, 9.0], [1.2, 2.4, 2.4]])
    assert judged.value("direct") == 1.5
    assert judged.value("door") == pytest.approx(1.8)
    assert judged.ratio == pytest.approx(1.2)
    assert judged.met
    assert judged.spread == pytest.approx((1.2, 1.2))
    slower = result("latency", [[1.0]], [[1.21]])
    assert not slower.met
    assert door.misses([judged, slower]) == ["front door, w: latency ratio 1.21, goal <= 1.2"]


def test_throughput_is_the_median_of_the_rounds_and_judged_at_least_the_goal() -> None:
    judged = result("throughput", [[1.0] * 100, [1.0] * 110], [[1.0] * 90, [1.0] * 110])
    assert judged.ratio == pytest.approx(100 / 105)
    assert judged.met
    assert judged.spread == pytest.approx((0.9, 1.0))
    assert not result("throughput", [[1.0] * 100], [[1.0] * 90]).met


def test_the_table_says_pass_or_fail_per_workload() -> None:
    rows = door.rows([result("latency", [[1.0]], [[1.1]]), result("latency", [[1.0]], [[1.5]])])
    assert rows[2].endswith("| PASS | 0 us |")
    assert "**FAIL**" in rows[3]


def test_the_quick_mode_keeps_one_workload_of_each_kind() -> None:
    names = [workload.name for workload in door.workloads(quick=True)]
    assert names == [
        "sharing, 2 jobs, gRPC",
        "sharing, 2 jobs, HTTP",
        "1 MiB, 1 client, gRPC",
        "1 MiB, 2 clients, gRPC",
    ]
