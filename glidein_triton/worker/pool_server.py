"""A pool server glidein (``GLIDEIN_TRITON_POOL=server``): its own CA and server certificate, its Triton
options, and the ``TritonPool*`` attributes that let other glideins' jobs choose it.

A pool server is a remote-mode server (gRPC on the node's address, mutual TLS, the categories jobs may not
use closed, HTTP and metrics on loopback) with model control off: the operator's models are loaded at start
and nothing loads or unloads one later. Its CA lives until the glidein's end (at most seven days) and its
key never leaves ``triton/pool``: the ad carries the CA certificate and its fingerprint, never a key.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from glidein_triton.worker import access, files, pool_files
from glidein_triton.worker.classad import attribute_line, machine_ad_string
from glidein_triton.worker.errors import ConfigError
from glidein_triton.worker.settings import Settings

LOG = logging.getLogger(__name__)

#: The oldest Triton a pool server runs: older releases predate the advisories about remote access.
MIN_VERSION = (2, 51)
ROLE = "server"
CONTROL_MODE = "none"
#: A server stops accepting new work this long before its drain time (its clients' jobs need time too).
DRAIN_MARGIN = 300.0
#: Where the periodic script keeps the statistics of its last run (for the queue time since then).
QUEUE_FILE = "queue.json"
CONFIG_FILE = "config.pbtxt"
MAX_QUEUE_SIZE = re.compile(r"\bmax_queue_size\s*:\s*[1-9]")
TODIE_LINE = re.compile(r"^\s*GLIDEIN_ToDie\s*=\s*(\d+)\s*$", re.MULTILINE)


def is_pool_server(settings: Settings) -> bool:
    return settings.pool == ROLE


def end_of_life(config: Mapping[str, str], now: float) -> float:
    """When the glidein ends at the latest: ``GLIDEIN_ToDie`` if glidein_config has it (glidein_startup.sh
    writes it there only on a failure), else the start plus ``GLIDEIN_Max_Walltime`` (condor_startup.sh
    computes ToDie below it), else a week."""
    todie = config.get("GLIDEIN_ToDie", "").strip()
    if todie.isdigit():
        return float(todie)
    walltime = config.get("GLIDEIN_Max_Walltime", "").strip()
    if walltime.isdigit() and int(walltime) > 0:
        return now + int(walltime)
    return now + pool_files.MAX_CA_DAYS * 86400


def with_own_tls(settings: Settings, work_dir: Path, config: Mapping[str, str]) -> Settings:
    """A pool server's settings with its own CA and server certificate (made now, in ``triton/pool``) as its
    TLS files, unless the operator gave them (GLIDEIN_TRITON_TLS_*), and its address chosen."""
    if not is_pool_server(settings) or settings.tls_cert:
        return settings
    address = settings.address or access.node_address()
    directory = pool_files.pool_dir(work_dir)
    ca = pool_files.make_ca(directory, end_of_life(config, time.time()))
    certificate = pool_files.make_server_certificate(directory, address)
    LOG.info(
        "pool server: own CA %s (%s) until %s, server certificate for %s",
        ca,
        pool_files.certificate_fingerprint(ca.read_bytes()),
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(pool_files.not_after(ca))),
        address,
    )
    return dataclasses.replace(
        settings,
        address=address,
        tls_cert=str(certificate),
        tls_key=str(directory / pool_files.SERVER_KEY),
        tls_root_cert=str(ca),
    )


def serving_every_model(settings: Settings) -> Settings:
    """A pool server's settings with ``GLIDEIN_TRITON_MODELS=*``: with model control off Triton loads every
    model of its repository (and refuses ``--load-model``), so the plugin treats them as it treats ``*``
    (``--exit-on-error=false``: a model that fails is reported, not fatal)."""
    if not is_pool_server(settings) or list(settings.models) == ["*"]:
        return settings
    LOG.warning(
        "GLIDEIN_TRITON_POOL=server loads every model of its repository (model control is off): "
        "GLIDEIN_TRITON_MODELS=%s is not a choice among them",
        ",".join(settings.models),
    )
    return dataclasses.replace(settings, models=("*",))


def triton_options(settings: Settings) -> list[str]:
    """Connection ageing (so that each client's certificate is checked again when it reconnects)."""
    return [
        f"--grpc-max-connection-age={round(settings.pool_connection_age * 1000)}",
        f"--grpc-max-connection-age-grace={round(settings.pool_connection_grace * 1000)}",
    ]


def check_version(version: str) -> None:
    """Refuse a Triton older than :data:`MIN_VERSION` (``version`` as its metadata gives it, "2.51.0")."""
    numbers = re.match(r"(\d+)\.(\d+)", version)
    if numbers is None or (int(numbers[1]), int(numbers[2])) < MIN_VERSION:
        minimum = ".".join(map(str, MIN_VERSION))
        found = version or "unknown"
        raise ConfigError(
            f"GLIDEIN_TRITON_POOL=server needs Triton {minimum} or newer; this server is {found}"
        )


def models_without_queue_limit(repository: str) -> list[str]:
    """The models of ``repository`` whose config.pbtxt sets no ``max_queue_size``: Triton has no option
    to set one from outside (a model's configuration is its own file; only a load request in explicit
    mode can override it), so a full queue of such a model waits instead of answering UNAVAILABLE."""
    try:
        names = sorted(entry.name for entry in os.scandir(repository) if entry.is_dir())
    except OSError:
        return []
    unlimited = []
    for name in names:
        try:
            text = (Path(repository) / name / CONFIG_FILE).read_text(errors="replace")
        except OSError:
            text = ""
        if not MAX_QUEUE_SIZE.search(text):
            unlimited.append(name)
    return unlimited


def ca_values(ca_pem: bytes) -> list[tuple[str, str]]:
    """``TritonPoolCA`` (the certificate's DER in base64, which needs no quoting) and its fingerprint."""
    return [
        ("TRITON_POOL_CA", pool_files.certificate_base64(ca_pem)),
        ("TRITON_POOL_CA_FINGERPRINT", pool_files.certificate_fingerprint(ca_pem)),
    ]


def startup_values(
    settings: Settings, config: Mapping[str, str], grpc_url: str, enrol_url: str = ""
) -> list[tuple[str, str]]:
    """What a pool server publishes at startup (``TritonPoolAccepting`` False until it is ready)."""
    ca_pem = Path(settings.tls_root_cert).read_bytes()
    return [
        ("TRITON_POOL_ROLE", ROLE),
        ("TRITON_POOL_NAME", settings.pool_name),
        ("TRITON_POOL_URL", grpc_url),
        ("TRITON_POOL_ENROL_URL", machine_ad_string(enrol_url)),
        ("TRITON_POOL_SITE", machine_ad_string(config.get("GLIDEIN_Site", ""))),
        *ca_values(ca_pem),
        ("TRITON_POOL_MODELS", ""),
        ("TRITON_POOL_QUEUE_TIME_MS", "0"),
        ("TRITON_POOL_ACCEPTING", "False"),
        ("TRITON_POOL_DRAIN_TIME", str(drain_time(config))),
    ]


def ready_values(models: Sequence[str], config: Mapping[str, str], now: float) -> list[tuple[str, str]]:
    """What turns a ready pool server on."""
    return [
        ("TRITON_POOL_MODELS", machine_ad_string(",".join(sorted(models)))),
        ("TRITON_POOL_ACCEPTING", str(accepting(True, drain_time(config), now))),
    ]


def drain_time(config: Mapping[str, str], environment: Mapping[str, str] | None = None) -> int:
    """When the glidein stops serving (unix time; 0: unknown): ``GLIDEIN_ToDie`` from glidein_config, else
    from the glidein's condor_config (``$CONDOR_CONFIG``, which condor_startup.sh writes with
    ``GLIDEIN_ToDie = <time>`` and the startd's cron jobs inherit), else 0."""
    todie = config.get("GLIDEIN_ToDie", "").strip()
    if todie.isdigit():
        return int(todie)
    condor_config = (os.environ if environment is None else environment).get("CONDOR_CONFIG", "")
    if condor_config:
        try:
            found = TODIE_LINE.findall(Path(condor_config).read_text(errors="replace"))
        except OSError:
            found = []
        if found:
            return int(found[-1])
    return 0


def accepting(ready: bool, drain: int, now: float) -> bool:
    """A ready server accepts new work until :data:`DRAIN_MARGIN` before its drain time."""
    return ready and (drain == 0 or now < drain - DRAIN_MARGIN)


def queue_time_ms(work_dir: Path, queue_ns: int, count: int) -> float:
    """The mean queue time per request (ms) since the last call, from the server's running totals of
    queue ns and successful requests (a restarted server's totals start again from 0)."""
    import json  # noqa: PLC0415 (only a pool server's periodic run needs it)

    path = pool_files.pool_dir(work_dir) / QUEUE_FILE
    try:
        last = json.loads(path.read_bytes())
        last_ns, last_count = int(last["queue_ns"]), int(last["count"])
    except (OSError, ValueError, KeyError, TypeError):
        last_ns, last_count = 0, 0
    if queue_ns < last_ns or count < last_count:  # a new server life
        last_ns, last_count = 0, 0
    try:
        files.private_directory(path.parent)  # none yet with the operator's TLS files
        files.write_atomically(path, json.dumps({"queue_ns": queue_ns, "count": count}).encode())
    except OSError as error:
        LOG.warning("cannot keep the queue totals in %s: %s", path, error)
    served = count - last_count
    return round((queue_ns - last_ns) / 1e6 / served, 3) if served > 0 else 0.0


def periodic_lines(
    work_dir: Path,
    config: Mapping[str, str],
    ready: bool,
    models: Sequence[str],
    queue_ns: int,
    count: int,
    now: float,
) -> list[str]:
    """The startd cron lines that refresh a pool server's ad in each periodic run."""
    drain = drain_time(config)
    return [
        attribute_line("TritonPoolModels", ",".join(sorted(models))),
        attribute_line("TritonPoolQueueTimeMs", queue_time_ms(work_dir, queue_ns, count)),
        attribute_line("TritonPoolAccepting", accepting(ready, drain, now)),
        attribute_line("TritonPoolDrainTime", drain),
    ]
