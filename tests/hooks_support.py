"""Helpers of the hook tests: tiny python-backend models, jobs that hold their models, leftovers."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from glidein_triton.local import demo
from glidein_triton.local import jobs as hooks_sim
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker import accounting, agent_launch
from glidein_triton.worker.state import ServerState, state_dir

MODEL_CONFIG = """backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_INT32, dims: [ 4 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 4 ] } ]
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""
#: Returns its input; a request whose first value is negative fails (Triton counts it as a failure).
ECHO_MODEL = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy() for request in requests]
        if any(values[0] < 0 for values in inputs):
            raise pb_utils.TritonModelException("negative input")
        outputs = [pb_utils.Tensor("OUTPUT0", values) for values in inputs]
        return [pb_utils.InferenceResponse(output_tensors=[output]) for output in outputs]
"""
BROKEN_MODEL = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("weights missing")
"""
#: The job: report what the pre-job exported, then run until it is ended.
HOLDING_JOB = [
    "sh",
    "-c",
    'echo "$TRITON_MODELS_STATUS|$TRITON_MODELS_READY|$TRITON_MODELS_FAILED"; exec sleep 600',
]
SHORT_JOB = ["sh", "-c", 'echo "$TRITON_MODELS_STATUS|$TRITON_MODELS_READY|$TRITON_MODELS_FAILED"']


def add_model(repository: Path, name: str, source: str = ECHO_MODEL) -> Path:
    """A python-backend model ``name`` (INT32[4] in, same out) in ``repository``."""
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(MODEL_CONFIG)
    (repository / name / "1" / "model.py").write_text(source)
    return repository / name


NOBODY = 65534


def hand_over(root: Path) -> Path:
    """Give ``root`` to another user than the glidein's, read-only to others, as a VO's CVMFS repository is
    (the policy refuses job models the glidein's user could change; these tests may run as root).

    Root ignores mode bits, so the server's python backend would write ``__pycache__`` next to ``model.py``
    (a glidein user could not): a file of that name keeps it from doing so."""
    for module in list(root.rglob("*.py")):
        (module.parent / "__pycache__").touch()
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            os.chown(path, NOBODY, NOBODY)
            path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def infer(http_url: str, model: str, values: list[int], token: str = "") -> int:
    """One HTTP inference request (with the glidein's access token when given); its status code."""
    body = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [4], "data": values}]}
    request = urllib.request.Request(
        f"http://{http_url}/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"triton-token": token} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback test server)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def job_ad(
    repository: Path | None = None, models: Iterable[str] = (), required: bool = False
) -> dict[str, str]:
    ad = {"TritonModels": f'"{",".join(models)}"'}
    if repository is not None:
        ad["TritonModelRepository"] = f'"{repository}"'
    if required:
        ad["TritonModelsRequired"] = "true"
    return ad


def job_report(job: hooks_sim.Job) -> tuple[str, list[str], list[str]]:
    """(status, ready models, failed models) that the job saw in its environment (its first line)."""
    assert job.process.stdout is not None
    status, ready, failed = job.process.stdout.readline().strip().split("|")
    return status, [m for m in ready.split(",") if m], [m for m in failed.split(",") if m]


def registry(glidein: SimulatedGlidein) -> dict[str, dict[str, object]]:
    path = state_dir(glidein.root) / "models.json"
    models = json.loads(path.read_text())["models"] if path.exists() else {}
    return dict(models)


def reference_counts(glidein: SimulatedGlidein) -> dict[str, int]:
    return {name: len(entry["holders"]) for name, entry in registry(glidein).items()}  # type: ignore[arg-type]


def loads_in_log(glidein: SimulatedGlidein, model: str) -> int:
    """How many times the server log says ``model`` was loaded."""
    log = (state_dir(glidein.root) / "server.log").read_text()
    return log.count(f"successfully loaded '{model}'")


def state(glidein: SimulatedGlidein) -> ServerState:
    loaded = ServerState.load(state_dir(glidein.root) / "state.json")
    assert loaded is not None
    return loaded


def held_locks(directory: Path) -> list[str]:
    """Lock files under ``directory`` that some process holds (an exclusive flock fails)."""
    held = []
    for path in directory.rglob("*.lock"):
        descriptor = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            held.append(str(path))
        finally:
            os.close(descriptor)
    return held


#: What cleanup leaves in the plugin's directory on purpose: the logs and the accounting, for the operator.
KEPT_AFTER_CLEANUP = {"server.log", agent_launch.LOG_FILE_NAME, accounting.ACCOUNTING_FILE_NAME}


def leftovers_after_cleanup(glidein: SimulatedGlidein, recorded: ServerState | None) -> list[str]:
    """Processes, listening ports, lock files and hook files left after cleanup."""
    directory = state_dir(glidein.root)
    left = demo.leftovers(recorded)
    left += [f"held lock {path}" for path in held_locks(glidein.root)]
    left += [f"file {path}" for path in directory.rglob("*") if path.name not in KEPT_AFTER_CLEANUP]
    return left


def oldest_python() -> str:
    """Python 3.9 (the oldest the worker code supports) when this machine has one, else this Python."""
    candidates = [
        shutil.which("python3.9"),
        *map(str, Path.home().glob(".pyenv/versions/3.9*/bin/python3.9")),
    ]
    for candidate in filter(None, candidates):
        resolved = subprocess.run(
            [candidate, "-c", "import sys; print(sys.executable)"],
            capture_output=True,
            text=True,
            check=False,
        )
        if resolved.returncode == 0 and resolved.stdout.strip():
            return resolved.stdout.strip()
    return sys.executable
