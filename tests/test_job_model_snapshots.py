"""The agent loads exactly what was vetted: each job model from its private snapshot, kept while jobs hold
it, rebuilt from a changed source only once nobody does, removed with the model; ensembles with the models
they name (a server that records the loads stands in for Triton here)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from glidein_triton.worker import job_loader, model_registry
from glidein_triton.worker.job_policy import Policy
from glidein_triton.worker.reaper import Reaper
from glidein_triton.worker.state import JOB_REPOSITORY, JOB_SNAPSHOTS

from .support import AS_ROOT, hand_over

pytestmark = pytest.mark.skipif(not AS_ROOT, reason="job repositories are given to another user (chown)")

ONNX = 'platform: "onnxruntime_onnx"\n'


class RecordingServer:
    """What the agent asked of the server, and for each load what the linked model directory held."""

    def __init__(self, plugin_dir: Path) -> None:
        self.plugin_dir = plugin_dir
        self.loaded: dict[str, str] = {}  # model -> its config.pbtxt as the server would read it
        self.loads: list[str] = []

    def is_model_ready(self, model: str, timeout: float = 2.0) -> bool:
        return model in self.loaded

    def load(self, model: str, timeout: float) -> None:
        self.loads.append(model)
        self.loaded[model] = (self.plugin_dir / JOB_REPOSITORY / model / "config.pbtxt").read_text()

    def unload(self, model: str, timeout: float = 30.0) -> None:
        self.loaded.pop(model, None)

    def index(self, ready_only: bool = False, timeout: float = 5.0) -> list[dict[str, Any]]:
        return [{"name": name} for name in self.loaded]

    def model_statistics(self, model: str = "", timeout: float = 5.0) -> list[dict[str, Any]]:
        return []


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    path = tmp_path / "cvmfs" / "vo"
    for name, config in [
        ("alpha", ONNX),
        ("beta", ONNX),
        (
            "pipeline",
            'platform: "ensemble"\nensemble_scheduling { step [ { model_name: "alpha" }, '
            '{ model_name: "beta" } ] }\n',
        ),
    ]:
        (path / name / "1").mkdir(parents=True)
        (path / name / "config.pbtxt").write_text(f'name: "{name}"\n{config}')
        (path / name / "1" / "model.onnx").write_text("weights")
    return hand_over(path)


def serve(
    plugin_dir: Path, server: RecordingServer, repository: Path, models: list[str], job: int
) -> dict[str, str]:
    """One job's pre-job through the agent's loader; its answer."""
    sandbox = plugin_dir.parent / "execute" / f"dir_{job}"
    sandbox.mkdir(parents=True)
    (sandbox / ".job.ad").write_text(
        f'GlobalJobId = "s#{job}.0#1"\nTritonModels = "{",".join(models)}"\n'
        f'TritonModelRepository = "{repository}"\n'
    )
    policy = Policy([str(repository)], [])
    loader = job_loader.JobLoader(str(plugin_dir), server, policy, "", 5.0)  # type: ignore[arg-type]
    loader.serve(str(sandbox))
    lines = (sandbox / ".glidein_triton" / "prejob.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def entry(plugin_dir: Path, model: str) -> dict[str, Any]:
    models: dict[str, Any] = json.loads((plugin_dir / model_registry.REGISTRY_FILE).read_text())["models"]
    return dict(models[model])


def test_the_server_reads_the_snapshot_never_the_source(plugin_dir: Path, repository: Path) -> None:
    server = RecordingServer(plugin_dir)
    assert serve(plugin_dir, server, repository, ["alpha"], 1)["TRITON_MODELS_READY"] == "alpha"
    link = plugin_dir / JOB_REPOSITORY / "alpha"
    snapshot = Path(entry(plugin_dir, "alpha")["snapshot"])
    assert link.readlink() == snapshot
    assert snapshot.parent == plugin_dir / JOB_SNAPSHOTS
    assert entry(plugin_dir, "alpha")["source"] == str(repository / "alpha")
    assert (plugin_dir / JOB_SNAPSHOTS).stat().st_mode & 0o777 == 0o700
    # A new revision of the repository while the job holds the model: a second job, the same snapshot.
    (repository / "alpha" / "config.pbtxt").write_text('name: "alpha"\nbackend: "python"\n')
    assert serve(plugin_dir, server, repository, ["alpha"], 2)["TRITON_MODELS_READY"] == "alpha"
    assert link.readlink() == snapshot
    server.loaded.clear()  # the server restarted: the periodic script loads the held models again
    server.load("alpha", 5.0)
    assert server.loaded["alpha"] == f'name: "alpha"\n{ONNX}'
    assert sorted(path.name for path in (plugin_dir / JOB_SNAPSHOTS).iterdir()) == [snapshot.name]


def test_a_changed_source_is_vetted_again_once_no_job_holds_the_model(
    plugin_dir: Path, repository: Path
) -> None:
    server = RecordingServer(plugin_dir)
    serve(plugin_dir, server, repository, ["alpha"], 1)
    first = Path(entry(plugin_dir, "alpha")["snapshot"])
    (repository / "alpha" / "1" / "model.py").write_text("import os")  # the new revision has code
    hand_over(repository)
    (plugin_dir.parent / "execute" / "dir_1" / ".glidein_triton" / "claim.json").unlink()
    (plugin_dir.parent / "execute" / "dir_1").rename(plugin_dir.parent / "gone")  # the job ended
    reaper = Reaper(model_registry.Registry(str(plugin_dir)), server, str(plugin_dir.parent / "execute"), [])  # type: ignore[arg-type]
    assert reaper.reap() == ["alpha"]
    assert not first.exists()
    assert not (plugin_dir / JOB_REPOSITORY / "alpha").is_symlink()
    answer = serve(plugin_dir, server, repository, ["alpha"], 2)
    assert answer["TRITON_MODELS_FAILED"] == "alpha"
    assert "runs code in the server (the file 1/model.py)" in answer["TRITON_MODELS_ERRORS"]
    assert list((plugin_dir / JOB_SNAPSHOTS).iterdir()) == []


def test_a_failed_load_removes_the_snapshot(plugin_dir: Path, repository: Path) -> None:
    class FailingServer(RecordingServer):
        def load(self, model: str, timeout: float) -> None:
            from glidein_triton.worker.triton_api import TritonAPIError  # noqa: PLC0415

            raise TritonAPIError("failed to load")

    answer = serve(plugin_dir, FailingServer(plugin_dir), repository, ["alpha"], 1)
    assert answer["TRITON_MODELS_FAILED"] == "alpha"
    assert list((plugin_dir / JOB_SNAPSHOTS).iterdir()) == []
    assert not (plugin_dir / JOB_REPOSITORY / "alpha").is_symlink()


def test_an_ensemble_loads_after_the_models_it_names_and_not_without_them(
    plugin_dir: Path, repository: Path
) -> None:
    server = RecordingServer(plugin_dir)
    answer = serve(plugin_dir, server, repository, ["pipeline", "alpha", "beta"], 1)
    assert answer["TRITON_MODELS_READY"] == "pipeline,alpha,beta"  # the job's order
    assert server.loads == ["alpha", "beta", "pipeline"]
    assert entry(plugin_dir, "pipeline")["needs"] == ["alpha", "beta"]
    other = RecordingServer(plugin_dir / "other")
    (plugin_dir / "other").mkdir()
    answer = serve(plugin_dir / "other", other, repository, ["pipeline", "alpha"], 2)
    assert answer["TRITON_MODELS_READY"] == "alpha"
    assert answer["TRITON_MODELS_ERRORS"] == (
        "pipeline: the ensemble needs beta: ask for them in the same job (from the same repository), or use "
        "models of the server's repository"
    )
    assert other.loads == ["alpha"]
    assert [path.name.split(".")[0] for path in (plugin_dir / "other" / JOB_SNAPSHOTS).iterdir()] == ["alpha"]


def test_a_model_claimed_while_it_was_unloaded_comes_back_from_its_snapshot(
    plugin_dir: Path, repository: Path
) -> None:
    server = RecordingServer(plugin_dir)
    serve(plugin_dir, server, repository, ["alpha"], 1)
    held = entry(plugin_dir, "alpha")
    link = plugin_dir / JOB_REPOSITORY / "alpha"
    link.unlink()  # as the reaper's release leaves it
    server.unload("alpha")
    (repository / "alpha" / "config.pbtxt").write_text('name: "alpha"\nbackend: "python"\n')
    reaper = Reaper(model_registry.Registry(str(plugin_dir)), server, str(plugin_dir.parent / "execute"), [])  # type: ignore[arg-type]
    reaper.repair("alpha", held)
    assert link.readlink() == Path(held["snapshot"])
    assert server.loaded["alpha"] == f'name: "alpha"\n{ONNX}'
    assert entry(plugin_dir, "alpha")["snapshot"] == held["snapshot"]


def test_snapshots_are_private_whatever_the_umask(plugin_dir: Path, repository: Path) -> None:
    old = os.umask(0)
    try:
        serve(plugin_dir, RecordingServer(plugin_dir), repository, ["alpha"], 1)
    finally:
        os.umask(old)
    snapshots = plugin_dir / JOB_SNAPSHOTS
    modes = {
        stat.S_IMODE(path.stat().st_mode) for path in [snapshots, *snapshots.rglob("*")] if path.is_dir()
    }
    assert modes == {0o700}
    assert {stat.S_IMODE(path.stat().st_mode) for path in snapshots.rglob("*") if path.is_file()} == {0o400}
