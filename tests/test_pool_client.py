"""The job's side of pool mode (glidein_triton/job/pool.py, connect(pool=True)) without servers: pool.json,
the filters, the power of two choices with an injected random source and clock, failover and fall-backs."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as grpcclient

from glidein_triton.job import client as job_client
from glidein_triton.job import pool
from glidein_triton.worker import sandbox_protocol


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Status(Exception):
    """What tritonclient raises: an InferenceServerException with status()."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def status(self) -> str:
        return self.code


UNAVAILABLE = "StatusCode.UNAVAILABLE"


class Fake:
    """A server's client: answers its name, or raises what the test set."""

    def __init__(self, url: str, log: list[str], failing: dict[str, Exception]) -> None:
        self.url, self.log, self.failing = url, log, failing
        self.closed = False

    def infer(self, model: str = "") -> str:
        self.log.append(self.url)
        if self.url in self.failing:
            raise self.failing[self.url]
        return self.url

    is_server_ready = infer

    def close(self) -> None:
        self.closed = True


def servers(*specs: tuple[str, float]) -> list[pool.PoolServer]:
    return [
        pool.PoolServer(url=url, name=url, ca_pem="CA", models=("m",), queue_time_ms=q) for url, q in specs
    ]


def make_pool(
    found: list[pool.PoolServer], local: str = "", seed: int = 1
) -> tuple[pool.PoolClient, list[str], dict[str, Exception], Clock]:
    log: list[str] = []
    failing: dict[str, Exception] = {}
    clock = Clock()
    chooser = pool.Chooser(found, rng=random.Random(seed), clock=clock, wall_clock=clock)  # noqa: S311
    client = pool.PoolClient(
        found,
        local,
        b"key",
        chooser=chooser,
        make_client=lambda s, _k: Fake(s.url, log, failing),
        clock=clock,
    )
    return client, log, failing, clock


def test_the_lower_published_queue_time_wins_the_two_choices() -> None:
    client, log, _failing, _clock = make_pool(servers(("a:1", 500.0), ("b:1", 1.0)))
    for _ in range(20):
        client.infer("m")
    assert log == ["b:1"] * 20


def test_measured_latency_counts_with_the_published_queue_time() -> None:
    a, b = servers(("a:1", 0.0), ("b:1", 0.0))
    a.measured(50.0)
    b.measured(5.0)
    chooser = pool.Chooser([a, b], rng=random.Random(3))  # noqa: S311
    assert {chooser.pick().url for _ in range(10)} == {"b:1"}  # type: ignore[union-attr]
    b.measured(500.0)  # b got slow: its mean moves towards it
    assert b.latency_ms == pytest.approx(0.3 * 500 + 0.7 * 5)
    assert {chooser.pick().url for _ in range(10)} == {"a:1"}  # type: ignore[union-attr]


def test_two_choices_spread_work_over_equal_servers() -> None:
    client, log, _failing, _clock = make_pool(servers(("a:1", 1.0), ("b:1", 1.0), ("c:1", 1.0)), seed=5)
    for _ in range(60):
        client.infer("m")
    assert {url: log.count(url) for url in set(log)}.keys() == {"a:1", "b:1", "c:1"}


def test_a_failed_server_is_blocked_for_a_while_then_used_again() -> None:
    client, log, failing, clock = make_pool(servers(("a:1", 1.0), ("b:1", 2.0)))
    failing["a:1"] = Status(UNAVAILABLE, "failed to connect to all addresses")
    assert client.infer("m") == "b:1"
    assert log == ["a:1", "b:1"]
    del failing["a:1"]
    clock.now += pool.BLOCK_SECONDS - 1
    assert client.infer("m") == "b:1"  # still blocked
    clock.now += 2
    assert client.infer("m") == "a:1"


def test_queue_full_and_deadline_fail_over_but_a_restricted_call_does_not() -> None:
    client, _log, failing, _clock = make_pool(servers(("a:1", 1.0), ("b:1", 2.0)))
    failing["a:1"] = Status(UNAVAILABLE, "Exceeds maximum queue size")
    assert client.infer("m") == "b:1"
    failing["b:1"] = Status(UNAVAILABLE, "This protocol is restricted, expecting header 'x'")
    with pytest.raises(Status, match="restricted"):
        client.infer("m")
    failing["b:1"] = Status("StatusCode.INVALID_ARGUMENT", "bad input")
    with pytest.raises(Status, match="bad input"):
        client.infer("m")
    client2, _log, failing2, _clock = make_pool(servers(("a:1", 1.0), ("b:1", 2.0)))
    failing2["a:1"] = Status("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded")
    assert client2.infer("m") == "b:1"


