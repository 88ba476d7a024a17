"""What the startup script publishes: machine ClassAd attributes and job environment variables.

Each attribute is a glidein_config key (the value) plus a condor_vars.lst line that makes
condor_startup.sh put it in the startd ad (PUBLISH ``Y``) and, for some, in the job environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from glidein_triton.worker.classad import machine_ad_string
from glidein_triton.worker.glidein_config import CondorVar
from glidein_triton.worker.gpus import GPU
from glidein_triton.worker.ports import LOOPBACK

# glidein_config key, condor_vars type, machine ad attribute, job environment variable ("-": none).
ATTRIBUTES = (
    CondorVar("HAS_TRITON", "C", "HasTriton", "HAS_TRITON"),
    CondorVar("TRITON_GRPC_URL", "S", "TritonGRPCURL", "TRITON_GRPC_URL"),
    CondorVar("TRITON_HTTP_URL", "S", "TritonHTTPURL", "TRITON_HTTP_URL"),
    CondorVar("TRITON_METRICS_URL", "S", "TritonMetricsURL", "TRITON_METRICS_URL"),
    CondorVar("TRITON_VERSION", "S", "TritonVersion"),
    CondorVar("TRITON_GPUS", "I", "TritonGPUs"),
    CondorVar("TRITON_GPU_NAMES", "S", "TritonGPUNames"),
    CondorVar("TRITON_GPUS_IDLE", "I", "TritonGPUsIdle"),
    CondorVar("TRITON_GPU_FALLBACK", "S", "TritonGPUFallback"),
    CondorVar("TRITON_FAILED_MODELS", "S", "TritonFailedModels"),
    CondorVar("TRITON_RUNTIME", "S", "TritonRuntime"),
    CondorVar("TRITON_MODEL_REPOSITORY", "S", "TritonModelRepository", "TRITON_MODEL_REPOSITORY"),
    CondorVar("TRITON_REMOTE", "C", "TritonRemote"),
    CondorVar("TRITON_GRPC_TLS", "C", "TritonGRPCTLS"),
    CondorVar("TRITON_FAILURE", "S", "TritonFailure"),
    # The server's share of the slot (reservation.py): published, and the two HTCondor knobs that keep it.
    CondorVar("TRITON_RESERVED_CPUS", "I", "TritonReservedCpus"),
    CondorVar("TRITON_RESERVED_MEMORY", "I", "TritonReservedMemory"),
    CondorVar("TRITON_CONDOR_RESERVED_MEMORY", "I", "RESERVED_MEMORY", publish="N"),
    CondorVar("TRITON_CONDOR_STARTD_CPUS", "I", "STARTD.GLIDEIN_CPUS", publish="N"),
    # pool: server (pool_server.py; the periodic script refreshes the last four)
    CondorVar("TRITON_POOL_ROLE", "S", "TritonPoolRole"),
    CondorVar("TRITON_POOL_NAME", "S", "TritonPoolName"),
    CondorVar("TRITON_POOL_URL", "S", "TritonPoolURL"),
    CondorVar("TRITON_POOL_ENROL_URL", "S", "TritonPoolEnrolURL"),
    CondorVar("TRITON_POOL_SITE", "S", "TritonPoolSite"),
    CondorVar("TRITON_POOL_CA", "S", "TritonPoolCA"),
    CondorVar("TRITON_POOL_CA_FINGERPRINT", "S", "TritonPoolCAFingerprint"),
    CondorVar("TRITON_POOL_MODELS", "S", "TritonPoolModels"),
    CondorVar("TRITON_POOL_QUEUE_TIME_MS", "C", "TritonPoolQueueTimeMs"),
    CondorVar("TRITON_POOL_ACCEPTING", "C", "TritonPoolAccepting"),
    CondorVar("TRITON_POOL_DRAIN_TIME", "I", "TritonPoolDrainTime"),
    # pool: enrolment. A pool client's key fingerprint, which pool servers sign certificates for.
    CondorVar("TRITON_POOL_CLIENT_KEY", "S", "TritonPoolClientKey"),
)
ATTRIBUTE_BY_KEY = {var.name: var for var in ATTRIBUTES}


@dataclass(frozen=True)
class Endpoint:
    """Where a running server answers, and how it is protected."""

    grpc_host: str
    grpc_port: int
    http_port: int
    metrics_port: int
    tls: bool = False
    remote: bool = False


def server_values(
    endpoint: Endpoint, gpus: Sequence[GPU], runtime: str, model_repository: str
) -> list[tuple[str, str]]:
    """The values of a launched server, published while it loads: ``HasTriton`` stays False until ready."""
    return [
        ("HAS_TRITON", "False"),
        ("TRITON_GRPC_URL", f"{endpoint.grpc_host}:{endpoint.grpc_port}"),
        ("TRITON_HTTP_URL", f"{LOOPBACK}:{endpoint.http_port}"),
        (
            "TRITON_METRICS_URL",
            f"http://{LOOPBACK}:{endpoint.metrics_port}/metrics" if endpoint.metrics_port else "",
        ),
        ("TRITON_GPUS", str(len(gpus))),
        ("TRITON_GPU_NAMES", machine_ad_string(",".join(gpu.label for gpu in gpus))),
        ("TRITON_GPUS_IDLE", "0"),
        ("TRITON_GPU_FALLBACK", ""),
        ("TRITON_FAILED_MODELS", ""),
        ("TRITON_RUNTIME", runtime),
        ("TRITON_MODEL_REPOSITORY", machine_ad_string(model_repository)),
        ("TRITON_REMOTE", str(endpoint.remote)),
        ("TRITON_GRPC_TLS", str(endpoint.tls)),
        ("TRITON_FAILURE", ""),
    ]


def server_report_values(
    used: Sequence[GPU], idle: int, fallback: str, failed_models: Sequence[str]
) -> list[tuple[str, str]]:
    """What the ready server reports: the GPUs it initialised, those left idle, why it runs without the
    GPUs it was meant to have, and the models that failed to load."""
    return [
        ("TRITON_GPUS", str(len(used))),
        ("TRITON_GPU_NAMES", machine_ad_string(",".join(gpu.label for gpu in used))),
        ("TRITON_GPUS_IDLE", str(idle)),
        ("TRITON_GPU_FALLBACK", machine_ad_string(fallback)),
        ("TRITON_FAILED_MODELS", machine_ad_string(",".join(failed_models))),
    ]


#: ``HasTriton`` on a fixed slot layout: only slot 1 can follow the server. glidein_startup.sh registers
#: the periodic script with ``STARTD_CRON_<name>_SLOTS = 1`` and the startd merges a cron job's output only
#: into the slots of that list (startd_named_classad_list.cpp: ``InSlotList``), so slots 2..N would keep this
#: value after the server died. Every dynamic slot of a partitionable slot has ``SlotID`` 1.
SLOT_ONE_ONLY = "(SlotID=?=1)"


def ready_values(version: str, slots_layout: str = "partitionable") -> list[tuple[str, str]]:
    """What turns the published server on once it answers ready. ``slots_layout`` is glidein_config's
    ``SLOTS_LAYOUT``: condor_startup.sh makes one partitionable slot for "partitionable", else fixed slots
    (one a CPU), where only slot 1's ad follows the server (:data:`SLOT_ONE_ONLY`)."""
    has_triton = "True" if slots_layout == "partitionable" else SLOT_ONE_ONLY
    return [("HAS_TRITON", has_triton), ("TRITON_VERSION", machine_ad_string(version))]


def cleared_values() -> list[tuple[str, str]]:
    """Empty values for every server key: condor_startup.sh publishes no attribute for an empty value."""
    return [(var.name, "") for var in ATTRIBUTES if var.name not in ("HAS_TRITON", "TRITON_FAILURE")]


def off_values(failure: str = "") -> list[tuple[str, str]]:
    """The values when there is no server: ``HasTriton = False`` and, after a failure, its reason."""
    values = [("HAS_TRITON", "False")]
    return [*values, ("TRITON_FAILURE", machine_ad_string(failure))] if failure else values


def changed(values: Sequence[tuple[str, str]], published: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The ``values`` that differ from the last ``published`` value of their key."""
    last = dict(published)
    return [(key, value) for key, value in values if last.get(key) != value]


def condor_vars(values: Sequence[tuple[str, str]]) -> list[CondorVar]:
    """The condor_vars.lst lines for the published keys (each once, in order)."""
    return [ATTRIBUTE_BY_KEY[key] for key in dict(values)]
