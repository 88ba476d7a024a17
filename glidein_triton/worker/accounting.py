"""Usage accounting: per-model inference statistics over the glidein's life, as JSON and one log line.

Triton keeps statistics per loaded model (``GET /v2/models/stats``) and forgets them when a model is
unloaded or the server restarts. So the ledger ``usage.json`` in the plugin directory keeps what would be
lost: ``closed`` (models unloaded by the reaper, server lives ended by a crash) and ``last_seen`` (the
statistics of the last healthy periodic run, which become ``closed`` when the server is found dead).
At cleanup the totals are ``closed`` plus the live statistics (or ``last_seen`` when the server is gone),
written to ``<work dir>/triton/glidein_triton_accounting.json`` (the plugin's directory, which cleanup
leaves with the server log in it; GLIDEIN_TRITON_ACCOUNTING_FILE in glidein_config) and summed up in one line
of the glidein log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from glidein_triton.worker import glidein_paths, model_registry
from glidein_triton.worker.files import private_directory, write_atomically

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from glidein_triton.worker.state import ServerState

ACCOUNTING_FILE_NAME = "glidein_triton_accounting.json"
#: Counters kept per model: (name in the ledger, path in one entry of Triton's model_stats).
COUNTERS = (
    ("inference_count", ("inference_count",)),
    ("execution_count", ("execution_count",)),
    ("success_count", ("inference_stats", "success", "count")),
    ("success_ns", ("inference_stats", "success", "ns")),
    ("failure_count", ("inference_stats", "fail", "count")),
    ("failure_ns", ("inference_stats", "fail", "ns")),
    ("queue_ns", ("inference_stats", "queue", "ns")),
    ("compute_input_ns", ("inference_stats", "compute_input", "ns")),
    ("compute_infer_ns", ("inference_stats", "compute_infer", "ns")),
    ("compute_output_ns", ("inference_stats", "compute_output", "ns")),
)
Totals = dict[str, dict[str, int]]


def accounting_path(work_dir: Path) -> Path:
    """In the plugin's own directory, never in ``<work dir>/log``: the path is published at startup, and
    condor_startup.sh fails the glidein when it finds ``log`` without ``execute``."""
    return glidein_paths.plugin_dir(work_dir) / ACCOUNTING_FILE_NAME


def _counter(entry: Mapping[str, Any], path: tuple[str, ...]) -> int:
    value: Any = entry
    for key in path:
        value = value.get(key, {}) if isinstance(value, dict) else {}
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def model_totals(statistics: list[dict[str, Any]]) -> Totals:
    """Triton's model_stats entries summed per model name (over versions)."""
    totals: Totals = {}
    for entry in statistics:
        name = str(entry.get("name", ""))
        if name:
            counters = totals.setdefault(name, dict.fromkeys((key for key, _ in COUNTERS), 0))
            for key, path in COUNTERS:
                counters[key] += _counter(entry, path)
    return totals


def add(first: Totals, second: Totals) -> Totals:
    """Per-model sums of two totals."""
    result = {name: dict(counters) for name, counters in first.items()}
    for name, counters in second.items():
        target = result.setdefault(name, {})
        for key, value in counters.items():
            target[key] = target.get(key, 0) + int(value)
    return result


def everything(totals: Totals) -> dict[str, int]:
    """The counters summed over all models."""
    return {key: sum(counters.get(key, 0) for counters in totals.values()) for key, _ in COUNTERS}


class Usage:
    """The ledger ``usage.json`` (``closed`` and ``last_seen`` totals), edited under the registry's lock."""

    def __init__(self, registry: model_registry.Registry) -> None:
        self.registry = registry

    def record_seen(self, current: Totals) -> None:
        """A healthy periodic run: remember the live statistics, in case the server dies."""
        with self.registry.editing(model_registry.USAGE_FILE) as usage:
            usage["last_seen"] = current

    def close_life(self) -> None:
        """The server died: what was last seen of it is final."""
        with self.registry.editing(model_registry.USAGE_FILE) as usage:
            usage["closed"] = add(usage.get("closed", {}), usage.pop("last_seen", {}))

    def retire(self, model: str, current: Totals) -> None:
        """``model`` is about to be unloaded: its statistics are final."""
        with self.registry.editing(model_registry.USAGE_FILE) as usage:
            usage.get("last_seen", {}).pop(model, None)
            usage["closed"] = add(usage.get("closed", {}), {model: current.get(model, {})})

    def totals(self, current: Totals | None) -> Totals:
        """Everything so far: closed plus the live statistics (``last_seen`` when there are none)."""
        with self.registry.editing(model_registry.USAGE_FILE) as usage:
            closed, last_seen = usage.get("closed", {}), usage.get("last_seen", {})
        return add(closed, last_seen if current is None else current)


def report(state: ServerState, totals: Totals, complete: bool, now: float | None = None) -> dict[str, Any]:
    """The accounting document of one glidein's server."""
    stopped_at = time.time() if now is None else now
    started_at = state.launched_at or state.started_at
    models = {
        name: {
            **counters,
            "compute_seconds": round(
                (counters["compute_input_ns"] + counters["compute_infer_ns"] + counters["compute_output_ns"])
                / 1e9,
                6,
            ),
            "queue_seconds": round(counters["queue_ns"] / 1e9, 6),
        }
        for name, counters in sorted(totals.items())
    }
    return {
        "server": {
            "runtime": state.runtime,
            "gpus": state.gpus,
            "started_at": started_at,
            "stopped_at": stopped_at,
            "seconds": round(stopped_at - started_at, 3) if started_at else 0.0,
            "restarts": state.restarts,
            "http_port": state.http_port,
        },
        "complete": complete,
        "models": models,
        "totals": everything(totals),
    }


def summary_line(document: dict[str, Any], path: Path) -> str:
    """One line for the glidein log."""
    server = document["server"]
    totals = document["totals"]
    compute = (totals["compute_input_ns"] + totals["compute_infer_ns"] + totals["compute_output_ns"]) / 1e9
    per_model = " ".join(
        f"{name}={counters['success_count']}/{counters['failure_count']}"
        for name, counters in document["models"].items()
    )
    return (
        f"Triton accounting: server ran {server['seconds']:.0f} s on "
        f"{', '.join(server['gpus']) or 'CPU'}, {server['restarts']} restarts; "
        f"{totals['success_count']} requests ok, {totals['failure_count']} failed, "
        f"{totals['inference_count']} inferences, compute {compute:.3f} s, "
        f"queue {totals['queue_ns'] / 1e9:.3f} s; per model ok/failed: {per_model or 'none'}"
        f"{'' if document['complete'] else ' (server gone: counts up to its last periodic check)'}; {path}"
    )


def write(work_dir: Path, document: dict[str, Any]) -> Path:
    """Write the document where :func:`accounting_path` says; returns its path."""
    path = accounting_path(work_dir)
    private_directory(path.parent)
    write_atomically(path, (json.dumps(document, indent=1, sort_keys=True) + "\n").encode())
    return path
