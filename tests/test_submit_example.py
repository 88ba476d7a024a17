"""``glidein-triton submit-example``: the submit description, parsed by HTCondor's own parser, and its
Requirements matched with classad2 against machine ads published by the real startup script."""

from __future__ import annotations

import ast
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import classad2
import htcondor2
import pytest

from glidein_triton.job import discover, submit_example
from glidein_triton.job.submit_example import JobRequest, requirements, submit_description
from glidein_triton.local import demo
from glidein_triton.local.glidein import classad_text
from glidein_triton.local.local_job import LocalGlidein, local_glidein

from .artefacts import new_venv, pip_install

REPO = Path(__file__).resolve().parent.parent


def parsed(request: JobRequest) -> htcondor2.Submit:
    return htcondor2.Submit(submit_description(request))


def matches(request: JobRequest, attributes: dict[str, str]) -> bool:
    """The job's Requirements, from the parsed submit description, against the machine ad."""
    return demo.job_requirements_match(attributes, parsed(request)["requirements"])


def test_requirements_ask_for_a_running_server() -> None:
    assert requirements(JobRequest()) == "TARGET.HasTriton =?= True && TARGET.TritonGRPCURL =!= undefined"
    assert requirements(JobRequest(gpu=True, min_version="2.40")).endswith(
        ' && TARGET.TritonGPUs > 0 && versioncmp(TARGET.TritonVersion, "2.40") >= 0'
    )


def test_submit_description_as_htcondor_reads_it() -> None:
    request = JobRequest(
        models=("simple", "image_classifier"),
        image="/cvmfs/unpacked.cern.ch/registry.example.org/glidein-triton/tritonclient:0.1",
        model_repository="/cvmfs/example.org/models",
    )
    submit = parsed(request)
    assert submit["executable"] == "triton_job.py"
    assert submit["arguments"] == "simple image_classifier"
    assert submit["MY.SingularityImage"] == f'"{request.image}"'
    assert submit["MY.RequiresTriton"] == "True"
    assert submit["MY.TritonModels"] == '"simple,image_classifier"'
    assert submit["MY.TritonModelRepository"] == '"/cvmfs/example.org/models"'
    assert "MY.REQUIRED_OS" not in submit


def test_without_an_image_path_no_image_is_asked_for() -> None:
    """No +REQUIRED_OS key: the wrapper would look it up and refuse a non-CVMFS image (restrictions cvmfs)."""
    submit = parsed(JobRequest(models=("simple",)))
    assert "MY.REQUIRED_OS" not in submit
    assert "MY.SingularityImage" not in submit
    assert "MY.TritonModelRepository" not in submit


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (JobRequest(models=("bad name",)), "model name 'bad name' is not allowed"),
        (JobRequest(models=("m",), image='/cvmfs/x/"y'), "--image '/cvmfs/x/\"y' must not contain quotes"),
        (
            JobRequest(models=("m",), image="docker://example.org/client:1"),
            "is not under /cvmfs/: GlideinWMS's job wrapper refuses",
        ),
        (JobRequest(models=("m",), image="/home/me/client.sif"), "SINGULARITY_IMAGE_RESTRICTIONS=cvmfs"),
        (JobRequest(models=("m",), model_repository="/a\nb"), "--model-repository"),
        (JobRequest(models=("m",), min_version="2.x"), "--min-version '2.x' is not a version"),
    ],
)
def test_values_that_cannot_go_into_the_description_are_refused(request_: JobRequest, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        submit_description(request_)


def test_writes_the_description_and_an_executable_job_script(tmp_path: Path) -> None:
    written = submit_example.write(tmp_path / "job", JobRequest(models=("simple",)))
    assert [path.name for path in written] == ["triton_job.sub", "triton_job.py"]
    script = tmp_path / "job" / "triton_job.py"
    assert script.stat().st_mode & stat.S_IXUSR
    assert script.read_text() == (REPO / "glidein_triton" / "job" / "templates" / "triton_job.py").read_text()


def test_existing_files_are_kept_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    submit_example.write(tmp_path, JobRequest(models=("simple",)))
    (tmp_path / "triton_job.py").write_text("my own job\n")
    assert submit_example.main(["--directory", str(tmp_path), "--models", "other"]) == 1
    assert "already exist(s); use --force to replace" in capsys.readouterr().err
    assert (tmp_path / "triton_job.py").read_text() == "my own job\n"
    assert '"simple"' in (tmp_path / "triton_job.sub").read_text()
    assert submit_example.main(["--directory", str(tmp_path), "--models", "other", "--force"]) == 0
    assert '+TritonModels = "other"' in (tmp_path / "triton_job.sub").read_text()


def test_the_models_must_be_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="name the models the job uses: --models"):
        submit_description(JobRequest())
    with pytest.raises(SystemExit) as exited:
        submit_example.main(["--directory", str(tmp_path)])
    assert exited.value.code == 2
    assert "the following arguments are required: --models" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_bad_value_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert submit_example.main(["--directory", str(tmp_path / "job"), "--models", "ok,n@me"]) == 1
    assert "model name 'n@me' is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "job").exists()


