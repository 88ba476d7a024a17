"""CVMFS mounted by cvmfsexec: cvmfs_setup.sh writes CVMFS_MOUNT_DIR, and every /cvmfs path the plugin uses
(server image, repositories, job repositories, the policy's prefixes, the Pythons it tries, the node check)
is translated into it as GlideinWMS's cvmfs_resolve_path does (singularity_lib.sh)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.local import gwms_hooks as hooks_sim
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker import cvmfs, glidein_paths, runtime, supervisor
from glidein_triton.worker.check import command as check_command
from glidein_triton.worker.job_policy import Policy, Vetted
from glidein_triton.worker.ports import Ports
from glidein_triton.worker.settings import Settings

from .support import (
    HOLDING_JOB,
    add_model,
    hand_over,
    infer,
    job_ad,
    job_report,
    leftovers_after_cleanup,
    recorded_state,
)
from .test_setup_script import tools_without_python

VO = "/cvmfs/vo.example.org"
LCG_PYTHON = "/cvmfs/sft.cern.ch/lcg/views/LCG_107/x86_64-el8-gcc11-opt/bin/python3"
#: Where an LCG view's python3 links to, as views link into the releases area (an absolute /cvmfs link).
LCG_RELEASE_PYTHON = "/cvmfs/sft.cern.ch/lcg/releases/Python/3.11.9-x86_64-el8-gcc11-opt/bin/python3"
IMAGE_LINK = "/cvmfs/images.example.org/tritonserver"
IMAGE = "/cvmfs/unpacked.example.org/nvcr.io/nvidia/tritonserver:24.10-py3"


def on_mount(mount: Path, path: str) -> Path:
    """Where the /cvmfs ``path`` is under the cvmfsexec mount."""
    return mount / path.removeprefix("/cvmfs/")


def link(mount: Path, path: str, target: str | Path) -> None:
    place = on_mount(mount, path)
    place.parent.mkdir(parents=True, exist_ok=True)
    place.symlink_to(target)


@pytest.fixture
def no_mount_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cvmfs.MOUNT_DIR_KEY, raising=False)


def test_paths_are_translated_as_cvmfs_resolve_path_does(tmp_path: Path) -> None:
    mount = tmp_path / "cvmfsexec" / "dist" / "cvmfs"
    on_mount(mount, IMAGE).mkdir(parents=True)
    link(mount, IMAGE_LINK, IMAGE)  # a link on CVMFS to another CVMFS path: followed once
    link(mount, "/cvmfs/images.example.org/relative", "../unpacked.example.org")  # left as it is
    link(mount, "/cvmfs/images.example.org/outside", "/opt/images")  # not a CVMFS path: left as it is
    base = str(mount)
    assert cvmfs.resolve(IMAGE_LINK, base) == str(on_mount(mount, IMAGE))
    assert cvmfs.resolve(IMAGE, base) == str(on_mount(mount, IMAGE))
    assert cvmfs.resolve("/cvmfs", base) == base
    for kept in ("relative", "outside"):
        assert cvmfs.resolve(f"/cvmfs/images.example.org/{kept}", base) == f"{base}/images.example.org/{kept}"
    for untouched in ("/cvmfsx/a", "/opt/cvmfs/a", "relative/cvmfs", "docker://nvcr.io/tritonserver", ""):
        assert cvmfs.resolve(untouched, base) == untouched
    assert cvmfs.resolve(IMAGE_LINK, "") == IMAGE_LINK  # CVMFS at /cvmfs: nothing to translate
    # Back to the path every node knows, for the machine ad.
    assert cvmfs.as_written(str(on_mount(mount, IMAGE)), base) == IMAGE
    assert cvmfs.as_written(base, base) == "/cvmfs"
    assert cvmfs.as_written(f"{base}x/a", base) == f"{base}x/a"
    assert cvmfs.as_written("/opt/a", "") == "/opt/a"


def test_the_mount_dir_comes_from_the_environment_first_then_glidein_config() -> None:
    config = {cvmfs.MOUNT_DIR_KEY: "/scratch/cvmfsexec/dist/cvmfs/"}
    assert cvmfs.mount_dir(config, {}) == "/scratch/cvmfsexec/dist/cvmfs"  # one trailing slash dropped
    assert cvmfs.mount_dir(config, {cvmfs.MOUNT_DIR_KEY: "/site/cvmfs"}) == "/site/cvmfs"
    assert cvmfs.mount_dir(config, {cvmfs.MOUNT_DIR_KEY: ""}) == "/scratch/cvmfsexec/dist/cvmfs"
    assert cvmfs.mount_dir({cvmfs.MOUNT_DIR_KEY: "/cvmfs"}, {}) == ""
    assert cvmfs.mount_dir({}, {}) == ""


@pytest.mark.usefixtures("no_mount_in_environment")
def test_settings_translate_the_image_the_repositories_and_the_policy_prefixes(tmp_path: Path) -> None:
    mount = tmp_path / "cvmfs"
    on_mount(mount, IMAGE).mkdir(parents=True)
    link(mount, IMAGE_LINK, IMAGE)
    models, jobs, code = (on_mount(mount, f"{VO}/{name}") for name in ("models", "job_models", "code_models"))
    for directory in (models, jobs, code):
        directory.mkdir(parents=True)
    config = {
        cvmfs.MOUNT_DIR_KEY: str(mount),
        "GLIDEIN_TRITON_IMAGE": IMAGE_LINK,
        "GLIDEIN_TRITON_MODEL_REPOSITORY": f"{VO}/models",
        "GLIDEIN_TRITON_JOB_REPOSITORIES": f"{VO}/job_models,/srv/models",
        "GLIDEIN_TRITON_CODE_REPOSITORIES": f"{VO}/code_models",
    }
    settings = Settings.from_config(config)
    assert settings.image == str(on_mount(mount, IMAGE))
    assert settings.model_repository == str(models)
    assert settings.job_repositories == (str(jobs), "/srv/models")
    assert settings.code_repositories == (str(code),)
    # The server image from SINGULARITY_IMAGES_DICT too; without CVMFS_MOUNT_DIR nothing changes.
    dictionary = {cvmfs.MOUNT_DIR_KEY: str(mount), "SINGULARITY_IMAGES_DICT": f"tritonserver:{IMAGE_LINK}"}
    assert Settings.from_config(dictionary).image == str(on_mount(mount, IMAGE))
    assert Settings.from_config({"GLIDEIN_TRITON_IMAGE": IMAGE_LINK}).image == IMAGE_LINK
    # The policy then takes a job's /cvmfs repository, translated by the agent the same way.
    add_model(code, "echo")  # a python model: code, trusted under the code prefix only
    hand_over(mount)
    policy = Policy(settings.job_repositories, settings.code_repositories)
    directory, prefix = policy.locate(cvmfs.resolve(f"{VO}/code_models", str(mount)), "echo")
    assert (directory, prefix) == (str(code / "echo"), str(code))
    assert isinstance(policy.vet(directory, prefix, str(tmp_path / "snapshot")), Vetted)


def test_the_container_sees_the_mount_where_the_server_and_the_links_expect_it(tmp_path: Path) -> None:
    mount = tmp_path / "cvmfs"
    mount.mkdir()
    roots = supervisor.same_path_roots(tmp_path / "glidein", str(mount))
    assert roots == [str(tmp_path / "glidein"), str(mount)]  # job models are linked at their real path
    plan = runtime.container_plan(
        "apptainer",
        "/usr/bin/apptainer",
        str(on_mount(mount, IMAGE)),
        str(on_mount(mount, f"{VO}/models")),
        Ports(8000, 8001, 8002),
        ["simple"],
        [],
        [],
        "triton_1",
        same_path_binds=roots,
        config_dir=str(tmp_path / "config"),
        door_dir=str(tmp_path / "door"),
        cvmfs_mount=str(mount),
    )
    (start,) = plan.prepare
    binds = [start[index + 1] for index, word in enumerate(start) if word == "--bind"]
    assert f"{mount}:/cvmfs:ro" in binds  # as GlideinWMS binds it into its containers
    assert f"{mount}:{mount}:ro" in binds
    assert f"{on_mount(mount, VO)}/models:/models:ro" in binds
    assert start[-2] == str(on_mount(mount, IMAGE))
    with pytest.raises(Exception, match=r"cannot be bound.*CVMFS_MOUNT_DIR"):
        runtime.container_plan(
            "apptainer", "apptainer", "i", "/r", Ports(1, 2, 3), [], [], [], "t",
            config_dir="/c", door_dir="/d", cvmfs_mount="/a:b",
        )  # fmt: skip


@pytest.mark.usefixtures("no_mount_in_environment")
def test_a_container_runtime_on_cvmfs_is_found_under_the_mount(tmp_path: Path) -> None:
    mount = tmp_path / "cvmfs"
    apptainer = "/cvmfs/oasis.opensciencegrid.org/mis/apptainer/current/bin/apptainer"
    link(mount, apptainer, demo.STANDIN_APPTAINER)
    config = {cvmfs.MOUNT_DIR_KEY: str(mount), "SINGULARITY_PATH": apptainer}
    assert runtime.find_container_runtime("auto", config, "") == str(on_mount(mount, apptainer))


def lcg_python_on(mount: Path) -> Path:
    """An LCG view's python3 on the mount: a link to the releases area by its /cvmfs path, as the views
    have; that one links to this machine's Python."""
    link(mount, LCG_PYTHON, LCG_RELEASE_PYTHON)
    link(mount, LCG_RELEASE_PYTHON, getattr(sys, "_base_executable", sys.executable))
    return on_mount(mount, LCG_RELEASE_PYTHON)


