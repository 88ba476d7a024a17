"""The examples/ jobs, run as jobs of a simulated glidein against the real local server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from glidein_triton.local.local_job import LocalGlidein, local_glidein

from .support import assert_nothing_left, recorded_state

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
CLASSIFY = EXAMPLES / "image_classification" / "classify.py"
INFER = EXAMPLES / "own_model" / "infer.py"


@pytest.fixture(scope="module")
def glidein(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGlidein]:
    repositories = [
        EXAMPLES / "image_classification" / "model_repository",
        EXAMPLES / "own_model" / "model_repository_local",
    ]
    # Metrics on (off by default), so that the site check's metrics part runs too.
    settings = {"GLIDEIN_TRITON_METRICS": "True"}
    with local_glidein(tmp_path_factory.mktemp("examples"), repositories, settings=settings) as started:
        assert started.has_triton, started.startup.stderr
        state = recorded_state(started.glidein)
        yield started
    assert_nothing_left(started.glidein, state)


def job_environment(glidein: LocalGlidein | None) -> dict[str, str]:
    """What the job sees; without a glidein, an environment with no server in it."""
    base = {name: value for name, value in os.environ.items() if not name.startswith(("TRITON_", "_CONDOR_"))}
    environment = base if glidein is None else glidein.environment(base)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    return environment


def run(script: Path, *arguments: str, glidein: LocalGlidein | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *arguments],
        env=job_environment(glidein),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def top_classes(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("    ")]


def test_add_sub_over_both_protocols(glidein: LocalGlidein) -> None:
    result = run(EXAMPLES / "simple" / "add_sub.py", "--requests", "3", glidein=glidein)
    assert result.returncode == 0, result.stderr
    assert "grpc: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] + 3 = [3, 4, 5," in result.stdout
    assert "http: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] - 3 = [-3, -2, -1," in result.stdout
    assert result.stdout.count(", correct") == 2


def test_classification_is_the_same_over_grpc_http_and_in_process(glidein: LocalGlidein) -> None:
    over_grpc = run(CLASSIFY, glidein=glidein)
    over_http = run(CLASSIFY, "--protocol", "http", glidein=glidein)
    in_process = run(CLASSIFY, "--local-fallback", "--timeout", "1", glidein=None)
    for result in (over_grpc, over_http, in_process):
        assert result.returncode == 0, result.stderr
    assert "classified by the server (grpc)" in over_grpc.stdout
    assert "classified by the in-process fallback" in in_process.stdout
    assert "no Triton gRPC server found for this job" in in_process.stderr
    assert "using the local fallback" in in_process.stderr
    top = top_classes(over_grpc.stdout)
    assert len(top) == 3
    scores = [float(line.split()[0]) for line in top]
    assert scores == sorted(scores, reverse=True)
    assert top == top_classes(over_http.stdout) == top_classes(in_process.stdout)


def test_classification_reads_ppm_and_npy_images_alike(glidein: LocalGlidein, tmp_path: Path) -> None:
    pixels = np.random.default_rng(7).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    ppm = tmp_path / "image.ppm"
    ppm.write_bytes(b"P6\n# a comment\n50 40\n255\n" + pixels.tobytes())
    np.save(tmp_path / "image.npy", pixels)
    from_ppm = run(CLASSIFY, str(ppm), "--classes", "5", glidein=glidein)
    from_npy = run(CLASSIFY, str(tmp_path / "image.npy"), "--classes", "5", glidein=glidein)
    pattern = run(CLASSIFY, "--classes", "5", glidein=glidein)
    assert from_ppm.returncode == 0, from_ppm.stderr
    assert len(top_classes(from_ppm.stdout)) == 5
    assert top_classes(from_ppm.stdout) == top_classes(from_npy.stdout)
    assert top_classes(from_ppm.stdout) != top_classes(pattern.stdout)


def test_classification_without_server_or_fallback_fails_clearly(tmp_path: Path) -> None:
    result = run(CLASSIFY, "--timeout", "1", glidein=None)
    assert result.returncode != 0
    assert "2. $TRITON_GRPC_URL: not set" in result.stderr


def test_health_and_metadata_check(glidein: LocalGlidein) -> None:
    result = run(EXAMPLES / "site_checks" / "health_metadata.py", glidein=glidein)
    assert result.returncode == 0, result.stderr
    for protocol in ("grpc", "http"):
        assert f"[{protocol}] live: True, ready: True" in result.stdout
        assert f"[{protocol}] server: triton 2.51.0" in result.stdout
        assert f"[{protocol}]     inputs: IMAGE FP32[-1x3x64x64]" in result.stdout
        assert f"[{protocol}]     outputs: OUTPUT0 INT32[-1x16], OUTPUT1 INT32[-1x16]" in result.stdout
    assert "nv_inference_count series" in result.stdout
    assert result.stdout.endswith("PASS\n")
    missing = run(EXAMPLES / "site_checks" / "health_metadata.py", "--model", "nope", glidein=glidein)
    assert missing.returncode == 1
    assert "[grpc] model nope: NOT READY" in missing.stdout


def test_keepalive_check_passes_with_the_defaults(glidein: LocalGlidein) -> None:
    result = run(
        EXAMPLES / "site_checks" / "grpc_keepalive.py", "--requests", "2", "--pause", "1", glidein=glidein
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "connection: states READY; dropped 0 time(s)" in result.stdout
    assert "PASS: 2 of 2 requests succeeded" in result.stdout


def test_keepalive_check_catches_pings_the_server_refuses(glidein: LocalGlidein) -> None:
    result = run(
        EXAMPLES / "site_checks" / "grpc_keepalive.py",
        *("--keepalive-time-ms", "100", "--permit-without-calls", "--max-pings-without-data", "0"),
        *("--requests", "2", "--pause", "6"),
        glidein=glidein,
    )
    assert result.returncode == 1, result.stdout
    assert "FAIL:" in result.stdout
    assert "dropped 0 time(s)" not in result.stdout


@pytest.mark.parametrize(
    ("arguments", "shown"),
    [
        (
            ("--items", "5", "--batch", "2"),
            "my_classifier: IMAGE [5, 3, 224, 224] FP32 in, PROBABILITIES [5, 1000] out, in requests of up to 2",
        ),
        (
            ("--model", "my_classifier_ts", "--input", "INPUT__0", "--output", "OUTPUT__0", "--batch", "100"),
            "OUTPUT__0 [10, 1000] out, in requests of up to 64 (max_batch_size 64)",
        ),
    ],
)
def test_own_model_client_sends_batches(
    glidein: LocalGlidein, arguments: tuple[str, ...], shown: str
) -> None:
    result = run(INFER, *arguments, glidein=glidein)
    assert result.returncode == 0, result.stderr
    assert shown in result.stdout
    tops = [int(line.split()[4]) for line in result.stdout.splitlines() if line.startswith("  item ")]
    assert len(tops) == 3
    assert all(0 <= top < 1000 for top in tops)


def test_own_model_client_names_the_tensors_the_model_has(glidein: LocalGlidein) -> None:
    result = run(INFER, "--model", "my_classifier_ts", glidein=glidein)
    assert result.returncode == 1
    assert "my_classifier_ts has no input 'IMAGE'; its inputs: INPUT__0" in result.stderr