def test_without_pool_servers_the_glidein_s_own_then_the_job_s_cpu() -> None:
    client, log, failing, _clock = make_pool(servers(("a:1", 1.0)), local="127.0.0.1:9")
    failing["a:1"] = Status(UNAVAILABLE, "connection refused")
    assert client.infer("m") == "127.0.0.1:9"
    failing["127.0.0.1:9"] = Status(UNAVAILABLE, "Socket closed")
    client.chooser.servers[0].blocked_until = 0
    with pytest.raises(pool.PoolUnavailableError, match="run on the job's CPU") as raised:
        client.infer("m")
    assert isinstance(raised.value, job_client.NoServerError)
    assert "a:1 (a:1): connection refused" in str(raised.value)
    assert log == ["a:1", "127.0.0.1:9", "a:1", "127.0.0.1:9"]


def test_draining_servers_and_other_sites_wait_for_the_same_site_ones() -> None:
    clock = Clock(10_000.0)
    near, far, draining = servers(("near:1", 100.0), ("far:1", 0.0), ("drain:1", 0.0))
    near.same_site = draining.same_site = True
    draining.drain_time = int(clock.now + pool.DRAIN_MARGIN - 1)
    chooser = pool.Chooser([near, far, draining], rng=random.Random(0), clock=clock, wall_clock=clock)  # noqa: S311
    assert [chooser.pick() for _ in range(5)] == [near] * 5
    near.blocked_until = clock.now + 1
    assert chooser.pick() is far  # no same-site server left
    draining.drain_time = int(clock.now + pool.DRAIN_MARGIN + 5)
    assert chooser.pick() is draining


def test_servers_are_kept_by_model_and_accepting() -> None:
    found = [
        pool.PoolServer(url="a:1", models=("m", "n")),
        pool.PoolServer(url="b:1", models=("m",)),
        pool.PoolServer(url="c:1", models=("m", "n"), accepting=False),
    ]
    assert [s.url for s in pool.serving(found, ["m", "n"])] == ["a:1"]
    assert [s.url for s in pool.serving(found, [])] == ["a:1", "b:1"]


def write_pool_file(scratch: Path, document: dict[str, Any]) -> None:
    directory = scratch / sandbox_protocol.JOB_DIR
    directory.mkdir(parents=True, exist_ok=True)
    (directory / sandbox_protocol.POOL_FILE).write_text(json.dumps(document))


def test_connect_pool_reads_pool_json_and_falls_back_when_nothing_answers(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"KEY")
    entry = {"url": "a:1", "name": "A", "ca_pem": "CA", "client_cert_pem": "C", "models": ["m"]}
    write_pool_file(
        tmp_path, {"version": 1, "pool": "p", "local": "", "client_key": str(key), "servers": [entry]}
    )
    environment = {"_CONDOR_SCRATCH_DIR": str(tmp_path)}
    made: list[tuple[str, bytes]] = []

    def make(server: pool.PoolServer, secret: bytes) -> Fake:
        made.append((server.url, secret))
        return Fake(server.url, [], {})

    connected = job_client.connect(pool=True, models=["m"], environment=environment, make_client=make)
    assert isinstance(connected, pool.PoolClient)
    assert made == [("a:1", b"KEY")]
    assert connected.current is not None
    assert connected.current.name == "A"
    # no server serves model x, the glidein has none of its own: the fallback runs
    used = job_client.connect(pool=True, models=["x"], environment=environment, fallback=str)
    assert "run on the job's CPU" in used
    with pytest.raises(pool.PoolError, match="is this a job of a pool client glidein"):
        job_client.connect(pool=True, environment={"_CONDOR_SCRATCH_DIR": str(tmp_path / "none")})


