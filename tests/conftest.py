"""Shared fixtures: simulated glideins, the local tritonserver, captured nvidia-smi outputs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker.state import STATE_FILE_NAME, ServerState, state_dir

REPO = Path(__file__).resolve().parent.parent
#: Real nvidia-smi outputs (see the README there for their origin).
NVIDIA_SMI_FIXTURES = REPO / "tests" / "fixtures" / "nvidia-smi"


@pytest.fixture(scope="session")
def nvidia_smi_fixtures() -> Path:
    if not NVIDIA_SMI_FIXTURES.is_dir():
        raise FileNotFoundError(f"the captured nvidia-smi outputs are missing: {NVIDIA_SMI_FIXTURES}")
    return NVIDIA_SMI_FIXTURES


@pytest.fixture
def glidein(tmp_path: Path) -> SimulatedGlidein:
    """A laid-out glidein work directory with the payload installed; the switch still off."""
    simulated = SimulatedGlidein(tmp_path / "glidein").layout()
    simulated.install_payload()
    return simulated


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    """The environment scripts run in: ours, with an Apptainer config dir of the test's own."""
    env = dict(os.environ)
    env["APPTAINER_CONFIGDIR"] = str(tmp_path / "apptainer-config")
    return env


@pytest.fixture
def served_glidein(tmp_path: Path) -> Iterator[demo.DemoGlidein]:
    """A glidein ready to start the real local tritonserver (process runtime); cleaned up afterwards."""
    prepared = demo.prepare(tmp_path / "glidein")
    yield prepared
    state = recorded_state(prepared.glidein)
    prepared.glidein.run_cleanup(prepared.environment)
    assert_nothing_left(prepared.glidein, state)


def recorded_state(glidein: SimulatedGlidein) -> ServerState | None:
    return ServerState.load(state_dir(glidein.root) / STATE_FILE_NAME)


def assert_nothing_left(glidein: SimulatedGlidein, state: ServerState | None) -> None:
    """No process of the recorded server's group and no listening port is left; the state file is gone."""
    assert demo.leftovers(state) == []
    assert recorded_state(glidein) is None


def add_model(repository: Path, name: str, source: str) -> None:
    """A python-backend model ``name`` with ``source`` as its model.py, in ``repository``."""
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "IN", data_type: TYPE_FP32, dims: [ 1 ] } ]\n'
        'output [ { name: "OUT", data_type: TYPE_FP32, dims: [ 1 ] } ]\n'
    )
    (repository / name / "1" / "model.py").write_text(source)


def write_executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, dirs_exist_ok=True)
    return target
