"""The pool-scale model of the benchmarks: closed form, event simulation, the ProtoDUNE anchor."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks import pool


def test_protodune_numbers_are_reproduced() -> None:
    scenario, analytic, simulated = pool.protodune()
    assert scenario.inference_fraction == pytest.approx(0.669, abs=0.001)
    assert analytic == pytest.approx(2.7, rel=1e-6)
    assert 2.3 < simulated <= analytic


def test_simulation_agrees_with_the_closed_form_away_from_saturation() -> None:
    scenario = pool.Scenario(jobs_per_node=8, inference_fraction=0.3, speedup=10, capacity=100, overhead=0.01)
    assert pool.simulated_gain(scenario) == pytest.approx(pool.analytic_gain(scenario), rel=0.03)
    saturated = replace(scenario, jobs_per_node=2000, capacity=50)
    assert pool.simulated_gain(saturated, horizon=50) == pytest.approx(
        pool.analytic_gain(saturated), rel=0.05
    )
    assert pool.analytic_gain(saturated) < 1


def test_break_even() -> None:
    scenario = pool.Scenario(speedup=17, overhead=0.01, jobs_per_node=4)
    fraction = pool.break_even_fraction(scenario)
    assert pool.analytic_gain(replace(scenario, inference_fraction=fraction)) == pytest.approx(1.0)
    assert pool.analytic_gain(replace(scenario, inference_fraction=fraction / 2)) < 1
    assert pool.analytic_gain(replace(scenario, inference_fraction=fraction * 2)) > 1


def test_saturation_point() -> None:
    scenario, _, _ = pool.protodune()
    knee = pool.jobs_per_gpu_at_saturation(scenario)
    below, above = (
        replace(scenario, jobs_per_node=int(knee) - 1),
        replace(scenario, jobs_per_node=int(knee) + 20),
    )
    assert pool.analytic_gain(below) == pytest.approx(2.7)
    assert pool.analytic_gain(above) < 2.7