def test_given_channel_arguments_keep_tritonclient_s_message_size_limits() -> None:
    limit = grpcclient.MAX_GRPC_MESSAGE_SIZE
    assert pool.with_message_sizes(None) is None
    assert pool.with_message_sizes([("grpc.max_send_message_length", 10), ("grpc.lb_policy_name", "x")]) == [
        ("grpc.max_send_message_length", 10),
        ("grpc.lb_policy_name", "x"),
        ("grpc.max_receive_message_length", limit),
    ]


def test_a_stream_stays_on_the_server_it_started_on() -> None:
    client, log, failing, _clock = make_pool(servers(("a:1", 1.0), ("b:1", 2.0)))
    calls: list[tuple[str, str]] = []
    for method in pool.STREAM_METHODS:
        setattr(Fake, method, lambda self, *a, _m=method, **k: calls.append((_m, self.url)))
    try:
        client.start_stream(callback=print)
        failing["a:1"] = Status(UNAVAILABLE, "Socket closed")
        assert client.infer("m") == "b:1"  # other calls fail over
        client.async_stream_infer("m", [])
        client.stop_stream()
        assert calls == [("start_stream", "a:1"), ("async_stream_infer", "a:1"), ("stop_stream", "a:1")]
    finally:
        for method in pool.STREAM_METHODS:
            delattr(Fake, method)
    assert client.stream is None
    assert log[0] == "a:1"  # the readiness call that chose the stream's server


def test_when_its_servers_are_gone_the_job_takes_the_pool_file_the_agent_rewrote(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"KEY")
    entry = {"url": "a:1", "name": "A", "ca_pem": "CA", "client_cert_pem": "C", "models": ["m"]}
    document = {"version": 1, "pool": "p", "local": "", "client_key": str(key), "servers": [entry]}
    write_pool_file(tmp_path, document)
    log: list[str] = []
    failing: dict[str, Exception] = {"a:1": Status(UNAVAILABLE, "Connection reset by peer")}
    directory = tmp_path / sandbox_protocol.JOB_DIR
    found = pool.pool_client(directory, ["m"], make_client=lambda s, k: Fake(s.url, log, failing))
    with pytest.raises(pool.PoolUnavailableError):
        found.infer("m")  # the file is the one it read
    entry_b = {**entry, "url": "b:1", "name": "B", "models": ["m", "n"]}
    write_pool_file(
        tmp_path, {**document, "servers": [entry, entry_b, {**entry_b, "url": "c:1", "models": ["n"]}]}
    )
    os.utime(directory / sandbox_protocol.POOL_FILE, ns=(1, 1))  # a new version whatever the clock's grain
    assert found.infer("m") == "b:1"
    assert [server.url for server in found.chooser.servers] == ["a:1", "b:1"]  # c serves no m
    assert found.chooser.servers[0].blocked_until > 0  # a is still blocked: what the job saw of it stays
    assert log == ["a:1", "b:1"]


def test_models_the_glidein_could_not_load_leave_the_pool_without_its_own_server(tmp_path: Path) -> None:
    # the job ad asked the glidein for a model its own server does not have: the pool serves it
    (tmp_path / ".machine.ad").write_text("HasTriton = true\n")
    write_pool_file(
        tmp_path, {"version": 1, "pool": "p", "local": "127.0.0.1:9", "client_key": "", "servers": []}
    )
    answer = sandbox_protocol.Answer.of([], {"big": "not a model of the glidein's repository"}, False, True)
    (tmp_path / sandbox_protocol.JOB_DIR / sandbox_protocol.ANSWER_FILE).write_text(answer.text())
    environment = {"_CONDOR_SCRATCH_DIR": str(tmp_path), "_CONDOR_MACHINE_AD": str(tmp_path / ".machine.ad")}
    log: list[str] = []

    def make(server: pool.PoolServer, _key: bytes) -> Fake:
        return Fake(server.url, log, {})

    with pytest.raises(pool.PoolUnavailableError, match="run on the job's CPU"):
        job_client.connect(pool=True, models=["big"], environment=environment, make_client=make, timeout=1)
    assert log == []  # not the glidein's own server: it has no such model
    found = job_client.connect(
        pool=True, models=["small"], environment=environment, make_client=make, timeout=1
    )
    assert found.current.url == "127.0.0.1:9"
