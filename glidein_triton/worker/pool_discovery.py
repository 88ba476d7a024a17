"""Pool mode on a client glidein: find the pool's servers in the collector, write what jobs need to use them.

The agent (:mod:`agent`) of a glidein with ``GLIDEIN_TRITON_POOL = client``, every :func:`next_delay`
seconds (jittered), runs the glidein's own ``$CONDOR_DIR/bin/condor_status`` with the glidein's
``condor_config`` (so its own token, docs/pool-facts.md), against the main collector (the first item of
``GLIDEIN_Collector``), asking only for the server ads of its pool's name that accept work, projected on the
attributes below. The output is bounded (:data:`MAX_OUTPUT`, :data:`QUERY_TIMEOUT`); empty stdout is no
ads. An ad with a bad URL, a CA that is not base64 DER, or a CA whose fingerprint is not the one it
publishes, or one that no authenticated identity advertised (``AuthenticatedIdentity``, set by the collector;
matching ``GLIDEIN_TRITON_POOL_IDENTITIES``, default ``*``) is dropped. Same-site servers come first.

For each job it writes into ``<sandbox>/.glidein_triton/`` (0600, atomically) ``pool_client.key`` (a copy
of the glidein's client key) and ``pool.json``::

    {"version": 1, "pool": "<name>", "written_at": <unix time>, "local": "<host:port or empty>",
     "client_key": "<path of pool_client.key>",
     "servers": [{"url": "host:port", "name": "...", "site": "...", "same_site": true, "ca_pem": "...",
                  "client_cert_pem": "...", "models": ["m1"], "queue_time_ms": 1.5, "accepting": true,
                  "drain_time": 0}]}

listing only the servers for which the glidein holds a certificate (``pool/clients/<CA hex>.pem``, from
enrolment) that its CA verifies for client use past the next minute. Standard library and ``openssl``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import random
import re
import selectors
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from glidein_triton.worker import pool_files, sandbox_protocol
from glidein_triton.worker.job_loader import JobDirectory
from glidein_triton.worker.word_rules import is_model_name

LOG = logging.getLogger(__name__)

POOL_SETTING = "GLIDEIN_TRITON_POOL"
POOL_NAME_SETTING = "GLIDEIN_TRITON_POOL_NAME"
#: The identities (glob patterns, comma separated) whose ads are taken, as the enrolment reads it.
IDENTITIES_SETTING = "GLIDEIN_TRITON_POOL_IDENTITIES"
DEFAULT_POOL_NAME = "default"
CLIENT_ROLE = "client"
#: The attributes of a server ad that discovery asks for (the collector's projection).
ATTRIBUTES = (
    "Name",
    "TritonPoolURL",
    "TritonPoolEnrolURL",
    "TritonPoolSite",
    "TritonPoolCA",
    "TritonPoolCAFingerprint",
    "TritonPoolModels",
    "TritonPoolQueueTimeMs",
    "TritonPoolAccepting",
    "TritonPoolDrainTime",
    "AuthenticatedIdentity",
)
#: The longest a query may take, and the most it may print (a pool of thousands of servers prints less).
QUERY_TIMEOUT = 30.0
MAX_OUTPUT = 8 << 20
#: The mean interval between queries, and how far each one is drawn from it (a fraction, both ways): the
#: glideins of a pool, started together, do not query the collector together.
PERIOD = 60.0
JITTER = 0.25
#: How often the agent looks for the glidein's condor_config until condor_startup.sh has written it.
CONFIG_WAIT = 2.0
#: A client certificate that expires within this many seconds is not given to jobs.
CERT_MARGIN = 60
OPENSSL_TIMEOUT = 10.0
VERSION = 1

HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):[0-9]{1,5}$")
FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")
ENROL_URL = re.compile(r"^https://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):[0-9]{1,5}/enrol$")

Runner = Callable[[Sequence[str], Mapping[str, str]], str]
#: Gets the glidein a certificate for a server that has none yet (:func:`enrol_at`); raises on failure.
Enroller = Callable[[Path, "Candidate"], None]


class DiscoveryError(Exception):
    """The collector could not be queried, or its answer could not be read."""


def pool_role(config: Mapping[str, str]) -> str:
    """``GLIDEIN_TRITON_POOL`` of glidein_config (``off`` when unset)."""
    return config.get(POOL_SETTING, "").strip().lower() or "off"


def pool_name(config: Mapping[str, str]) -> str:
    """``GLIDEIN_TRITON_POOL_NAME`` of glidein_config (``default`` when unset)."""
    return config.get(POOL_NAME_SETTING, "").strip() or DEFAULT_POOL_NAME


def classad_string(text: str) -> str:
    """``text`` as a ClassAd string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def constraint(name: str) -> str:
    """The servers of pool ``name`` that accept work."""
    return f'TritonPoolRole == "server" && TritonPoolName == {classad_string(name)} && TritonPoolAccepting'


