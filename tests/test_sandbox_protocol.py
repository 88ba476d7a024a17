"""The agent <-> job sandbox protocol: the answer's writer and parser, and the pre-job scripts' copies of its
names (POSIX sh cannot import it) kept equal to the module."""

from __future__ import annotations

import re
import subprocess

import pytest

from glidein_triton.worker import sandbox_protocol as protocol
from glidein_triton.worker import settings
from glidein_triton.worker.install import SCRIPTS_DIR

PREJOB = (SCRIPTS_DIR / "glidein_triton_prejob.sh").read_text()
PREJOB_ENV = (SCRIPTS_DIR / "glidein_triton_prejob_env.sh").read_text()


def assigned(script: str, name: str) -> str:
    """The value of the one ``name=value`` line of ``script`` (quotes dropped)."""
    values = re.findall(rf"^{name}=(\S+)", script, re.MULTILINE)
    assert len(values) == 1, f"{name}: {values}"
    return values[0].strip('"')


def test_the_pre_job_spells_the_modules_names() -> None:
    assert assigned(PREJOB, "job_dir") == f"${{_CONDOR_SCRATCH_DIR:-.}}/{protocol.JOB_DIR}"
    assert assigned(PREJOB, "answer") == f"$job_dir/{protocol.ANSWER_FILE}"
    assert assigned(PREJOB, "pending") == f"$job_dir/{protocol.PENDING_FILE}"
    assert int(assigned(PREJOB, "DEFAULT_ANSWER_WAIT")) == protocol.DEFAULT_ANSWER_WAIT
    assert f"^{protocol.STATUS}=" in PREJOB
    assert f'[ "$name" = {protocol.ERRORS} ]' in PREJOB
    assert f'[ "$status" != {protocol.STATUS_REQUIRED_FAILED} ]' in PREJOB
    # No other copy of a name: each file name once in the code, in its assignment.
    code = "\n".join(line for line in PREJOB.splitlines() if not line.lstrip().startswith("#"))
    for name in (protocol.JOB_DIR, protocol.ANSWER_FILE, protocol.PENDING_FILE):
        assert len(re.findall(rf"/{re.escape(name)}(?![\w.])", code)) == 1, name
    assert len(re.findall(rf"\b{protocol.DEFAULT_ANSWER_WAIT}\b", code)) == 1


def test_the_sourced_pre_job_exports_the_modules_variables() -> None:
    assert (
        assigned(PREJOB_ENV, "glidein_triton_dir")
        == f"${{_CONDOR_SCRATCH_DIR:-/nonexistent}}/{protocol.JOB_DIR}"
    )
    assert PREJOB_ENV.count(f"$glidein_triton_dir/{protocol.ANSWER_FILE}") == 2
    exported = re.search(r"^\s*(TRITON_\S+(?: \| TRITON_\S+)*)\)$", PREJOB_ENV, re.MULTILINE)
    assert exported is not None
    assert tuple(exported.group(1).split(" | ")) == protocol.EXPORTED
    assert f'[ "$TRITON_MODELS_STATUS" = {protocol.STATUS_REQUIRED_FAILED} ]' in PREJOB_ENV


def test_the_default_wait_is_the_default_load_timeout_and_the_margin() -> None:
    assert settings.default_value("load_timeout") + protocol.ANSWER_MARGIN == protocol.DEFAULT_ANSWER_WAIT
    assert protocol.pending_text(300.0 + protocol.ANSWER_MARGIN) == "330\n"


@pytest.mark.parametrize(
    ("failed", "required", "asked", "status"),
    [
        ({}, True, True, "ready"),
        ({"b": "x"}, False, True, "failed"),
        ({"b": "x"}, True, True, "required-failed"),
        ({}, True, False, "none"),
    ],
)
def test_the_status_says_what_came_of_the_request(
    failed: dict[str, str], required: bool, asked: bool, status: str
) -> None:
    assert protocol.Answer.of(["a"], failed, required, asked).status == status


def test_per_model_errors_come_back_as_written_whatever_they_hold() -> None:
    failed = {"b": "refused; c: by policy\n  twice", "c": "", "d": "x: y"}
    answer = protocol.Answer.of(["a", "e"], failed, required=False, asked=True)
    text = answer.text()
    lines = text.splitlines()
    assert lines[:4] == [
        "TRITON_MODELS_READY=a,e",
        "TRITON_MODELS_FAILED=b,c,d",
        "TRITON_MODELS_STATUS=failed",
        "TRITON_MODELS_ERRORS=b: refused; c: by policy twice; c: ; d: x: y",
    ]
    parsed = protocol.parse_answer(text)
    assert parsed == answer
    assert dict(parsed.failed) == {"b": "refused; c: by policy twice", "c": "", "d": "x: y"}
    assert parsed.ready == ("a", "e")


def test_the_pre_jobs_own_answer_reads_as_every_model_failed() -> None:
    """The pre-job writes an answer itself when the agent never answers: parsed with its reason."""
    printf = re.search(r"printf '(TRITON_MODELS_READY=[^']*)'", PREJOB)
    assert printf is not None
    text = subprocess.run(
        ["sh", "-c", f"printf '{printf.group(1)}' 'no answer: late'"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    answer = protocol.parse_answer(text)
    assert answer.status == protocol.STATUS_FAILED
    assert dict(answer.failed) == {"all": "no answer: late"}
    assert answer.ready == ()
