"""Port allocation: distinct free ports, fixed ports kept, the probe is only a hint."""

from __future__ import annotations

import socket

from glidein_triton.worker.ports import Ports, allocate, free_port, is_listening


def test_free_ports_are_distinct() -> None:
    ports = allocate(Ports(0, 0, 0))
    assert len({ports.http, ports.grpc, ports.metrics}) == 3
    assert all(1024 <= port <= 65535 for port in (ports.http, ports.grpc, ports.metrics))


def test_fixed_ports_are_kept_and_not_reused() -> None:
    answers = iter([9001, 9002, 9003])
    assert allocate(Ports(9001, 0, 0), probe=lambda: next(answers)) == Ports(9001, 9002, 9003)


def test_duplicate_probe_answers_are_skipped() -> None:
    answers = iter([5000, 5000, 5001, 5000, 5002])
    assert allocate(Ports(0, 0, 0), probe=lambda: next(answers)) == Ports(5000, 5001, 5002)


def test_is_listening() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert is_listening(port)
    assert not is_listening(port)
    assert not is_listening(free_port())