@pytest.mark.scripts
def test_no_match_on_a_glidein_whose_triton_is_off(tmp_path: Path) -> None:
    with local_glidein(tmp_path, settings={"GLIDEIN_TRITON": "False"}) as off:
        assert off.startup.returncode == 0
        assert off.attributes == {"HasTriton": "False"}
        assert not matches(JobRequest(models=("simple",)), off.attributes)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGlidein]:
    with local_glidein(tmp_path_factory.mktemp("submit"), models="simple") as started:
        assert started.has_triton, started.startup.stderr
        yield started


@pytest.mark.server
def test_requirements_match_the_ad_of_a_running_server(published: LocalGlidein) -> None:
    assert matches(JobRequest(models=("simple",)), published.attributes)
    assert matches(JobRequest(models=("simple",), min_version="2.40"), published.attributes)
    assert not matches(JobRequest(models=("simple",), min_version="99.0"), published.attributes)
    assert published.attributes["TritonGPUs"] == "0"  # the local server runs on CPU
    assert not matches(JobRequest(models=("simple",), gpu=True), published.attributes)


@pytest.mark.server
def test_discover_shows_the_published_slot(published: LocalGlidein) -> None:
    ad = classad2.parseOne(published.machine_ad.read_text())
    assert classad2.ExprTree(discover.CONSTRAINT).eval(ad) is True
    record = discover.slot_record(ad)
    assert record["grpc_url"] == published.job_environment["TRITON_GRPC_URL"]
    assert record["gpus"] == 0
    assert published.machine_ad.read_text() == classad_text(
        {"Name": '"slot1@TEST_ENTRY"', **published.attributes}
    )


def test_the_example_job_needs_only_numpy_and_tritonclient() -> None:
    """What a worker node's image has: python3's standard library, numpy, tritonclient; no glidein_triton."""
    tree = ast.parse(submit_example.job_script())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    outside = {name for name in imported if name.split(".")[0] not in sys.stdlib_module_names}
    assert outside == {"numpy", "tritonclient.grpc", "tritonclient.utils"}


@pytest.fixture(scope="session")
def job_image_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """python3 of a new virtual environment with only what the client image installs (apptainer/tritonclient.def:
    its tritonclient and numpy versions), as a worker node's image has it: no glidein_triton."""
    definition = (REPO / "apptainer" / "tritonclient.def").read_text()
    versions = dict(re.findall(r"^\s+(TRITONCLIENT_VERSION|NUMPY_VERSION)=(\S+)$", definition, re.MULTILINE))
    bin_dir = new_venv(tmp_path_factory.mktemp("job-image") / "venv")
    requirements = [
        f"tritonclient[grpc]=={versions['TRITONCLIENT_VERSION']}",
        f"numpy=={versions['NUMPY_VERSION']}",
    ]
    result = pip_install(bin_dir, *requirements, cwd=bin_dir)
    assert result.returncode == 0, result.stderr
    return bin_dir / "python3"


@pytest.mark.server
@pytest.mark.parametrize("machine_ad_only", [False, True], ids=["job-environment", "machine-ad-only"])
def test_the_example_job_runs_on_the_glidein_in_an_image_without_glidein_triton(
    published: LocalGlidein, tmp_path: Path, job_image_python: Path, machine_ad_only: bool
) -> None:
    submit_example.write(tmp_path, JobRequest(models=("simple",)))
    environment = published.environment(machine_ad_only=machine_ad_only)
    environment["PATH"] = f"{job_image_python.parent}{os.pathsep}/usr/bin:/bin"
    environment.pop("PYTHONPATH", None)
    no_package = subprocess.run(
        [str(job_image_python), "-c", "import glidein_triton"], cwd=tmp_path, capture_output=True, check=False
    )
    assert no_package.returncode == 1
    job = subprocess.run(
        [str(tmp_path / "triton_job.py"), "simple"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert job.returncode == 0, job.stderr
    assert "simple: one inference, outputs OUTPUT0 [1, 16], OUTPUT1 [1, 16]" in job.stdout
