"""Each way the server fails at start is reported with its failure type and the server's first error line;
the memory-limit hint only where the limit is the cause."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker import server, server_report
from glidein_triton.worker.errors import ModelLoadError, OptionRefusedError, PortInUseError
from glidein_triton.worker.settings import RETIRED_SETTINGS
from glidein_triton.worker.state import ServerState

from .support import DEFAULT_INSTANCES, add_model, write_executable

FAILING_MODEL = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("this model cannot load: weights missing")
"""
LIMIT_HINT = "GLIDEIN_TRITON_SERVER_MEMORY_LIMIT"
CUDA_NOISE = 'E1207 16:31:12.039958 10132 server.cc:241] "CudaDriverHelper has not been initialized."\n'


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def broken_repository(repository: Path, kind: str) -> None:
    if kind == "bad config.pbtxt":
        add_model(repository, "broken", FAILING_MODEL, "backend: python\nthis is not a text proto {\n")
    elif kind == "model raises at init":
        add_model(repository, "broken", FAILING_MODEL, DEFAULT_INSTANCES)


# (kind, settings, failure type, the server's first error line, whether the limit hint belongs)
KINDS = [
    (
        "missing model",
        {"GLIDEIN_TRITON_MODELS": "nosuchmodel"},
        "VO_Config",
        "failed to poll model 'nosuchmodel': model not found in any model repository.",
        False,
    ),
    (
        "bad config.pbtxt",
        {"GLIDEIN_TRITON_MODELS": "broken"},
        "VO_Config",
        "Poll failed for model directory 'broken': failed to read text proto from ",
        False,
    ),
    (
        "model raises at init",
        {"GLIDEIN_TRITON_MODELS": "broken"},
        "VO_Config",
        "Failed to create instance: RuntimeError: this model cannot load: weights missing",
        False,
    ),
    ("port clash", {"GLIDEIN_TRITON_HTTP_PORT": "{taken}"}, "Network", "already in use", False),
    # Under 256 MiB the python backend waits for a stub thread that never starts (2-core node).
    ("memory limit", {"GLIDEIN_TRITON_SERVER_MEMORY_LIMIT": "256"}, "WN_Resource", "", True),
]


@pytest.mark.server
@pytest.mark.parametrize(
    ("kind", "settings", "failure", "first_line", "hint"), KINDS, ids=[k[0] for k in KINDS]
)
def test_each_start_failure_names_its_cause(
    tmp_path: Path,
    taken_port: int,
    kind: str,
    settings: dict[str, str],
    failure: str,
    first_line: str,
    hint: bool,
) -> None:
    values = {key: value.format(taken=taken_port) for key, value in settings.items()}
    values.update({"GLIDEIN_TRITON_REQUIRED": "True", "GLIDEIN_TRITON_READY_TIMEOUT": "10"})
    prepared = demo.prepare(tmp_path / "glidein", settings=values)
    broken_repository(prepared.glidein.root / "model_repository", kind)
    result = prepared.glidein.run_startup(prepared.environment)
    assert result.returncode == 1
    assert result.failure == failure
    message = result.detail.splitlines()[0]
    assert first_line in message
    assert (LIMIT_HINT in message) is hint
    assert "CudaDriverHelper" not in message
    assert first_line in result.stderr  # the startup log has it too


def state_with_log(tmp_path: Path, log: str, memory_limit: int = 12052) -> ServerState:
    (tmp_path / "server.log").write_text(log)
    return ServerState(runtime="process", log_path=str(tmp_path / "server.log"), memory_limit=memory_limit)


def test_an_allocation_failure_under_the_limit_names_the_limit(tmp_path: Path) -> None:
    log = (
        CUDA_NOISE
        + 'E1207 10:00:00.000001 7 backend_model.cc:692] "pthread_create failed: Resource temporarily unavailable"\n'
    )
    error = server.exit_error(state_with_log(tmp_path, log), 1)
    assert error.message == (
        "tritonserver exited before it was ready (its data limited to 12052 MiB: "
        "GLIDEIN_TRITON_SERVER_MEMORY_LIMIT): pthread_create failed: Resource temporarily unavailable"
    )
    assert error.failure_type == "WN_Resource"
    unlimited = server.exit_error(state_with_log(tmp_path, log, memory_limit=0), 1)
    assert LIMIT_HINT not in unlimited.message


def test_a_crash_names_the_limit_only_when_there_is_one(tmp_path: Path) -> None:
    assert LIMIT_HINT in server.exit_error(state_with_log(tmp_path, CUDA_NOISE), -signal.SIGSEGV).message
    assert LIMIT_HINT not in server.exit_error(state_with_log(tmp_path, CUDA_NOISE), 1).message
    plain = server.exit_error(
        state_with_log(tmp_path, CUDA_NOISE + "error: creating server: Internal - x\n"), 1
    )
    assert plain.message == "tritonserver exited before it was ready: error: creating server: Internal - x"


