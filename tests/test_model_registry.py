"""Locks, holders and claims of the reference counts."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glidein_triton.local.gwms_hooks import make_sandbox
from glidein_triton.worker import model_registry, processes, sandbox_protocol
from glidein_triton.worker.model_registry import LockTimeoutError, Registry, holder_alive, locked

HOLD_LOCK = """
import sys, time
sys.path.insert(0, sys.argv[1])
from glidein_triton.worker.model_registry import locked
with locked(sys.argv[2], 5):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""
REPO = Path(__file__).resolve().parent.parent


def leave_claim(sandbox: str, holder: str, record: dict[str, object], models: list[str]) -> None:
    """A job's claim in its sandbox, as the agent's job loader leaves it (the reaper reads it)."""
    directory = Path(sandbox) / sandbox_protocol.JOB_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    claim = {"holder": holder, "record": record, "models": models}
    model_registry.write_json(str(directory / sandbox_protocol.CLAIM_FILE), claim)


def hold_lock_in_another_process(path: Path, seconds: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(REPO), str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "held\n"
    return process


def test_lock_excludes_other_processes_until_released(tmp_path: Path) -> None:
    path = tmp_path / "hooks.lock"
    holder = hold_lock_in_another_process(path, 60)
    try:
        started = time.monotonic()
        with (
            pytest.raises(LockTimeoutError, match=r"still locked by another process after 0\.3 s"),
            locked(str(path), 0.3),
        ):
            pass
        assert 0.3 <= time.monotonic() - started < 2
    finally:
        holder.kill()
        holder.communicate()
    with locked(str(path), 1):  # a process that dies releases its lock
        pass


def test_lock_waits_for_a_short_holder(tmp_path: Path) -> None:
    path = tmp_path / "hooks.lock"
    holder = hold_lock_in_another_process(path, 0.5)
    with locked(str(path), 10):
        holder.communicate(timeout=10)
        assert holder.returncode == 0  # it finished before we got the lock


def test_holder_alive(tmp_path: Path) -> None:
    sandbox = tmp_path / "execute" / "dir_1"
    sandbox.mkdir(parents=True)
    me = {"pid": os.getpid(), "ticks": processes.start_ticks(os.getpid())}
    assert me["ticks"] > 0
    assert holder_alive({"sandbox": str(sandbox), **me})
    assert holder_alive({"sandbox": str(sandbox)})  # in a container: the sandbox alone tells
    assert not holder_alive({"sandbox": str(tmp_path / "gone"), **me})
    assert not holder_alive({**me, "ticks": me["ticks"] + 1})  # the pid is another process now
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert not holder_alive({"pid": dead.pid, "ticks": 1})


@pytest.mark.parametrize("nested", [True, False], ids=["nested_scratch", "flat"])
def test_claims_are_found_in_sandboxes(tmp_path: Path, nested: bool) -> None:
    execute = tmp_path / "execute"
    scratch = {number: make_sandbox(execute / f"dir_{number}", nested) for number in (1, 2, 3, 4)}
    for number in (1, 2):
        leave_claim(str(scratch[number]), f"job{number}", {"job": "x"}, ["m"])
    # dir_3: a job that asked for nothing
    (scratch[4] / sandbox_protocol.JOB_DIR).mkdir(parents=True)
    (scratch[4] / sandbox_protocol.JOB_DIR / sandbox_protocol.CLAIM_FILE).write_text("{not json")
    found = list(model_registry.claims(str(execute)))
    assert [(sandbox, claim.get("holder"), problem) for sandbox, claim, problem in found] == [
        (str(scratch[1]), "job1", ""),
        (str(scratch[2]), "job2", ""),
        (str(scratch[4]), None, "not a JSON object (or too large)"),
    ]
    assert list(model_registry.claims(str(tmp_path / "no_execute_dir_yet"))) == []


def test_registry_round_trip_and_counts(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path))
    assert registry.reference_counts() == {}
    with registry.editing() as document:
        document["models"] = {
            "a": {"source": "", "holders": {"j1": {}, "j2": {}}},
            "b": {"source": "/x", "holders": {}},
        }
    assert registry.reference_counts() == {"a": 2, "b": 0}
    (tmp_path / model_registry.REGISTRY_FILE).write_text("[]")  # damaged: read as empty, not a crash
    assert registry.reference_counts() == {}
    (tmp_path / model_registry.REGISTRY_FILE).write_text('{"models": [], "other": 1}')  # a damaged value
    assert registry.reference_counts() == {}
    with registry.editing() as document:
        document.setdefault("models", {})["a"] = {"source": "", "holders": {"j1": {}}}
    assert registry.reference_counts() == {"a": 1}


