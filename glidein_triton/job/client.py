"""Connect a job to its glidein's Triton server: ``client = connect()`` and infer.

Runs inside the job (e.g. in the slim client image): the standard library at import time, tritonclient
(gRPC or HTTP) and numpy only when :func:`connect` runs. The server is found, in this order, from

1. the ``url`` argument;
2. the job environment: ``TRITON_GRPC_URL`` / ``TRITON_HTTP_URL`` (``host:port``, set by the glidein);
3. the machine ad file ``$_CONDOR_MACHINE_AD``: ``TritonGRPCURL`` / ``TritonHTTPURL``.

:func:`connect` waits, with backoff, until the server (and the models asked for) are ready, retrying
connection failures until the timeout; a model the glidein's agent could not load for this job (its answer
in the sandbox: :mod:`glidein_triton.worker.sandbox_protocol`) fails at once with the agent's reason. No
credential is sent: the glidein's front door admits the glidein's jobs by their user alone.
When no server is found or ready, :class:`NoServerError` says what was tried, or an opt-in ``fallback``
callable runs instead (e.g. the model in-process). When the machine ad says the glidein's gRPC endpoint uses
TLS (``TritonGRPCTLS``, remote mode), the gRPC client is made with ``ssl=True``.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from glidein_triton.worker import sandbox_protocol

LOG = logging.getLogger(__name__)

PROTOCOLS = ("grpc", "http")
PROTOCOL_NAMES = {"grpc": "gRPC", "http": "HTTP"}
URL_VARIABLES = {"grpc": "TRITON_GRPC_URL", "http": "TRITON_HTTP_URL"}
AD_ATTRIBUTES = {"grpc": "TritonGRPCURL", "http": "TritonHTTPURL"}
MACHINE_AD_VARIABLE = "_CONDOR_MACHINE_AD"
SCRATCH_VARIABLE = "_CONDOR_SCRATCH_DIR"
DEFAULT_TIMEOUT = 60.0
FIRST_DELAY = 0.1
LONGEST_DELAY = 2.0
LONGEST_TRY = 5.0
AGENT_POLL = 0.02
#: What a server's model metadata says of a model it neither serves nor is loading (any Triton release).
UNKNOWN_MODEL = "is not found"
#: A wait says what it waits for after PROGRESS_FIRST seconds, then at twice the previous interval.
PROGRESS_FIRST = 5.0

AD_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")
HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):[0-9]{1,5}$")
URL_SCHEMES = ("http://", "grpc://")
URL_ARGUMENT = "the url argument"

Result = TypeVar("Result")


class NoServerError(RuntimeError):
    """No usable Triton server for this job (not found, or not ready in time)."""


class ServerNotFoundError(NoServerError):
    """No server address in any of the places looked at; the message lists each place and what it held."""

    def __init__(self, protocol: str, attempts: Sequence[tuple[str, str]]) -> None:
        self.protocol = protocol
        self.attempts = list(attempts)
        tried = "".join(
            f"\n  {number}. {source}: {found}" for number, (source, found) in enumerate(attempts, 1)
        )
        super().__init__(
            f"no Triton {PROTOCOL_NAMES[protocol]} server found for this job; tried:{tried}\n"
            "Does the job run in a glidein with GLIDEIN_TRITON enabled, and do its Requirements ask for "
            "HasTriton =?= True?"
        )


class ServerNotReadyError(NoServerError):
    """A server address was found but the server (or a model) was not ready before the timeout."""


class ModelsUnavailableError(NoServerError):
    """The glidein's agent could not make a model available for this job (refused or failed to load)."""


@dataclass(frozen=True)
class Endpoint:
    """A server address (``host:port``), and where it was found."""

    protocol: str
    url: str
    source: str