def test_a_model_failure_is_the_vos_and_the_limit_is_not_named(tmp_path: Path) -> None:
    log = CUDA_NOISE + (
        'E1207 16:31:12.040499 10132 model_repository_manager.cc:1415] "failed to poll model '
        "'nosuchmodel': model not found in any model repository.\"\n"
        "error: creating server: Internal - failed to load all models\n"
    )
    error = server.exit_error(state_with_log(tmp_path, log), 1)
    assert isinstance(error, ModelLoadError)
    assert error.failure_type == "VO_Config"
    assert error.message.endswith(
        ": failed to poll model 'nosuchmodel': model not found in any model repository."
    )
    assert LIMIT_HINT not in error.message


def test_refused_option_and_port_clash_carry_the_servers_line(tmp_path: Path) -> None:
    refused = (
        "/opt/tritonserver/bin/tritonserver: unrecognized option '--grpc-restricted-protocol=x'\nUsage:\n"
    )
    error = server.exit_error(state_with_log(tmp_path, refused), 1)
    assert isinstance(error, OptionRefusedError)
    assert error.option == "--grpc-restricted-protocol"
    clash = (
        CUDA_NOISE
        + "E1207 16:31:23.893350 1 main.cc:257] \"failed to start HTTP service: Unavailable - Socket '127.0.0.1:9' already in use \"\n"
    )
    port = server.exit_error(state_with_log(tmp_path, clash), 1)
    assert isinstance(port, PortInUseError)
    assert port.message.endswith(
        ": failed to start HTTP service: Unavailable - Socket '127.0.0.1:9' already in use"
    )


def test_a_timeout_names_the_limit_only_near_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = state_with_log(tmp_path, CUDA_NOISE, memory_limit=256)
    state.pid = 4242
    monkeypatch.setattr(server.processes, "data_size_mib", lambda pid: 253)
    assert LIMIT_HINT in server.timeout_error(state, 10).message
    monkeypatch.setattr(server.processes, "data_size_mib", lambda pid: 120)
    assert (
        server.timeout_error(state, 10).message
        == "tritonserver was not ready after 10 s (GLIDEIN_TRITON_READY_TIMEOUT): no error line in its log"
    )


def test_first_error_skips_the_cpu_nodes_cuda_line_and_ends_at_the_first_newline() -> None:
    log = (
        CUDA_NOISE
        + 'E1207 16:31:15.222202 10343 backend_model.cc:692] "ERROR: boom\\n\\nAt:\\n  model.py(3)"\n'
    )
    assert server_report.first_error(log) == "ERROR: boom"
    assert server_report.first_error(CUDA_NOISE) == ""


@pytest.mark.scripts
@pytest.mark.parametrize("required", [False, True])
def test_a_misspelled_or_retired_setting_is_reported_with_the_close_name_or_why(
    glidein: SimulatedGlidein, required: bool
) -> None:
    for key, value in {
        "GLIDEIN_TRITON": "True",
        "GLIDEIN_TRITON_REQUIRED": str(required),
        "GLIDEIN_TRITON_RUNTIME": "process",
        "GLIDEIN_TRITON_SERVER_BINARY": str(glidein.root / "no-tritonserver"),
        "GLIDEIN_TRITON_READY_TIMOUT": "5",
        "GLIDEIN_TRITON_TOKEN": "True",  # retired: ignored with why, never a failure of its own
    }.items():
        glidein.set(key, value)
    result = glidein.run_startup()
    why = RETIRED_SETTINGS["GLIDEIN_TRITON_TOKEN"]
    expected = (
        f"retired setting of glidein-triton, ignored: GLIDEIN_TRITON_TOKEN ({why}); "
        "not settings of glidein-triton, ignored: GLIDEIN_TRITON_READY_TIMOUT (did you mean "
        "GLIDEIN_TRITON_READY_TIMEOUT?) (docs/settings.md lists them)"
    )
    assert result.metrics["TritonIgnoredSettings"] == expected
    assert f"WARNING {expected}" in result.stderr
    if required:
        assert result.detail.splitlines()[1].strip() == expected


@pytest.mark.server
def test_without_user_namespaces_the_server_is_not_started_and_the_cause_is_named(tmp_path: Path) -> None:
    """The front door cannot give the server a namespace of its own (a node where unprivileged user
    namespaces are off): the server is not started in the open, the failure names the cause and the fix."""
    stand_in = tmp_path / "bin" / "unshare"
    write_executable(
        stand_in, "#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n"
    )
    prepared = demo.prepare(tmp_path / "glidein", settings={"GLIDEIN_TRITON_REQUIRED": "True"})
    environment = {**prepared.environment, "PATH": f"{stand_in.parent}:{prepared.environment['PATH']}"}
    result = prepared.glidein.run_startup(environment)
    assert result.returncode == 1
    assert result.failure == "WN_Resource"
    message = result.detail.splitlines()[0]
    assert "no user and network namespace of its own for the server" in message
    assert "user.max_user_namespaces" in message
    assert "unshare failed: Operation not permitted" in message
