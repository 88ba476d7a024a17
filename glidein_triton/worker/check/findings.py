"""Findings of the node check, and their table, JSON and exit code."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

OK = "ok"
INFO = "info"
WARN = "warn"
FAIL = "fail"
STATUSES = (OK, INFO, WARN, FAIL)

#: Exit codes: Triton can run (warnings allowed), it cannot, or the command was used wrongly.
EXIT_CAN_RUN = 0
EXIT_CANNOT_RUN = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class Finding:
    """One check's outcome: ``fail`` means Triton cannot run here; ``warn`` means it can, with a caveat."""

    check: str
    status: str
    summary: str
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}: use one of {', '.join(STATUSES)}")


def can_run(findings: Sequence[Finding]) -> bool:
    return all(finding.status != FAIL for finding in findings)


def exit_code(findings: Sequence[Finding]) -> int:
    return EXIT_CAN_RUN if can_run(findings) else EXIT_CANNOT_RUN


def _with(findings: Sequence[Finding], status: str) -> list[Finding]:
    return [finding for finding in findings if finding.status == status]


def verdict(findings: Sequence[Finding]) -> str:
    """One line: can Triton run, with the counts of failures and warnings."""
    failures, warnings = len(_with(findings, FAIL)), len(_with(findings, WARN))
    counts = f"{failures} failure{'s' * (failures != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    if failures:
        return f"Triton cannot run on this node ({counts})"
    return f"Triton can run on this node ({counts})"


def table(findings: Sequence[Finding], title: str) -> str:
    """A readable report: every check in a table, then the failures and the warnings on their own."""
    width = max([len("CHECK"), *(len(finding.check) for finding in findings)])
    lines = [title, "", f"{'STATUS':<7} {'CHECK':<{width}} RESULT"]
    for finding in findings:
        status = finding.status.upper() if finding.status in (WARN, FAIL) else finding.status
        lines.append(f"{status:<7} {finding.check:<{width}} {finding.summary}")
        lines += [f"{'':<7} {'':<{width}}   {note}" for note in finding.notes]
    for status, heading in (
        (FAIL, "Failures (Triton cannot run until they are fixed):"),
        (WARN, "Warnings:"),
    ):
        chosen = _with(findings, status)
        if chosen:
            lines += ["", heading]
            lines += [f"  - {finding.check}: {finding.summary}" for finding in chosen]
    lines += ["", verdict(findings) + "."]
    return "\n".join(lines) + "\n"


def as_json(findings: Sequence[Finding], extra: dict[str, object]) -> str:
    """The machine-readable report: ``can_run``, the checks, and the names of failed and warned checks."""
    document: dict[str, object] = {
        "can_run": can_run(findings),
        "exit_code": exit_code(findings),
        **extra,
        "failures": [finding.check for finding in _with(findings, FAIL)],
        "warnings": [finding.check for finding in _with(findings, WARN)],
        "checks": [{**asdict(finding), "notes": list(finding.notes)} for finding in findings],
    }
    return json.dumps(document, indent=2) + "\n"