def parse_ad(text: str) -> dict[str, str]:
    """A ClassAd in the old syntax (``Name = expression`` lines), keyed by lower-case attribute name.

    String values are unquoted; other expressions (``true``, numbers) are kept as written.
    """
    attributes = {}
    for line in text.splitlines():
        match = AD_LINE.match(line)
        if match:
            name, expression = match.groups()
            if len(expression) >= 2 and expression[0] == expression[-1] == '"':
                expression = expression[1:-1].replace('\\"', '"')
            attributes[name.lower()] = expression
    return attributes


def _address(value: str, source: str) -> str:
    """``host:port`` from ``value`` (an ``http://`` or ``grpc://`` prefix is dropped); else ValueError."""
    address = value.strip()
    for scheme in URL_SCHEMES:
        if address.lower().startswith(scheme):
            address = address[len(scheme) :]
    address = address.rstrip("/")
    if not HOST_PORT.match(address):
        raise ValueError(f"{source} = {value!r} is not a server address of the form host:port")
    return address


def machine_ad(environment: Mapping[str, str]) -> dict[str, str]:
    """The job's machine ad (see :func:`parse_ad`); empty when there is none or it cannot be read."""
    path = environment.get(MACHINE_AD_VARIABLE, "").strip()
    try:
        return parse_ad(Path(path).read_text(errors="replace")) if path else {}
    except OSError:
        return {}


def _from_machine_ad(protocol: str, environment: Mapping[str, str]) -> tuple[str | None, str]:
    """(address or None, what the machine ad held)."""
    path = environment.get(MACHINE_AD_VARIABLE, "").strip()
    if not path:
        return None, "not set"
    try:
        ad = parse_ad(Path(path).read_text(errors="replace"))
    except OSError as error:
        return None, f"{path} cannot be read ({error.strerror})"
    attribute = AD_ATTRIBUTES[protocol]
    has_triton = ad.get("hastriton")
    if has_triton is not None and has_triton.lower() != "true":
        failure = ad.get("tritonfailure", "")
        reason = f" (TritonFailure: {failure})" if failure else ""
        return None, f"{path} says HasTriton = {has_triton}{reason}"
    value = ad.get(attribute.lower(), "")
    if not value:
        return None, f"{path} has no {attribute}" + ("" if has_triton else " and no HasTriton")
    return value, f"{path}: {attribute}"


def find_endpoint(
    protocol: str = "grpc", url: str | None = None, environment: Mapping[str, str] | None = None
) -> Endpoint:
    """Where the server is: the ``url`` argument, else the job environment, else the machine ad.

    Raises ServerNotFoundError listing every place looked at, and ValueError for an address that is
    there but malformed (naming where it came from).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    environment = os.environ if environment is None else environment
    if url:
        return Endpoint(protocol, _address(url, URL_ARGUMENT), URL_ARGUMENT)
    attempts = [(URL_ARGUMENT, "not given")]
    variable = URL_VARIABLES[protocol]
    value = environment.get(variable, "").strip()
    if value:
        return Endpoint(protocol, _address(value, f"${variable}"), f"${variable}")
    attempts.append((f"${variable}", "not set"))
    found, held = _from_machine_ad(protocol, environment)
    if found:
        return Endpoint(protocol, _address(found, held), held)
    attempts.append((f"${MACHINE_AD_VARIABLE}", held))
    raise ServerNotFoundError(protocol, attempts)


def job_directory(environment: Mapping[str, str]) -> Path:
    """Where the glidein's agent writes for this job: in ``$_CONDOR_SCRATCH_DIR``, else the current dir."""
    return Path(environment.get(SCRATCH_VARIABLE, "").strip() or ".") / sandbox_protocol.JOB_DIR


def agent_failures(environment: Mapping[str, str]) -> dict[str, str]:
    """The models the glidein's agent answered it could not make available for this job, with why."""
    try:
        text = (job_directory(environment) / sandbox_protocol.ANSWER_FILE).read_text()
    except OSError:
        return {}
    return dict(sandbox_protocol.parse_answer(text).failed)


