"""The pool's servers for a job of a pool client glidein: ``connect(pool=True, models=[...])``.

The glidein's agent writes ``<sandbox>/.glidein_triton/pool.json`` (format:
:mod:`glidein_triton.worker.pool_discovery`): the pool servers the glidein holds a certificate for, and the
glidein's own server (``local``). :class:`PoolClient` keeps the servers that serve all the job's models and
accept work, and for each call:

* picks by the power of two choices: two servers drawn at random among those usable (same-site ones while
  there are any), the one with the lower cost wins; the cost is the server's published queue time plus
  this job's own measured latency to it (an exponentially weighted mean, :data:`EWMA_WEIGHT`); a server
  within :data:`DRAIN_MARGIN` seconds of its drain time is not used;
* talks gRPC over mutual TLS (the server's CA from its ad, the glidein's key and its certificate there);
* fails over to another server on a connection, TLS, deadline or queue-full error (gRPC UNAVAILABLE or
  DEADLINE_EXCEEDED, except "This protocol is restricted", which is the caller's mistake), blocking the
  failed server for :data:`BLOCK_SECONDS`;
* when no pool server is left, takes pool.json again if the agent has rewritten it since (at each of its
  queries), else uses the glidein's own server (plaintext, through its front door);
* when that fails too, raises :class:`PoolUnavailableError`: the job must use its CPU.

A gRPC stream (``start_stream``, ``async_stream_infer``, ``stop_stream``) stays on the server it started on.

tritonclient and grpc are imported only when a server is first used.
"""

from __future__ import annotations

import importlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glidein_triton.job import client as job_client
from glidein_triton.worker import sandbox_protocol

LOG = logging.getLogger(__name__)

#: A server that failed is not used again for this long.
BLOCK_SECONDS = 30.0
#: A server that stops serving within this many seconds gets no new work.
DRAIN_MARGIN = 60.0
#: The weight of the newest latency in a server's measured mean.
EWMA_WEIGHT = 0.3
FAILOVER_STATUSES = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")
#: Triton's UNAVAILABLE answer to a restricted category: not the server's failure, so no failover.
RESTRICTED = "This protocol is restricted"
LOCAL_NAME = "the glidein's own server"
#: The calls of a gRPC stream: all on the server that started it, without failover (a stream is one
#: connection's state).
STREAM_START = "start_stream"
STREAM_METHODS = (STREAM_START, "async_stream_infer", "stop_stream")


class PoolError(job_client.NoServerError):
    """pool.json is missing or cannot be read."""


@dataclass
class PoolServer:
    """A server of pool.json, and what this job measured of it."""

    url: str
    name: str = ""
    site: str = ""
    same_site: bool = False
    ca_pem: str = ""
    client_cert_pem: str = ""
    models: tuple[str, ...] = ()
    queue_time_ms: float = 0.0
    accepting: bool = True
    drain_time: int = 0
    latency_ms: float | None = None
    blocked_until: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def tls(self) -> bool:
        return bool(self.ca_pem)

    def cost(self) -> float:
        """Published queue time plus measured latency (0 until measured: a new server gets tried)."""
        return self.queue_time_ms + (self.latency_ms or 0.0)

    def measured(self, milliseconds: float) -> None:
        previous = self.latency_ms
        self.latency_ms = (
            milliseconds if previous is None else EWMA_WEIGHT * milliseconds + (1 - EWMA_WEIGHT) * previous
        )


@dataclass(frozen=True)
class PoolFile:
    """What pool.json says."""

    pool: str
    local: str
    client_key: str
    servers: tuple[PoolServer, ...]


