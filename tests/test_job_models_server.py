"""Job models on the real server: what a job's repository can make the server run. The bypasses of the
line-by-line reading of config.pbtxt are refused; a model is served from its private snapshot, so a new
revision of its source never reaches the server, on a restart by the periodic script either."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.local import gwms_hooks as hooks_sim
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker import glidein_paths
from glidein_triton.worker.state import JOB_REPOSITORY, JOB_SNAPSHOTS, ServerState

from .support import (
    HOLDING_JOB,
    SHORT_JOB,
    add_model,
    hand_over,
    job_ad,
    job_report,
    leftovers_after_cleanup,
    loads_in_log,
    state,
)

pytestmark = pytest.mark.server

IO = 'input [ { name: "INPUT0", data_type: TYPE_INT32, dims: [ 4 ] } ]\n'


class Glidein:
    def __init__(self, prepared: demo.DemoGlidein, cvmfs: Path) -> None:
        self.glidein: SimulatedGlidein = prepared.glidein
        self.environment = prepared.environment
        self.cvmfs = cvmfs
        self.jobs: list[hooks_sim.Job] = []

    def job(self, ad: dict[str, str], command: list[str] = HOLDING_JOB) -> hooks_sim.Job:
        environment = {**self.environment, **self.glidein.published()[1]}
        job = hooks_sim.start_job(self.glidein, command, environment, ad)
        self.jobs.append(job)
        return job

    def periodic(self) -> dict[str, str]:
        code, attributes, stderr = hooks_sim.run_periodic(self.glidein, self.environment)
        assert code == 0, stderr
        return attributes

    def infer(self, model: str, values: list[int]) -> list[int]:
        """The outputs of one HTTP inference request, as a job sends it."""
        published = self.glidein.published()[1]
        body = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [4], "data": values}]}
        request = urllib.request.Request(
            f"http://{published['TRITON_HTTP_URL']}/v2/models/{model}/infer",
            data=json.dumps(body).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback test server)
            return list(json.load(response)["outputs"][0]["data"])


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Glidein]:
    """A started glidein whose operator allows ``cvmfs/data`` for data models and ``cvmfs/code`` for
    code (the process runtime, or the one a test names); after the test, its jobs end, the cleanup runs, and nothing may be left (no snapshot either)."""
    cvmfs = tmp_path / "cvmfs"
    add_model(cvmfs / "code", "alpha")
    data = cvmfs / "data"
    # runtime after another field on its line: a native library named evil.bin, dlopened by Triton
    (data / "inline_runtime" / "1").mkdir(parents=True)
    (data / "inline_runtime" / "config.pbtxt").write_text(
        f'name: "inline_runtime"\nplatform: "onnxruntime_onnx" runtime: "evil.bin"\n{IO}'
    )
    (data / "inline_runtime" / "evil.bin").write_text("not really a library")
    # backend in single quotes, under a decoy platform line, its code in a file not named *.py
    (data / "quoted" / "1").mkdir(parents=True)
    (data / "quoted" / "config.pbtxt").write_text(
        f"name: 'quoted'\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 0 backend: 'python'\n"
        f'default_model_filename: "model.txt"\n{IO}'
    )
    (data / "quoted" / "1" / "model.txt").write_text(
        (cvmfs / "code" / "alpha" / "1" / "model.py").read_text()
    )
    # the version directory a link to a directory of the same repository: the walk did not descend
    (data / "shared" / "1").mkdir(parents=True)
    (data / "shared" / "1" / "libtriton_onnxruntime.so").write_text("a backend library of the job's")
    (data / "linked").mkdir()
    (data / "linked" / "config.pbtxt").write_text(f'name: "linked"\nbackend: "onnxruntime"\n{IO}')
    (data / "linked" / "1").symlink_to(data / "shared" / "1")
    hand_over(cvmfs)
    settings = {
        "GLIDEIN_TRITON_RESTART_BACKOFF": "0",
        "GLIDEIN_TRITON_JOB_REPOSITORIES": str(data),
        "GLIDEIN_TRITON_CODE_REPOSITORIES": str(cvmfs / "code"),
    }
    runtime = getattr(request, "param", "process")
    prepared = demo.prepare(tmp_path / "glidein", runtime=runtime, settings=settings)
    result = prepared.glidein.run_startup(prepared.environment)
    assert result.returncode == 0, result.stderr
    glidein = Glidein(prepared, cvmfs)
    yield glidein
    for job in glidein.jobs:
        job.end()
    recorded = ServerState.load(glidein_paths.state_file(glidein.glidein.root))
    results = glidein.glidein.run_cleanup(glidein.environment)
    assert [result.returncode for result in results] == [0]
    assert leftovers_after_cleanup(glidein.glidein, recorded) == []


def test_the_bypasses_of_the_text_reading_are_refused(served: Glidein) -> None:
    models = ["inline_runtime", "quoted", "linked"]
    code, stdout, stderr = served.job(job_ad(served.cvmfs / "data", models), SHORT_JOB).finish()
    assert (code, stdout) == (0, "failed||inline_runtime,quoted,linked\n"), stderr
    data = served.cvmfs / "data"
    assert "inline_runtime: runs code in the server (a runtime (a backend library" in stderr
    assert "quoted: runs code in the server (backend 'python')" in stderr
    assert f"linked: 1 links outside the model directory (to {data / 'shared' / '1'})" in stderr
    assert [loads_in_log(served.glidein, model) for model in models] == [0, 0, 0]
    assert str(data) not in (glidein_paths.plugin_dir(served.glidein.root) / "server.log").read_text()
    assert list((glidein_paths.plugin_dir(served.glidein.root) / JOB_SNAPSHOTS).iterdir()) == []


def test_a_changed_source_never_reaches_the_server_on_a_restart(served: Glidein, tmp_path: Path) -> None:
    holder = served.job(job_ad(served.cvmfs / "code", ["alpha"]))
    assert job_report(holder) == ("ready", ["alpha"], [])
    directory = glidein_paths.plugin_dir(served.glidein.root)
    snapshot = (directory / JOB_REPOSITORY / "alpha").readlink()
    assert snapshot.parent == directory / JOB_SNAPSHOTS
    assert served.infer("alpha", [1, 2, 3, 4]) == [1, 2, 3, 4]
    # A new revision of the repository: code that leaves a mark and answers otherwise.
    marker = tmp_path / "the new revision ran"
    source = served.cvmfs / "code" / "alpha" / "1" / "model.py"
    source.write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        + source.read_text().replace('("OUTPUT0", values)', '("OUTPUT0", values * 0)')
    )
    os.kill(state(served.glidein).pid, signal.SIGKILL)
    attributes = served.periodic()
    assert (attributes["TritonRestarts"], attributes["TritonLoadedModels"]) == ("1", '"alpha,simple"')
    assert served.infer("alpha", [1, 2, 3, 4]) == [1, 2, 3, 4]
    assert not marker.exists()
    # Another job while the first holds it: the same snapshot, whatever the source says now.
    second = served.job(job_ad(served.cvmfs / "code", ["alpha"]))
    assert job_report(second) == ("ready", ["alpha"], [])
    assert (directory / JOB_REPOSITORY / "alpha").readlink() == snapshot
    assert served.infer("alpha", [5, 6, 7, 8]) == [5, 6, 7, 8]
    assert not marker.exists()
    holder.end()
    second.end()
    assert served.periodic()["TritonLoadedModels"] == '"simple"'
    assert not snapshot.exists()  # removed with the model


@pytest.mark.parametrize("served", ["apptainer"], indirect=True)
def test_a_server_in_a_container_serves_the_snapshot(served: Glidein) -> None:
    holder = served.job(job_ad(served.cvmfs / "code", ["alpha"]))
    assert job_report(holder) == ("ready", ["alpha"], [])
    assert (glidein_paths.plugin_dir(served.glidein.root) / JOB_REPOSITORY / "alpha").readlink().parent == (
        glidein_paths.plugin_dir(served.glidein.root) / JOB_SNAPSHOTS
    )
    assert served.infer("alpha", [1, 2, 3, 4]) == [1, 2, 3, 4]