def wait_for_agent(environment: Mapping[str, str], models: Sequence[str], timeout: float) -> None:
    """In a job sandbox on a glidein with Triton: wait (at most ``timeout``) until the glidein's agent has
    answered for ``models``, and fail at once for a model it refused."""
    if not models or not environment.get(SCRATCH_VARIABLE, "").strip():
        return
    if machine_ad(environment).get("hastriton", "").lower() != "true":
        return
    target = job_directory(environment) / sandbox_protocol.ANSWER_FILE
    deadline = time.monotonic() + timeout
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(AGENT_POLL)
    failures = {model: why for model, why in agent_failures(environment).items() if model in models}
    if failures:
        details = "; ".join(f"{model}: {why}" for model, why in failures.items())
        raise ModelsUnavailableError(f"the glidein could not make these models available: {details}")


def make_client(endpoint: Endpoint, **client_options: Any) -> Any:
    """A tritonclient client for ``endpoint``."""
    module = importlib.import_module(f"tritonclient.{endpoint.protocol}")
    return module.InferenceServerClient(url=endpoint.url, **client_options)


def _probe(client: Any, protocol: str, models: Sequence[str], seconds: float) -> tuple[str, list[str]]:
    """("", []) when the server and every model are ready, else what is not and the models not ready."""
    options = {"client_timeout": seconds} if protocol == "grpc" else {}
    if not client.is_server_ready(**options):
        return "the server answered but is not ready", []
    waiting = [model for model in models if not client.is_model_ready(model, **options)]
    return (f"model(s) not ready: {', '.join(waiting)}" if waiting else ""), waiting


def unknown_models(client: Any, models: Sequence[str]) -> list[str]:
    """The models the server neither serves nor is loading: its metadata says it knows nothing of them."""
    errors = importlib.import_module("tritonclient.utils")
    unknown = []
    for model in models:
        try:
            client.get_model_metadata(model)
        except errors.InferenceServerException as error:
            if UNKNOWN_MODEL in str(error):
                unknown.append(model)
    return unknown


def wait_until_ready(
    client: Any, endpoint: Endpoint, timeout: float, models: Sequence[str] = (), glidein: bool = False
) -> None:
    """Poll the server's readiness (and each model's) with backoff; connection failures are retried; what it
    waits for is logged after PROGRESS_FIRST seconds, then at doubling intervals.

    ``glidein``: the server is the glidein's, where only the agent loads models, for the jobs that ask it:
    a model the server knows nothing of (after the agent's answer) cannot come, and fails at once.
    """
    errors = importlib.import_module("tritonclient.utils")
    started = time.monotonic()
    deadline = started + timeout
    delay = FIRST_DELAY
    tries = 0
    interval = PROGRESS_FIRST
    next_progress = started + interval
    name = f"the Triton {PROTOCOL_NAMES[endpoint.protocol]} server at {endpoint.url} (from {endpoint.source})"
    while True:
        tries += 1
        remaining = deadline - time.monotonic()
        try:
            problem, waiting = _probe(
                client, endpoint.protocol, models, max(0.1, min(LONGEST_TRY, remaining))
            )
            unknown = unknown_models(client, waiting) if glidein else []
        except (errors.InferenceServerException, OSError) as error:
            problem, unknown = f"{type(error).__name__}: {error}".strip(), []
        if not problem:
            return
        if unknown:
            names = ",".join(unknown)
            raise ModelsUnavailableError(
                f"{name} has no model(s) {names} and nothing is loading them: the glidein loads a job's "
                f'models when its submit file asks for them (+TritonModels = "{names}", and '
                "+TritonModelRepository for a repository of the job's own)"
            )
        now = time.monotonic()
        if now >= deadline:
            raise ServerNotReadyError(
                f"{name} was not ready after {timeout:g} s and {tries} tries; last: {problem}"
            )
        if now >= next_progress:
            LOG.warning("waiting for %s (%.0f of %g s): %s", name, now - started, timeout, problem)
            interval *= 2
            next_progress = now + interval
        LOG.debug("%s not ready (%s); retrying in %.2f s", endpoint.url, problem, delay)
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, LONGEST_DELAY)