def main_collector(value: str) -> str:
    """The first collector of ``GLIDEIN_Collector`` (groups by ``;`` or ``,``), or "" for none."""
    items = [item for item in re.split(r"[,;\s]+", value) if item]
    return items[0] if items else ""


def status_argv(condor_dir: str, name: str, collector: str) -> list[str]:
    """The glidein's condor_status command line for the servers of pool ``name``."""
    argv = [os.path.join(condor_dir, "bin", "condor_status")]  # noqa: PTH118
    if collector:
        argv += ["-pool", collector]
    return [*argv, "-constraint", constraint(name), "-json", "-attributes", ",".join(ATTRIBUTES)]


def run_bounded(argv: Sequence[str], environment: Mapping[str, str]) -> str:
    """The stdout of ``argv``; DiscoveryError when it fails, prints more than MAX_OUTPUT or runs past
    QUERY_TIMEOUT (then it is killed)."""
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(environment),
        )
    except OSError as error:
        raise DiscoveryError(f"cannot run {argv[0]}: {error.strerror}") from error
    output = {stream: bytearray() for stream in (process.stdout, process.stderr) if stream is not None}
    deadline = time.monotonic() + QUERY_TIMEOUT
    problem = ""
    with selectors.DefaultSelector() as selector:
        for stream in output:
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map() and not problem:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                problem = f"ran past {QUERY_TIMEOUT:g} s"
                break
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = output[key.fileobj]  # type: ignore[index]
                buffer += chunk
                if len(buffer) > MAX_OUTPUT:
                    problem = f"printed more than {MAX_OUTPUT} bytes"
    if problem:
        process.kill()
    process.wait()
    for stream in output:
        stream.close()
    stdout, stderr = (bytes(buffer).decode("utf-8", "replace") for buffer in output.values())
    if problem:
        raise DiscoveryError(f"{argv[0]} {problem}: killed")
    if process.returncode != 0:
        said = " ".join(stderr.split())[:500]
        raise DiscoveryError(f"{argv[0]} failed (exit {process.returncode}): {said}")
    return stdout


def parse_ads(stdout: str) -> list[dict[str, object]]:
    """The ads of condor_status ``-json`` (no ads: empty stdout)."""
    if not stdout.strip():
        return []
    try:
        ads = json.loads(stdout)
    except ValueError as error:
        raise DiscoveryError(f"condor_status printed no JSON: {error}") from error
    if not isinstance(ads, list) or not all(isinstance(ad, dict) for ad in ads):
        raise DiscoveryError("condor_status printed JSON that is not a list of ads")
    return ads


