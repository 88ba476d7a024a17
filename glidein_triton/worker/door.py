"""The front door: loopback TCP listeners that admit only the glidein's uid and forward to the server.

A loopback connection's peer is a socket of this node, and the kernel's socket tables (``/proc/net/tcp``,
``/proc/net/tcp6``) give the uid that owns it: the row whose local address is our peer's address and whose
remote address is ours. A connection whose peer is not ``uid`` (or is not found: a closed or TIME_WAIT
socket shows no owner) is closed at once, before any byte is read or forwarded, so another user gets
nothing, not even health. Admitted connections are forwarded byte for byte to the server's own address
(a Unix socket or a TCP address) by two threads, one per direction.

What a connection may cost before it speaks is bounded: the door connects to the server only once the
client has sent its first bytes (every HTTP and gRPC client speaks first), an admitted connection that
stays silent for ``first_bytes_timeout`` seconds is closed, and at most ``max_connections`` are forwarded
at once (more are closed). Idle connections thus use the door's descriptors, never the server's.

Each route has a kind. A *job route* (``grpc``, ``http``, ``metrics``) passes every connection through the
filter of that protocol (:mod:`grpc_filter`, :mod:`http_filter`): jobs get health, metadata, inference,
model configuration, statistics and the repository index, never a model load, shared memory, trace or
logging settings. The *plugin route* (``plugin``) is a Unix socket in the plugin's 0700 directory, for the
plugin's own programs (agent, periodic, cleanup, startup): its peers are checked by ``SO_PEERCRED`` and it
is not filtered. A ``remote`` route admits peers of other nodes (remote mode: the server's gRPC with its
own mutual TLS, forwarded as it is); a ``raw`` route forwards unfiltered (tests and benchmarks).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import importlib
import json
import os
import resource
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from glidein_triton.worker.door_filter import Chunk, ConnectionFilter
from glidein_triton.worker.files import short_unix_path

SOCKET_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
BUFFER_SIZE = 1 << 18
ACCEPT_BATCH = 256
DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_FIRST_BYTES_TIMEOUT = 10.0
UNIX_PREFIX = "unix:"
#: A listener inherited across the door's exec into its namespace: ``fd:N``
INHERITED_PREFIX = "fd:"
ROUTE_KINDS = ("grpc", "http", "metrics", "plugin", "raw", "remote")
#: Filter of each job route: (module of glidein_triton.worker, its ConnectionFilter class, class arguments)
FILTERS: dict[str, tuple[str, str, dict[str, object]]] = {
    "grpc": ("grpc_filter", "GrpcFilter", {}),
    "http": ("http_filter", "HttpFilter", {}),
    "metrics": ("http_filter", "metrics_filter", {}),
}
PROGRAM = "glidein-triton-door"
CODE_ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from glidein_triton.worker.door import run; run()"
)
UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--"]
NO_NAMESPACE = "no user and network namespace of its own for the server (unshare -rn)"
NO_NAMESPACE_EXIT = 78
CANNOT_LISTEN = "cannot listen on"
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def table_address(host: str, port: int) -> str:
    """``host:port`` as the kernel's socket tables print it (each 32-bit word in host order, in hex)."""
    if ":" in host:
        packed = socket.inet_pton(socket.AF_INET6, host)
        words = struct.unpack("=4I", packed)
    else:
        words = struct.unpack("=I", socket.inet_aton(host))
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"


def read_table(table: str | int) -> str:
    """A socket table by path, or from the start of a descriptor opened on it (in another namespace)."""
    if isinstance(table, str):
        return Path(table).read_text()
    os.lseek(table, 0, os.SEEK_SET)
    chunks: list[bytes] = []
    while True:
        chunk = os.read(table, 1 << 16)
        if not chunk:
            return b"".join(chunks).decode()
        chunks.append(chunk)


