"""Triton releases: what an image supports is read before the server gets options it would refuse; a binary
that refuses one is asked (``--help``) and launched again with what it accepts."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.local import pytriton as local_server
from glidein_triton.worker import triton_release
from glidein_triton.worker.errors import ConfigError
from glidein_triton.worker.triton_release import (
    TritonRelease,
    fit_options,
    from_help,
    from_image,
    from_sandbox,
)

from .support import assert_nothing_left, recorded_state, write_executable

#: What docker2singularity writes into .singularity.d/env for the ENV lines of an NGC image (24.01).
DOCKER2SINGULARITY_ENV = """#!/bin/sh
export PATH="${PATH:-"/opt/tritonserver/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}"
export NVIDIA_TRITON_SERVER_VERSION="${NVIDIA_TRITON_SERVER_VERSION:-"24.01"}"
export TRITON_SERVER_VERSION="${TRITON_SERVER_VERSION:-"2.42.0"}"
export TRITON_SERVER_USER="${TRITON_SERVER_USER:-"triton-server"}"
"""
OPTIONS = [
    "--model-repository=/models",
    "--metrics-address=127.0.0.1",
    "--metrics-port=8002",
]


# STAND-IN tritonserver binaries of older Triton releases: not Triton, a bash script in front of the real
# tritonserver (the nvidia-pytriton wheel's, 2.51) that behaves as an older release's command line does.
# Options added after that release are missing from its ``--help`` and refused like tritonserver refuses an
# unknown option (getopt's "unrecognized option '...'", the usage text, exit 1); the rest goes to the server.

#: Option -> (major, minor) of the first release with it, read from the server's sources (independently of
#: glidein_triton.worker.triton_release, which these stand-ins test).
ADDED = {
    "--log-file": (2, 26),
    "--grpc-restricted-protocol": (2, 33),
    "--metrics-address": (2, 34),
    "--http-restricted-api": (2, 40),
    "--model-load-retry-count": (2, 42),
}

SCRIPT = """#!/bin/bash
# STAND-IN for tritonserver {major}.{minor} (tests/test_triton_release.py): refuses newer options.
real={real}
missing=({missing})
for argument in "$@"; do
    for option in "${{missing[@]}}"; do
        if [ "${{argument%%=*}}" = "$option" ]; then
            echo "$real: unrecognized option '$argument'" >&2
            echo "Usage: tritonserver [options]" >&2
            exit 1
        fi
    done
done
if [ "$1" = --help ] && [ {hide_help} = 0 ]; then
    # The real usage text without the missing options' entries (an option line and its indented text).
    "$real" --help 2>&1 | awk -v missing=" ${{missing[*]}} " '
        /^  --/ {{ split($1, word, " "); skip = index(missing, " " word[1] " ") > 0 }}
        !skip {{ print }}' >&2
    exit 1
