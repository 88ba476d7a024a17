"""Jobs under three wrappers on the real server: each gets its model and asks what CMSSW asks, with no header.

The wrappers (glidein_triton.local.gwms_hooks): GlideinWMS's default, which runs the pre-job (with and without
its container); one that only execs the job; and a container stand-in that sees only the job's sandbox (a
private mount namespace hides the glidein directory; the environment is cleared). Every job gets its model
from the glidein's agent and, with unmodified clients and no credential, infers and reads the repository
index, model configuration, metadata and statistics over HTTP and gRPC. What jobs may not do (load models,
shared memory, logging, trace) is refused by the front door's filter, tested with the door.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glidein_triton.local import demo
from glidein_triton.local import gwms_hooks as hooks_sim
from glidein_triton.worker import processes

from .support import REPO, add_model, hand_over, job_ad, leftovers_after_cleanup, state

pytestmark = pytest.mark.server

JOB = [sys.executable, str(REPO / "tests" / "wrapper_job.py"), str(REPO)]


class Glidein:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.code = hand_over(add_model(root / "cvmfs" / "code", "alpha").parent)  # trusted for code
        self.data = root / "cvmfs" / "data"  # data models only
        add_model(self.data, "beta")
        hand_over(self.data)
        settings = {
            "GLIDEIN_TRITON_CODE_REPOSITORIES": str(self.code),
            "GLIDEIN_TRITON_JOB_REPOSITORIES": str(self.data),
        }
        self.prepared = demo.prepare(root / "glidein", settings=settings)
        self.jobs: list[hooks_sim.Job] = []

    def job(self, ad: dict[str, str], model: str, **options: str) -> hooks_sim.Job:
        environment = {**self.prepared.environment, **self.prepared.glidein.published()[1]}
        job = hooks_sim.start_job(
            self.prepared.glidein, [*JOB, model, str(self.root)], environment, ad, **options
        )
        self.jobs.append(job)
        return job


@pytest.fixture
def glidein(tmp_path: Path) -> Iterator[Glidein]:
    served = Glidein(tmp_path)
    result = served.prepared.glidein.run_startup(served.prepared.environment)
    assert result.returncode == 0, result.stderr
    yield served
    for job in served.jobs:
        job.end()
    recorded = state(served.prepared.glidein)
    served.prepared.glidein.run_cleanup(served.prepared.environment)
    assert leftovers_after_cleanup(served.prepared.glidein, recorded) == []


def report(job: hooks_sim.Job) -> dict[str, Any]:
    code, stdout, stderr = job.finish()
    assert code == 0, stderr
    found: dict[str, Any] = json.loads(stdout)
    return found


@pytest.mark.parametrize(
    ("wrapper", "container", "status", "nested"),
    [
        ("default", "", "ready", True),
        ("default", "hidden", "ready", True),
        ("exec", "", "", True),
        ("container", "", "", True),
        ("default", "", "ready", False),  # STARTER_NESTED_SCRATCH = false (HTCondor before 25.4)
        ("container", "", "", False),
    ],
)
def test_every_wrapper_gets_its_model_and_what_cmssw_asks(
    glidein: Glidein, wrapper: str, container: str, status: str, nested: bool
) -> None:
    glidein.prepared.glidein.nested_scratch = nested
    found = report(
        glidein.job(job_ad(glidein.code, ["alpha"]), "alpha", wrapper=wrapper, container=container)
    )
    assert found.get("error") is None, found
    assert found["status"] == status  # exported by the pre-job where one runs
    assert found["output"] == [1, 2, 3, 4]
    assert found["http"] == dict.fromkeys(("index", "statistics", "config", "metadata"), 200)
    assert found["grpc"] == dict.fromkeys(("index", "config", "metadata", "statistics"), "answered")
    if wrapper == "container":  # it saw only its sandbox, and needed nothing else
        assert found["opened_outside_sandbox"] == []


def test_refusals_reach_the_job(glidein: Glidein) -> None:
    # A model that runs code, from a repository allowed for data models only: refused, with the reason.
    found = report(glidein.job(job_ad(glidein.data, ["beta"]), "beta", wrapper="container"))
    assert "beta: runs code in the server (backend 'python')" in found["error"]
    assert "GLIDEIN_TRITON_CODE_REPOSITORIES" in found["error"]
    # Another job's sandbox is not a repository a job may name, by absolute path or through a link.
    holder = glidein.job(job_ad(glidein.code, ["alpha"]), "alpha")
    assert report(holder)["output"] == [1, 2, 3, 4]
    link = glidein.root / "link_to_a_sandbox"
    link.symlink_to(holder.sandbox)
    for repository in (holder.sandbox, link):
        found = report(glidein.job(job_ad(repository, ["alpha"]), "alpha"))
        assert "is not under a job repository the operator allows" in found["error"]
        assert found["status"] == "failed"


def test_the_agent_is_cheap_and_serves_within_its_period(glidein: Glidein) -> None:
    recorded = state(glidein.prepared.glidein)
    before = processes_cpu(recorded.agent_pid)
    time.sleep(3.0)
    used = processes_cpu(recorded.agent_pid) - before
    assert used < 0.3, f"the idle agent used {used:.2f} s of CPU in 3 s"
    assert processes.is_running(recorded.agent_pid, recorded.agent_ticks)


def processes_cpu(pid: int) -> float:
    """User and system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100