@pytest.mark.scripts
@pytest.mark.usefixtures("no_mount_in_environment")
def test_the_startup_script_finds_the_lcg_python_under_the_cvmfsexec_mount(
    glidein: SimulatedGlidein, tmp_path: Path
) -> None:
    bin_dir = tools_without_python(tmp_path / "bin")
    mount = glidein.mount_cvmfs(tmp_path / "cvmfsexec" / "dist" / "cvmfs")
    python = lcg_python_on(mount)
    glidein.set("GLIDEIN_TRITON", "True")
    result = glidein.run_startup(env={**os.environ, "PATH": str(bin_dir)})
    assert glidein.config().get("GLIDEIN_TRITON_PYTHON") == str(python), result.stderr
    # The operator's GLIDEIN_TRITON_PYTHON on /cvmfs, and the environment's CVMFS_MOUNT_DIR first.
    other = tmp_path / "site-cvmfs"
    link(other, "/cvmfs/python.example.org/bin/python3", getattr(sys, "_base_executable", sys.executable))
    glidein.set("GLIDEIN_TRITON_PYTHON", "/cvmfs/python.example.org/bin/python3")
    environment = {**os.environ, "PATH": str(bin_dir), cvmfs.MOUNT_DIR_KEY: str(other)}
    glidein.run_startup(env=environment)
    assert glidein.config()["GLIDEIN_TRITON_PYTHON"] == str(
        on_mount(other, "/cvmfs/python.example.org/bin/python3")
    )


