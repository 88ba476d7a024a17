"""Helpers shared by the tests (tests import this module, never each other; conftest.py holds the fixtures):
the XML fixtures and what a patch changed line by line, a stand-in nvidia-smi, the oldest Python to run the
worker code with, tiny python-backend models, jobs that hold their models, what a glidein left behind, a
process's limits and memory, a forwarder that puts a door's filter between a client and a server."""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from lxml import etree

from glidein_triton.local import demo
from glidein_triton.local import gwms_hooks as hooks_sim
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker import accounting, agent_launch, door, door_filter, glidein_paths, processes
from glidein_triton.worker.state import ServerState

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
FACTORY_XML = FIXTURES / "factory" / "glideinWMS.xml"
CONFIG_D_XML = FIXTURES / "factory" / "config.d" / "10-gpu-sites.xml"
FRONTEND_XML = FIXTURES / "frontend" / "frontend.xml"


def _opcodes(
    before: bytes, after: bytes
) -> tuple[list[bytes], list[bytes], list[tuple[str, int, int, int, int]]]:
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    return old, new, difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()


def removed_lines(before: bytes, after: bytes) -> list[str]:
    """The lines of ``before`` that are not in ``after`` any more (deleted or replaced)."""
    old, _, opcodes = _opcodes(before, after)
    return [
        line.decode() for tag, i1, i2, _, _ in opcodes if tag in ("delete", "replace") for line in old[i1:i2]
    ]


def added_lines(before: bytes, after: bytes) -> list[str]:
    """The lines of ``after`` that were not in ``before`` (inserted or replacing others)."""
    _, new, opcodes = _opcodes(before, after)
    return [
        line.decode() for tag, _, _, j1, j2 in opcodes if tag in ("insert", "replace") for line in new[j1:j2]
    ]


def parse(data: bytes) -> etree._Element:
    return etree.fromstring(data)


def values(element: etree._Element) -> dict[str, str]:
    return {str(key): str(value) for key, value in element.attrib.items()}


def named(root: etree._Element, path: str, name: str) -> list[etree._Element]:
    return [element for element in root.iterfind(path) if element.get("name") == name]


def fake_nvidia_smi(directory: Path, fixture: Path, failing: bool = False) -> str:
    """An nvidia-smi on PATH that prints a captured output (or the no-driver failure)."""
    if failing:
        body = f'cat "{fixture}/stdout.txt"; exit "$(cat "{fixture}/exit-status.txt")"'
    else:
        body = f'case "$1" in -L) cat "{fixture}/list-L.txt";; *) cat "{fixture}/query-gpu-idle.csv";; esac'
    write_executable(directory / "nvidia-smi", f"#!/bin/bash\n{body}\n")
    return f"{directory}:/usr/bin:/bin"


def find_python39() -> str | None:
    """A working Python 3.9 interpreter: on PATH, or one installed by pyenv."""
    candidates = [shutil.which("python3.9") or ""]
    candidates += sorted(
        str(p)
        for p in Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob(
            "versions/3.9*/bin/python3.9"
        )
    )
    for candidate in candidates:
        if (
            candidate
            and subprocess.run([candidate, "-c", "pass"], capture_output=True, check=False).returncode == 0
        ):
            return candidate
    return None


PYTHON39 = find_python39()


#: The stand-in apptainer of the local glidein.
STANDIN_APPTAINER = REPO / "glidein_triton" / "local" / "standins" / "apptainer"
#: The image definitions.
APPTAINER = REPO / "apptainer"
SECTIONS = {"arguments", "files", "post", "test", "labels", "help", "environment", "runscript", "startscript"}


