"""Accounting: Triton's statistics summed per model, kept across unloads and restarts, written at cleanup."""

from __future__ import annotations

import json
from pathlib import Path

from glidein_triton.worker import accounting
from glidein_triton.worker.model_registry import Registry
from glidein_triton.worker.state import ServerState

#: One entry of GET /v2/models/stats, as tritonserver 2.51 answered in this project's tests.
STATISTICS = json.loads(
    '{"model_stats":[{"name":"m1","version":"1","last_inference":1795568937953,"inference_count":3,'
    '"execution_count":3,"inference_stats":{"success":{"count":3,"ns":17514047},"fail":{"count":1,'
    '"ns":1025029},"queue":{"count":3,"ns":83329},"compute_input":{"count":3,"ns":118641},'
    '"compute_infer":{"count":3,"ns":17226652},"compute_output":{"count":3,"ns":78730},'
    '"cache_hit":{"count":0,"ns":0},"cache_miss":{"count":0,"ns":0}},"response_stats":{},'
    '"batch_stats":[],"memory_usage":[]},'
    '{"name":"m1","version":"2","inference_count":1,"inference_stats":{"success":{"count":1,"ns":5}}},'
    '{"name":"simple","version":"1","inference_count":0,"execution_count":0,"inference_stats":{}}]}'
)["model_stats"]


def test_model_totals_sum_versions() -> None:
    totals = accounting.model_totals(STATISTICS)
    assert totals["m1"]["inference_count"] == 4
    assert totals["m1"]["success_count"] == 4
    assert totals["m1"]["success_ns"] == 17514052
    assert totals["m1"]["failure_count"] == 1
    assert totals["m1"]["queue_ns"] == 83329
    assert totals["m1"]["compute_infer_ns"] == 17226652
    assert set(totals["simple"].values()) == {0}


def test_ledger_keeps_unloaded_models_and_dead_servers(tmp_path: Path) -> None:
    usage = accounting.Usage(Registry(str(tmp_path)))
    first_life = accounting.model_totals(STATISTICS)
    usage.record_seen(first_life)
    usage.retire("simple", first_life)  # the reaper unloads it
    usage.close_life()  # the server died: what was last seen is final
    second_life = {"m1": {"success_count": 2, "inference_count": 2}}
    totals = usage.totals(second_life)
    assert totals["m1"]["success_count"] == 6
    assert totals["m1"]["failure_count"] == 1
    assert totals["simple"]["success_count"] == 0  # counted once, not once per step
    usage.record_seen(second_life)
    assert usage.totals(None)["m1"]["success_count"] == 6  # the server is gone: its last check counts


def test_report_and_summary_line(tmp_path: Path) -> None:
    state = ServerState(runtime="process", launched_at=1000.0, started_at=1500.0, restarts=1, http_port=8000)
    state.gpus = ["NVIDIA A100 (GPU-1)"]
    totals = accounting.model_totals(STATISTICS)
    document = accounting.report(state, totals, complete=False, now=4600.0)
    assert document["server"]["seconds"] == 3600.0
    assert document["server"]["restarts"] == 1
    assert document["models"]["m1"]["compute_seconds"] == round((118641 + 17226652 + 78730) / 1e9, 6)
    assert document["totals"]["success_count"] == 4
    path = accounting.write(tmp_path, document)
    assert path == tmp_path / "triton" / "glidein_triton_accounting.json"
    assert json.loads(path.read_text()) == document
    line = accounting.summary_line(document, path)
    assert "\n" not in line
    assert line.startswith("Triton accounting: server ran 3600 s on NVIDIA A100 (GPU-1), 1 restarts; ")
    assert "4 requests ok, 1 failed" in line
    assert "m1=4/1 simple=0/0" in line
    assert "(server gone: counts up to its last periodic check)" in line