def read_pool_file(path: Path) -> PoolFile:
    """pool.json; PoolError naming the file and what is wrong."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        servers = tuple(
            PoolServer(
                url=str(entry["url"]),
                name=str(entry.get("name", "")),
                site=str(entry.get("site", "")),
                same_site=bool(entry.get("same_site", False)),
                ca_pem=str(entry["ca_pem"]),
                client_cert_pem=str(entry["client_cert_pem"]),
                models=tuple(str(model) for model in entry.get("models", [])),
                queue_time_ms=float(entry.get("queue_time_ms", 0.0)),
                accepting=bool(entry.get("accepting", True)),
                drain_time=int(entry.get("drain_time", 0)),
            )
            for entry in document.get("servers", [])
        )
        return PoolFile(
            str(document.get("pool", "")),
            str(document.get("local", "")),
            str(document["client_key"]),
            servers,
        )
    except OSError as error:
        raise PoolError(
            f"cannot read {path} ({error.strerror}): is this a job of a pool client glidein?"
        ) from error
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise PoolError(f"{path} is not a pool file: {error!r}") from error


def serving(servers: Sequence[PoolServer], models: Sequence[str]) -> list[PoolServer]:
    """The servers that accept work and serve every one of ``models``."""
    return [server for server in servers if server.accepting and set(models) <= set(server.models)]


class Chooser:
    """The power of two choices over the servers not blocked and not draining (same-site first)."""

    def __init__(
        self,
        servers: Sequence[PoolServer],
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.servers = list(servers)
        self.rng = rng or random.Random()  # noqa: S311 (load spreading, not a secret)
        self.clock = clock
        self.wall_clock = wall_clock

    def usable(self, exclude: Sequence[PoolServer] = ()) -> list[PoolServer]:
        now, wall = self.clock(), self.wall_clock()
        excluded = {server.url for server in exclude}
        found = [
            server
            for server in self.servers
            if server.url not in excluded
            and server.blocked_until <= now
            and not (server.drain_time and server.drain_time - wall < DRAIN_MARGIN)
        ]
        near = [server for server in found if server.same_site]
        return near or found

    def pick(self, exclude: Sequence[PoolServer] = ()) -> PoolServer | None:
        """The server for the next call; None when none is usable."""
        usable = self.usable(exclude)
        if len(usable) < 2:
            return usable[0] if usable else None
        first, second = self.rng.sample(usable, 2)
        return second if second.cost() < first.cost() else first

    def block(self, server: PoolServer, why: str) -> None:
        server.blocked_until = self.clock() + BLOCK_SECONDS
        server.failures.append(why)


def fails_over(error: BaseException) -> bool:
    """Whether ``error`` is the server's (unreachable, TLS, deadline, queue full) rather than the call's."""
    status = getattr(error, "status", None)
    code = status() if callable(status) else None
    return code in FAILOVER_STATUSES and RESTRICTED not in str(error)


class PoolUnavailableError(job_client.NoServerError):
    """No pool server and not the glidein's own server could serve the call: the job must use its CPU."""