GOOD_CLAIM = {"holder": "job#1", "models": ["alpha", "b.c-d_1"], "record": {"job": "j", "pid": 7, "ticks": 9}}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"holder": 12}, "holder"),
        ({"holder": "a\nb"}, "holder"),
        ({"holder": ""}, "holder"),
        ({"models": "alpha"}, "models"),
        ({"models": ["../../outside"]}, "models"),
        ({"models": ["a/b"]}, "models"),
        ({"models": ["a\r\nHost: x"]}, "models"),
        ({"models": [".."]}, "models"),
        ({"models": [7]}, "models"),
        ({"models": ["x" * 201]}, "models"),
        ({"record": ["pid", 1]}, "record"),
        ({"record": {"pid": "12"}}, "pid"),
        ({"record": {"pid": True}}, "pid"),
        ({"record": {"ticks": 1.5}}, "ticks"),
        ({"record": {"pid": -1}}, "pid"),
        ({"record": {"sandbox": 3}}, "sandbox"),
    ],
)
def test_a_claim_with_a_wrong_type_or_name_is_refused(change: dict[str, object], problem: str) -> None:
    assert model_registry.check_claim(dict(GOOD_CLAIM)) == ""
    assert problem in model_registry.check_claim({**GOOD_CLAIM, **change})


def test_a_claim_keeps_only_the_known_record_fields() -> None:
    claim = {**GOOD_CLAIM, "record": {"pid": 7, "ticks": 9, "since": 1.5, "extra": [1], "job": "j"}}
    assert model_registry.check_claim(claim) == ""
    assert claim["record"] == {"pid": 7, "ticks": 9, "since": 1.5, "job": "j"}


def test_a_huge_claim_file_is_not_read(tmp_path: Path) -> None:
    claim_dir = tmp_path / "execute" / "dir_1" / sandbox_protocol.JOB_DIR
    claim_dir.mkdir(parents=True)
    padding = " " * sandbox_protocol.MAX_CLAIM_BYTES
    (claim_dir / sandbox_protocol.CLAIM_FILE).write_text(f'{{"holder": "h", "models": []{padding}}}')
    assert [problem for _, _, problem in model_registry.claims(str(tmp_path / "execute"))] == [
        "not a JSON object (or too large)"
    ]


def test_a_model_lock_is_never_outside_the_locks_directory(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "triton"))
    for name in ("../../escaped", "a/b", "a\nb"):
        with pytest.raises(ValueError, match="is not a model name"), registry.model_lock(name, 1):
            pass
    assert list(tmp_path.rglob("*")) == []  # nothing created, inside or outside


def test_lock_and_registry_files_are_private(tmp_path: Path) -> None:
    os.umask(0o000)
    try:
        registry = Registry(str(tmp_path))
        with registry.model_lock("alpha", 1), registry.editing() as document:
            document["models"] = {}
        leave_claim(str(tmp_path / "sandbox"), "h", {}, ["alpha"])
    finally:
        os.umask(0o022)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in tmp_path.rglob("*")}
    del modes["sandbox"]  # HTCondor's
    assert modes == {
        model_registry.LOCK_FILE: 0o600,
        model_registry.REGISTRY_FILE: 0o600,
        model_registry.MODEL_LOCKS_DIR: 0o700,
        "alpha.lock": 0o600,
        sandbox_protocol.JOB_DIR: 0o700,
        sandbox_protocol.CLAIM_FILE: 0o600,
    }
