"""glidein_triton.job.client against the real server a simulated glidein started and published."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from glidein_triton.job.client import ModelsUnavailableError, ServerNotReadyError, connect
from glidein_triton.local.local_job import LocalGlidein, local_glidein

from .support import assert_nothing_left, recorded_state

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def glidein(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGlidein]:
    with local_glidein(tmp_path_factory.mktemp("client-server"), models="simple") as started:
        assert started.has_triton, started.startup.stderr
        state = recorded_state(started.glidein)
        yield started
    assert_nothing_left(started.glidein, state)


def add(found: Any, protocol: str) -> np.ndarray:
    module = importlib.import_module(f"tritonclient.{protocol}")
    inputs = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
    result: np.ndarray = found.infer("simple", inputs).as_numpy("OUTPUT0")
    return result


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_connects_from_the_job_environment(glidein: LocalGlidein, protocol: str) -> None:
    found = connect(protocol, environment=glidein.environment(), models=["simple"], timeout=30)
    assert found.is_server_ready()
    assert add(found, protocol).tolist() == [list(range(0, 32, 2))]
    found.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_connects_from_the_machine_ad_alone(
    glidein: LocalGlidein, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    environment = glidein.environment(base={}, machine_ad_only=True)
    assert "TRITON_GRPC_URL" not in environment
    with caplog.at_level("INFO", logger="glidein_triton.job.client"):
        found = connect(protocol, environment=environment, timeout=30)
    assert add(found, protocol).shape == (1, 16)
    found.close()
    assert f"(from {glidein.machine_ad}: Triton" in caplog.text


def test_explicit_url_is_used_before_a_wrong_environment(glidein: LocalGlidein) -> None:
    environment = {"TRITON_GRPC_URL": "127.0.0.1:1"}
    found = connect("grpc", glidein.job_environment["TRITON_GRPC_URL"], environment=environment, timeout=30)
    assert found.is_server_ready()
    found.close()


def test_waits_for_models_and_names_the_missing_one(glidein: LocalGlidein) -> None:
    url = glidein.job_environment["TRITON_HTTP_URL"]
    with pytest.raises(ServerNotReadyError, match=r"last: model\(s\) not ready: no_such_model"):
        connect(
            "http", url, environment=glidein.environment(), models=["simple", "no_such_model"], timeout=0.5
        )


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_model_the_glideins_server_does_not_have_fails_at_once(
    glidein: LocalGlidein, protocol: str
) -> None:
    started = time.monotonic()
    with pytest.raises(ModelsUnavailableError) as raised:
        connect(protocol, environment=glidein.environment(), models=["simple", "no_such_model"], timeout=60)
    assert time.monotonic() - started < 10
    assert "has no model(s) no_such_model and nothing is loading them" in str(raised.value)
    assert '+TritonModels = "no_such_model"' in str(raised.value)


def test_fallback_is_not_used_when_the_server_is_there(glidein: LocalGlidein) -> None:
    def must_not_run(error: Exception) -> None:
        raise AssertionError(f"fallback called: {error}")

    found = connect("grpc", environment=glidein.environment(), fallback=must_not_run, timeout=30)
    assert found.is_server_live()
    found.close()
