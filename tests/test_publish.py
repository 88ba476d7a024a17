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
    "TRITON_RUNTIME S - TritonRuntime N Y -",
    "TRITON_MODEL_REPOSITORY S - TritonModelRepository N Y TRITON_MODEL_REPOSITORY",
    "TRITON_FAILURE S - TritonFailure N Y -",
]


def test_condor_vars_lines() -> None:
    values = publish.server_values("127.0.0.1", 1, 2, 3, "2.51.0", [], "process", "/r")
    assert [var.line() for var in publish.condor_vars(values)] == EXPECTED_LINES


def test_server_values() -> None:
    gpu = GPU(0, "MIG-1", "NVIDIA H100 80GB HBM3", 10240, "590", mig_profile="1g.10gb", parent_uuid="GPU-1")
    values = dict(
        publish.server_values("127.0.0.1", 8000, 8001, 8002, "2.51.0", [gpu], "apptainer", "/cvmfs/r")
    )
    assert values["HAS_TRITON"] == "True"
    assert values["TRITON_GRPC_URL"] == "127.0.0.1:8001"
    assert values["TRITON_HTTP_URL"] == "127.0.0.1:8000"
    assert values["TRITON_METRICS_URL"] == "http://127.0.0.1:8002/metrics"
    assert values["TRITON_GPUS"] == "1"
    assert values["TRITON_GPU_NAMES"] == "NVIDIA H100 80GB HBM3 MIG 1g.10gb"


def test_off_values() -> None:
    assert publish.off_values() == [("HAS_TRITON", "False")]
    assert publish.off_values("Config: bad 'value'\nsecond line") == [
        ("HAS_TRITON", "False"),
        ("TRITON_FAILURE", "Config: bad value second line"),
    ]


def test_ad_string_is_safe_for_condor_startup_quoting() -> None:
    assert publish.ad_string('say "hi" \\ it\'s\r\n ok') == "say hi its ok"
    assert len(publish.ad_string("x" * 2000)) == 500
