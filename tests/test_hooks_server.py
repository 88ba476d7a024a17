"""The pre-job, periodic and cleanup hooks against the real tritonserver (process runtime, and the stand-in
apptainer), with jobs run the way GlideinWMS's job wrapper runs them (see glidein_triton.local.gwms_hooks)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.local import gwms_hooks as hooks_sim
from glidein_triton.worker import glidein_paths, log_files, processes
from glidein_triton.worker.ports import is_listening
from glidein_triton.worker.state import ServerState

from .support import (
    BROKEN_MODEL,
    HOLDING_JOB,
    SHORT_JOB,
    add_model,
    hand_over,
    infer,
    job_ad,
    job_report,
    leftovers_after_cleanup,
    loads_in_log,
    reference_counts,
    state,
)

pytestmark = pytest.mark.server


class Served:
    """A started glidein, the environment its jobs get, and the jobs started on it."""

    def __init__(self, prepared: demo.DemoGlidein) -> None:
        self.glidein = prepared.glidein
        self.environment = prepared.environment
        self.jobs: list[hooks_sim.Job] = []

    @property
    def job_environment(self) -> dict[str, str]:
        return {**self.environment, **self.glidein.published()[1]}

    def start(self) -> None:
        result = self.glidein.run_startup(self.environment)
        assert result.returncode == 0, result.stderr
        assert self.glidein.published()[0]["HasTriton"] == "True", result.stderr

    def job(self, ad: dict[str, str], command: list[str] = HOLDING_JOB, **options: str) -> hooks_sim.Job:
        job = hooks_sim.start_job(self.glidein, command, self.job_environment, ad, **options)
        self.jobs.append(job)
        return job

    def periodic(self) -> dict[str, str]:
        code, attributes, stderr = hooks_sim.run_periodic(self.glidein, self.environment)
        assert code == 0, stderr
        return attributes

    @property
    def http_url(self) -> str:
        return self.glidein.published()[1]["TRITON_HTTP_URL"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A glidein with the real server started (model ``simple`` pinned); after the test, its jobs end, the
    cleanup runs, and nothing may be left: no process, no listening port, no lock, no hook file."""
    trusted = f"{tmp_path / 'job_repository'} {tmp_path / 'other_repository'}"  # for code: python models
    settings = {"GLIDEIN_TRITON_RESTART_BACKOFF": "0", "GLIDEIN_TRITON_CODE_REPOSITORIES": trusted}
    prepared = Served(demo.prepare(tmp_path / "glidein", settings=settings))
    prepared.start()
    yield prepared
    for job in prepared.jobs:
        job.end()
    recorded = ServerState.load(glidein_paths.state_file(prepared.glidein.root))  # None: cleaned already
    results = prepared.glidein.run_cleanup(prepared.environment)
    assert [result.returncode for result in results] == [0]
    assert leftovers_after_cleanup(prepared.glidein, recorded) == []


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A job's own model repository with five tiny models and one that cannot load."""
    path = tmp_path / "job_repository"
    for name in ("alpha", "beta", "gamma", "delta", "epsilon"):
        add_model(path, name)
    add_model(path, "broken", BROKEN_MODEL)
    return hand_over(path)


def test_two_concurrent_prejobs_share_one_load(served: Served, repository: Path) -> None:
    jobs = [served.job(job_ad(repository, ["alpha"])) for _ in range(2)]
    assert [job_report(job) for job in jobs] == [("ready", ["alpha"], [])] * 2
    assert reference_counts(served.glidein) == {"alpha": 2}
    assert loads_in_log(served.glidein, "alpha") == 1  # the second pre-job found it loaded: no reload
    link = glidein_paths.plugin_dir(served.glidein.root) / "job_models" / "alpha"
    assert (
        link.readlink().parent == glidein_paths.plugin_dir(served.glidein.root) / "job_snapshots"
    )  # the vetted copy
    assert (link / "1" / "model.py").read_text() == (repository / "alpha" / "1" / "model.py").read_text()
    assert infer(served.http_url, "alpha", [1, 2, 3, 4]) == 200


def test_twenty_concurrent_prejobs_on_five_models(served: Served, repository: Path) -> None:
    names = ["alpha", "beta", "gamma", "delta", "epsilon"]
    jobs = [served.job(job_ad(repository, [names[number % 5]])) for number in range(20)]
    reports = [job_report(job) for job in jobs]
    assert reports == [("ready", [names[number % 5]], []) for number in range(20)]
    assert reference_counts(served.glidein) == dict.fromkeys(names, 4)
    assert [loads_in_log(served.glidein, name) for name in names] == [1] * 5
    attributes = served.periodic()
    assert attributes["TritonLoadedModels"] == '"alpha,beta,delta,epsilon,gamma,simple"'