def fingerprint(der: bytes) -> str:
    """A certificate's fingerprint: ``sha256:`` and the hex of SHA-256 over its DER."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def pem(der: bytes) -> str:
    """A certificate in PEM."""
    body = base64.b64encode(der).decode("ascii")
    lines = [body[start : start + 64] for start in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


@dataclass(frozen=True)
class Candidate:
    """A pool server as its ad describes it, checked."""

    url: str
    name: str
    site: str
    ca_der: bytes
    ca_fingerprint: str
    models: tuple[str, ...]
    queue_time_ms: float
    accepting: bool
    drain_time: int
    enrol_url: str = ""  # where the glidein gets its certificate for this server (empty: none published)


def _text(ad: Mapping[str, object], attribute: str) -> str:
    value = ad.get(attribute, "")
    if not isinstance(value, str):
        raise ValueError(f"{attribute} is not a string")
    return value


def identities(config: Mapping[str, str]) -> tuple[str, ...]:
    """``GLIDEIN_TRITON_POOL_IDENTITIES`` of glidein_config (``*`` when unset)."""
    patterns = tuple(word.strip() for word in config.get(IDENTITIES_SETTING, "").split(",") if word.strip())
    return patterns or ("*",)


def candidate(ad: Mapping[str, object], patterns: Sequence[str] = ("*",)) -> Candidate:
    """The server an ad describes; ValueError naming what is wrong with it. The ad must have been
    advertised by an authenticated identity (the collector sets AuthenticatedIdentity) that one of
    ``patterns`` matches."""
    identity = ad.get("AuthenticatedIdentity")
    if not isinstance(identity, str) or not identity:
        raise ValueError("no AuthenticatedIdentity: not advertised by an authenticated member of the pool")
    if not any(fnmatch.fnmatchcase(identity, pattern) for pattern in patterns):
        raise ValueError(f"advertised by {identity}, not one of {IDENTITIES_SETTING} ({','.join(patterns)})")
    url = _text(ad, "TritonPoolURL").strip()
    if not HOST_PORT.match(url) or not 0 < int(url.rpartition(":")[2]) < 65536:
        raise ValueError(f"TritonPoolURL {url!r} is not host:port")
    try:
        der = base64.b64decode(_text(ad, "TritonPoolCA"), validate=True)
    except binascii.Error as error:
        raise ValueError(f"TritonPoolCA is not base64: {error}") from error
    if len(der) < 2 or der[0] != 0x30:
        raise ValueError("TritonPoolCA is not a DER certificate")
    published = _text(ad, "TritonPoolCAFingerprint").strip().lower()
    if not FINGERPRINT.match(published) or published != fingerprint(der):
        raise ValueError("TritonPoolCAFingerprint is not the fingerprint of TritonPoolCA")
    models = tuple(model for model in _text(ad, "TritonPoolModels").split(",") if model.strip())
    models = tuple(model.strip() for model in models)
    if not all(is_model_name(model) for model in models):
        raise ValueError("TritonPoolModels holds a name that is no model name")
    enrol_url = _text(ad, "TritonPoolEnrolURL").strip()
    if enrol_url and not ENROL_URL.match(enrol_url):
        raise ValueError(f"TritonPoolEnrolURL {enrol_url[:200]!r} is not https://host:port/enrol")
    queue = ad.get("TritonPoolQueueTimeMs", 0.0)
    drain = ad.get("TritonPoolDrainTime", 0)
    accepting = ad.get("TritonPoolAccepting", False)
    if isinstance(queue, bool) or not isinstance(queue, (int, float)) or queue < 0:
        raise ValueError("TritonPoolQueueTimeMs is not a number >= 0")
    if isinstance(drain, bool) or not isinstance(drain, int):
        raise ValueError("TritonPoolDrainTime is not an integer")
    if not isinstance(accepting, bool):
        raise ValueError("TritonPoolAccepting is not a boolean")
    return Candidate(
        url=url,
        name=_text(ad, "Name"),
        site=_text(ad, "TritonPoolSite"),
        ca_der=der,
        ca_fingerprint=published,
        models=models,
        queue_time_ms=float(queue),
        accepting=accepting,
        drain_time=drain,
        enrol_url=enrol_url,
    )


def candidates(
    ads: Sequence[Mapping[str, object]], site: str, patterns: Sequence[str] = ("*",)
) -> list[Candidate]:
    """The well-formed ads' servers, one per URL, those of ``site`` first (else in the collector's order);
    each dropped ad is logged with why."""
    found: list[Candidate] = []
    for ad in ads:
        try:
            server = candidate(ad, patterns)
        except ValueError as error:
            LOG.warning("pool server ad %r dropped: %s", ad.get("Name", "?"), error)
            continue
        if all(other.url != server.url for other in found):
            found.append(server)
    return sorted(found, key=lambda server: not (site and server.site == site))


def next_delay(rng: random.Random | None = None) -> float:
    """Seconds until the next query: PERIOD, drawn within JITTER of it."""
    draw = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return PERIOD * draw


def query_environment(work_dir: Path, environment: Mapping[str, str]) -> dict[str, str]:
    """``environment`` with the glidein's HTCondor configuration (condor_startup.sh writes it into the work
    dir); HTCondor's own variables of whatever started us are dropped, as condor_startup.sh does."""
    kept = {
        name: value
        for name, value in environment.items()
        if not name.startswith("_CONDOR_") and name != "CONDOR_INHERIT"
    }
    kept["CONDOR_CONFIG"] = str(work_dir / "condor_config")
    return kept


