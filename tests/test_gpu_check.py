"""benchmarks/gpu_check.py where there is no GPU: it says what it skipped, and what it can check it checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import gpu_check

from .support import fake_nvidia_smi


def steps_of(output: str) -> dict[str, dict[str, object]]:
    return {step["name"]: step for step in json.loads(output)}


def test_without_nvidia_smi_the_gpu_steps_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert gpu_check.main(["--json"]) == 0
    steps = steps_of(capsys.readouterr().out)
    assert list(steps) == ["nvidia-smi", "server", "ownership", "sharing", "mig"]
    assert steps["nvidia-smi"]["status"] == "skipped"
    assert steps["nvidia-smi"]["summary"] == "no nvidia-smi on PATH: no GPU steps"
    assert [steps[name]["status"] for name in ("server", "sharing", "mig")] == ["skipped"] * 3
    # The ownership rule needs no GPU: it is checked on an example node with classad2.
    assert steps["ownership"]["status"] == "ok"
    assert steps["ownership"]["details"] == {"GLIDEIN_Resource_Slots": "", "slot_gpus": [0]}


def test_no_gpu_option_skips_a_gpu_that_is_there(
    tmp_path: Path,
    nvidia_smi_fixtures: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path, nvidia_smi_fixtures / "h100-mig"))
    assert gpu_check.main(["--no-gpu"]) == 0
    output = capsys.readouterr().out
    assert output.splitlines()[0] == "skipped nvidia-smi  --no-gpu: no GPU steps"
    assert "ok      ownership   example node" in output


def test_the_ownership_check_fails_when_a_request_gpus_job_could_take_the_gpu() -> None:
    node = gpu_check.Node(
        every=gpu_check.EXAMPLE_NODE,
        published={"HasTriton": "True", "TritonGPUs": "1"},
        config={"GLIDEIN_Resource_Slots": "GPUs,1,type=main"},
    )
    step = gpu_check.check_ownership(node)
    assert step.status == "fail"
    assert "request_gpus job matches True" in step.summary


@pytest.mark.server
def test_a_server_that_cannot_use_the_gpu_fails_the_check(
    tmp_path: Path,
    nvidia_smi_fixtures: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """This CPU tritonserver, told by a captured nvidia-smi that there is an H100, cannot load the KIND_GPU
    model: the check reports the fallback and fails."""
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path, nvidia_smi_fixtures / "h100"))
    assert gpu_check.main(["--json"]) == 1
    steps = steps_of(capsys.readouterr().out)
    assert steps["nvidia-smi"]["status"] == "ok"
    assert steps["server"]["status"] == "fail"
    assert steps["server"]["summary"] == "TritonGPUs = 0, failed models: simple_gpu"
    assert "the GPU launch failed" in str(steps["server"]["details"])
    assert "has kind KIND_GPU but no GPUs are available" in str(steps["server"]["details"])
    assert steps["ownership"]["status"] == "skipped"
