"""The published attributes: condor_vars.lst lines byte for byte, and safe values."""

from __future__ import annotations

from glidein_triton.worker import publish
from glidein_triton.worker.gpus import GPU

EXPECTED_LINES = [
    "HAS_TRITON C - HasTriton N Y HAS_TRITON",
    "TRITON_GRPC_URL S - TritonGRPCURL N Y TRITON_GRPC_URL",
    "TRITON_HTTP_URL S - TritonHTTPURL N Y TRITON_HTTP_URL",
    "TRITON_METRICS_URL S - TritonMetricsURL N Y TRITON_METRICS_URL",
    "TRITON_VERSION S - TritonVersion N Y -",
    "TRITON_GPUS I - TritonGPUs N Y -",
    "TRITON_GPU_NAMES S - TritonGPUNames N Y -",
    "TRITON_GPUS_IDLE I - TritonGPUsIdle N Y -",
    "TRITON_GPU_FALLBACK S - TritonGPUFallback N Y -",
    "TRITON_FAILED_MODELS S - TritonFailedModels N Y -",
    "TRITON_RUNTIME S - TritonRuntime N Y -",
    "TRITON_MODEL_REPOSITORY S - TritonModelRepository N Y TRITON_MODEL_REPOSITORY",
    "TRITON_REMOTE C - TritonRemote N Y -",
    "TRITON_GRPC_TLS C - TritonGRPCTLS N Y -",
    "TRITON_FAILURE S - TritonFailure N Y -",
]


def test_condor_vars_lines() -> None:
    endpoint = publish.Endpoint("127.0.0.1", 2, 1, 3)
    values = [*publish.server_values(endpoint, [], "process", "/r"), *publish.ready_values("2.51.0")]
    lines = [var.line() for var in publish.condor_vars(values)]
    assert len(lines) == len(set(lines))
    assert sorted(lines) == sorted(EXPECTED_LINES)


def test_server_values() -> None:
    gpu = GPU(0, "MIG-1", "NVIDIA H100 80GB HBM3", 10240, "590", mig_profile="1g.10gb", parent_uuid="GPU-1")
    endpoint = publish.Endpoint("127.0.0.1", 8001, 8000, 8002)
    values = dict(publish.server_values(endpoint, [gpu], "apptainer", "/cvmfs/r"))
    assert values["HAS_TRITON"] == "False"  # until the server answers ready
    assert publish.ready_values("2.51.0") == [("HAS_TRITON", "True"), ("TRITON_VERSION", "2.51.0")]
    # Fixed slots (condor_startup.sh: any SLOTS_LAYOUT but "partitionable"): only slot 1 follows the server.
    for layout in ("fixed", ""):
        assert dict(publish.ready_values("2.51.0", layout))["HAS_TRITON"] == "(SlotID=?=1)"
    assert values["TRITON_GRPC_URL"] == "127.0.0.1:8001"
    assert values["TRITON_HTTP_URL"] == "127.0.0.1:8000"
    assert values["TRITON_METRICS_URL"] == "http://127.0.0.1:8002/metrics"
    assert values["TRITON_GPUS"] == "1"
    assert values["TRITON_GPU_NAMES"] == "NVIDIA H100 80GB HBM3 MIG 1g.10gb"
    assert (values["TRITON_REMOTE"], values["TRITON_GRPC_TLS"]) == ("False", "False")
    assert "TRITON_AUTH" not in values


def test_remote_endpoint_values() -> None:
    endpoint = publish.Endpoint("10.1.2.3", 8001, 8000, 8002, tls=True, remote=True)
    values = dict(publish.server_values(endpoint, [], "process", "/r"))
    assert values["TRITON_GRPC_URL"] == "10.1.2.3:8001"
    assert values["TRITON_HTTP_URL"] == "127.0.0.1:8000"
    assert (values["TRITON_REMOTE"], values["TRITON_GRPC_TLS"]) == ("True", "True")
    assert values["TRITON_METRICS_URL"] == "http://127.0.0.1:8002/metrics"


def test_no_metrics_url_when_metrics_are_off() -> None:
    endpoint = publish.Endpoint("127.0.0.1", 8001, 8000, 0)  # metrics_port 0: GLIDEIN_TRITON_METRICS off
    values = dict(publish.server_values(endpoint, [], "process", "/r"))
    assert values["TRITON_METRICS_URL"] == ""  # an empty value publishes no attribute


def test_off_values() -> None:
    assert publish.off_values() == [("HAS_TRITON", "False")]
    assert publish.off_values("Config: bad 'value'\nsecond line") == [
        ("HAS_TRITON", "False"),
        ("TRITON_FAILURE", "Config: bad value second line"),
    ]


def test_cleared_values_empty_every_server_key() -> None:
    cleared = dict(publish.cleared_values())
    assert set(cleared.values()) == {""}
    assert "TRITON_GRPC_URL" in cleared
    assert "HAS_TRITON" not in cleared


def test_after_ready_only_what_changed_is_published_again() -> None:
    announced = [("HAS_TRITON", "False"), ("TRITON_GPUS", "1"), ("TRITON_GPUS", "2"), ("TRITON_FAILURE", "")]
    ready = [
        ("HAS_TRITON", "True"),
        ("TRITON_GPUS", "2"),
        ("TRITON_FAILED_MODELS", ""),
        ("TRITON_FAILURE", ""),
    ]
    # the last announced line of a key is the one in force; a key never announced is published
    assert publish.changed(ready, announced) == [("HAS_TRITON", "True"), ("TRITON_FAILED_MODELS", "")]