def test_reaper_unloads_models_of_jobs_that_are_gone(served: Served, repository: Path) -> None:
    first, second = (
        served.job(job_ad(repository, ["alpha", "beta"])),
        served.job(job_ad(repository, ["beta"])),
    )
    pinned_user = served.job(job_ad(models=["simple"]))
    assert [job_report(job)[0] for job in (first, second, pinned_user)] == ["ready"] * 3
    assert reference_counts(served.glidein) == {"alpha": 1, "beta": 2, "simple": 1}
    assert served.periodic()["TritonLoadedModels"] == '"alpha,beta,simple"'  # nothing gone yet
    first.end()  # the job ends and HTCondor removes its sandbox
    assert served.periodic()["TritonLoadedModels"] == '"beta,simple"'
    assert reference_counts(served.glidein) == {"beta": 1, "simple": 1}
    assert not (glidein_paths.plugin_dir(served.glidein.root) / "job_models" / "alpha").exists()
    second.end()
    pinned_user.end()
    attributes = served.periodic()
    assert attributes["TritonLoadedModels"] == '"simple"', attributes  # the operator's model stays
    assert reference_counts(served.glidein) == {}


def test_failed_model_reported_and_required_job_not_started(served: Served, repository: Path) -> None:
    optional = served.job(job_ad(repository, ["alpha", "broken"]), SHORT_JOB)
    code, stdout, stderr = optional.finish()
    assert (code, stdout) == (0, "failed|alpha|broken\n")
    assert "not available: broken: " in stderr
    assert "weights missing" in stderr or "failed to load" in stderr
    required = served.job(job_ad(repository, ["broken"], required=True), SHORT_JOB)
    code, stdout, stderr = required.finish()
    assert code == 1
    assert stdout == ""  # the job itself never ran
    assert "exit_wrapper: glidein-triton: this job requires Triton models" in stderr
    assert reference_counts(served.glidein) == {"alpha": 1}  # broken's failed registration was undone


def test_model_name_of_the_server_repository_is_refused_from_a_job_repository(
    served: Served, tmp_path: Path
) -> None:
    other = tmp_path / "other_repository"
    hand_over(add_model(other, "simple").parent)
    job = served.job(job_ad(other, ["simple"]), SHORT_JOB)
    code, stdout, stderr = job.finish()
    assert (code, stdout) == (0, "failed||simple\n")
    assert "the server's repository has a model of that name" in stderr
    assert infer(served.http_url, "simple", [1, 2, 3, 4]) != 404  # the pinned model was not disturbed
    assert served.periodic()["TritonLoadedModels"] == '"simple"'


def test_a_model_no_repository_has_is_answered_at_once_with_the_reason(served: Served) -> None:
    started = time.monotonic()
    job = served.job(job_ad(models=["simple", "no_such_model"]), SHORT_JOB)
    code, stdout, stderr = job.finish()
    assert (code, stdout) == (0, "failed|simple|no_such_model\n")
    assert time.monotonic() - started < 20
    assert "not available: no_such_model: not a model of the glidein's repository (" in stderr
    assert "the job names no repository of its own (+TritonModelRepository)" in stderr
    assert "failed to poll from model repository" in stderr  # the server's own words


def test_killed_server_is_restarted_on_the_same_ports_then_the_limit_holds(
    served: Served, repository: Path
) -> None:
    holder = served.job(job_ad(repository, ["gamma"]))
    assert job_report(holder)[0] == "ready"
    before = state(served.glidein)
    attributes = served.periodic()
    assert (attributes["TritonReady"], attributes["TritonRestarts"]) == ("True", "0")
    os.kill(before.pid, signal.SIGKILL)
    attributes = served.periodic()
    assert attributes["TritonReady"] == "True"
    assert attributes["TritonRestarts"] == "1"
    assert attributes["HasTriton"] == "True"
    assert attributes["TritonLoadedModels"] == '"gamma,simple"'  # the held job model came back too
    after = state(served.glidein)
    assert after.pid != before.pid
    assert (after.http_port, after.grpc_port, after.metrics_port) == (
        before.http_port,
        before.grpc_port,
        before.metrics_port,
    )
    assert infer(served.http_url, "gamma", [4, 3, 2, 1]) == 200  # at the URL published at startup
    exit_messages = (served.glidein.root / "exit_message").read_text()
    assert "restart 1 of 3" in exit_messages