class PoolClient:
    """A tritonclient.grpc client over the pool: every method of InferenceServerClient (``infer``,
    ``get_model_metadata``, ...) runs on a chosen server, with failover (see the module doc)."""

    def __init__(
        self,
        servers: Sequence[PoolServer],
        local: str,
        client_key: bytes,
        chooser: Chooser | None = None,
        make_client: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        source: Path | None = None,
        models: Sequence[str] = (),
        **client_options: Any,
    ) -> None:
        self.source = source
        self.models = tuple(models)
        self.source_version = version_of(source)
        self.chooser = chooser or Chooser(servers, clock=clock)
        self.local = PoolServer(url=local, name=LOCAL_NAME) if local else None
        self.client_key = client_key
        self.make_client = make_client or tls_client
        self.client_options = client_options
        self.clock = clock
        self.clients: dict[str, Any] = {}
        #: The server of the last call that succeeded, and the one of the open stream.
        self.current: PoolServer | None = None
        self.stream: PoolServer | None = None

    def client_for(self, server: PoolServer) -> Any:
        if server.url not in self.clients:
            self.clients[server.url] = self.make_client(server, self.client_key, **self.client_options)
        return self.clients[server.url]

    def call(self, method: str, *arguments: Any, **options: Any) -> Any:
        """``method`` on the chosen server, failing over; PoolUnavailableError when none could serve it."""
        if method in STREAM_METHODS:
            return self.stream_call(method, *arguments, **options)
        tried: list[PoolServer] = []
        while True:
            server = self.chooser.pick(tried)
            if server is None and self.reload():
                server = self.chooser.pick(tried)
            if server is None:
                local = self.local
                if local is None or local in tried or local.blocked_until > self.clock():
                    raise PoolUnavailableError(self.summary(tried))
                server = local
            tried.append(server)
            started = self.clock()
            try:
                result = getattr(self.client_for(server), method)(*arguments, **options)
            except Exception as error:
                if not fails_over(error):
                    raise
                why = " ".join(str(error).split())[:300]
                LOG.warning("pool server %s (%s) failed: %s; trying another", server.url, server.name, why)
                self.chooser.block(server, why)
                self.drop(server)
                continue
            server.measured((self.clock() - started) * 1000)
            self.current = server
            return result

    def reload(self) -> bool:
        """Take the servers of pool.json again when the agent has rewritten it since (its query found other
        servers, or enrolment other certificates); what this job measured of a server it keeps. True when
        it did."""
        version = version_of(self.source)
        if self.source is None or version is None or version == self.source_version:
            return False
        self.source_version = version
        try:
            document = read_pool_file(self.source)
            self.client_key = self.client_key or client_key(document)
        except PoolError as error:
            LOG.warning("%s", error)
            return False
        known = {server.url: server for server in self.chooser.servers}
        fresh = serving(document.servers, self.models)
        for server in fresh:
            old = known.get(server.url)
            if old is None:
                continue
            server.latency_ms, server.blocked_until, server.failures = (
                old.latency_ms,
                old.blocked_until,
                old.failures,
            )
            if (old.ca_pem, old.client_cert_pem) != (server.ca_pem, server.client_cert_pem):
                self.drop(server)  # new credentials: a new channel
        self.chooser.servers = fresh
        LOG.info("pool.json rewritten: %d servers for this job", len(fresh))
        return True

    def stream_call(self, method: str, *arguments: Any, **options: Any) -> Any:
        """A stream's call: ``start_stream`` on the server a readiness call picks (with failover), the
        others on that server."""
        if method == STREAM_START or self.stream is None:
            self.call("is_server_ready")
            self.stream = self.current
        assert self.stream is not None  # noqa: S101 (the readiness call succeeded on it)
        result = getattr(self.client_for(self.stream), method)(*arguments, **options)
        if method == "stop_stream":
            self.stream = None
        return result

    def summary(self, tried: Sequence[PoolServer]) -> str:
        """Why nothing could serve the call."""
        servers = [*self.chooser.servers, *([self.local] if self.local else [])]
        states = "; ".join(
            f"{server.url} ({server.name}): {server.failures[-1] if server.failures else 'not tried'}"
            for server in servers
        )
        return (
            f"no Triton server of the pool could serve this job ({len(tried)} tried): "
            f"{states or 'pool.json lists none for these models, and the glidein has no server'}; "
            "run on the job's CPU"
        )

    def drop(self, server: PoolServer) -> None:
        client = self.clients.pop(server.url, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        for url in list(self.clients):
            self.clients.pop(url).close()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *arguments, **options: self.call(name, *arguments, **options)


MESSAGE_SIZE_OPTIONS = ("grpc.max_send_message_length", "grpc.max_receive_message_length")


def with_message_sizes(channel_args: Sequence[tuple[str, Any]] | None) -> list[tuple[str, Any]] | None:
    """``channel_args`` with tritonclient's message size limits added where they are missing: given
    channel arguments replace all of its defaults, and gRPC's own 4 MiB limit would then cut large tensors."""
    if channel_args is None:
        return None
    limit = importlib.import_module("tritonclient.grpc").MAX_GRPC_MESSAGE_SIZE
    named = {name for name, _value in channel_args}
    return [*channel_args, *((name, limit) for name in MESSAGE_SIZE_OPTIONS if name not in named)]


def tls_client(server: PoolServer, client_key: bytes, **client_options: Any) -> Any:
    """A tritonclient.grpc client for ``server``: mutual TLS from bytes for a pool server, plaintext for the
    glidein's own; ``client_options`` (``keepalive_options``, ``channel_args``, ...) go to it, the message
    size limits kept."""
    module = importlib.import_module("tritonclient.grpc")
    options = dict(client_options)
    if "channel_args" in options:
        options["channel_args"] = with_message_sizes(options["channel_args"])
    if not server.tls:
        return module.InferenceServerClient(url=server.url, **options)
    grpc = importlib.import_module("grpc")
    creds = grpc.ssl_channel_credentials(
        root_certificates=server.ca_pem.encode("ascii"),
        private_key=client_key,
        certificate_chain=server.client_cert_pem.encode("ascii"),
    )
    return module.InferenceServerClient(url=server.url, creds=creds, **options)


def client_key(document: PoolFile) -> bytes:
    """The key the pool file's certificates are for (empty while it lists no server)."""
    try:
        return Path(document.client_key).read_bytes()
    except OSError as error:
        if not document.servers:
            return b""
        raise PoolError(
            f"cannot read the pool client key {document.client_key} ({error.strerror})"
        ) from error


def version_of(path: Path | None) -> int | None:
    """The file's modification time (ns), None when there is none."""
    try:
        return path.stat().st_mtime_ns if path is not None else None
    except OSError:
        return None


def pool_client(
    directory: Path, models: Sequence[str], own_server: bool = True, **options: Any
) -> PoolClient:
    """A PoolClient from the pool.json in ``directory`` (the sandbox's ``.glidein_triton``); ``own_server``:
    whether the glidein's own server is a fall-back (not when its agent could not load the models)."""
    path = directory / sandbox_protocol.POOL_FILE
    document = read_pool_file(path)
    key = client_key(document)
    servers = serving(document.servers, models)
    LOG.info(
        "pool %s: %d of %d servers serve %s",
        document.pool,
        len(servers),
        len(document.servers),
        models or "all",
    )
    options.setdefault("source", path)
    return PoolClient(servers, document.local if own_server else "", key, models=models, **options)
