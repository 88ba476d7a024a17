"""Overhead of the plugin, side by side with what it is compared to, alternating runs in one process.

* switch off: the startup script versus a minimal GlideinWMS custom script (read the config, publish one
  attribute, report with error_gen), both through the glidein's own add_config_line.source;
* switch on: startup to a published, ready server versus launching the same tritonserver by hand and
  polling it until ready;
* cleanup: the cleanup script versus stopping the same hand-launched server (SIGTERM, wait).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from glidein_triton.local import demo
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker.ports import Ports, allocate
from glidein_triton.worker.runtime import server_options

MINIMAL_SCRIPT = """#!/bin/bash
# A minimal GlideinWMS custom script: read the config, publish one attribute, report.
glidein_config="$1"
source "$(grep -m1 '^ADD_CONFIG_LINE_SOURCE ' "$glidein_config" | cut -d ' ' -f 2-)"
condor_vars_file=$(gconfig_get CONDOR_VARS_FILE "$glidein_config")
value=$(gconfig_get MINIMAL_SWITCH "$glidein_config")
gconfig_add HAS_MINIMAL "${value:-False}"
add_condor_vars_line HAS_MINIMAL C - HasMinimal N Y -
"$(gconfig_get ERROR_GEN_PATH "$glidein_config")" -ok minimal.sh HasMinimal "${value:-False}"
"""


@dataclass
class Comparison:
    name: str
    ours: list[float]
    reference: list[float]
    reference_name: str
    target: float

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.reference)


def alternate(
    ours: Callable[[], float], reference: Callable[[], float], rounds: int
) -> tuple[list[float], list[float]]:
    """Run both ``rounds`` times, alternating, so that load changes hit both alike."""
    first, second = [], []
    for _ in range(rounds):
        first.append(ours())
        second.append(reference())
    return first, second


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def switch_off(root: Path, rounds: int) -> Comparison:
    glidein = SimulatedGlidein(root / "off").layout()
    glidein.install_payload()
    minimal = root / "minimal.sh"
    minimal.write_text(MINIMAL_SCRIPT)
    minimal.chmod(0o755)
    setup = glidein.startup_script

    def run(script: Path) -> float:
        return timed(
            lambda: subprocess.run(
                [str(script), "glidein_config", "main"],
                cwd=glidein.root,
                stdin=subprocess.DEVNULL,
                check=True,
                capture_output=True,
            )
        )

    ours, reference = alternate(lambda: run(setup), lambda: run(minimal), rounds)
    return Comparison("startup, switch off", ours, reference, "minimal custom script", 1.5)


def wait_ready(http_port: int, process: subprocess.Popen[bytes]) -> None:
    url = f"http://127.0.0.1:{http_port}/v2/health/ready"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None:
            raise RuntimeError("the hand-launched tritonserver exited")
        time.sleep(0.01)


def launch_by_hand(
    launcher: Path,
    repository: Path,
    ports: Ports,
    models: list[str],
    environment: dict[str, str],
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """tritonserver launched by hand with the plugin's basic options, once it answers ready."""
    argv = [str(launcher), *server_options(str(repository), ports, models, list(extra))]
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment, start_new_session=True
    )
    try:
        wait_ready(ports.http, process)
    except BaseException:
        stop_by_hand(process)
        raise
    return process


def stop_by_hand(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the hand-launched server's group, and its own graceful exit."""
    os.killpg(process.pid, signal.SIGTERM)
    process.wait()


def by_hand(launcher: Path, repository: Path, environment: dict[str, str]) -> tuple[float, float]:
    """(time to ready, time to stop) of tritonserver launched by hand with the plugin's own options."""
    ports = allocate(Ports(0, 0, 0))
    started = time.perf_counter()
    process = launch_by_hand(launcher, repository, ports, ["simple"], environment)
    ready = time.perf_counter() - started
    stopping = time.perf_counter()
    stop_by_hand(process)
    return ready, time.perf_counter() - stopping


def real_python_first(environment: dict[str, str]) -> dict[str, str]:
    """``environment`` with the directory of the interpreter itself first on PATH, as on a node whose python3
    is a real interpreter (here it may be a pyenv shim, which costs ~90 ms a start)."""
    directory = str(Path(sys.executable).resolve().parent)
    return {**environment, "PATH": f"{directory}{os.pathsep}{environment.get('PATH', '')}"}


def switch_on(root: Path, rounds: int) -> tuple[Comparison, Comparison]:
    startup_times, cleanup_times, ready_times, stop_times = [], [], [], []
    for round_number in range(rounds):
        # No GLIDEIN_TRITON_PYTHON: the startup script finds the Python itself, as on a worker node.
        prepared = demo.prepare(root / f"on{round_number}")
        glidein = prepared.glidein
        environment = real_python_first(prepared.environment)
        started = time.perf_counter()
        result = glidein.run_startup(environment, condor=False)  # the startup script alone, as timed by hand
        startup_times.append(time.perf_counter() - started)
        if result.returncode != 0 or result.metrics.get("HasTriton") != "True":
            raise RuntimeError(f"startup failed:\n{result.stderr[-2000:]}")
        glidein.run_first_periodic(environment)  # the rest of the glidein's start: the periodic hook's own
        glidein.start_condor()  # benchmark times the periodic script
        cleanup_times.append(timed(lambda g=glidein, e=prepared.environment: g.run_cleanup(e)))
        launcher = glidein.root / "tritonserver-home" / "bin" / "tritonserver"
        ready, stop = by_hand(launcher, glidein.root / "model_repository", prepared.environment)
        ready_times.append(ready)
        stop_times.append(stop)
    return (
        Comparison(
            "startup to a published, ready server", startup_times, ready_times, "tritonserver by hand", 1.1
        ),
        Comparison("cleanup (stop, check, remove)", cleanup_times, stop_times, "SIGTERM by hand", 1.5),
    )


def run(rounds_off: int = 30, rounds_on: int = 5) -> list[Comparison]:
    with tempfile.TemporaryDirectory(prefix="glidein-triton-overhead-") as directory:
        root = Path(directory)
        return [switch_off(root, rounds_off), *switch_on(root, rounds_on)]
