"""Without a server: what the agent writes into a job's sandbox, and how the client helper finds the agent's
answer there without any environment variable."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from glidein_triton.job import client
from glidein_triton.local.gwms_hooks import make_sandbox
from glidein_triton.worker import job_loader, sandbox_protocol, sandboxes
from glidein_triton.worker.agent import Agent
from glidein_triton.worker.job_policy import Policy
from glidein_triton.worker.ports import free_port
from glidein_triton.worker.state import ServerState
from glidein_triton.worker.triton_api import Server


def loader(plugin_dir: Path) -> job_loader.JobLoader:
    """A loader whose server does not answer (a closed port): every load fails."""
    return job_loader.JobLoader(str(plugin_dir), Server(free_port()), Policy([], []), "", 5.0)


def sandbox_with(tmp_path: Path, ad: str) -> Path:
    sandbox = tmp_path / "glidein" / "execute" / "dir_42"
    sandbox.mkdir(parents=True)
    (sandbox / ".job.ad").write_text(ad)
    return sandbox


def answer(sandbox: Path) -> dict[str, str]:
    lines = (sandbox / ".glidein_triton" / "prejob.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_the_agent_writes_pending_claim_and_answer(plugin_dir: Path, tmp_path: Path) -> None:
    sandbox = sandbox_with(
        tmp_path, 'GlobalJobId = "s#1.0#1"\nTritonModels = "alpha"\nTritonModelsRequired = true\n'
    )
    loader(plugin_dir).serve(str(sandbox))
    job_dir = sandbox / ".glidein_triton"
    assert stat.S_IMODE(job_dir.stat().st_mode) == 0o700
    assert sorted(path.name for path in job_dir.iterdir()) == ["claim.json", "pending", "prejob.env"]
    for name in ("pending", "claim.json", "prejob.env"):
        assert stat.S_IMODE((job_dir / name).stat().st_mode) == 0o600, name
    assert (job_dir / "pending").read_text() == "35\n"
    found = answer(sandbox)
    assert (found["TRITON_MODELS_STATUS"], found["TRITON_MODELS_FAILED"]) == ("required-failed", "alpha")
    assert found["TRITON_MODELS_ERRORS"].startswith("alpha: ")


def test_the_agent_answers_none_refusals_and_bad_requests(plugin_dir: Path, tmp_path: Path) -> None:
    sandbox = sandbox_with(tmp_path, 'GlobalJobId = "s#1.0#1"\n')
    loader(plugin_dir).serve(str(sandbox))
    assert answer(sandbox)["TRITON_MODELS_STATUS"] == "none"
    (sandbox / ".job.ad").write_text('TritonModels = "a/../b"\n')
    loader(plugin_dir).serve(str(sandbox))
    assert answer(sandbox)["TRITON_MODELS_FAILED"] == "request"
    (sandbox / ".job.ad").write_text(f'TritonModels = "m"\nTritonModelRepository = "{tmp_path}"\n')
    loader(plugin_dir).serve(str(sandbox))
    assert "the operator allows none" in answer(sandbox)["TRITON_MODELS_ERRORS"]
    assert answer(sandbox)["TRITON_MODELS_STATUS"] == "failed"


def test_a_job_cannot_redirect_the_agents_writes(plugin_dir: Path, tmp_path: Path) -> None:
    sandbox = sandbox_with(tmp_path, 'TritonModels = "m"\n')
    (sandbox / ".glidein_triton").symlink_to(plugin_dir)  # the job points its directory at the glidein's
    with pytest.raises(NotADirectoryError):
        loader(plugin_dir).serve(str(sandbox))
    assert list(plugin_dir.iterdir()) == []


@pytest.mark.parametrize("nested", [True, False], ids=["nested_scratch", "flat"])
def test_the_agent_serves_a_sandbox_once_its_job_ad_is_there(tmp_path: Path, nested: bool) -> None:
    work_dir = tmp_path / "glidein"
    agent = Agent(work_dir, ServerState(runtime="process", http_port=free_port()))
    assert agent.new_sandboxes() == []  # no execute directory yet (HTCondor has not started)
    sandbox = make_sandbox(work_dir / "execute" / "dir_7", nested)
    (work_dir / "execute" / "other").mkdir()
    assert agent.new_sandboxes() == []  # the starter has not written the job ad yet
    (sandbox / ".job.ad").write_text("")
    assert agent.new_sandboxes() == []  # created, not written yet
    (sandbox / ".job.ad").write_text('GlobalJobId = "x#1')
    assert agent.new_sandboxes() == []  # half written
    (sandbox / ".job.ad").write_text('GlobalJobId = "x#1"\n')
    assert agent.new_sandboxes() == [str(sandbox)]
    assert agent.new_sandboxes() == []
    (work_dir / "execute" / "dir_7").rename(work_dir / "execute" / "dir_8")  # one job ends, another starts
    assert agent.new_sandboxes() == [str(sandbox).replace("dir_7", "dir_8")]


def test_a_flat_sandbox_is_not_taken_for_a_nested_one(tmp_path: Path) -> None:
    # A job in the flat layout makes "scratch" and "htcondor" with a job ad of its own: its own .job.ad
    # beside them still decides, so the agent keeps writing where the job's _CONDOR_SCRATCH_DIR is.
    slot_dir = make_sandbox(tmp_path / "execute" / "dir_3", nested=False)
    (slot_dir / ".job.ad").write_text('GlobalJobId = "x#1"\n')
    for name in ("scratch", "htcondor"):
        (slot_dir / name).mkdir()
    (slot_dir / "scratch" / ".job.ad").write_text('GlobalJobId = "forged#1"\n')
    assert list(sandboxes.scratch_dirs(str(tmp_path / "execute"))) == [("dir_3", str(slot_dir))]
    # The nested starter's layout, before and after its job ad: always dir_<pid>/scratch.
    nested = make_sandbox(tmp_path / "execute" / "dir_4", nested=True)
    assert sandboxes.scratch_dir(str(nested.parent)) == str(nested)


def test_connect_fails_at_once_for_a_model_the_agent_refused(tmp_path: Path) -> None:
    machine_ad = tmp_path / ".machine.ad"
    machine_ad.write_text(f'HasTriton = true\nTritonGRPCURL = "127.0.0.1:{free_port()}"\n')
    environment = {"_CONDOR_SCRATCH_DIR": str(tmp_path), "_CONDOR_MACHINE_AD": str(machine_ad)}
    (tmp_path / ".glidein_triton").mkdir()
    (tmp_path / ".glidein_triton" / "prejob.env").write_text(
        sandbox_protocol.Answer.of(
            ["a"], {"b": "refused; by policy", "c": "x"}, required=False, asked=True
        ).text()
    )
    started = time.monotonic()
    with pytest.raises(
        client.ModelsUnavailableError, match=r"could not make these models available: b: refused; by policy$"
    ):
        client.connect(models=["a", "b"], timeout=30, environment=environment)
    assert time.monotonic() - started < 5
    (tmp_path / ".glidein_triton" / "prejob.env").unlink()
    started = time.monotonic()
    with pytest.raises(client.NoServerError):  # no answer from an agent: waits until the timeout, bounded
        client.connect(models=["a"], timeout=0.5, environment=environment)
    assert time.monotonic() - started < 10