def discover(
    work_dir: Path, config: Mapping[str, str], environment: Mapping[str, str], runner: Runner = run_bounded
) -> list[Candidate]:
    """The pool's servers that accept work, same-site first; DiscoveryError when the query fails."""
    condor_dir = config.get("CONDOR_DIR", "").strip()
    if not condor_dir:
        raise DiscoveryError("glidein_config has no CONDOR_DIR: no condor_status to query the collector with")
    if not (work_dir / "condor_config").is_file():
        raise DiscoveryError(f"no {work_dir / 'condor_config'} yet (condor_startup.sh writes it)")
    argv = status_argv(condor_dir, pool_name(config), main_collector(config.get("GLIDEIN_Collector", "")))
    ads = parse_ads(runner(argv, query_environment(work_dir, environment)))
    return candidates(ads, config.get("GLIDEIN_Site", "").strip(), identities(config))


def certificate_usable(cert: Path, ca_der: bytes, now: float) -> bool:
    """Whether ``cert`` is a client certificate that the CA verifies for client use ``CERT_MARGIN`` seconds
    from ``now`` (``openssl verify``)."""
    handle, ca_file = tempfile.mkstemp(dir=cert.parent, prefix=".ca.", suffix=".pem")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(pem(ca_der))
        argv = ["openssl", "verify", "-attime", str(int(now) + CERT_MARGIN), "-purpose", "sslclient"]
        result = subprocess.run(
            [*argv, "-CAfile", ca_file, str(cert)],
            capture_output=True,
            text=True,
            timeout=OPENSSL_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        LOG.warning("cannot verify %s: %s", cert, error)
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(ca_file)  # noqa: PTH108
    if result.returncode != 0:
        LOG.info("client certificate %s not usable: %s", cert, " ".join(result.stderr.split())[:300])
    return result.returncode == 0


@dataclass(frozen=True)
class Entry:
    """A server a job may use: the candidate and the glidein's certificate for it (PEM)."""

    server: Candidate
    client_cert_pem: str
    same_site: bool


def usable_entries(
    work_dir: Path, servers: Sequence[Candidate], site: str, now: float | None = None
) -> list[Entry]:
    """The servers for which the glidein holds a usable certificate (:func:`certificate_usable`)."""
    now = time.time() if now is None else now
    entries = []
    for server in servers:
        cert = pool_files.client_cert_path(work_dir, server.ca_fingerprint)
        try:
            text = cert.read_text(encoding="ascii")
        except (OSError, ValueError):
            continue  # not enrolled there (yet)
        if certificate_usable(cert, server.ca_der, now):
            entries.append(Entry(server, text, bool(site) and server.site == site))
    return entries


def enrol_at(work_dir: Path, server: Candidate) -> None:
    """A client certificate from ``server``'s enrolment service, kept where :func:`usable_entries` finds it
    (:func:`pool_enrolment.certificate_for`: TLS checked against the CA of the ad)."""
    from glidein_triton.worker import pool_enrolment  # noqa: PLC0415 (ssl and http: when a server is new)

    ca = base64.b64encode(server.ca_der).decode("ascii")
    pool_enrolment.certificate_for(
        pool_files.pool_dir(work_dir), server.enrol_url, ca, server.ca_fingerprint, server.name or "client"
    )


def enrol_missing(work_dir: Path, servers: Sequence[Candidate], enrol: Enroller, now: float) -> None:
    """Enrol at every server with an enrolment URL for which the glidein holds no usable certificate; a
    server that refuses or cannot be reached is logged and left out (its jobs use the others)."""
    for server in servers:
        cert = pool_files.client_cert_path(work_dir, server.ca_fingerprint)
        if not server.enrol_url or (cert.is_file() and certificate_usable(cert, server.ca_der, now)):
            continue
        try:
            enrol(work_dir, server)
        except Exception as error:  # one server's enrolment never stops the others
            LOG.warning("pool server %s: no certificate from %s: %s", server.url, server.enrol_url, error)


def pool_document(
    name: str, local: str, key_path: str, entries: Sequence[Entry], now: float
) -> dict[str, object]:
    """``pool.json``'s content."""
    return {
        "version": VERSION,
        "pool": name,
        "written_at": int(now),
        "local": local,
        "client_key": key_path,
        "servers": [
            {
                "url": entry.server.url,
                "name": entry.server.name,
                "site": entry.server.site,
                "same_site": entry.same_site,
                "ca_pem": pem(entry.server.ca_der),
                "client_cert_pem": entry.client_cert_pem,
                "models": list(entry.server.models),
                "queue_time_ms": entry.server.queue_time_ms,
                "accepting": entry.server.accepting,
                "drain_time": entry.server.drain_time,
            }
            for entry in entries
        ],
    }


def write_job_files(
    job_dir: JobDirectory, sandbox: str, name: str, local: str, key: bytes, entries: Sequence[Entry]
) -> None:
    """The key's copy, then ``pool.json``, into a job's ``.glidein_triton`` (each 0600, atomically)."""
    key_path = os.path.join(sandbox, sandbox_protocol.JOB_DIR, sandbox_protocol.POOL_KEY_FILE)  # noqa: PTH118
    job_dir.write(sandbox_protocol.POOL_KEY_FILE, key.decode("ascii"))
    document = pool_document(name, local, key_path, entries, time.time())
    job_dir.write(sandbox_protocol.POOL_FILE, json.dumps(document, indent=1) + "\n")


class ClientPool:
    """What a client glidein's agent keeps: the usable servers found last (a failed query keeps them),
    refreshed in a thread of its own so that jobs are never kept waiting, and the sandboxes it wrote into
    (rewritten at each refresh while they are there)."""

    def __init__(
        self,
        work_dir: Path,
        config: Mapping[str, str],
        environment: Mapping[str, str],
        local: str,
        runner: Runner = run_bounded,
        enrol: Enroller = enrol_at,
    ) -> None:
        self.work_dir = work_dir
        self.enrol = enrol
        self.config = dict(config)
        self.environment = dict(environment)
        self.local = local
        self.runner = runner
        self.name = pool_name(config)
        self.site = config.get("GLIDEIN_Site", "").strip()
        self.entries: list[Entry] = []
        self.sandboxes: set[str] = set()
        self.lock = threading.Lock()
        #: One writer at a time: the agent's threads share one pid, which names the temporary files.
        self.writing = threading.Lock()
        self.refreshing = threading.Event()
        self.next_query = 0.0

    def refresh(self) -> None:
        """Query the collector, keep the usable servers, rewrite the sandboxes' files."""
        try:
            servers = discover(self.work_dir, self.config, self.environment, self.runner)
        except DiscoveryError as error:
            LOG.warning(
                "pool %s: %s; keeping the %d servers found before", self.name, error, len(self.entries)
            )
            return
        enrol_missing(self.work_dir, servers, self.enrol, time.time())
        entries = usable_entries(self.work_dir, servers, self.site)
        LOG.info("pool %s: %d servers, %d with a usable certificate", self.name, len(servers), len(entries))
        with self.lock:
            self.entries = entries
            written = sorted(self.sandboxes)
        for sandbox in written:
            try:
                self.write_for(sandbox)
            except OSError:  # the job ended (its sandbox is gone) or made it unwritable
                with self.lock:
                    self.sandboxes.discard(sandbox)

    def start_refresh(self, now: float) -> None:
        """A refresh in a thread when one is due (:func:`next_delay`) and none runs."""
        if now < self.next_query or self.refreshing.is_set():
            return
        if not (self.work_dir / "condor_config").is_file():
            self.next_query = now + CONFIG_WAIT  # HTCondor is not configured yet: no query can work
            return
        self.next_query = now + next_delay()
        self.refreshing.set()

        def run() -> None:
            try:
                self.refresh()
            finally:
                self.refreshing.clear()

        threading.Thread(target=run, daemon=True).start()

    def write_for(self, sandbox: str) -> None:
        """The job's pool files (no servers while the glidein has no client key); OSError when the sandbox
        cannot be written."""
        try:
            key = (pool_files.pool_dir(self.work_dir) / pool_files.CLIENT_KEY).read_bytes()
        except OSError:
            key = b""
        with self.lock:
            entries = list(self.entries) if key else []
        with self.writing:
            job_dir = JobDirectory(sandbox)
            try:
                write_job_files(job_dir, sandbox, self.name, self.local, key, entries)
            finally:
                job_dir.close()
        with self.lock:
            self.sandboxes.add(sandbox)
