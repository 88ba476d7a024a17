"""What a real glidein does around the plugin (docs/real-glidein.md): the periodic script's first run and
its scheduling, the order of the cleanup scripts with cvmfsexec's cvmfs_umount.sh, ``nocleanup``, one
restart at a time within the cron period, and the process-family markers of a restarted server."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.local import gwms_hooks as hooks_sim
from glidein_triton.local import pytriton as local_server
from glidein_triton.local.glidein import CRON_INCLUDE, CronRun, GlideinDied, SimulatedGlidein
from glidein_triton.worker import glidein_paths, processes, publish, runtime, server, startup
from glidein_triton.worker.model_registry import RESTART_LOCK_FILE, locked
from glidein_triton.worker.ports import free_port
from glidein_triton.worker.state import ServerState

from .support import assert_nothing_left, recorded_state, write_executable

REPO = Path(__file__).resolve().parent.parent


def test_every_test_the_page_names_exists() -> None:
    """docs/real-glidein.md names the test of each step: each must be there."""
    text = (REPO / "docs" / "real-glidein.md").read_text()
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", text)
    assert len(named) > 15
    for file_name, test_name in named:
        assert f"def {test_name}(" in (REPO / "tests" / file_name).read_text(), f"{file_name}::{test_name}"
    bare = set(re.findall(r"`(test_\w+)`", text))
    sources = "".join(path.read_text() for path in (REPO / "tests").glob("test_*.py"))
    assert [name for name in sorted(bare) if f"def {name}(" not in sources] == []


def glob_order(directory: Path, locale: str) -> list[str]:
    """The order in which bash's ``for i in *`` (gwms_process_scripts) visits ``directory``."""
    listed = subprocess.run(
        ["bash", "-c", 'cd "$1" && for i in *; do echo "$i"; done', "order", str(directory)],
        env={"PATH": os.environ["PATH"], "LC_ALL": locale},
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


@pytest.mark.parametrize("locale", ["C", "C.UTF-8", "en_US.UTF-8"])
def test_cleanup_script_runs_before_cvmfs_umount(glidein: SimulatedGlidein, locale: str) -> None:
    startup.install_cleanup_script(glidein.root)
    glidein.mount_cvmfs(glidein.root.parent / "cvmfs")
    order = glob_order(glidein.gwms_dir / "exec" / "cleanup", locale)
    assert order == [startup.INSTALLED_CLEANUP_SCRIPT, "cvmfs_umount.sh"]


@pytest.mark.scripts
def test_periodic_first_run_reports_ok_and_is_scheduled(glidein: SimulatedGlidein) -> None:
    glidein.set("GLIDEIN_TRITON", "False")
    assert glidein.run_startup().returncode == 0
    first = glidein.first_periodic_run
    assert first is not None
    assert (first.returncode, first.status, first.metrics) == (0, "OK", {"TritonReady": "False"})
    assert first.reported
    assert first.stdout == "TritonReady = False\n"
    include = (glidein.root / CRON_INCLUDE).read_text()
    script = glidein.main_dir / "glidein_triton_periodic.sh"
    assert "STARTD_CRON_GLIDEIN_PS_1_PERIOD = 300s\n" in include
    assert f"STARTD_CRON_GLIDEIN_PS_1_ARGS = glidein_config main GLIDEIN_PS_1 {script} NOPREFIX\n" in include
    assert "_PREFIX" not in include  # NOPREFIX: the attributes keep their names
    assert glidein.config()["GLIDEIN_condor_config_startd_cron_include"] == CRON_INCLUDE
    (run,) = glidein.run_cron()
    assert (run.returncode, run.attributes) == (0, {"TritonReady": "False"})
    assert run.wrapper["GLIDEIN_PS_OK"] == "True"
    assert [path.name for path in glidein.root.iterdir() if path.name.startswith("tmp")] == ["tmp"]


@pytest.mark.scripts
@pytest.mark.parametrize(("layout", "slots"), [("partitionable", 1), ("fixed", 2), ("fixed", 4)])
def test_the_cron_reaches_slot_1_only_so_no_other_slot_claims_triton(
    glidein: SimulatedGlidein, layout: str, slots: int
) -> None:
    # What the startup script publishes for every slot once the server is ready, then the server dies and
    # the periodic script says so: the startd merges its output into the slots of _SLOTS (slot 1) only.
    glidein.set("SLOTS_LAYOUT", layout)
    glidein.set("GLIDEIN_CPUS", str(slots))
    glidein.set("GLIDEIN_TRITON", "False")
    assert glidein.run_startup().returncode == 0  # publishes HasTriton, schedules the periodic script
    include = (glidein.root / CRON_INCLUDE).read_text()
    assert "STARTD_CRON_GLIDEIN_PS_1_SLOTS = 1\n" in include
    assert "STARTD_CRON_GLIDEIN_PS_1_JOB_LOAD = 0.01\n" in include
    values = dict(publish.ready_values("2.51.0", glidein.config()["SLOTS_LAYOUT"]))
    glidein.set("HAS_TRITON", values["HAS_TRITON"])  # as a ready server's startup publishes it
    assert [ad["HasTriton"] for ad in glidein.slot_ads([])] == ["True"] + ["False"] * (slots - 1)
    dead = CronRun(0, "HasTriton = False\n", "", {"HasTriton": "False", "TritonReady": "False"}, {})
    ads = glidein.slot_ads([dead])
    assert [ad["SlotID"] for ad in ads] == [str(slot) for slot in range(1, slots + 1)]
    assert [ad["HasTriton"] for ad in ads] == ["False"] * slots
    assert "TritonReady" not in ads[-1] or slots == 1  # slot 2..N never see the cron's output


@pytest.mark.scripts
def test_cron_runs_do_not_report_through_error_gen(glidein: SimulatedGlidein) -> None:
    glidein.set("GLIDEIN_TRITON", "False")
    glidein.run_startup()
    (glidein.root / "otrb_output.xml").unlink()
    (run,) = glidein.run_cron()
    assert run.returncode == 0
    assert not (glidein.root / "otrb_output.xml").exists()  # script_wrapper.sh reports for the cron runs


@pytest.mark.scripts
def test_a_failing_first_periodic_run_kills_the_glidein_and_is_not_scheduled(
    glidein: SimulatedGlidein,
) -> None:
    glidein.set("GLIDEIN_TRITON", "False")
    assert glidein.periodic is not None
    write_executable(glidein.periodic.path, "#!/bin/sh\nexit 3\n")
    with pytest.raises(GlideinDied, match="exit code 3"):
        glidein.run_startup()
    assert glidein.scheduled == []
    assert not (glidein.root / CRON_INCLUDE).exists()


@pytest.mark.scripts
@pytest.mark.parametrize(("options", "kept"), [("nocleanup", True), ("nowait,nocleanup", True), ("", False)])
def test_nocleanup_keeps_the_work_dir_but_runs_the_cleanup_scripts(
    glidein: SimulatedGlidein, options: str, kept: bool
) -> None:
    startup.install_cleanup_script(glidein.root)
    results = glidein.exit({**os.environ, "GLIDEIN_DEBUG_OPTIONS": options})
    assert [result.returncode for result in results] == [0]
    assert "nothing to clean up" in results[0].stderr
    assert glidein.root.is_dir() is kept


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def restartable_state(glidein: SimulatedGlidein, argv: list[str], period: float = 300.0) -> Path:
    """A recorded server that is gone, with a launch plan running ``argv``; the hooks set up to find it."""
    glidein.set("GLIDEIN_TRITON_CODE_DIR", glidein.config()["ENTRY_GLIDEIN_TRITON_DIR"])
    glidein.set("GLIDEIN_TRITON_PYTHON", sys.executable)
    path = glidein_paths.state_file(glidein.root)
    ServerState(
        runtime="process",
        http_port=free_port(),
        pid=dead_pid(),
        argv=argv,
        environment={"PATH": os.environ["PATH"]},
        log_path=str(path.with_name("tritonserver.log")),
        restart_limit=3,
        restart_backoff=0,
        periodic_period=period,
    ).save(path)
    return path


@pytest.mark.scripts
def test_a_second_periodic_run_leaves_the_restart_to_the_first(glidein: SimulatedGlidein) -> None:
    path = restartable_state(glidein, ["/bin/false"])
    with locked(str(path.with_name(RESTART_LOCK_FILE)), timeout=1):  # a first run is restarting
        started = time.monotonic()
        code, attributes, stderr = hooks_sim.run_periodic(glidein, {"PATH": os.environ["PATH"]})
    assert time.monotonic() - started < 5
    assert code == 0, stderr
    assert "another periodic run is restarting tritonserver" in stderr
    assert (attributes["TritonReady"], attributes["TritonRestarts"]) == ("False", "0")
    state = ServerState.load(path)
    assert state is not None
    assert state.restarts == 0


@pytest.mark.scripts
def test_a_restart_waits_no_longer_than_the_period(glidein: SimulatedGlidein) -> None:
    # never ready; a period shorter than the settings allow (10 s at least) keeps the test short
    path = restartable_state(glidein, ["/bin/sleep", "600"], period=5)
    started = time.monotonic()
    try:
        code, attributes, stderr = hooks_sim.run_periodic(glidein, {"PATH": os.environ["PATH"]})
        took = time.monotonic() - started
    finally:
        state = ServerState.load(path)
        assert state is not None
        assert state.pgid > 0
        assert processes.stop_group(state.pgid, 1.0)
    assert code == 0, stderr
    assert (attributes["TritonRestarts"], attributes["TritonReady"]) == ("1", "False")
    assert took < 5, stderr  # not the 30 s a restart may wait otherwise (supervisor.RESTART_READY_WAIT)


@pytest.mark.server
def test_cleanup_runs_before_cvmfs_umount_with_python_on_cvmfs(tmp_path: Path) -> None:
    prepared = demo.prepare(tmp_path / "glidein")
    glidein = prepared.glidein
    cvmfs = glidein.mount_cvmfs(tmp_path / "cvmfs")
    (cvmfs / "python3").symlink_to(getattr(sys, "_base_executable", sys.executable))
    glidein.set("GLIDEIN_TRITON_PYTHON", str(cvmfs / "python3"))
    result = glidein.run_startup(prepared.environment)
    assert result.returncode == 0, result.stderr
    assert glidein.published()[0]["HasTriton"] == "True", result.stderr
    assert glidein.config()["GLIDEIN_TRITON_PYTHON"] == str(cvmfs / "python3")
    state = recorded_state(glidein)
    results = glidein.exit({**prepared.environment, "GLIDEIN_DEBUG_OPTIONS": "nocleanup"})
    assert [r.returncode for r in results] == [0, 0]
    assert "nothing left running" in results[0].stderr, results[0].stderr
    assert not cvmfs.exists()  # cvmfs_umount.sh ran after the plugin's cleanup
    assert_nothing_left(glidein, state)
    assert glidein.root.is_dir()  # nocleanup: only the work dir is kept


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.server
def test_restarted_server_keeps_the_outer_batch_systems_markers_only(tmp_path: Path) -> None:
    prepared = demo.prepare(tmp_path / "glidein", settings={"GLIDEIN_TRITON_RESTART_BACKOFF": "0"})
    glidein = prepared.glidein
    outer = {"_CONDOR_ANCESTOR_111": "111:1700000000:1", "_CONDOR_UNIQUE_ID": "outer"}
    environment = {**prepared.environment, **outer}
    assert glidein.run_startup(environment).returncode == 0
    first = glidein.first_periodic_run
    assert first is not None
    assert (first.status, first.metrics) == ("OK", {"TritonReady": "True"})  # the server is up by then
    before = recorded_state(glidein)
    assert before is not None
    try:
        os.kill(before.pid, signal.SIGKILL)
        startd = {"_CONDOR_ANCESTOR_222": "222:1700000100:2", "_CONDOR_UNIQUE_ID": "startd"}
        code, attributes, stderr = hooks_sim.run_periodic(glidein, {**environment, **startd})
        assert code == 0, stderr
        assert (attributes["TritonReady"], attributes["TritonRestarts"]) == ("True", "1")
        after = recorded_state(glidein)
        assert after is not None
        seen = environ_of(after.pid)
        assert seen["_CONDOR_ANCESTOR_111"] == outer["_CONDOR_ANCESTOR_111"]
        assert seen["_CONDOR_UNIQUE_ID"] == "outer"
        assert "_CONDOR_ANCESTOR_222" not in seen
    finally:
        state = recorded_state(glidein)
        glidein.run_cleanup(environment)
    assert_nothing_left(glidein, state)


def test_a_stop_that_finds_no_instance_is_reported(tmp_path: Path) -> None:
    config_dir = str(tmp_path / "config")
    teardown = [
        *runtime.in_config_dir("apptainer", config_dir),
        str(demo.STANDIN_APPTAINER),
        "instance",
        "stop",
    ]
    state = ServerState(runtime="apptainer", instance="gt-gone", teardown=[[*teardown, "gt-gone"]])
    (problem,) = server.stop(state, {"PATH": os.environ["PATH"]})
    assert "instance stop gt-gone: exit code 255" in problem
    assert "no instance found with name gt-gone" in problem


@pytest.mark.server
def test_apptainer_instances_on_a_pool_account_without_a_usable_home(tmp_path: Path) -> None:
    prepared = demo.prepare(tmp_path / "glidein", runtime="apptainer")
    (tmp_path / "file").write_text("")
    environment = {
        **prepared.environment,
        "HOME": str(tmp_path / "file" / "home"),  # cannot be created, even by root
        "XDG_RUNTIME_DIR": str(tmp_path / "no-runtime-dir"),
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path / 'no-bus'}",
    }
    del environment["APPTAINER_CONFIGDIR"]
    glidein = prepared.glidein
    result = glidein.run_startup(environment)
    assert result.returncode == 0, result.stderr
    assert glidein.published()[0]["HasTriton"] == "True", result.stderr
    state = recorded_state(glidein)
    assert state is not None
    config_dir = glidein_paths.plugin_dir(glidein.root) / runtime.CONFIG_DIR_NAME
    assert list(config_dir.glob(f"instances/app/*/*/{state.instance}.json"))
    results = glidein.run_cleanup(environment)
    assert "nothing left running" in results[0].stderr, results[0].stderr
    assert_nothing_left(glidein, state)
    assert not list(config_dir.glob("instances/app/*/*/*.json"))


