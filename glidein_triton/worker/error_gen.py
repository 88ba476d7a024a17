"""Reporting a script's result through GlideinWMS's error_gen (``ERROR_GEN_PATH``)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping, Sequence

from glidein_triton.worker.commands import run_quietly

LOG = logging.getLogger(__name__)

FAILURE_TYPES = ("WN_Resource", "Network", "Config", "VO_Config", "Corruption", "VO_Proxy")
MAX_DETAIL = 3000


def xml_escape(text: str) -> str:
    """error_gen.sh writes its arguments into XML as they are: escape ``& < >`` first."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def shorten(text: str, limit: int = MAX_DETAIL) -> str:
    """At most ``limit`` characters: the start (message, command) and the end (the log's last lines)."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 5
    return f"{text[:head]}\n[...]\n{text[-(limit - head) :]}"


class Reporter:
    """Calls ``error_gen -ok|-error`` for one script; with no error_gen it only logs."""

    def __init__(self, error_gen: str, script_name: str) -> None:
        self.error_gen = error_gen
        self.script_name = script_name

    @classmethod
    def from_config(cls, config: Mapping[str, str], script_name: str) -> Reporter:
        return cls(config.get("ERROR_GEN_PATH", "").strip(), script_name)

    def ok(self, metrics: Sequence[tuple[str, str]] = ()) -> None:
        self._call(["-ok", self.script_name, *self._flatten(metrics)])

    def error(self, failure_type: str, detail: str, metrics: Sequence[tuple[str, str]] = ()) -> None:
        if failure_type not in FAILURE_TYPES:
            raise ValueError(f"error_gen failure type {failure_type!r} is not one of {FAILURE_TYPES}")
        escaped = xml_escape(shorten(detail))
        self._call(["-error", self.script_name, failure_type, escaped, *self._flatten(metrics)])

    @staticmethod
    def _flatten(metrics: Sequence[tuple[str, str]]) -> list[str]:
        return [xml_escape(word) for pair in metrics for word in pair]

    def _call(self, arguments: list[str]) -> None:
        if not self.error_gen:
            LOG.warning("no ERROR_GEN_PATH in glidein_config; result not reported: %s", arguments[:3])
            return
        try:
            result = run_quietly([self.error_gen, *arguments], timeout=30)
        except (OSError, subprocess.TimeoutExpired) as error:
            LOG.error("error_gen %s could not run: %s", self.error_gen, error)
            return
        if result.returncode != 0:
            LOG.error("error_gen exited with %d: %s", result.returncode, result.stderr.strip())