def socket_owners(tables: Iterable[str | int] = SOCKET_TABLES) -> dict[tuple[str, str], int]:
    """(local, remote) address pair of every TCP socket of the tables' network namespace -> its owner."""
    owners: dict[tuple[str, str], int] = {}
    for table in tables:
        try:
            rows = read_table(table).splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 7:
                owners[(fields[1], fields[2])] = int(fields[7])
    return owners


def peer_keys(connection: socket.socket) -> list[tuple[str, str]]:
    """The socket-table keys ``connection``'s peer socket may have: its local address is our remote one,
    as an IPv4 row or, for a dual-stack client socket (gRPC's), a v4-mapped IPv6 row."""
    peer, ours = connection.getpeername(), connection.getsockname()
    keys = [(table_address(peer[0], peer[1]), table_address(ours[0], ours[1]))]
    if ":" not in peer[0]:
        mapped = [f"::ffff:{peer[0]}", f"::ffff:{ours[0]}"]
        keys.append((table_address(mapped[0], peer[1]), table_address(mapped[1], ours[1])))
    return keys


def peer_uid(connection: socket.socket, owners: dict[tuple[str, str], int] | None = None) -> int | None:
    """The uid owning ``connection``'s peer socket, or None when the tables do not show it."""
    try:
        keys = peer_keys(connection)
    except OSError:
        return None
    found = owners if owners is not None else socket_owners()
    return next((found[key] for key in keys if key in found), None)


def connect(target: str) -> socket.socket:
    """A connection to ``unix:PATH`` or ``HOST:PORT``."""
    if target.startswith(UNIX_PREFIX):
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with short_unix_path(target[len(UNIX_PREFIX) :]) as path:
                unix.connect(path)
        except OSError:
            unix.close()
            raise
        return unix
    host, _, port = target.rpartition(":")
    tcp = socket.create_connection((host.strip("[]"), int(port)))
    tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return tcp


def pump(source: socket.socket, sink: socket.socket, first: bytes, done: threading.Semaphore) -> None:
    """Copy ``source`` to ``sink`` (after ``first``) until either side ends, then half-close ``sink``."""
    buffer = bytearray(BUFFER_SIZE)
    view = memoryview(buffer)
    try:
        if first:
            sink.sendall(first)
        while True:
            count = source.recv_into(buffer)
            if not count:
                break
            sink.sendall(view[:count])
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            source.shutdown(socket.SHUT_RD)
        done.release()


def make_filter(kind: str) -> ConnectionFilter | None:
    """A new filter for one connection of a ``kind`` route; None for the unfiltered kinds."""
    if kind not in FILTERS:
        return None
    module, name, arguments = FILTERS[kind]
    found = importlib.import_module(f"glidein_triton.worker.{module}")
    made: ConnectionFilter = getattr(found, name)(**arguments)
    return made