def parse_definition(path: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(header keywords, section name -> its non-blank, non-comment lines), as Apptainer reads a def file."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current = ""
    for line in path.read_text().splitlines():
        if line.startswith("%"):
            current = line[1:].split()[0]
            assert current not in sections, f"{path.name}: %{current} twice"
            sections[current] = []
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        elif current:
            sections[current].append(line.strip())
        else:
            keyword, _, value = line.partition(":")
            header[keyword.strip()] = value.strip()
    return header, sections


def arguments(sections: dict[str, list[str]]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sections.get("arguments", []))


def make_certificate(directory: Path, address: str) -> tuple[Path, Path]:
    cert, key = directory / "server.pem", directory / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={address}",
            "-addext",
            f"subjectAltName=IP:{address}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


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


#: A model of the server's default instance group (its one stub is ``<name>_0``).
DEFAULT_INSTANCES = (
    'backend: "python"\nmax_batch_size: 0\n'
    'input [ { name: "IN", data_type: TYPE_FP32, dims: [ 1 ] } ]\n'
    'output [ { name: "OUT", data_type: TYPE_FP32, dims: [ 1 ] } ]\n'
)


def add_model(repository: Path, name: str, source: str = ECHO_MODEL, config: str = MODEL_CONFIG) -> Path:
    """A python-backend model ``name`` with ``source`` as its model.py, in ``repository``; by default
    INT32[4] in, same out, one CPU instance."""
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(f'name: "{name}"\n{config}')
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


def infer(http_url: str, model: str, values: list[int]) -> int:
    """One HTTP inference request, as a job sends it; its status code."""
    body = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [4], "data": values}]}
    request = urllib.request.Request(
        f"http://{http_url}/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        method="POST",
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
    path = glidein_paths.plugin_dir(glidein.root) / "models.json"
    models = json.loads(path.read_text())["models"] if path.exists() else {}
    return dict(models)


def reference_counts(glidein: SimulatedGlidein) -> dict[str, int]:
    return {name: len(entry["holders"]) for name, entry in registry(glidein).items()}  # type: ignore[arg-type]


def loads_in_log(glidein: SimulatedGlidein, model: str) -> int:
    """How many times the server log says ``model`` was loaded."""
    log = (glidein_paths.plugin_dir(glidein.root) / "server.log").read_text()
    return log.count(f"successfully loaded '{model}'")


def recorded_state(glidein: SimulatedGlidein) -> ServerState | None:
    return ServerState.load(glidein_paths.state_file(glidein.root))


def state(glidein: SimulatedGlidein) -> ServerState:
    loaded = recorded_state(glidein)
    assert loaded is not None
    return loaded


def assert_nothing_left(glidein: SimulatedGlidein, state: ServerState | None) -> None:
    """No process of the recorded server's group and no listening port is left; the state file is gone."""
    assert demo.leftovers(state) == []
    assert recorded_state(glidein) is None


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
    directory = glidein_paths.plugin_dir(glidein.root)
    left = demo.leftovers(recorded)
    left += [f"held lock {path}" for path in held_locks(glidein.root)]
    left += [f"file {path}" for path in directory.rglob("*") if path.name not in KEPT_AFTER_CLEANUP]
    return left


def write_executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def data_limit(pid: int) -> str:
    """The soft "Max data size" of a running process, as /proc/<pid>/limits shows it."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max data size"):
            return line.split()[3]
    raise AssertionError(f"no data size limit in /proc/{pid}/limits")


def peak_memory_kib(pid: int) -> int | None:
    """VmHWM (peak resident memory) of a process, None once it is gone (or a zombie, which has none)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in lines if line.startswith("VmHWM:")), None)


# Trust as deployed: the glidein as an unprivileged pool account, another local user beside it. Numeric ids
# need no passwd entry; the tests that use them need root to switch to them (CI runs as root).
PILOT_UID = 40001
OTHER_UID = 40002
AS_ROOT = os.geteuid() == 0


def as_user(uid: int) -> dict[str, object]:
    """subprocess keyword arguments that run a child as ``uid`` (its own group, no other groups)."""
    return {"user": uid, "group": uid, "extra_groups": []}


def user_directory(uid: int, mode: int = 0o700) -> Path:
    """A fresh directory under /tmp owned by ``uid`` (pytest's tmp_path is root's 0700 tree, closed to it).
    The caller removes it (shutil.rmtree as root)."""
    path = Path(tempfile.mkdtemp(prefix=f"glidein-triton-{uid}-", dir="/tmp"))
    os.chown(path, uid, uid)
    path.chmod(mode)
    return path


