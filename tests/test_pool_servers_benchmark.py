"""The pool servers benchmark's judgement: medians, ratios, spreads and goals (no server: made-up rounds)."""

from __future__ import annotations

import pytest

from benchmarks import pool_servers


def throughput(one: list[float], two: list[float]) -> pool_servers.Throughput:
    return pool_servers.Throughput(4, {"one server": one, "two servers": two})


def test_throughput_is_the_median_of_the_rounds_and_judged_at_least_the_goal() -> None:
    judged = throughput([100.0, 90.0, 110.0], [180.0, 200.0, 150.0])
    assert judged.value("one server") == 100.0
    assert judged.value("two servers") == 180.0
    assert judged.ratio == pytest.approx(1.8)
    assert judged.met
    assert judged.spread == pytest.approx((150 / 110, 200 / 90))  # round by round
    assert not throughput([100.0], [179.0]).met


def test_failover_is_judged_on_the_slowest_repetition() -> None:
    judged = pool_servers.Failover([0.1, 0.3, 4.9])
    assert (judged.median, judged.slowest) == (0.3, 4.9)
    assert judged.met
    assert not pool_servers.Failover([0.1, 0.1, 5.0]).met
    assert not pool_servers.Failover([0.1, float("inf")]).met  # no call succeeded within the timeout


def test_the_table_says_pass_or_fail_and_the_misses_name_the_goal() -> None:
    passing, failing = throughput([100.0], [190.0]), throughput([100.0], [150.0])
    fast, slow = pool_servers.Failover([0.05, 0.07]), pool_servers.Failover([0.05, 6.0])
    rows = pool_servers.rows(passing, fast)
    assert rows[2].startswith(
        "| 4 jobs: two servers / one (190 / 100 inferences/s, median of 1 rounds) | 1.90x"
    )
    assert rows[2].endswith("| PASS |")
    assert rows[3] == (
        "| failover after SIGKILL (2 repetitions): median / slowest | 60 / 70 ms | 50 - 70 ms | < 5 s | PASS |"
    )
    assert pool_servers.misses(passing, fast) == []
    assert "**FAIL**" in pool_servers.rows(failing, slow)[2]
    assert "**FAIL**" in pool_servers.rows(failing, slow)[3]
    assert pool_servers.misses(failing, slow) == [
        "pool servers: two / one = 1.50x, goal >= 1.8x",
        "pool servers: slowest failover 6.00 s, goal < 5 s",
    ]


def test_the_jobs_cpu_per_inference_is_a_row_of_its_own_when_measured() -> None:
    measured = pool_servers.Throughput(4, {"one server": [100.0], "two servers": [190.0]}, [0.9, 1.4, 1.1])
    rows = pool_servers.rows(measured, pool_servers.Failover([0.05]))
    assert rows[3] == "| the jobs' own CPU per inference (median) | 1.1 ms | - | - | - |"
    assert rows[4].startswith("| failover after SIGKILL")


def test_the_servers_cpu_is_a_row_of_its_own_when_measured() -> None:
    measured = pool_servers.Throughput(
        4,
        {"one server": [100.0], "two servers": [190.0]},
        [],
        {"one server": [0.9], "two servers": [1.7, 1.3, 1.9]},
    )
    rows = pool_servers.rows(measured, pool_servers.Failover([0.05]))
    assert (
        rows[3]
        == "| the servers' CPU, cores' worth (median): one server / two servers | 0.90 / 1.70 | - | - | - |"
    )
