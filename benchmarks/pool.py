"""Pool-scale simulation: the throughput of a pool with and without glidein Triton servers.

Time is in units of one job's CPU-only run time. A job spends a fraction ``f`` of it in inference. With a
glidein server the inference goes to the node's GPUs: a request alone runs ``s`` times faster than on the
job's core (the latency speed-up), and a GPU absorbs at most ``capacity`` cores' worth of inference work
per unit of time when it batches many requests (the throughput limit); each request also costs the job
``overhead`` (serialisation, loopback or network). Two models are compared: a closed form, and a
discrete-event simulation of one node (jobs in a closed loop, a GPU that batches what is queued).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    nodes: int = 100
    jobs_per_node: int = 68
    gpus_per_node: int = 1
    inference_fraction: float = 0.667
    speedup: float = 17.0
    capacity: float = 150.0
    overhead: float = 0.005
    max_batch: int = 256


def job_time(scenario: Scenario) -> float:
    """A job's run time with the server, while the GPU is not saturated."""
    f = scenario.inference_fraction
    return (1 - f) + f / scenario.speedup + scenario.overhead


def analytic_gain(scenario: Scenario) -> float:
    """Pool throughput with servers over without: jobs finish faster until the GPUs saturate."""
    unsaturated = scenario.jobs_per_node / job_time(scenario)
    saturated = scenario.gpus_per_node * scenario.capacity / max(scenario.inference_fraction, 1e-12)
    return min(unsaturated, saturated) / scenario.jobs_per_node


def jobs_per_gpu_at_saturation(scenario: Scenario) -> float:
    """How many jobs one GPU serves before it becomes the bottleneck."""
    return scenario.capacity * job_time(scenario) / scenario.inference_fraction


def break_even_fraction(scenario: Scenario) -> float:
    """The inference fraction below which sending inference away makes jobs slower (overhead wins)."""
    return scenario.overhead / (1 - 1 / scenario.speedup)


def simulated_gain(scenario: Scenario, horizon: float = 200.0) -> float:
    """Discrete-event simulation of one node: completed jobs with servers over without.

    Each job alternates a CPU phase and an inference request; requests queue for the node's GPUs, and a
    free GPU takes everything queued (up to max_batch) as one batch, which takes the single-request time
    ``f / s`` or, when bigger, its work divided by the capacity.
    """
    f, s, cap = scenario.inference_fraction, scenario.speedup, scenario.capacity
    cpu_phase = 1 - f
    events: list[tuple[float, int, str, int]] = []  # (time, order, kind, job or gpu)
    order = 0
    for job in range(scenario.jobs_per_node):
        # Stagger the starts over one job time so the jobs do not move in lockstep.
        heapq.heappush(events, (job * cpu_phase / scenario.jobs_per_node, order, "request", job))
        order += 1
    queue: list[int] = []
    idle_gpus = list(range(scenario.gpus_per_node))
    finished = 0.0
    while events:
        now, _, kind, subject = heapq.heappop(events)
        if now > horizon:
            break
        if kind == "request":
            queue.append(subject)
        elif kind == "done":
            idle_gpus.append(subject)
        elif kind == "answer":
            finished += 1
            heapq.heappush(events, (now + cpu_phase + scenario.overhead, order, "request", subject))
            order += 1
        while queue and idle_gpus:
            gpu = idle_gpus.pop()
            batch, queue = queue[: scenario.max_batch], queue[scenario.max_batch :]
            duration = max(f / s, len(batch) * f / cap)
            heapq.heappush(events, (now + duration, order, "done", gpu))
            order += 1
            for job in batch:
                heapq.heappush(events, (now + duration, order, "answer", job))
                order += 1
    return finished / (scenario.jobs_per_node * horizon)


def protodune() -> tuple[Scenario, float, float]:
    """The published ProtoDUNE result (Wang et al. 2020, arXiv:2009.04509): the ML part ran ~17x faster,
    the whole job ~2.7x faster, one GPU served 68 CPU threads. ``f`` follows from the first two numbers:
    1 / ((1 - f) + f / 17) = 2.7. Returns the scenario and its analytic and simulated job speed-ups."""
    speedup, job_speedup = 17.0, 2.7
    fraction = (1 - 1 / job_speedup) / (1 - 1 / speedup)
    scenario = Scenario(
        jobs_per_node=68,
        gpus_per_node=1,
        inference_fraction=fraction,
        speedup=speedup,
        capacity=150.0,
        overhead=0.0,
    )
    return scenario, analytic_gain(scenario), simulated_gain(scenario)