def run_as(uid: int, argv: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``uid``, text output captured, with a HOME of its own unless ``env`` says otherwise."""
    env = options.pop("env", None) or {**os.environ, "HOME": "/nonexistent"}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        argv, env=env, capture_output=True, text=True, check=False, **as_user(uid), **options
    )


def wait_until(condition: Callable[[], object], timeout: float = 20.0, poll: float = 0.05) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds (checked every ``poll``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return False


def pilot_demo(home: Path) -> tuple[SimulatedGlidein, dict[str, str]]:
    """The demo glidein (real local server) laid out under ``home``, all of it the pilot's."""
    prepared = demo.prepare(home / "glidein")
    for root, directories, names in os.walk(home):
        for name in [*directories, *names]:
            os.chown(Path(root) / name, PILOT_UID, PILOT_UID, follow_symlinks=False)
    return prepared.glidein, {**prepared.environment, "HOME": "/nonexistent"}


def run_script_as_pilot(
    glidein: SimulatedGlidein, script: Path, environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """A custom script as glidein_startup.sh runs it, as the pilot, under umask 000."""
    return run_as(
        PILOT_UID, [str(script), "glidein_config", "main"], cwd=glidein.root, env=environment, umask=0
    )


def stop_as_pilot(glidein: SimulatedGlidein, environment: dict[str, str]) -> None:
    """The glidein's cleanup, then a check that its server is gone."""
    path = glidein_paths.state_file(glidein.root)
    pid = json.loads(path.read_text()).get("pid", 0) if path.exists() else 0
    run_as(
        PILOT_UID,
        [str(glidein.root / ".gwms.d/exec/cleanup/00_glidein_triton_cleanup.sh"), "glidein_config"],
        cwd=glidein.root,
        env=environment,
    )
    assert not pid or not processes.is_running(pid), "the server survived the cleanup"


Filter = TypeVar("Filter", bound=door_filter.ConnectionFilter)


class FilteringForwarder(Generic[Filter]):
    """A loopback listener forwarding each connection to ``target`` (host, port) through a new filter, as
    the door does: one lock per connection around the filter and what it sends back to the client."""

    def __init__(self, target: tuple[str, int], make_filter: Callable[[], Filter]) -> None:
        self.target = target
        self.make_filter = make_filter
        self.filters: list[Filter] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection_filter = self.make_filter()
            self.filters.append(connection_filter)
            threading.Thread(target=self.forward, args=(client, connection_filter), daemon=True).start()

    def forward(self, client: socket.socket, found: door_filter.ConnectionFilter) -> None:
        """Connect to the server once the client has spoken (as the door does: the client's first request
        may come before the server's SETTINGS), then the door's own pumps both ways through the filter."""
        first = client.recv(door.BUFFER_SIZE)
        try:
            server = door.connect(f"{self.target[0]}:{self.target[1]}")
        except OSError:
            client.close()
            return
        door.Filtered(client, server, found).run(first)
        client.close()
        server.close()

    def stop(self) -> None:
        self.listener.close()


@contextlib.contextmanager
def filtered_forwarder(target: tuple[str, int], make_filter: Callable[[], Filter]) -> Iterator[int]:
    """A :class:`FilteringForwarder` for the ``with`` statement; yields its port."""
    forwarder = FilteringForwarder(target, make_filter)
    try:
        yield int(forwarder.address.rpartition(":")[2])
    finally:
        forwarder.stop()


def echo_server() -> tuple[socket.socket, list[int]]:
    """A TCP echo server on loopback; the list counts the connections it accepted."""
    listener = door.listen("127.0.0.1", 0)
    accepted = [0]

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # the test closed the listener
            accepted[0] += 1
            threading.Thread(target=echo, args=(connection,), daemon=True).start()

    def echo(connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            while data := connection.recv(65536):
                connection.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return listener, accepted