def test_restart_limit_and_backoff(tmp_path: Path) -> None:
    prepared = Served(
        demo.prepare(
            tmp_path / "glidein",
            settings={
                "GLIDEIN_TRITON_RESTART_LIMIT": "2",
                "GLIDEIN_TRITON_RESTART_BACKOFF": "3600",
                "GLIDEIN_TRITON_RESTART_WINDOW": "0",  # the glidein's whole life: the limit is final
            },
        )
    )
    prepared.start()
    try:
        os.kill(state(prepared.glidein).pid, signal.SIGKILL)
        assert prepared.periodic()["TritonRestarts"] == "1"
        second = state(prepared.glidein)
        os.kill(second.pid, signal.SIGKILL)
        attributes = prepared.periodic()  # the second restart waits an hour
        assert (attributes["HasTriton"], attributes["TritonReady"], attributes["TritonRestarts"]) == (
            "True",
            "False",
            "1",
        )
        with (glidein_paths.state_file(prepared.glidein.root)).open("r+") as stream:  # an hour later
            recorded = json.load(stream)
            recorded["restart_times"] = [moment - 3600 for moment in recorded["restart_times"]]
            stream.seek(0)
            stream.truncate()
            json.dump(recorded, stream)
        assert prepared.periodic()["TritonRestarts"] == "2"
        os.kill(state(prepared.glidein).pid, signal.SIGKILL)
        attributes = prepared.periodic()
        assert (attributes["HasTriton"], attributes["TritonReady"], attributes["TritonRestarts"]) == (
            "False",
            "False",
            "2",
        )
        assert "restart limit reached (2" in attributes["TritonFailure"]
        assert not is_listening(second.http_port)  # no third server
        assert "stays down" in (prepared.glidein.root / "exit_message").read_text()
    finally:
        recorded_state = state(prepared.glidein)
        prepared.glidein.run_cleanup(prepared.environment)
        assert leftovers_after_cleanup(prepared.glidein, recorded_state) == []


def test_on_two_fixed_slots_no_slot_keeps_has_triton_after_the_server_died(tmp_path: Path) -> None:
    settings = {"SLOTS_LAYOUT": "fixed", "GLIDEIN_CPUS": "2", "GLIDEIN_TRITON_RESTART_LIMIT": "0"}
    prepared = Served(demo.prepare(tmp_path / "glidein", settings=settings))
    result = prepared.glidein.run_startup(prepared.environment)
    assert result.returncode == 0, result.stderr
    try:
        glidein = prepared.glidein
        ready = glidein.slot_ads(glidein.run_cron(prepared.environment))
        assert [ad["HasTriton"] for ad in ready] == ["True", "False"]  # slot 2's ad cannot follow the server
        os.kill(state(glidein).pid, signal.SIGKILL)
        dead = glidein.slot_ads(glidein.run_cron(prepared.environment))
        assert [(ad["SlotID"], ad["HasTriton"]) for ad in dead] == [("1", "False"), ("2", "False")]
    finally:
        recorded_state = state(prepared.glidein)
        prepared.glidein.run_cleanup(prepared.environment)
        assert leftovers_after_cleanup(prepared.glidein, recorded_state) == []


def test_hung_server_is_restarted_then_stopped_for_good(tmp_path: Path) -> None:
    settings = {
        "GLIDEIN_TRITON_RESTART_LIMIT": "1",
        "GLIDEIN_TRITON_RESTART_WINDOW": "0",  # stopped for good once the limit is reached
        "GLIDEIN_TRITON_READY_TIMEOUT": "10",
        "GLIDEIN_TRITON_STOP_GRACE": "1",  # a stopped process handles SIGTERM only when it runs again
    }
    prepared = Served(demo.prepare(tmp_path / "glidein", settings=settings))
    prepared.start()

    def three_checks_past_the_readiness_timeout() -> list[dict[str, str]]:
        runs = [prepared.periodic() for _ in range(2)]
        time.sleep(max(0.0, state(prepared.glidein).started_at + 10.5 - time.time()))
        return [*runs, prepared.periodic()]

    try:
        hung = state(prepared.glidein)
        os.kill(hung.pid, signal.SIGSTOP)  # alive, but it answers nothing
        runs = three_checks_past_the_readiness_timeout()
        assert [(run["TritonReady"], run["TritonRestarts"]) for run in runs] == [
            ("False", "0"),
            ("False", "0"),
            ("True", "1"),  # the third miss in a row, past its readiness timeout: hung
        ]
        assert not processes.is_running(hung.pid)
        second = state(prepared.glidein)
        os.kill(second.pid, signal.SIGSTOP)
        runs = three_checks_past_the_readiness_timeout()
        assert [run["HasTriton"] for run in runs] == ["True", "True", "False"]
        assert not processes.is_running(second.pid)  # given up: the hung server was stopped, not left
        assert processes.group_members(second.pgid) == []
    finally:
        recorded = state(prepared.glidein)
        prepared.glidein.run_cleanup(prepared.environment)
        assert leftovers_after_cleanup(prepared.glidein, recorded) == []


