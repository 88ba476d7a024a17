"""On the real tritonserver (a CPU build): models that fail, and the CPU fallback after a GPU launch fails.

This server cannot use a GPU, so given one (a captured nvidia-smi on PATH says the node has an H100) it
fails a KIND_GPU model exactly as Triton does on a node where CUDA is unusable: "instance group ... has
kind KIND_GPU but no GPUs are available".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from glidein_triton.local import demo

from .support import assert_nothing_left, fake_nvidia_smi, recorded_state

pytestmark = pytest.mark.server


@pytest.fixture
def gpu_glidein(tmp_path: Path, nvidia_smi_fixtures: Path) -> Iterator[demo.DemoGlidein]:
    """The local server's glidein on an entry that gives GPUs, with a KIND_GPU copy of the demo model."""
    prepared = demo.prepare(tmp_path / "glidein")
    config = prepared.glidein.config()
    repository = Path(config["GLIDEIN_TRITON_MODEL_REPOSITORY"])
    gpu_model = repository / "simple_gpu"
    gpu_model.mkdir()
    (gpu_model / "1").symlink_to(repository / "simple" / "1")
    text = (repository / "simple" / "config.pbtxt").read_text()
    (gpu_model / "config.pbtxt").write_text(
        text.replace('name: "simple"', 'name: "simple_gpu"').replace("KIND_CPU", "KIND_GPU")
    )
    prepared.glidein.set("GLIDEIN_TRITON_MODELS", "*")
    prepared.glidein.set("GLIDEIN_TRITON_ENTRY_GPUS", "True")
    prepared.glidein.set("GLIDEIN_Resource_Slots", "GPUs,1,type=main")
    bin_dir = tmp_path / "nvidia-bin"
    bin_dir.mkdir()
    fake_nvidia_smi(bin_dir, nvidia_smi_fixtures / "h100")
    prepared.environment["PATH"] = f"{bin_dir}:{prepared.environment['PATH']}"
    yield prepared
    state = recorded_state(prepared.glidein)
    prepared.glidein.run_cleanup(prepared.environment)
    assert_nothing_left(prepared.glidein, state)


def test_a_model_that_cannot_load_does_not_stop_the_server(gpu_glidein: demo.DemoGlidein) -> None:
    result = gpu_glidein.glidein.run_startup(gpu_glidein.environment)
    assert result.returncode == 0, result.stderr
    assert result.metrics["HasTriton"] == "True"
    assert result.metrics["TritonFailedModels"] == "simple_gpu"
    attributes, _ = gpu_glidein.glidein.published()
    assert attributes["TritonFailedModels"] == '"simple_gpu"'
    assert "model simple_gpu did not load: Invalid argument: instance group" in result.stderr
    # The server was given the GPU but initialised none: it says so, and the startd keeps the GPU.
    assert attributes["TritonGPUs"] == "0"
    assert "initialised none of the 1 GPUs" in attributes["TritonGPUFallback"]
    assert result.metrics["TritonGPUFallback"].startswith("tritonserver initialised none")
    assert gpu_glidein.glidein.config()["GLIDEIN_Resource_Slots"] == "GPUs,1,type=main"
    assert "CUDA_VISIBLE_DEVICES=GPU-00000000-0000-0000-0000-000000000000" not in result.stderr


def test_cpu_fallback_after_a_gpu_launch_fails(gpu_glidein: demo.DemoGlidein) -> None:
    gpu_glidein.glidein.set("GLIDEIN_TRITON_SERVER_ARGS", "--exit-on-error=true")
    result = gpu_glidein.glidein.run_startup(gpu_glidein.environment)
    assert result.returncode == 0, result.stderr
    assert result.status == "OK"
    assert result.metrics["HasTriton"] == "True"
    assert "the server failed on its GPUs" in result.stderr
    fallback = result.metrics["TritonGPUFallback"]
    assert fallback.startswith("the GPU launch failed: E")
    assert "has kind KIND_GPU but no GPUs are available" in fallback
    attributes, _ = gpu_glidein.glidein.published()
    assert attributes["TritonGPUs"] == "0"
    assert attributes["TritonGPUsIdle"] == "1"
    assert "no GPUs are available" in attributes["TritonGPUFallback"]
    assert attributes["TritonFailedModels"] == '"simple_gpu"'
    state = recorded_state(gpu_glidein.glidein)
    assert state is not None
    assert state.environment["CUDA_VISIBLE_DEVICES"] == ""
    assert "--exit-on-error=true" not in state.argv
    assert "--exit-on-error=false" in state.argv


def test_cpu_fallback_with_models_named_one_by_one(gpu_glidein: demo.DemoGlidein) -> None:
    """Named models keep Triton's --exit-on-error=true: the GPU launch fails, the CPU server does not."""
    gpu_glidein.glidein.set("GLIDEIN_TRITON_MODELS", "simple,simple_gpu")
    result = gpu_glidein.glidein.run_startup(gpu_glidein.environment)
    assert result.returncode == 0, result.stderr
    assert result.metrics["HasTriton"] == "True"
    assert "has kind KIND_GPU but no GPUs are available" in result.metrics["TritonGPUFallback"]
    assert result.metrics["TritonFailedModels"] == "simple_gpu"


def test_no_fallback_when_gpus_were_required(gpu_glidein: demo.DemoGlidein) -> None:
    gpu_glidein.glidein.set("GLIDEIN_TRITON_SERVER_ARGS", "--exit-on-error=true")
    gpu_glidein.glidein.set("GLIDEIN_TRITON_GPU", "gpu")
    result = gpu_glidein.glidein.run_startup(gpu_glidein.environment)
    assert result.returncode == 0
    assert result.metrics["HasTriton"] == "False"
    assert result.metrics["TritonFailure"] == "WN_Resource"
    assert result.metrics["TritonFailureDetail"].startswith("tritonserver failed on its GPUs: E")
    assert "no GPUs are available" in result.metrics["TritonFailureDetail"]


def test_gpu_mode_fails_when_the_server_initialised_no_gpu(gpu_glidein: demo.DemoGlidein) -> None:
    gpu_glidein.glidein.set("GLIDEIN_TRITON_GPU", "gpu")
    result = gpu_glidein.glidein.run_startup(gpu_glidein.environment)
    assert result.returncode == 0
    assert result.metrics["HasTriton"] == "False"
    assert result.metrics["TritonFailure"] == "WN_Resource"
    assert result.metrics["TritonFailureDetail"] == (
        "GLIDEIN_TRITON_GPU=gpu but tritonserver initialised none of the 1 GPUs it was given (no 'CUDA memory "
        "pool is created on device' in its log)"
    )
    attributes, _ = gpu_glidein.glidein.published()
    assert attributes["HasTriton"] == "False"
    assert "TritonGPUs" not in attributes