@pytest.mark.usefixtures("no_mount_in_environment")
def test_the_node_check_reads_the_image_under_the_cvmfsexec_mount(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mount = tmp_path / "cvmfs"
    image = demo.make_standin_image(on_mount(mount, IMAGE).parent, Path(sys.executable))
    image = image.rename(on_mount(mount, IMAGE))
    link(mount, IMAGE_LINK, IMAGE)
    config = tmp_path / "glidein_config"
    settings = f"{cvmfs.MOUNT_DIR_KEY} {mount}\nGLIDEIN_TRITON_RUNTIME apptainer\n"
    for lines, given in ((f"GLIDEIN_TRITON_IMAGE {IMAGE_LINK}\n", []), ("", ["--image", IMAGE_LINK])):
        config.write_text(settings + lines)
        check_command.main(["--glidein-config", str(config), "--json", *given])
        (image_check,) = [
            item for item in json.loads(capsys.readouterr().out)["checks"] if item["check"] == "image"
        ]
        assert image_check["summary"] == f"sandbox directory {image}, with /opt/tritonserver/bin/tritonserver"


@pytest.mark.server
@pytest.mark.usefixtures("no_mount_in_environment")
@pytest.mark.parametrize("runtime_name", ["process", "apptainer"])
def test_repositories_and_the_image_under_the_cvmfsexec_mount_are_served(
    tmp_path: Path, runtime_name: str
) -> None:
    prepared = demo.prepare(tmp_path / "glidein", runtime_name)
    glidein = prepared.glidein
    mount = glidein.mount_cvmfs(tmp_path / "cvmfsexec" / "dist" / "cvmfs")
    shutil.copytree(glidein.config()["GLIDEIN_TRITON_MODEL_REPOSITORY"], on_mount(mount, f"{VO}/models"))
    add_model(on_mount(mount, f"{VO}/job_models"), "alpha")
    glidein.set("GLIDEIN_TRITON_MODEL_REPOSITORY", f"{VO}/models")
    glidein.set("GLIDEIN_TRITON_CODE_REPOSITORIES", f"{VO}/job_models")  # python models are code
    if runtime_name == "apptainer":
        on_mount(mount, IMAGE).parent.mkdir(parents=True)
        Path(glidein.config()["GLIDEIN_TRITON_IMAGE"]).rename(on_mount(mount, IMAGE))
        link(mount, IMAGE_LINK, IMAGE)
        glidein.set("GLIDEIN_TRITON_IMAGE", IMAGE_LINK)
    hand_over(on_mount(mount, VO))  # the VO's repositories, read-only to the glidein's user
    result = glidein.run_startup(prepared.environment)
    assert glidein.published()[0]["HasTriton"] == "True", result.stderr
    state = recorded_state(glidein)
    assert state is not None
    job = None
    try:
        assert state.model_repository == str(on_mount(mount, f"{VO}/models"))
        # The machine ad names it as every node does, for jobs' Requirements.
        assert glidein.published()[0]["TritonModelRepository"] == f'"{VO}/models"'
        environment = {**prepared.environment, **glidein.published()[1]}
        assert len(demo.run_sample_job(environment, requests=1)) == 2  # gRPC and HTTP, right sums
        job = hooks_sim.start_job(
            glidein, HOLDING_JOB, environment, job_ad(Path(f"{VO}/job_models"), ["alpha"])
        )
        assert job_report(job) == ("ready", ["alpha"], [])
        assert infer(environment["TRITON_HTTP_URL"], "alpha", [1, 2, 3, 4]) == 200
        if runtime_name == "apptainer":
            (record,) = glidein_paths.plugin_dir(glidein.root).glob(
                f"apptainer/instances/app/*/*/{state.instance}.json"
            )
            instance = json.loads(record.read_text())
            assert instance["image"] == str(on_mount(mount, IMAGE))
            binds = {
                (str(Path(source).readlink()), destination) for source, destination, _ in instance["binds"]
            }
            assert (str(mount), "/cvmfs") in binds
            assert (str(mount), str(mount)) in binds
            assert (str(on_mount(mount, f"{VO}/models")), "/models") in binds
    finally:
        if job is not None:
            job.end()
        glidein.run_cleanup(prepared.environment)
    assert leftovers_after_cleanup(glidein, state) == []