#: Paths POSIX allows, and what each runtime does with them: "" works end to end, else the failure type and
#: words of the error that names the path (process runtime, apptainer runtime).
LONG = "/".join(["l" * 200] * 5)
PYTHON_BACKEND = ("VO_Config", "python backend, which cannot load models from")
NOT_BINDABLE = ("VO_Config", "cannot be bound into the container")
REPOSITORY_PATHS = [
    ("with space", PYTHON_BACKEND, ""),
    ("modèles-é", PYTHON_BACKEND, ""),
    ("q'uo\"te", PYTHON_BACKEND, ""),
    ("co:lon", "", NOT_BINDABLE),
    ("com,ma", "", NOT_BINDABLE),
    ("-leading-dash", "", ""),
    (LONG, "", ""),
]
WORK_DIR_NOT_BINDABLE = ("Config", "cannot be bound into the container")
WORK_DIR_PATHS = [
    ("with space", "", ""),
    ("modèles-é", "", ""),
    ("q'uo\"te", "", ""),
    ("co:lon", "", WORK_DIR_NOT_BINDABLE),
    ("com,ma", "", WORK_DIR_NOT_BINDABLE),
    ("-leading-dash", "", ""),
    (LONG, "", ""),
]


def check_outcome(prepared: demo.DemoGlidein, expected: tuple[str, str] | str, path: Path) -> None:
    """Startup then either inference over gRPC and HTTP, or HasTriton = False with an error naming ``path``."""
    glidein = prepared.glidein
    state = None
    try:
        result = glidein.run_startup(prepared.environment, timeout=180)
        assert result.returncode == 0, result.stderr
        state = recorded_state(glidein)
        attributes, job_environment = glidein.published()
        if not expected:
            assert attributes["HasTriton"] == "True", result.stderr
            assert [line.split()[0] for line in demo.run_sample_job(job_environment, 1)] == ["gRPC", "HTTP"]
        else:
            failure_type, words = expected
            assert attributes["HasTriton"] == "False"
            assert result.metrics["TritonFailure"] == failure_type, result.metrics
            assert words in result.metrics["TritonFailureDetail"]
            assert str(path) in result.metrics["TritonFailureDetail"]
            assert state is None  # refused before the server started
    finally:
        glidein.run_cleanup(prepared.environment)
    assert_nothing_left(glidein, state)


