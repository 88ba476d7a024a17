"""Shared fixtures: simulated glideins, the local tritonserver, captured nvidia-smi outputs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.local import gwms_hooks as hooks_sim
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker import glidein_paths

from .artefacts import Built, make_dist
from .support import FIXTURES, assert_nothing_left, recorded_state

#: Real nvidia-smi outputs (see the README there for their origin).
NVIDIA_SMI_FIXTURES = FIXTURES / "nvidia-smi"
#: The tiers by cost that may run scripts end to end, build and install (docs/testing.md); make unit runs neither.
COSTLY = ("scripts", "server")


def costly(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(name) for name in COSTLY)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Builds (the ``built`` fixture: make dist) belong to the scripts tier: said before the build starts."""
    if "built" in getattr(item, "fixturenames", ()) and not costly(item):
        pytest.fail("this test builds the release (the built fixture): mark it @pytest.mark.scripts")


@pytest.fixture(autouse=True)
def _tier_by_cost(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test outside the costly tiers that runs a glidein's scripts end to end fails, naming the marker it
    needs: ``make unit`` stays the pure logic, and under 30 s."""
    if costly(request.node):
        return

    def refused(what: str) -> object:
        def run(*_: object, **__: object) -> None:
            pytest.fail(f"this test runs {what} end to end: mark it @pytest.mark.scripts (docs/testing.md)")

        return run

    monkeypatch.setattr(SimulatedGlidein, "run_script", refused("the glidein's custom scripts"))
    monkeypatch.setattr(SimulatedGlidein, "run_cron_job", refused("the periodic script from the startd cron"))
    monkeypatch.setattr(SimulatedGlidein, "run_cleanup", refused("the glidein's cleanup scripts"))
    monkeypatch.setattr(hooks_sim, "start_job", refused("a job with its pre-job"))


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


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The sdist and the wheel ``make dist`` builds in a clean copy of this tree, once a session."""
    return make_dist(tmp_path_factory.mktemp("dist"))


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """The plugin's directory of a glidein in tmp_path."""
    directory = glidein_paths.plugin_dir(tmp_path / "glidein")
    directory.mkdir(parents=True)
    return directory