fi
[ "$1" = --help ] && {{ echo "tritonserver: no usage text in this build" >&2; exit 1; }}
exec "$real" "$@"
"""


def older_tritonserver(path: Path, real: Path, release: tuple[int, int], help_text: bool = True) -> Path:
    """A tritonserver of ``release`` at ``path``, running ``real``; ``help_text=False``: --help says nothing."""
    missing = [option for option, first in ADDED.items() if first > release]
    return write_executable(
        path,
        SCRIPT.format(
            major=release[0],
            minor=release[1],
            real=shlex.quote(str(real)),
            missing=" ".join(missing),
            hide_help=0 if help_text else 1,
        ),
    )


def sandbox(root: Path, env_text: str = "", version_file: str = "") -> Path:
    image = root / "image"
    (image / ".singularity.d" / "env").mkdir(parents=True)
    if env_text:
        (image / ".singularity.d" / "env" / "10-docker2singularity.sh").write_text(env_text)
    if version_file:
        (image / "opt" / "tritonserver").mkdir(parents=True)
        (image / "opt" / "tritonserver" / "TRITON_VERSION").write_text(version_file)
    return image


def test_a_sandbox_image_says_its_release_in_its_environment(tmp_path: Path) -> None:
    image = sandbox(tmp_path, DOCKER2SINGULARITY_ENV)
    release = from_sandbox(image)
    assert release.version == (2, 42)
    assert release.container == "24.01"
    assert release.describe() == (
        f"Triton 2.42 (24.01), from {image}/.singularity.d/env/10-docker2singularity.sh"
    )
    assert all(release.supports(option) for option in triton_release.OPTION_RELEASES)


def test_a_sandbox_with_only_the_version_file(tmp_path: Path) -> None:
    image = sandbox(tmp_path, version_file="2.24.0\n")
    release = from_image(str(image))
    assert release.version == (2, 24)
    assert release.source == f"{image}/opt/tritonserver/TRITON_VERSION"
    assert not release.supports("--log-file")  # 2.26
    assert release.supports("--strict-readiness")  # not in the table: as old as Triton 2


def test_the_container_release_alone_decides_too(tmp_path: Path) -> None:
    image = sandbox(
        tmp_path, 'export NVIDIA_TRITON_SERVER_VERSION="${NVIDIA_TRITON_SERVER_VERSION:-"23.05"}"\n'
    )
    release = from_sandbox(image)
    assert (release.version, release.container) == (None, "23.05")
    assert release.supports("--metrics-address")  # 23.05 = 2.34
    assert not release.supports("--model-load-retry-count")  # 24.01 = 2.42


def test_the_image_name_is_the_last_resort() -> None:
    release = from_image(
        "/cvmfs/unpacked.cern.ch/registry.hub.docker.com/fastml/triton-torchgeo:22.07-py3-geometric"
    )
    assert release.container == "22.07"
    assert not release.supports("--metrics-address")
    assert not from_image("/images/tritonserver.sif").known
    assert TritonRelease().supports("--model-load-retry-count")  # unknown: assumed recent, checked at start


def test_help_of_the_real_server_lists_every_option_the_plugin_uses(tmp_path: Path) -> None:
    launcher = local_server.prepare(tmp_path / "server")
    release = from_help([str(launcher)])
    assert release.options is not None
    assert all(release.supports(option) for option in triton_release.OPTION_RELEASES)
    assert fit_options(release, OPTIONS, []) == OPTIONS


def test_help_of_an_older_release(tmp_path: Path) -> None:
    launcher = local_server.prepare(tmp_path / "server")
    old = older_tritonserver(tmp_path / "bin" / "tritonserver", launcher, (2, 33))
    release = from_help([str(old)])
    assert [o for o in triton_release.OPTION_RELEASES if not release.supports(o)] == [
        "--metrics-address",
        "--model-load-retry-count",
    ]
    assert release.supports("--log-file")
    assert not from_help([str(tmp_path / "missing")]).known
    assert not from_help(["/bin/echo"]).known  # exits 0 and prints no usage: not a tritonserver


def test_an_operator_option_the_release_lacks_is_a_config_error() -> None:
    release = TritonRelease("f", version=(2, 41))
    with pytest.raises(
        ConfigError, match=r"^GLIDEIN_TRITON_SERVER_ARGS: --model-load-retry-count needs Triton "
    ):
        fit_options(release, [*OPTIONS, "--model-load-retry-count=2"], ["--model-load-retry-count=2"])


def test_without_metrics_address_the_metrics_are_switched_off() -> None:
    release = TritonRelease("f", version=(2, 24))
    fitted = fit_options(release, OPTIONS[:3], [])
    assert fitted == ["--model-repository=/models", "--allow-metrics=false"]


def test_the_refused_option_is_read_from_the_real_servers_output(tmp_path: Path) -> None:
    launcher = local_server.prepare(tmp_path / "server")
    result = subprocess.run(
        [str(launcher), "--no-such-option=1"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert triton_release.unrecognized_option(result.stderr) == "--no-such-option"
    assert triton_release.unrecognized_option("Usage: tritonserver [options]") == ""


def older_glidein(
    tmp_path: Path, release: tuple[int, int], help_text: bool = True, **settings: str
) -> demo.DemoGlidein:
    prepared = demo.prepare(tmp_path / "glidein", settings=settings)
    launcher = Path(prepared.glidein.config()["GLIDEIN_TRITON_SERVER_BINARY"])
    old = older_tritonserver(tmp_path / "old" / "tritonserver", launcher, release, help_text)
    prepared.glidein.set("GLIDEIN_TRITON_SERVER_BINARY", str(old))
    return prepared


@pytest.mark.server
def test_a_current_release_is_launched_once_and_never_asked_for_its_options(tmp_path: Path) -> None:
    prepared = demo.prepare(tmp_path / "glidein")
    launcher = prepared.glidein.config()["GLIDEIN_TRITON_SERVER_BINARY"]
    calls = tmp_path / "calls"
    counting = write_executable(
        tmp_path / "bin" / "tritonserver",
        f'#!/bin/bash\necho "${{1%%=*}}" >> {shlex.quote(str(calls))}\nexec {shlex.quote(launcher)} "$@"\n',
    )
    prepared.glidein.set("GLIDEIN_TRITON_SERVER_BINARY", str(counting))
    result = prepared.glidein.run_startup(prepared.environment)
    assert result.metrics["HasTriton"] == "True", result.stderr
    assert calls.read_text().split() == ["--model-repository"]  # one launch, no --help
    prepared.glidein.run_cleanup(prepared.environment)


@pytest.mark.server
def test_an_old_release_runs_without_metrics(tmp_path: Path) -> None:
    prepared = older_glidein(tmp_path, (2, 24), GLIDEIN_TRITON_METRICS="True")
    glidein = prepared.glidein
    result = glidein.run_startup(prepared.environment)
    assert result.returncode == 0, result.stderr
    assert result.metrics["HasTriton"] == "True", result.stderr
    assert "launching it again with the options it lists" in result.stderr
    state = recorded_state(glidein)
    assert state is not None
    assert state.metrics_port == 0
    assert "--allow-metrics=false" in state.argv
    assert not any(word.startswith("--metrics-") for word in state.argv)
    attributes, job_environment = glidein.published()
    assert "TritonMetricsURL" not in attributes
    demo.run_sample_job(job_environment, requests=1)
    glidein.run_cleanup(prepared.environment)
    assert_nothing_left(glidein, state)


@pytest.mark.server
def test_an_unknown_release_that_refuses_an_option_is_named_in_the_failure(tmp_path: Path) -> None:
    prepared = older_glidein(tmp_path, (2, 33), help_text=False, GLIDEIN_TRITON_METRICS="True")
    result = prepared.glidein.run_startup(prepared.environment)
    assert result.returncode == 0
    assert result.metrics["TritonFailure"] == "WN_Resource"
    assert (
        "tritonserver does not accept --metrics-address" in prepared.glidein.published()[0]["TritonFailure"]
    )
    assert recorded_state(prepared.glidein) is None