@pytest.mark.server
@pytest.mark.parametrize("runtime_name", ["process", "apptainer"])
@pytest.mark.parametrize(("name", "process", "apptainer"), REPOSITORY_PATHS)
def test_model_repository_paths(
    tmp_path: Path,
    runtime_name: str,
    name: str,
    process: tuple[str, str] | str,
    apptainer: tuple[str, str] | str,
) -> None:
    prepared = demo.prepare(tmp_path / "glidein", runtime_name)
    repository = tmp_path / name / "repository"
    shutil.copytree(demo.MODELS_DIR, repository)
    prepared.glidein.set("GLIDEIN_TRITON_MODEL_REPOSITORY", str(repository))
    check_outcome(prepared, process if runtime_name == "process" else apptainer, repository)


@pytest.mark.server
@pytest.mark.parametrize("runtime_name", ["process", "apptainer"])
@pytest.mark.parametrize(("name", "process", "apptainer"), WORK_DIR_PATHS)
def test_work_dir_paths(
    tmp_path: Path,
    runtime_name: str,
    name: str,
    process: tuple[str, str] | str,
    apptainer: tuple[str, str] | str,
) -> None:
    root = tmp_path / name / "glidein"
    prepared = demo.prepare(root, runtime_name)
    # Only the work dir is odd: the repository, and the server's own files (on a node: the image or the
    # installation; here the local server and its stand-in image) are elsewhere.
    repository = shutil.copytree(demo.MODELS_DIR, tmp_path / "repository")
    launcher = local_server.prepare(tmp_path / "tritonserver-home")
    prepared.glidein.set("GLIDEIN_TRITON_MODEL_REPOSITORY", str(repository))
    prepared.glidein.set("GLIDEIN_TRITON_SERVER_BINARY", str(launcher))
    prepared.glidein.set("GLIDEIN_TRITON_IMAGE", str(demo.make_standin_image(tmp_path / "images", launcher)))
    check_outcome(prepared, process if runtime_name == "process" else apptainer, root)