def test_accounting_counts_every_request_across_a_restart(served: Served, repository: Path) -> None:
    holder = served.job(job_ad(repository, ["delta"]))
    assert job_report(holder)[0] == "ready"
    statuses = [infer(served.http_url, "delta", [number, 1, 2, 3]) for number in (1, 2, -1)]
    assert statuses[:2] == [200, 200]
    assert statuses[2] != 200
    assert served.periodic()["TritonInferenceCount"] == "2"  # a snapshot the ledger keeps
    os.kill(state(served.glidein).pid, signal.SIGKILL)
    assert served.periodic()["TritonRestarts"] == "1"
    assert [infer(served.http_url, "delta", [5, 6, 7, 8]) for _ in range(3)] == [200] * 3
    attributes = served.periodic()
    assert attributes["TritonInferenceCount"] == "5"
    recorded = state(served.glidein)
    holder.end()
    results = served.glidein.run_cleanup(served.environment)
    path = glidein_paths.plugin_dir(served.glidein.root) / "glidein_triton_accounting.json"
    document = json.loads(path.read_text())
    assert document["complete"] is True
    assert document["server"]["restarts"] == 1
    assert document["server"]["gpus"] == []
    assert document["server"]["seconds"] >= time.time() - recorded.launched_at - 60
    delta = document["models"]["delta"]
    assert (delta["success_count"], delta["failure_count"], delta["inference_count"]) == (5, 1, 5)
    assert delta["compute_seconds"] > 0
    assert delta["queue_seconds"] >= 0
    assert document["models"]["simple"]["success_count"] == 0
    assert document["totals"]["success_count"] == 5
    summary = [line for line in results[0].stderr.splitlines() if "Triton accounting" in line]
    assert len(summary) == 1
    assert "1 restarts; 5 requests ok, 1 failed" in summary[0]
    assert "delta=5/1" in summary[0]
    assert leftovers_after_cleanup(served.glidein, recorded) == []


def test_periodic_before_startup_and_with_triton_off(tmp_path: Path) -> None:
    prepared = demo.prepare(tmp_path / "glidein", settings={"GLIDEIN_TRITON": "False"})
    code, attributes, _ = hooks_sim.run_periodic(prepared.glidein, prepared.environment, first=True)
    assert (code, attributes) == (0, {"TritonReady": "False"})  # the startup script has not run yet
    assert prepared.glidein.run_startup(prepared.environment).returncode == 0
    code, attributes, _ = hooks_sim.run_periodic(prepared.glidein, prepared.environment)
    assert (code, attributes) == (0, {"TritonReady": "False"})
    job = hooks_sim.start_job(prepared.glidein, SHORT_JOB, prepared.environment, job_ad(models=["simple"]))
    code, stdout, _ = job.finish()
    assert (code, stdout) == (0, "||\n")  # no pre-job hook is installed when Triton is off


def test_apptainer_runtime_restart_starts_the_instance_again(tmp_path: Path) -> None:
    prepared = Served(demo.prepare(tmp_path / "glidein", runtime="apptainer"))
    prepared.start()
    try:
        before = state(prepared.glidein)
        # The stand-in's instance records, in the plugin's Apptainer config dir.
        (records,) = (glidein_paths.plugin_dir(prepared.glidein.root) / "apptainer").glob("instances/app/*/*")
        root = prepared.glidein.root
        assert ["--bind", f"{root}:{root}:ro"] == before.prepare[0][-4:-2]  # job model links resolve inside
        instance_before = json.loads((records / f"{before.instance}.json").read_text())
        os.kill(before.pid, signal.SIGKILL)
        attributes = prepared.periodic()
        assert (attributes["TritonReady"], attributes["TritonRestarts"]) == ("True", "1")
        instance_after = json.loads((records / f"{before.instance}.json").read_text())
        assert instance_after["pid"] != instance_before["pid"]  # stopped and started again
        assert not processes.is_running(instance_before["pid"])
        assert processes.is_running(instance_after["pid"])
    finally:
        recorded = state(prepared.glidein)
        prepared.glidein.run_cleanup(prepared.environment)
        assert leftovers_after_cleanup(prepared.glidein, recorded) == []
    assert list(records.glob("*.json")) == []


