"""glidein_triton.job.client against a glidein in remote mode with gRPC over mutual TLS."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from glidein_triton.job.client import ServerNotReadyError, connect
from glidein_triton.local.local_job import LocalGlidein, local_glidein

from .support import assert_nothing_left, make_certificate, recorded_state

pytestmark = pytest.mark.server

ADDRESS = "127.0.0.2"  # a second loopback address stands in for the node's address


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalGlidein, Path, Path]]:
    root = tmp_path_factory.mktemp("client-tls")
    cert, key = make_certificate(root, ADDRESS)
    settings = {
        "GLIDEIN_TRITON_REMOTE": "True",
        "GLIDEIN_TRITON_ADDRESS": ADDRESS,
        "GLIDEIN_TRITON_TLS_CERT": str(cert),
        "GLIDEIN_TRITON_TLS_KEY": str(key),
        "GLIDEIN_TRITON_TLS_ROOT_CERT": str(cert),  # self-signed: it also signs the job's certificate
    }
    with local_glidein(root / "glidein", models="simple", settings=settings) as started:
        assert started.has_triton, started.startup.stderr
        state = recorded_state(started.glidein)
        yield started, cert, key
    assert_nothing_left(started.glidein, state)


def add(found: object) -> np.ndarray:
    module = importlib.import_module("tritonclient.grpc")
    inputs = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
    result: np.ndarray = found.infer("simple", inputs).as_numpy("OUTPUT0")  # type: ignore[attr-defined]
    return result


def test_tls_is_used_from_what_the_glidein_published(remote: tuple[LocalGlidein, Path, Path]) -> None:
    glidein, cert, key = remote
    assert glidein.attributes["TritonGRPCTLS"] == "True"
    assert glidein.job_environment["TRITON_GRPC_URL"].startswith(f"{ADDRESS}:")
    found = connect(
        "grpc",
        environment=glidein.environment(),
        root_certificates=str(cert),
        private_key=str(key),
        certificate_chain=str(cert),
        timeout=30,
    )
    assert add(found).tolist() == [[2] * 16]
    found.close()


def test_an_untrusted_certificate_is_reported_as_not_ready(remote: tuple[LocalGlidein, Path, Path]) -> None:
    glidein, _, _ = remote
    with pytest.raises(ServerNotReadyError, match=f"server at {ADDRESS}:[0-9]+ .*was not ready after 1 s"):
        connect("grpc", environment=glidein.environment(), timeout=1)