class Filtered:
    """One job connection through its filter: two pumps, one lock around the filter and what it sends
    to the client (the server's frames and the filter's own answers interleave at frame boundaries)."""

    def __init__(self, client: socket.socket, server: socket.socket, connection_filter: ConnectionFilter):
        self.client, self.server, self.filter = client, server, connection_filter
        self.lock = threading.Lock()
        self.logged = 0

    def run(self, first: bytes) -> None:
        """Both directions (``first``: what the client sent already), until both have ended."""
        done = threading.Semaphore(0)
        threading.Thread(target=self.from_server, args=(done,), daemon=True).start()
        self.from_client(first, done)
        done.acquire()
        done.acquire()

    def from_client(self, first: bytes, done: threading.Semaphore) -> None:
        buffer = bytearray(BUFFER_SIZE)
        view = memoryview(buffer)
        data: Chunk = first
        try:
            while data:
                with self.lock:
                    to_server, to_client = self.filter.client_bytes(data)
                    if to_client:
                        self.client.sendall(to_client)
                    self.note_refusals()
                    reason = self.filter.ended
                if to_server:
                    self.server.sendall(to_server)
                if reason:
                    log(f"closed a job's connection: {reason}")
                    self.end()
                    break
                data = view[: self.client.recv_into(buffer)]  # sent before the next read
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self.server.shutdown(socket.SHUT_WR)
            done.release()

    def from_server(self, done: threading.Semaphore) -> None:
        buffer = bytearray(BUFFER_SIZE)
        view = memoryview(buffer)
        try:
            while True:
                data = view[: self.server.recv_into(buffer)]
                if not data:
                    break
                with self.lock:
                    to_client = self.filter.server_bytes(data)
                    if to_client:
                        self.client.sendall(to_client)
                    self.note_refusals()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self.client.shutdown(socket.SHUT_WR)
            done.release()

    def note_refusals(self) -> None:
        if self.filter.refused != self.logged:
            self.logged = self.filter.refused
            log(f"refused for a job: {self.filter.last_refusal}")

    def end(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def log(message: str) -> None:
    """One line on the door's output (the server's log)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"{PROGRAM}: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Route:
    """Where a listener's connections go, and how they are admitted and checked (``ROUTE_KINDS``)."""

    target: str
    kind: str = "raw"


def forward(client: socket.socket, route: Route, first: bytes, slots: threading.BoundedSemaphore) -> None:
    """Forward ``client`` to the route's target both ways (through its filter); both sockets closed and
    the slot freed at the end."""
    try:
        server = connect(route.target)
        connection_filter = make_filter(route.kind)
    except (OSError, ImportError, AttributeError) as error:
        if not isinstance(error, OSError):
            log(f"no filter for a {route.kind} route: {error}")
        close_now(client)
        slots.release()
        return
    if connection_filter is None:
        ended = threading.Semaphore(0)
        threading.Thread(target=pump, args=(server, client, b"", ended), daemon=True).start()
        pump(client, server, first, ended)
        ended.acquire()
        ended.acquire()
    else:
        Filtered(client, server, connection_filter).run(first)
    client.close()
    server.close()
    slots.release()


@dataclass
class Waiting:
    """An admitted connection that has not spoken yet."""

    route: Route
    since: float


class Door:
    """Listeners, each with its :class:`Route`, that admit ``uid`` only (on Unix sockets: the door's own
    user) and forward to the targets."""

    def __init__(
        self,
        routes: Sequence[tuple[socket.socket, Route]],
        uid: int,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        first_bytes_timeout: float = DEFAULT_FIRST_BYTES_TIMEOUT,
    ) -> None:
        self.routes = dict(routes)
        self.uid = uid
        self.first_bytes_timeout = first_bytes_timeout
        self.slots = threading.BoundedSemaphore(max_connections)
        self.selector = selectors.DefaultSelector()
        self.waiting: dict[socket.socket, Waiting] = {}
        self.refused = 0
        self.tables: list[str | int] = list(SOCKET_TABLES)
        for listener in self.routes:
            listener.setblocking(False)
            self.selector.register(listener, selectors.EVENT_READ)

    def serve_forever(self) -> None:
        while True:
            self.serve_once(1.0)

    def serve_once(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            sock = key.fileobj
            if not isinstance(sock, socket.socket):
                continue
            if sock in self.routes:
                self.admit(sock)
            else:
                self.start(sock)
        self.drop_silent()

    def admit(self, listener: socket.socket) -> None:
        """Accept what is pending; keep the connections of ``uid``, close the others at once."""
        accepted = []
        for _ in range(ACCEPT_BATCH):
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # out of descriptors: the pending ones wait in the backlog
                break
            accepted.append(connection)
        if not accepted:
            return
        route = self.routes[listener]
        unix = listener.family == socket.AF_UNIX
        owners = {} if unix or route.kind == "remote" else socket_owners(self.tables)
        # SO_PEERCRED gives the uid as the door's user namespace sees it: the glidein's is the door's own
        expected = os.getuid() if unix else self.uid
        now = time.monotonic()
        for connection in accepted:
            if route.kind != "remote" and connection_uid(connection, owners) != expected:
                self.refused += 1
                close_now(connection)
                continue
            connection.setblocking(False)
            self.waiting[connection] = Waiting(self.routes[listener], now)
            self.selector.register(connection, selectors.EVENT_READ)

    def start(self, connection: socket.socket) -> None:
        """``connection`` spoke: forward it (its first bytes first) when a slot is free, else close it."""
        waiting = self.waiting.pop(connection)
        self.selector.unregister(connection)
        try:
            first = connection.recv(BUFFER_SIZE)
        except OSError:
            first = b""
        if not first or not self.slots.acquire(blocking=False):
            close_now(connection)
            return
        connection.setblocking(True)
        if connection.family != socket.AF_UNIX:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(
            target=forward, args=(connection, waiting.route, first, self.slots), daemon=True
        ).start()

    def drop_silent(self) -> None:
        deadline = time.monotonic() - self.first_bytes_timeout
        for connection in [c for c, w in self.waiting.items() if w.since < deadline]:
            del self.waiting[connection]
            self.selector.unregister(connection)
            close_now(connection)


def connection_uid(connection: socket.socket, owners: dict[tuple[str, str], int]) -> int | None:
    """The peer's uid: ``SO_PEERCRED`` on a Unix socket, the socket tables on a TCP one."""
    if connection.family == socket.AF_UNIX:
        try:
            credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return None
        return int(struct.unpack("3i", credentials)[1])
    return peer_uid(connection, owners)


def close_now(connection: socket.socket) -> None:
    """Close without lingering (a reset, no TIME_WAIT held by the door)."""
    if connection.family != socket.AF_UNIX:
        with contextlib.suppress(OSError):
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(1024)
    return listener


def listen_unix(path: str) -> socket.socket:
    """A Unix socket at ``path``, mode 0600 (an old socket there is replaced, anything else refused)."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"{path} exists and is not a socket")
        Path(path).unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        with short_unix_path(path) as address:
            listener.bind(address)
    except OSError:
        listener.close()
        raise
    finally:
        os.umask(old)
    listener.listen(1024)
    return listener


def listen_at(address: str) -> socket.socket:
    """A listener on ``unix:PATH`` or ``HOST:PORT``."""
    if address.startswith(UNIX_PREFIX):
        return listen_unix(address[len(UNIX_PREFIX) :])
    host, _, port = address.rpartition(":")
    return listen(host.strip("[]"), int(port))


def raise_descriptor_limit() -> None:
    """Soft descriptor limit up to the hard one: idle connections are held here, not by the server."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_route(text: str) -> tuple[str, str, Route]:
    """``[KIND@]LISTEN[=TARGET]`` (LISTEN and TARGET: ``unix:PATH`` or ``HOST:PORT``; TARGET left out: the
    same address; KIND: one of ``ROUTE_KINDS``, ``raw`` by default) -> (kind, listen address, route)."""
    kind, at, rest = text.partition("@")
    if not at:
        kind, rest = "raw", text
    listen_address, _, target = rest.partition("=")
    if kind not in ROUTE_KINDS:
        raise ValueError(f"route {text!r}: kind {kind!r} is not one of {', '.join(ROUTE_KINDS)}")
    if not listen_address.startswith((UNIX_PREFIX, INHERITED_PREFIX)):
        host, _, port = listen_address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"route {text!r} is not [KIND@]LISTEN[=TARGET] (unix:PATH or HOST:PORT)")
    return kind, listen_address, Route(target or listen_address, kind)


def namespace_works() -> str:
    """Empty when ``unshare`` makes a user and network namespace here, else why not."""
    try:
        result = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return "" if result.returncode == 0 else (result.stderr.strip() or f"exit code {result.returncode}")


def enter_namespace(arguments: argparse.Namespace) -> int:
    """Host side: bind the listeners and open the socket tables here, then run this program again
    inside a user and network namespace of its own (same pid: each step execs the next)."""
    problem = namespace_works()
    if problem:
        print(f"{PROGRAM}: {NO_NAMESPACE}: {problem}", file=sys.stderr, flush=True)
        return NO_NAMESPACE_EXIT
    inside = command("--inside", "--uid", str(arguments.uid))
    inside += ["--max-connections", str(arguments.max_connections)]
    inside += ["--first-bytes-timeout", str(arguments.first_bytes_timeout)]
    for table in SOCKET_TABLES:
        descriptor = os.open(table, os.O_RDONLY)
        os.set_inheritable(descriptor, True)
        inside += ["--table-fd", str(descriptor)]
    for text in arguments.route:
        kind, address, route = parse_route(text)
        try:
            listener = listen_at(address)
        except OSError as error:
            print(
                f"{PROGRAM}: {CANNOT_LISTEN} {address}: {error.strerror or error}",
                file=sys.stderr,
                flush=True,
            )
            return 2
        listener.set_inheritable(True)
        inside += ["--route", f"{kind}@{INHERITED_PREFIX}{listener.detach()}={route.target}"]
    argv = [*UNSHARE, *inside, "--", *arguments.server]
    os.execvp(argv[0], argv)  # noqa: S606 (an argument list, no shell)
    return 1  # not reached


def loopback_up() -> None:
    """Bring ``lo`` up (a new network namespace has it down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(probe.fileno(), SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def inside_namespace(arguments: argparse.Namespace) -> int:
    """Namespace side: lo up, the server started, the door serving until the server ends."""
    loopback_up()
    routes = []
    for text in arguments.route:
        _, inherited, route = parse_route(text)
        routes.append((socket.socket(fileno=int(inherited[len(INHERITED_PREFIX) :])), route))
    door = Door(routes, arguments.uid, arguments.max_connections, arguments.first_bytes_timeout)
    door.tables = list(arguments.table_fd)
    raise_descriptor_limit()
    server = subprocess.Popen(arguments.server)

    def relay(number: int, _: object) -> None:
        with contextlib.suppress(OSError):
            server.send_signal(number)

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, relay)
    threading.Thread(target=door.serve_forever, daemon=True).start()
    code = server.wait()
    return exit_as(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    parser.add_argument("--uid", type=int, default=os.getuid(), help="the only uid admitted (default: ours)")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    parser.add_argument("--first-bytes-timeout", type=float, default=DEFAULT_FIRST_BYTES_TIMEOUT)
    parser.add_argument(
        "--route",
        action="append",
        default=[],
        help="[KIND@]LISTEN[=TARGET]: KIND one of " + ", ".join(ROUTE_KINDS),
    )
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--table-fd", type=int, action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("server", nargs="*", help="the server's command line, run in a network namespace")
    arguments = parser.parse_args(argv)
    try:
        if arguments.inside:
            return inside_namespace(arguments)
        if arguments.server:
            return enter_namespace(arguments)
        listeners = [(listen_at(address), route) for _, address, route in map(parse_route, arguments.route)]
    except (ValueError, OSError) as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr, flush=True)
        return 2
    raise_descriptor_limit()
    door = Door(listeners, arguments.uid, arguments.max_connections, arguments.first_bytes_timeout)
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        door.serve_forever()
    return 0


def exit_as(code: int) -> int:
    """The server's exit as the door's own: its code, or, killed by a signal, the same signal (so that who
    waits for the door sees what ended the server)."""
    if code >= 0:
        return code
    if -code not in (signal.SIGKILL, signal.SIGSTOP):  # those two have no handler to reset
        signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
    return 128 - code  # the signal did not end us (it is ignored or blocked here)


def command(*arguments: str) -> list[str]:
    """The command line that runs the door with ``arguments`` (an isolated Python: no site, no
    environment)."""
    return [sys.executable, "-I", "-S", "-c", BOOTSTRAP, str(CODE_ROOT), *arguments]


def run() -> None:
    sys.exit(entry(sys.argv[1:]))


# The container runtime: the server runs in an Apptainer instance with a network namespace of its own
# (--net --network none), its gRPC on a Unix socket of the plugin's door directory (bound into the
# instance), its HTTP and metrics on the instance's loopback, which a relay run inside the instance (the
# image's python3 running this file) brings to Unix sockets of that directory. On the host, the door
# listens on the loopback ports for the glidein's uid and forwards to those sockets.

CONTAINER_MODE = "--container"
RELAY_MODE = "--relay"
RELAY_READY_TIMEOUT = 120.0
RELAY_STOP_GRACE = 5.0
NO_RELAY = "the front door's relay (the server image's python3) did not start in the server's container"
NO_RELAY_EXIT = 79


def remove_stale_socket(path: str) -> None:
    """Remove the Unix socket at ``path`` if nothing listens on it (a killed server or relay left it
    behind); OSError if something does (another door's: never taken over)."""
    try:
        if not stat.S_ISSOCK(Path(path).lstat().st_mode):
            return
    except FileNotFoundError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            Path(path).unlink()
            return
    raise OSError(errno.EADDRINUSE, f"{path} is in use by another server or relay")


def relay_listener(path: str) -> socket.socket:
    """A Unix socket listening at ``path`` (a stale socket there is replaced), mode 0600."""
    remove_stale_socket(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    Path(path).chmod(0o600)
    listener.listen(1024)
    return listener


def serve_relay(listener: socket.socket, target: str, slots: threading.BoundedSemaphore) -> None:
    """Forward every connection to ``listener`` to ``target`` (no check: its directory is the check)."""
    while True:
        connection, _ = listener.accept()
        if not slots.acquire(blocking=False):
            close_now(connection)
            continue
        route = Route(target)
        threading.Thread(target=forward, args=(connection, route, b"", slots), daemon=True).start()


def relay_main(argv: Sequence[str]) -> int:
    """Inside the instance: ``--relay unix:PATH=HOST:PORT`` (repeated) listens at each PATH and forwards
    to HOST:PORT; prints ``ready`` once every socket listens."""
    parser = argparse.ArgumentParser(prog=f"{PROGRAM} {RELAY_MODE}")
    parser.add_argument(RELAY_MODE, action="append", default=[], dest="relays", help="unix:PATH=HOST:PORT")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    arguments = parser.parse_args(argv)
    slots = threading.BoundedSemaphore(arguments.max_connections)
    threads = []
    try:
        for text in arguments.relays:
            path, _, target = text.rpartition("=")
            if not path.startswith(UNIX_PREFIX) or ":" not in target:
                raise ValueError(f"relay {text!r} is not unix:PATH=HOST:PORT")
            listener = relay_listener(path[len(UNIX_PREFIX) :])
            threads.append(threading.Thread(target=serve_relay, args=(listener, target, slots), daemon=True))
    except (ValueError, OSError) as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr, flush=True)
        return 2
    raise_descriptor_limit()
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        for thread in threads:
            thread.join()
    return 0


def start_relay(command: Sequence[str], timeout: float) -> subprocess.Popen[bytes] | None:
    """Run the relay's command; the relay once it said ``ready``, else None (it is stopped)."""
    output, said_to = os.pipe()
    try:
        relay = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=said_to)
    except OSError as error:
        os.close(output)
        print(f"{PROGRAM}: {NO_RELAY}: {error}", file=sys.stderr, flush=True)
        return None
    finally:
        os.close(said_to)
    said = b""
    with selectors.DefaultSelector() as waiting:
        waiting.register(output, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while b"ready\n" not in said and time.monotonic() < deadline:
            if waiting.select(max(0.0, deadline - time.monotonic())):
                chunk = os.read(output, 64)
                if not chunk:
                    break
                said += chunk
    os.close(output)
    if b"ready\n" in said:
        return relay
    end(relay, RELAY_STOP_GRACE)
    code = relay.returncode
    print(f"{PROGRAM}: {NO_RELAY} (exit code {code}, output {said[-200:]!r})", file=sys.stderr, flush=True)
    return None


def end(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaped."""
    with contextlib.suppress(OSError):
        process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            process.kill()
        process.wait()


def container_setup(
    argv: Sequence[str],
) -> tuple[argparse.Namespace, list[str], list[tuple[socket.socket, Route]]]:
    """The container door's arguments, its relay's command line and its bound listeners (in the door
    directory, the working directory from now on); ValueError or OSError when they cannot be had."""
    parser = argparse.ArgumentParser(prog=f"{PROGRAM} {CONTAINER_MODE}")
    parser.add_argument("--directory", required=True, help="the door directory: Unix targets are in it")
    parser.add_argument("--route", action="append", default=[], help="KIND@HOST:PORT=unix:NAME")
    parser.add_argument("--relay-command", required=True, help="the relay's command line, a JSON list")
    parser.add_argument("--relay-timeout", type=float, default=RELAY_READY_TIMEOUT)
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    parser.add_argument("--first-bytes-timeout", type=float, default=DEFAULT_FIRST_BYTES_TIMEOUT)
    parser.add_argument("server", nargs="+", help="the server's command line (an exec into the instance)")
    arguments = parser.parse_args(argv)
    relay_command = json.loads(arguments.relay_command)
    if not (isinstance(relay_command, list) and all(isinstance(w, str) for w in relay_command)):
        raise ValueError(f"--relay-command {arguments.relay_command!r} is not a JSON list of strings")
    os.chdir(arguments.directory)  # Unix targets by name: a long glidein path stays within 107 bytes
    routes = [(listen_at(address), route) for _, address, route in map(parse_route, arguments.route)]
    for _, route in routes:
        if route.target.startswith(UNIX_PREFIX):
            remove_stale_socket(route.target[len(UNIX_PREFIX) :])
    return arguments, relay_command, routes


def container_main(argv: Sequence[str]) -> int:
    """On the host: ``--container --directory DIR --route HOST:PORT=unix:NAME ... --relay-command JSON --
    SERVER...``: the listeners bound, the relay started (and ready), then the server; the door serves
    until the server ends (the relay is stopped then, and the server if the relay ends first)."""
    try:
        arguments, relay_command, routes = container_setup(argv)
    except (ValueError, OSError) as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr, flush=True)
        return 2
    raise_descriptor_limit()
    stopped_by: list[int] = []  # the signal that stops the door, once one came
    started: list[subprocess.Popen[bytes]] = []

    def relay_signal(number: int, _: object) -> None:
        stopped_by.append(number)
        for process in started:
            with contextlib.suppress(OSError):
                process.send_signal(number)

    # Before anything starts: a signal that came earlier would end the door and leave its children.
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, relay_signal)
    relay = start_relay(relay_command, arguments.relay_timeout)
    if relay is None:
        return NO_RELAY_EXIT
    started.append(relay)
    if stopped_by:  # while the relay started
        end(relay, RELAY_STOP_GRACE)
        return exit_as(-stopped_by[0])
    try:
        server = subprocess.Popen(arguments.server, stdin=subprocess.DEVNULL)
    except OSError as error:
        end(relay, RELAY_STOP_GRACE)
        print(f"{PROGRAM}: cannot run {arguments.server[0]}: {error}", file=sys.stderr, flush=True)
        return 2
    started.append(server)
    if stopped_by:  # while the server started
        server.send_signal(stopped_by[0])

    def watch_relay() -> None:
        relay.wait()
        if not stopped_by:
            print(f"{PROGRAM}: the relay ended (exit code {relay.returncode})", file=sys.stderr, flush=True)
            with contextlib.suppress(OSError):
                server.terminate()

    door = Door(routes, os.getuid(), arguments.max_connections, arguments.first_bytes_timeout)
    threading.Thread(target=door.serve_forever, daemon=True).start()
    threading.Thread(target=watch_relay, daemon=True).start()
    code = server.wait()
    stopped_by.append(0)  # the relay's end is ours from now on
    end(relay, RELAY_STOP_GRACE)
    return exit_as(code)


def entry(argv: Sequence[str]) -> int:
    """The door's modes: the relay (inside an instance), the container runtime's door, or :func:`main`."""
    if argv[:1] == [RELAY_MODE]:
        return relay_main(argv)
    if argv[:1] == [CONTAINER_MODE]:
        return container_main(argv[1:])
    return main(argv)


if __name__ == "__main__":
    run()