#: Claims a hostile job could leave in its sandbox: a wrong type, names that are paths or break lines.
HOSTILE_CLAIMS = {
    "dir_bad_pid": {"holder": "evil#1", "models": ["alpha"], "record": {"pid": "not a number"}},
    "dir_traversal": {"holder": "evil#2", "models": ["../../../escaped"], "record": {}},
    "dir_slash": {"holder": "evil#3", "models": ["a/b"], "record": {}},
    "dir_crlf": {"holder": "evil#4", "models": ["x\r\nHost: evil"], "record": {}},
    "dir_not_a_list": {"holder": "evil#5", "models": "alpha", "record": {}},
}


def test_hostile_claims_affect_no_other_job(served: Served, repository: Path) -> None:
    for name, claim in HOSTILE_CLAIMS.items():
        claim_dir = served.glidein.root / "execute" / name / ".glidein_triton"
        claim_dir.mkdir(parents=True)
        (claim_dir / "claim.json").write_text(json.dumps(claim))
    first = served.job(job_ad(repository, ["alpha"]))
    second = served.job(job_ad(repository, ["beta"]))
    assert [job_report(job)[0] for job in (first, second)] == ["ready", "ready"]
    attributes = served.periodic()
    assert attributes["TritonReady"] == "True", attributes
    assert attributes["TritonLoadedModels"] == '"alpha,beta,simple"'
    first.end()
    attributes = served.periodic()  # reaping goes on for the other jobs
    assert attributes["TritonLoadedModels"] == '"beta,simple"', attributes
    assert reference_counts(served.glidein) == {"beta": 1}
    assert list(served.glidein.root.parent.rglob("escaped*")) == []  # no lock file made from a name
    assert sorted(
        path.name for path in (glidein_paths.plugin_dir(served.glidein.root) / "model_locks").iterdir()
    ) == [
        "alpha.lock",
        "beta.lock",
    ]


def test_a_held_registry_lock_costs_the_periodic_run_only_its_reaping(served: Served) -> None:
    lock = glidein_paths.plugin_dir(served.glidein.root) / "hooks.lock"
    holder = subprocess.Popen(  # a process of the glidein user that takes the lock and keeps it
        [sys.executable, "-c", HOLD_FLOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        started = time.monotonic()
        attributes = served.periodic()
        took = time.monotonic() - started
    finally:
        holder.kill()
        holder.communicate()
    assert attributes["TritonReady"] == "True", attributes
    assert attributes["TritonLoadedModels"] == '"simple"'
    assert took < 8, f"the periodic run waited {took:.1f} s"  # two waits of periodic.LOCK_WAIT, and work
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600  # other users cannot even open it


HOLD_FLOCK = """
import fcntl, os, sys, time
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


def test_models_loaded_for_jobs_get_private_shared_memory(served: Served, repository: Path) -> None:
    job = served.job(job_ad(repository, ["alpha", "beta"]))
    assert job_report(job) == ("ready", ["alpha", "beta"], [])
    pgid = state(served.glidein).pgid
    regions = processes.shared_memory_files(processes.group_members(pgid))
    assert len(regions) >= 3  # simple, alpha, beta: one region per python-backend model instance at least
    assert {stat.S_IMODE(region.stat().st_mode) for region in regions} == {0o600}


def test_the_periodic_script_caps_the_server_log(served: Served) -> None:
    log = glidein_paths.plugin_dir(served.glidein.root) / "server.log"
    with log.open("ab") as stream:  # as a server at the highest verbosity would write for hours
        stream.write(b"I1201 verbose line\n" * (log_files.SIZE_LIMIT // 19 + 1000))
    attributes = served.periodic()
    assert attributes["TritonReady"] == "True"
    size = log.stat().st_size
    assert size <= log_files.KEPT_BYTES + 200
    assert log.read_bytes().startswith(log_files.CUT_NOTE % log_files.SIZE_LIMIT)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert served.periodic()["TritonReady"] == "True"  # the server writes on, at the new end
    assert log.stat().st_size <= size + 4096
