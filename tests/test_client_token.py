"""The access token on a real server whose APIs (all but health) are restricted.

The server runs with a glidein's ``--http-restricted-api`` and ``--grpc-restricted-protocol`` options (the
jobs' token ``triton-token`` for inference and metadata, the agent's for the rest): requests without the token
must fail, and the client helper must pass them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from glidein_triton.job.client import connect
from glidein_triton.local import demo
from glidein_triton.local import pytriton as local_server
from glidein_triton.worker import runtime, server, token
from glidein_triton.worker.ports import Ports, allocate

pytestmark = pytest.mark.server

SECRET = "s3cret-token-for-tests"
ADMIN_SECRET = "s3cret-admin-token-for-tests"


@pytest.fixture(scope="module")
def urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """gRPC and HTTP addresses of a restricted server with the bundled ``simple`` model."""
    root = tmp_path_factory.mktemp("token-server")
    launcher = local_server.prepare(root / "home")
    ports = allocate(Ports(0, 0, 0))
    options = token.server_options(SECRET, ADMIN_SECRET)  # as a glidein starts its server
    plan = runtime.process_plan(str(launcher), str(demo.MODELS_DIR), ports, ["simple"], options, [])
    state = server.launch(plan, root / "server.log", {"PATH": "/usr/bin:/bin"}, stop_grace=5)
    try:
        state.http_port, state.grpc_port, state.metrics_port = ports.http, ports.grpc, ports.metrics
        server.wait_ready(state, 120)
        yield {"grpc": f"127.0.0.1:{ports.grpc}", "http": f"127.0.0.1:{ports.http}"}
    finally:
        assert server.stop(state, {}) == []


def infer(found: Any, protocol: str) -> np.ndarray:
    module = importlib.import_module(f"tritonclient.{protocol}")
    inputs = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
    result: np.ndarray = found.infer("simple", inputs).as_numpy("OUTPUT0")
    return result


def token_file(tmp_path: Path, value: str) -> Path:
    path = tmp_path / "triton.token"
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_without_a_token_inference_and_repository_are_refused(urls: dict[str, str], protocol: str) -> None:
    found = connect(protocol, urls[protocol], environment={}, timeout=30)  # health is not restricted
    with pytest.raises(InferenceServerException, match="restricted"):
        infer(found, protocol)
    with pytest.raises(InferenceServerException, match="restricted"):
        found.get_model_repository_index()
    found.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_token_file_opens_inference_not_the_repository(
    urls: dict[str, str], protocol: str, tmp_path: Path
) -> None:
    environment = {"TRITON_TOKEN_FILE": str(token_file(tmp_path, SECRET))}
    found = connect(protocol, urls[protocol], environment=environment, timeout=30)
    assert infer(found, protocol).tolist() == [[2] * 16]
    with pytest.raises(InferenceServerException, match="triton-admin-token"):  # the glidein agent's
        found.get_model_repository_index()
    found.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_token_variable_and_argument_work_and_a_wrong_token_does_not(
    urls: dict[str, str], protocol: str
) -> None:
    from_variable = connect(protocol, urls[protocol], environment={"TRITON_TOKEN": SECRET}, timeout=30)
    assert infer(from_variable, protocol).shape == (1, 16)
    from_variable.close()
    from_argument = connect(protocol, urls[protocol], token=SECRET, environment={}, timeout=30)
    assert infer(from_argument, protocol).shape == (1, 16)
    from_argument.close()
    wrong = connect(protocol, urls[protocol], environment={"TRITON_TOKEN": "wrong"}, timeout=30)
    with pytest.raises(InferenceServerException, match="restricted"):
        infer(wrong, protocol)
    wrong.close()
