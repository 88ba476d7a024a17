"""``glidein-triton local-job``: the job environment it gives, its exit code, and the commands of
examples/README.md run exactly as written."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from glidein_triton.local import local_job
from glidein_triton.local.glidein import ScriptResult, SimulatedGlidein
from glidein_triton.local.local_job import LocalGlidein, add_models

REPO = Path(__file__).resolve().parent.parent
README = REPO / "examples" / "README.md"


def readme_commands() -> list[str]:
    """The shell commands in the README's bash blocks (continuation lines joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.DOTALL)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def fake_glidein(tmp_path: Path) -> LocalGlidein:
    machine_ad = tmp_path / ".machine.ad"
    machine_ad.write_text("HasTriton = True\n")
    return LocalGlidein(
        glidein=SimulatedGlidein(tmp_path),
        startup=ScriptResult(0, "", ""),
        attributes={"HasTriton": "True"},
        job_environment={
            "HAS_TRITON": "True",
            "TRITON_GRPC_URL": "127.0.0.1:1",
            "TRITON_MODEL_REPOSITORY": "/r",
        },
        machine_ad=machine_ad,
    )


def test_job_environment_with_and_without_the_published_variables(tmp_path: Path) -> None:
    glidein = fake_glidein(tmp_path)
    base = {"PATH": "/bin", "TRITON_GRPC_URL": "stale:1"}
    assert glidein.environment(base) == {
        "PATH": "/bin",
        "HAS_TRITON": "True",
        "TRITON_GRPC_URL": "127.0.0.1:1",
        "TRITON_MODEL_REPOSITORY": "/r",
        "_CONDOR_MACHINE_AD": str(glidein.machine_ad),
    }
    assert glidein.environment(base, machine_ad_only=True) == {
        "PATH": "/bin",
        "HAS_TRITON": "True",
        "TRITON_MODEL_REPOSITORY": "/r",
        "_CONDOR_MACHINE_AD": str(glidein.machine_ad),
    }


def test_add_models_refuses_clashes_and_missing_repositories(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    (repository / "simple").mkdir(parents=True)
    extra = tmp_path / "extra"
    (extra / "simple").mkdir(parents=True)
    with pytest.raises(ValueError, match=f"model 'simple' of {extra} is already in the repository"):
        add_models(repository, [extra])
    with pytest.raises(ValueError, match=r"model repository .*missing is not a directory"):
        add_models(repository, [tmp_path / "missing"])
    (extra / "simple").rename(extra / "other")
    add_models(repository, [extra])
    assert sorted(path.name for path in repository.iterdir()) == ["other", "simple"]


def test_main_passes_the_environment_and_returns_the_job_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @contextmanager
    def started(
        root: Path, repositories: list[Path], models: str, say: Callable[[str], None]
    ) -> Iterator[LocalGlidein]:
        say(f"waiting for {models}")
        yield fake_glidein(tmp_path)

    monkeypatch.setattr(local_job, "local_glidein", started)
    check = "import os, sys; sys.exit(3 if 'TRITON_GRPC_URL' in os.environ else 4)"
    assert local_job.main(["--", sys.executable, "-c", check]) == 3
    assert local_job.main(["--machine-ad-only", "--", sys.executable, "-c", check]) == 4
    assert "local-job: waiting for *\n" in capsys.readouterr().err  # said before the server is ready


def test_main_needs_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        local_job.main(["--models", "simple"])
    assert exited.value.code == 2
    assert "no command to run" in capsys.readouterr().err


def test_without_the_local_server_it_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "pytriton" else find_spec(name, *rest),
    )
    assert local_job.main(["--", sys.executable, "-c", "pass"]) == 1
    error = capsys.readouterr().err
    assert "nvidia-pytriton (Linux, glibc >= 2.35)" in error
    assert (
        "of the [local] extra: python3 -m pip install 'dist/glidein_triton-0.1.0-py3-none-any.whl[local]'"
        in error
    )
    assert "apptainer/localtest.def" in error
    requirements = importlib.metadata.requires("glidein-triton") or []
    assert [
        line for line in requirements if line.startswith("nvidia-pytriton") and 'extra == "local"' in line
    ]


def test_every_readme_command_names_files_that_exist() -> None:
    commands = readme_commands()
    assert len(commands) >= 8
    for command in commands:
        for word in shlex.split(command):
            if word.startswith("examples/"):
                assert (REPO / word).exists(), f"{word} in {command!r}"


@pytest.mark.server
@pytest.mark.parametrize(
    "command",
    [command for command in readme_commands() if command.startswith("glidein-triton local-job")][:2],
)
def test_readme_commands_run_as_written(command: str) -> None:
    environment = dict(os.environ)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    result = subprocess.run(
        ["sh", "-c", command],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "local-job: starting the glidein's Triton server and waiting until it has loaded the models" in (
        result.stderr
    )
    assert "local-job: Triton ready at gRPC 127.0.0.1:" in result.stderr
    assert "grpc: 10 requests" in result.stdout
