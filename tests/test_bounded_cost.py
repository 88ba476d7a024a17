"""What a request without any credential may cost the glidein (issue 22, item 5), on the real server.

Four 1 GiB gRPC requests crashed the server under its memory limit and used up the periodic
script's restarts for the rest of the glidein: restarts are now a rate (GLIDEIN_TRITON_RESTART_WINDOW).
Refused HTTP requests left the server's memory high, unreported: it is published, and an idle server
restarted (GLIDEIN_TRITON_IDLE_MEMORY_GROWTH).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from glidein_triton.worker import glidein_paths, processes

from .support import assert_nothing_left, recorded_state
from .test_security import OVERSIZED_BODY, limited_glidein, post_infer

pytestmark = pytest.mark.server


def crash(port: int, pid: int, ticks: int) -> None:
    """Send the 1 GiB gRPC request that ends a server limited below it, and wait until it has ended."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", -1)])
    request = service_pb2.ModelInferRequest(model_name="simple", raw_input_contents=[bytes(OVERSIZED_BODY)])
    with pytest.raises(grpc.RpcError):
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    channel.close()
    deadline = time.monotonic() + 30
    while processes.is_running(pid, ticks) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes.is_running(pid, ticks), "the server survived the request"


def edit_state(path: Path, **values: object) -> None:
    """Change the state file as the settings (or the passing of time) would have (it stays 0600)."""
    document = json.loads(path.read_text())
    document.update(values)
    path.write_bytes(json.dumps(document).encode())


def test_requests_that_crash_the_server_do_not_use_up_its_restarts(tmp_path: Path) -> None:
    prepared = limited_glidein(tmp_path / "glidein")
    glidein = prepared.glidein
    path = glidein_paths.state_file(glidein.root)
    edit_state(path, restart_limit=2, restart_backoff=0, restart_window=3600)
    state = recorded_state(glidein)
    try:
        assert state is not None
        for attack in range(3):
            crash(state.grpc_port, state.pid, state.start_ticks)
            (run,) = glidein.run_cron(prepared.environment)
            state = recorded_state(glidein)
            assert state is not None
            if attack < 2:
                assert run.attributes["TritonReady"] == "True", run.stderr
            else:  # the limit of the window: down for now, not for good (jobs still match HasTriton)
                assert run.attributes["TritonReady"] == "False"
                assert run.attributes["HasTriton"] == "True"
                assert run.attributes["TritonFailure"] == '""'
                assert "restart limit reached (2 in the last 3600 s" in run.stderr
        # An hour later (the state file's clock, not a sleep), the restarts are given back.
        times = json.loads(path.read_text())["restart_times"]
        edit_state(path, restart_times=[moment - 3600 for moment in times])
        (run,) = glidein.run_cron(prepared.environment)
        assert run.attributes["TritonReady"] == "True", run.stderr
        assert run.attributes["TritonRestarts"] == "3"
        state = recorded_state(glidein)
    finally:
        glidein.run_cleanup(prepared.environment)
    assert_nothing_left(glidein, state)


def test_memory_left_by_refused_requests_is_published_and_an_idle_server_restarted(tmp_path: Path) -> None:
    """A 1 GiB HTTP request cut off at the memory limit leaves the server's memory high (malloc keeps it)."""
    prepared = limited_glidein(tmp_path / "glidein")
    glidein = prepared.glidein
    edit_state(glidein_paths.state_file(glidein.root), idle_memory_growth=100, restart_backoff=0)
    state = recorded_state(glidein)
    try:
        assert state is not None
        for _ in range(3):  # now and then (2 in 41 here) the cut-off request ends the server instead
            (run,) = glidein.run_cron(prepared.environment)  # (a restart after such a crash: counted)
            assert run.attributes["TritonReady"] == "True", run.stderr
            state = recorded_state(glidein)
            assert state is not None
            before = int(run.attributes["TritonResidentMemoryMB"])
            with pytest.raises(OSError, match=r"reset|Broken pipe|closed connection"):
                post_infer(state.http_port, bytes(OVERSIZED_BODY))
            time.sleep(0.5)
            if processes.is_running(state.pid, state.start_ticks):
                break
        (run,) = glidein.run_cron(prepared.environment)
        high = int(run.attributes["TritonResidentMemoryMB"])
        assert high > before + 100, f"resident {before} MiB before the request, {high} MiB after"
        restarts = run.attributes["TritonRestarts"]
        assert recorded_state(glidein).pid == state.pid  # type: ignore[union-attr]  # once is not "stays"
        (run,) = glidein.run_cron(prepared.environment)  # the second run in a row: restarted
        restarted = recorded_state(glidein)
        assert restarted is not None
        assert restarted.pid != state.pid, run.stderr
        assert run.attributes["TritonRestarts"] == restarts  # not counted against the restart limit
        assert "not counted as a restart" in (glidein.root / "exit_message").read_text()
        (run,) = glidein.run_cron(prepared.environment)
        assert run.attributes["TritonReady"] == "True", run.stderr
        assert int(run.attributes["TritonResidentMemoryMB"]) < high - 100
        state = restarted
    finally:
        glidein.run_cleanup(prepared.environment)
    assert_nothing_left(glidein, state)