def _apply_glidein_hints(
    endpoint: Endpoint, environment: Mapping[str, str], client_options: dict[str, Any]
) -> None:
    """Follow the machine ad about the glidein's own server: gRPC over TLS."""
    if endpoint.source == URL_ARGUMENT:
        return
    ad = machine_ad(environment)
    if endpoint.protocol == "grpc" and ad.get("tritongrpctls", "").lower() == "true":
        client_options.setdefault("ssl", True)


def connect(
    protocol: str = "grpc",
    url: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    models: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
    fallback: Callable[[NoServerError], Result] | None = None,
    pool: bool = False,
    **client_options: Any,
) -> Any:
    """A ready ``tritonclient.grpc`` (or ``.http``) InferenceServerClient for this job's server.

    ``models``: also wait until these models are ready. ``client_options`` go to InferenceServerClient
    (e.g. ``keepalive_options``, or ``root_certificates`` for a TLS server whose certificate is not signed
    by a system CA).
    ``fallback``: called with the error when no server is found or ready; its result is returned instead
    of a client (e.g. a function that runs the model in-process). Without it, NoServerError is raised.
    ``pool``: in a job of a pool client glidein, a :class:`glidein_triton.job.pool.PoolClient` over the pool's
    servers that serve ``models`` (gRPC only; ``client_options`` go to it, e.g. ``make_client``); one of them
    (or the glidein's own server) has answered a readiness call. Its calls raise
    :class:`glidein_triton.job.pool.PoolUnavailableError` (a NoServerError) when no server can serve them.
    """
    environment = os.environ if environment is None else environment
    try:
        if pool:
            return _connect_pool(protocol, environment, models, timeout, client_options)
        return _connect_server(protocol, url, environment, models, timeout, client_options)
    except NoServerError as error:
        if fallback is None:
            raise
        LOG.warning("%s; using the local fallback", error)
        return fallback(error)


def _connect_server(
    protocol: str,
    url: str | None,
    environment: Mapping[str, str],
    models: Sequence[str],
    timeout: float,
    client_options: dict[str, Any],
) -> Any:
    """connect() without the pool: the endpoint, the agent's answer, one client once it is ready."""
    endpoint = find_endpoint(protocol, url, environment)
    if endpoint.source != URL_ARGUMENT:
        wait_for_agent(environment, models, timeout)
    _apply_glidein_hints(endpoint, environment, client_options)
    if protocol == "http":
        client_options.setdefault("connection_timeout", max(1.0, min(timeout, 2 * LONGEST_TRY)))
    client = make_client(endpoint, **client_options)
    try:
        wait_until_ready(client, endpoint, timeout, models, glidein=endpoint.source != URL_ARGUMENT)
    except NoServerError:
        client.close()
        raise
    LOG.info("connected to Triton at %s (from %s)", endpoint.url, endpoint.source)
    return client


def _connect_pool(
    protocol: str,
    environment: Mapping[str, str],
    models: Sequence[str],
    timeout: float,
    client_options: dict[str, Any],
) -> Any:
    """connect(pool=True): the agent's answer, pool.json, one readiness call through the pool."""
    from glidein_triton.job import pool  # noqa: PLC0415 (it imports this module)

    if protocol != "grpc":
        raise ValueError("pool mode is gRPC only (the pool servers serve gRPC over mutual TLS)")
    try:
        wait_for_agent(environment, models, timeout)
        own_server = True
    except ModelsUnavailableError as error:  # the pool may still serve them
        LOG.info("%s: the glidein's own server is no fall-back for them", error)
        own_server = False
    client = pool.pool_client(job_directory(environment), models, own_server, **client_options)
    try:
        client.call("is_server_ready")
    except NoServerError:
        client.close()
        raise
    assert client.current is not None  # noqa: S101 (the readiness call succeeded on it)
    LOG.info("connected to the pool through %s (%s)", client.current.url, client.current.name)
    return client
