"""The front door (glidein_triton.worker.door): only the glidein's uid gets through, idle connections
cost the door and not the server."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from glidein_triton.worker import door

from .support import AS_ROOT, OTHER_UID, PILOT_UID, as_user, echo_server, run_as, user_directory

CLIENT = (
    "import socket,sys;c=socket.create_connection(('127.0.0.1',int(sys.argv[1])),timeout=10);"
    "c.sendall(b'hi')\ntry: print(repr(c.recv(10)))\nexcept OSError as e: print(type(e).__name__)"
)


@contextlib.contextmanager
def pilot_door(route: str, home: Path) -> Iterator[subprocess.Popen[str]]:
    """The door with ``route``, run by the pilot in ``home``, once it says ready; stopped after."""
    process = subprocess.Popen(
        door.command("--route", route),
        stdout=subprocess.PIPE,
        text=True,
        cwd=home,
        **as_user(PILOT_UID),  # type: ignore[call-overload]
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield process
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_the_peer_is_the_socket_of_the_connecting_uid(family: int) -> None:
    """IPv4 and dual-stack (v4-mapped, as gRPC connects) client sockets are both found."""
    listener = door.listen("127.0.0.1", 0)
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.connect(
            ("::ffff:127.0.0.1" if family == socket.AF_INET6 else "127.0.0.1", listener.getsockname()[1])
        )
        connection, _ = listener.accept()
        assert door.peer_uid(connection) == __import__("os").getuid()
        connection.close()
    listener.close()


@pytest.mark.skipif(not AS_ROOT, reason="switches users")
def test_another_user_gets_nothing_and_idle_connections_stay_at_the_door() -> None:
    backend, accepted = echo_server()
    port = door.listen("127.0.0.1", 0)
    door_port = port.getsockname()[1]
    port.close()
    home = user_directory(PILOT_UID)
    route = f"127.0.0.1:{door_port}=127.0.0.1:{backend.getsockname()[1]}"
    try:
        with pilot_door(route, home):
            other = run_as(OTHER_UID, [sys.executable, "-c", CLIENT, str(door_port)])
            assert other.stdout.strip() in ("ConnectionResetError", "b''"), other
            idle = [socket.create_connection(("127.0.0.1", door_port)) for _ in range(1100)]
            pilot = run_as(PILOT_UID, [sys.executable, "-c", CLIENT, str(door_port)])
            assert pilot.stdout.strip() == "b'hi'", pilot
            assert accepted[0] == 1  # the idle connections never reached the server
            for connection in idle:
                connection.close()
    finally:
        shutil.rmtree(home)
        backend.close()


UNIX_CLIENT = (  # the door may close the connection before the client's bytes are sent
    "import socket,sys;c=socket.socket(socket.AF_UNIX);c.settimeout(10);c.connect(sys.argv[1])\n"
    "try: c.sendall(b'hi'); print(repr(c.recv(10)))\nexcept OSError as e: print(type(e).__name__)"
)


@pytest.mark.skipif(not AS_ROOT, reason="switches users")
def test_another_user_who_can_open_the_plugin_socket_gets_nothing() -> None:
    """The plugin's route is a Unix socket in a 0700 directory; should another uid reach it all the same
    (the directory and the socket opened to everyone here), the door checks its peer (``SO_PEERCRED``)
    and closes the connection before any byte is forwarded."""
    backend, accepted = echo_server()
    home = user_directory(PILOT_UID, 0o755)
    plugin_socket = home / "admin.sock"
    route = f"plugin@unix:{plugin_socket}=127.0.0.1:{backend.getsockname()[1]}"
    try:
        with pilot_door(route, home):
            assert plugin_socket.stat().st_mode & 0o777 == 0o600  # the door makes it the pilot's alone
            plugin_socket.chmod(0o666)
            other = run_as(OTHER_UID, [sys.executable, "-c", UNIX_CLIENT, str(plugin_socket)])
            assert other.stdout.strip() in ("ConnectionResetError", "BrokenPipeError", "b''"), other
            assert accepted[0] == 0
            pilot = run_as(PILOT_UID, [sys.executable, "-c", UNIX_CLIENT, str(plugin_socket)])
            assert pilot.stdout.strip() == "b'hi'", pilot
            assert accepted[0] == 1
    finally:
        shutil.rmtree(home)
        backend.close()
