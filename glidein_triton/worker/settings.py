"""The operator's settings, read from glidein_config into one frozen dataclass.

Factory and frontend ``<attr>`` elements with ``parameter="True"`` arrive in glidein_config as keys; these
are the ``GLIDEIN_TRITON_*`` keys below. Every invalid value raises :class:`ConfigError` naming the key,
the value and what is allowed. ``SETTINGS`` is the one table of them: the ``Settings`` field, parser,
default and documentation of each key. ``Settings``, the state file's defaults (:func:`default_value`), the
operator commands and docs/settings.md all take their values from it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from glidein_triton.worker import cvmfs, failure_messages, reservation
from glidein_triton.worker.errors import ConfigError
from glidein_triton.worker.images import IMAGES_DICT, SERVER_IMAGE_KEY, images_dict
from glidein_triton.worker.word_rules import is_model_name, truth_value

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs 3 ms of every start
    from typing import Any

RUNTIMES = ("auto", "apptainer", "singularity", "process")
POOL_ROLES = ("off", "server", "client")
GPU_MODES = ("auto", "gpu", "cpu")

#: tritonserver options an operator may add with GLIDEIN_TRITON_SERVER_ARGS. Ports, addresses, the model
#: repository, the model control mode and API restrictions are set by the plugin and cannot be overridden.
ALLOWED_SERVER_OPTIONS = (
    "--backend-config",
    "--buffer-manager-thread-count",
    "--cache-config",
    "--cuda-memory-pool-byte-size",
    "--exit-on-error",
    "--exit-timeout-secs",
    "--http-thread-count",
    "--log-error",
    "--log-format",
    "--log-info",
    "--log-verbose",
    "--log-warning",
    "--min-supported-compute-capability",
    "--model-load-retry-count",
    "--model-load-thread-count",
    "--pinned-memory-pool-byte-size",
    "--rate-limit",
    "--rate-limit-resource",
    "--response-cache-byte-size",
    "--strict-readiness",
)


def _trimmed(value: str) -> str:
    """The value without the blanks that gconfig_get_bool strips (space, tab, newline, return)."""
    return value.strip(" \t\n\r")


def _digits(word: str) -> bool:
    """ASCII digits only, as GlideinWMS's ``[0-9]+`` (str.isdigit also takes "²", which int() refuses)."""
    return word.isascii() and word.isdigit()


def parse_bool(key: str, value: str) -> bool:
    """A truth value as ``gconfig_get_bool`` reads it; anything it would not recognise is an error."""
    truth = truth_value(value)
    if truth is None:
        raise ConfigError(failure_messages.NOT_A_TRUTH_VALUE.format(key=key, value=value))
    return truth


def parse_text(key: str, value: str) -> str:
    """Any text (a path, an image, a command), without the surrounding blanks."""
    del key
    return _trimmed(value)


def choice(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    """A parser of one word of ``choices`` (any case)."""

    def parse(key: str, value: str) -> str:
        word = _trimmed(value).lower()
        if word not in choices:
            raise ConfigError(
                failure_messages.NOT_A_CHOICE.format(key=key, value=value, choices=", ".join(choices))
            )
        return word

    return parse


def parse_port(key: str, value: str) -> int:
    """0 (choose a free port) or a port number from 1024 to 65535."""
    word = _trimmed(value)
    if not _digits(word) or not (int(word) == 0 or 1024 <= int(word) <= 65535):
        raise ConfigError(failure_messages.NOT_A_PORT.format(key=key, value=value))
    return int(word)


def seconds(low: float, high: float) -> Callable[[str, str], float]:
    """A parser of a number of seconds from ``low`` to ``high``."""

    def parse(key: str, value: str) -> float:
        try:
            number = float(_trimmed(value))
        except ValueError:
            number = float("nan")
        if not low <= number <= high:
            raise ConfigError(failure_messages.NOT_SECONDS.format(key=key, value=value, low=low, high=high))
        return number

    return parse


def parse_address(key: str, value: str) -> str:
    """An IPv4 address (empty: choose the node's)."""
    word = _trimmed(value)
    if not word:
        return ""
    import ipaddress  # noqa: PLC0415 (only remote mode needs it; the startup imports as little as it can)

    try:
        ipaddress.IPv4Address(word)
    except ValueError as error:
        raise ConfigError(failure_messages.NOT_AN_ADDRESS.format(key=key, value=value)) from error
    return word


def parse_pool_name(key: str, value: str) -> str:
    """A pool name: letters, digits, ``.``, ``_`` and ``-`` (it is compared in ClassAd constraints)."""
    word = _trimmed(value)
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", word):
        raise ConfigError(failure_messages.NOT_A_POOL_NAME.format(key=key, value=value))
    return word


def count(low: int, high: int) -> Callable[[str, str], int]:
    """A parser of a whole number from ``low`` to ``high``."""

    def parse(key: str, value: str) -> int:
        word = _trimmed(value)
        if not _digits(word) or not low <= int(word) <= high:
            raise ConfigError(
                failure_messages.NOT_A_WHOLE_NUMBER.format(key=key, value=value, low=low, high=high)
            )
        return int(word)

    return parse


#: The least memory limit an operator may set (MiB): the server's own data is more (469 MiB idle on 2 cores).
MEMORY_LIMIT_MIN = 256
MEMORY_LIMIT_MAX = 1 << 24
#: The least the automatic limit gives: the server's own data grows with the node's cores and its models
#: (each thread maps an 8 MiB stack): 469 MiB with 59 threads on 2 cores, ~170 MiB more per python model.
MEMORY_LIMIT_AUTO_FLOOR = 2048


def parse_memory_limit(key: str, value: str) -> int | None:
    """``auto`` (None: chosen at startup, see :func:`memory_limit`), 0 (no limit) or a number of MiB."""
    word = _trimmed(value).lower()
    if word == "auto":
        return None
    if not _digits(word) or not (int(word) == 0 or MEMORY_LIMIT_MIN <= int(word) <= MEMORY_LIMIT_MAX):
        raise ConfigError(
            failure_messages.NOT_A_MEMORY_LIMIT.format(
                key=key, value=value, low=MEMORY_LIMIT_MIN, high=MEMORY_LIMIT_MAX
            )
        )
    return int(word)


def memory_limit(setting: int | None, gpus: bool, glidein_mib: int) -> int:
    """The server's data limit in MiB (0: none) for GLIDEIN_TRITON_SERVER_MEMORY_LIMIT=``setting``, auto
    when None: none with GPUs, else half of the glidein's memory ``glidein_mib`` (its share of the node,
    :func:`reservation.glidein_memory`; none when unknown), never below MEMORY_LIMIT_AUTO_FLOOR.

    Not the glidein's whole memory: the limit counts mapped memory, thread stacks included, so that
    legitimate model loads would fail under a tight one (a second python model did not load under 640 MiB).
    Half the glidein's share keeps one process from taking the memory of the glidein, or of the other
    glideins on the node, which is what reached the kernel's OOM killer.
    """
    if setting is not None:
        return setting
    if gpus or not glidein_mib:
        return 0
    return max(glidein_mib // 2, MEMORY_LIMIT_AUTO_FLOOR)


def parse_reserved_memory(key: str, value: str) -> int | None:
    """``auto`` (None: chosen at startup, see :func:`reservation.reserve`) or a number of MiB (0: none)."""
    word = _trimmed(value).lower()
    if word == "auto":
        return None
    if not _digits(word) or int(word) > MEMORY_LIMIT_MAX:
        raise ConfigError(
            failure_messages.NOT_A_MEMORY_RESERVATION.format(key=key, value=value, high=MEMORY_LIMIT_MAX)
        )
    return int(word)


def parse_server_args(key: str, value: str) -> tuple[str, ...]:
    """Extra tritonserver options: shell-like words, each ``--option[=value]`` from the allow-list."""
    try:
        words = shlex.split(value)
    except ValueError as error:
        raise ConfigError(failure_messages.NOT_ARGUMENTS.format(key=key, value=value, error=error)) from error
    for word in words:
        option = word.split("=", 1)[0]
        if option not in ALLOWED_SERVER_OPTIONS:
            allowed = ", ".join(ALLOWED_SERVER_OPTIONS)
            raise ConfigError(
                failure_messages.OPTION_NOT_ALLOWED.format(key=key, option=option, allowed=allowed)
            )
    return tuple(words)


def parse_models(key: str, value: str) -> tuple[str, ...]:
    """Model names to load at start, separated by commas or spaces; ``*`` loads every model."""
    names = tuple(name for name in re.split(r"[,\s]+", value.strip()) if name)
    if names == ("*",):
        return names
    for name in names:
        if not is_model_name(name):
            raise ConfigError(failure_messages.NOT_A_MODEL_NAME.format(key=key, name=name))
    return names


def parse_patterns(key: str, value: str) -> tuple[str, ...]:
    """Glob patterns (fnmatch) separated by commas; at least one."""
    patterns = tuple(word.strip() for word in value.split(",") if word.strip())
    if not patterns:
        raise ConfigError(failure_messages.NOT_PATTERNS.format(key=key, value=value))
    return patterns


def parse_prefixes(key: str, value: str) -> tuple[str, ...]:
    """Absolute path prefixes separated by commas or blanks; ``/`` alone would allow everything."""
    prefixes = tuple(value.replace(",", " ").split())
    for prefix in prefixes:
        if not prefix.startswith("/") or prefix.rstrip("/") == "":
            raise ConfigError(failure_messages.NOT_A_PATH_PREFIX.format(key=key, value=value, prefix=prefix))
    return prefixes


@dataclass(frozen=True)
class SettingSpec:
    """One glidein_config key of the plugin: the ``Settings`` field it fills ("" for a key only the startup
    shell script reads), how its text is read, its default (used when the key is unset or blank) and its
    documentation (docs/settings.md)."""

    key: str
    field: str
    parse: Callable[[str, str], Any]
    default: str
    allowed: str
    description: str
    default_text: str = ""

    @property
    def shown_default(self) -> str:
        """The default as the docs show it."""
        return self.default_text or self.default or "(none)"


SETTINGS = (
    SettingSpec(
        "GLIDEIN_TRITON",
        "enabled",
        parse_bool,
        "False",
        "truth value",
        "The switch: start a Triton server in this glidein.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_REQUIRED",
        "required",
        parse_bool,
        "False",
        "truth value",
        "Fail the glidein (non-zero exit) when the server cannot be started. Otherwise a failure is "
        "reported through error_gen and the glidein runs on with HasTriton = False.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_IMAGE",
        "image",
        parse_text,
        "",
        "image path or URI",
        "Server image for the apptainer/singularity runtimes: a path on CVMFS (docs/images.md lists the "
        "maintained ones). A docker:// or other remote image is downloaded and converted by every glidein.",
        default_text="the tritonserver key of SINGULARITY_IMAGES_DICT",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_MODEL_REPOSITORY",
        "model_repository",
        parse_text,
        "",
        "directory",
        "Model repository served; bound into the container at /models.",
        default_text="an empty repository in the work directory",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_MODELS",
        "models",
        parse_models,
        "*",
        "model names or *",
        "Models loaded at start (comma separated).",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_RUNTIME",
        "runtime",
        choice(RUNTIMES),
        "auto",
        " | ".join(RUNTIMES),
        "auto: a container instance when an image and SINGULARITY_PATH are there, else the process runtime.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_SERVER_BINARY",
        "server_binary",
        parse_text,
        "tritonserver",
        "command or path",
        "The server executable for the process runtime (found on PATH when not a path).",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_GPU",
        "gpu_mode",
        choice(GPU_MODES),
        "auto",
        " | ".join(GPU_MODES),
        "auto: use the glidein's GPUs when it has some (GLIDEIN_TRITON_ENTRY_GPUS, or a CUDA_VISIBLE_DEVICES "
        "from the site) and the server can use them, else CPU; gpu: fail without a usable GPU; cpu: never "
        "use a GPU.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_ENTRY_GPUS",
        "entry_gpus",
        parse_bool,
        "False",
        "truth value",
        "The entry gives its glideins GPUs (set by the factory on GPU entries, const): auto mode uses them, "
        "the frontend sends Triton GPU jobs (+RequiresTritonGPU) only to such entries.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_HTTP_PORT",
        "http_port",
        parse_port,
        "0",
        "0 or 1024-65535",
        "HTTP port; 0 chooses a free one.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_GRPC_PORT",
        "grpc_port",
        parse_port,
        "0",
        "0 or 1024-65535",
        "gRPC port; 0 chooses a free one.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_METRICS_PORT",
        "metrics_port",
        parse_port,
        "0",
        "0 or 1024-65535",
        "Metrics port; 0 chooses a free one.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_METRICS",
        "metrics",
        parse_bool,
        "False",
        "truth value",
        "Serve Prometheus metrics on the metrics port (127.0.0.1). Off, the counters come from the "
        "statistics API and TritonGPUUtilization is not published.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_READY_TIMEOUT",
        "ready_timeout",
        seconds(1, 3600),
        "240",
        "1-3600 seconds",
        "How long to wait for /v2/health/ready.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_INSTANCE_START_TIMEOUT",
        "instance_start_timeout",
        seconds(1, 3600),
        "300",
        "1-3600 seconds",
        "How long `$SINGULARITY_PATH instance start` may take, including the download and conversion of a "
        "remote image (the readiness wait comes after it).",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_STOP_GRACE",
        "stop_grace",
        seconds(0, 300),
        "1.5",
        "0-300 seconds",
        "How long cleanup waits after SIGTERM before SIGKILL (shared memory of a killed server is removed). "
        "Triton's graceful exit takes about 1 s, plus about 2 s with python-backend models.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_REMOTE",
        "remote",
        parse_bool,
        "False",
        "truth value",
        "Remote mode: gRPC listens on the node's address (GLIDEIN_TRITON_ADDRESS) so jobs on other nodes can "
        "use this server; HTTP and metrics stay on 127.0.0.1. Requires mutual TLS "
        "(GLIDEIN_TRITON_TLS_CERT, _KEY and _ROOT_CERT: only clients with a certificate it signed get in).",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_ADDRESS",
        "address",
        parse_address,
        "",
        "IPv4 address",
        "The address gRPC listens on and is published with in remote mode.",
        default_text="the node's first non-loopback address",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_TLS_CERT",
        "tls_cert",
        parse_text,
        "",
        "file",
        "Server certificate (PEM): enables gRPC TLS (with _KEY).",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_TLS_KEY",
        "tls_key",
        parse_text,
        "",
        "file",
        "Private key (PEM) of GLIDEIN_TRITON_TLS_CERT.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_TLS_ROOT_CERT",
        "tls_root_cert",
        parse_text,
        "",
        "file",
        "CA certificate (PEM): when set, gRPC clients must present a certificate it signed (mutual TLS).",
    ),
    # pool: server (the pool mode's settings of a server glidein)
    SettingSpec(
        "GLIDEIN_TRITON_POOL",
        "pool",
        choice(POOL_ROLES),
        "off",
        ", ".join(POOL_ROLES),
        "Pool mode (docs/security.md): `server` serves jobs of other glideins of the pool over gRPC with "
        "mutual TLS on the node's address (remote mode, with a CA and server certificate this glidein makes "
        "itself unless GLIDEIN_TRITON_TLS_* are set), model control off (the operator's models preloaded), "
        "and publishes TritonPool* attributes for clients to find it; `client` uses the pool's servers.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_POOL_NAME",
        "pool_name",
        parse_pool_name,
        "default",
        "letters, digits, . _ -",
        "Servers and clients of one pool name find each other only (TritonPoolName).",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_POOL_CONNECTION_AGE",
        "pool_connection_age",
        seconds(10, 86400),
        "600",
        "10-86400 seconds",
        "A pool server closes each gRPC connection after this long (--grpc-max-connection-age), so a "
        "client's certificate is checked again when it reconnects: no connection outlives it by much more.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_POOL_CONNECTION_GRACE",
        "pool_connection_grace",
        seconds(1, 3600),
        "30",
        "1-3600 seconds",
        "How long a pool server lets the requests of an aged connection finish "
        "(--grpc-max-connection-age-grace).",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_LOAD_TIMEOUT",
        "load_timeout",
        seconds(1, 3600),
        "300",
        "1-3600 seconds",
        "How long the pre-job hook waits for Triton to load a model a job asked for.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_RESTART_LIMIT",
        "restart_limit",
        count(0, 100),
        "3",
        "0-100",
        "How many times the periodic script restarts a crashed or hung server (0: never).",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_RESTART_BACKOFF",
        "restart_backoff",
        seconds(0, 3600),
        "60",
        "0-3600 seconds",
        "Wait before the second restart; it doubles for each further restart.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_RESTART_WINDOW",
        "restart_window",
        seconds(0, 604800),
        "3600",
        "0-604800 seconds",
        "The restart limit counts the restarts of the last this many seconds: an older one is given back, "
        "so a server that requests crash (before any credential is checked) comes back once they stop, "
        "and cannot use up the restarts of the rest of the glidein. 0: the glidein's whole life (a server "
        "that reached the limit stays down).",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_IDLE_MEMORY_GROWTH",
        "idle_memory_growth",
        count(0, 1048576),
        "2048",
        "0-1048576 MiB",
        "How far the server's resident memory (TritonResidentMemoryMB) may stay above the lowest it had "
        "since it got ready: above it for two periodic runs in a row while no job holds a model and no "
        "request is served (e.g. after refused large requests), the periodic script restarts the server, "
        "which no job then uses (not counted in GLIDEIN_TRITON_RESTART_LIMIT). 0: never.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_WATCHDOG_PERIOD",
        "watchdog_period",
        seconds(0, 3600),
        "30",
        "0-3600 seconds",
        "How often the agent checks that the glidein (GLIDEIN_STARTUP_PID) is alive; after 3 misses it "
        "stops the server, in case the glidein ended without its cleanup. 0: the agent does not follow it.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_JOB_REPOSITORIES",
        "job_repositories",
        parse_prefixes,
        "",
        "absolute path prefixes, comma or space separated",
        "Where jobs may load models from (TritonModelRepository), e.g. /cvmfs/myvo.example.org/models; "
        "checked on the resolved path; every file owned by root or the prefix's owner, never writable by "
        "others. Empty: no job repositories.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_CODE_REPOSITORIES",
        "code_repositories",
        parse_prefixes,
        "",
        "absolute path prefixes, comma or space separated",
        "Job repositories trusted for code: only there may a job's model run code in the server (python "
        "backend, custom backends, execution environments). Elsewhere only data models load.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_JOB_MODEL_SIZE_LIMIT",
        "job_model_size_limit",
        count(1, 1 << 20),
        "8192",
        "1-1048576 MiB",
        "The largest job model (all its files) the agent copies into the private snapshot the server loads "
        "(in the glidein's work directory, on its disk); a larger model is refused.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_PERIODIC_PERIOD",
        "periodic_period",
        seconds(10, 86400),
        "300",
        "10-86400 seconds",
        "The period= of the periodic script in the factory XML: HTCondor kills a run still going when the "
        "next one is due, so every wait of one run (a restart included) is bounded by it.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_PYTHON",
        "",
        parse_text,
        "",
        "path of a Python >= 3.9",
        "The Python that runs the worker code; the startup script checks it, then records the interpreter it "
        "found here. On EL8 (python3 is 3.6): the python39 package's python3.9, found on PATH.",
        default_text="python3, python3.13 ... python3.9 on PATH, then the LCG views' Pythons on CVMFS",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_SERVER_MEMORY_LIMIT",
        "server_memory_limit",
        parse_memory_limit,
        "auto",
        f"auto, 0 or {MEMORY_LIMIT_MIN}-{MEMORY_LIMIT_MAX} MiB",
        "The server's data size limit (RLIMIT_DATA: heap and other private writable memory, thread stacks "
        "included, counted when mapped, not when used), which bounds what a request can cost before the "
        "server refuses it: an HTTP request over it is cut off, a gRPC one ends the server (the periodic "
        "script restarts it). Only the server and what it starts have it. auto: half the glidein's memory "
        "(GLIDEIN_MaxMemMBs, else the node's within the batch system's memory cgroup, divided among the "
        "GLIDEIN_MULTIGLIDEIN glideins of one job: each glidein on a node gets half its own share), at "
        f"least {MEMORY_LIMIT_AUTO_FLOOR} MiB (the server's own data, thread "
        "stacks included, grows with the node's cores and its models: docs/security.md); no limit when the "
        "server uses GPUs (not measured with CUDA). 0: no limit.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_RESERVED_CPUS",
        "reserved_cpus",
        count(0, 1024),
        "1",
        "0-1024 CPUs",
        "CPUs the startd keeps from jobs for the server (measured: a CPU server took 0.24 of a core for one "
        "job inferring back to back with the bundled model, more with more jobs): "
        "condor_vars.lst sets STARTD.GLIDEIN_CPUS to GLIDEIN_CPUS minus this, published as "
        "TritonReservedCpus. Only when GLIDEIN_CPUS is a number when the plugin runs (auto, node and slot "
        "are counted later by glidein_cpus_setup.sh), with partitionable slots, and the glidein keeps one "
        "CPU for jobs; else 0.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_RESERVED_MEMORY",
        "reserved_memory",
        parse_reserved_memory,
        "auto",
        "auto, 0 or 1-16777216 MiB",
        "Memory the startd keeps from jobs for the server: condor_vars.lst sets HTCondor's RESERVED_MEMORY, "
        "which the startd subtracts from the glidein's MEMORY; published as TritonReservedMemory. At most "
        "half the glidein's memory (as for GLIDEIN_TRITON_SERVER_MEMORY_LIMIT). auto: "
        f"{reservation.CPU_SERVER_MEMORY} MiB for a CPU server (measured: 54 MiB PSS idle, 60 busy, server "
        "and stub of one python model; each further python model adds a stub of ~170 MiB), "
        f"{reservation.GPU_SERVER_MEMORY} MiB with GPUs (not measured here: CUDA contexts, pinned "
        "buffers). 0: none.",
    ),
    # pool: enrolment (the settings of the enrolment service)
    SettingSpec(
        "GLIDEIN_TRITON_POOL_IDENTITIES",
        "pool_identities",
        parse_patterns,
        "*",
        "glob patterns, comma separated",
        "A pool server's enrolment signs a client's key only when the client ad that names it was "
        "advertised with an AuthenticatedIdentity matching one of these (e.g. *@frontend.example.org: the "
        "glideins of one frontend, any site). The collector sets that identity; it names a frontend group "
        "and site, not one glidein.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_POOL_CERT_HOURS",
        "pool_cert_hours",
        count(1, 24),
        "2",
        "1-24 hours",
        "Lifetime of the client certificates a pool server's enrolment signs (never past its CA's own end); "
        "a client glidein enrols again before its certificate expires.",
    ),
    SettingSpec(
        "GLIDEIN_TRITON_SERVER_ARGS",
        "server_args",
        parse_server_args,
        "",
        "--option=value words from an allow-list",
        "Extra tritonserver options, e.g. --log-verbose=1 --strict-readiness=false.",
    ),
)
DEFAULTS = {spec.key: spec.default for spec in SETTINGS}
SPEC_BY_FIELD = {spec.field: spec for spec in SETTINGS if spec.field}
#: Settings that are gone, with why: a key set to one of them is ignored with this warning, not refused.
RETIRED_SETTINGS = {
    "GLIDEIN_TRITON_TOKEN": "the access tokens are gone: jobs reach the server through the front door, "
    "which admits only the glidein's user, and no secret is on the server's command line any more",
}
#: glidein_config keys of the plugin that are no settings: the code directory the factory's untar writes
#: (with an owner prefix), the one the startup script records, and the accounting file it writes.
OWN_KEYS = ("GLIDEIN_TRITON_DIR", "GLIDEIN_TRITON_CODE_DIR", "GLIDEIN_TRITON_ACCOUNTING_FILE")
PREFIX = "GLIDEIN_TRITON"
#: How like a setting's name a key must be (difflib's ratio) to be taken for a misspelling of it: the part
#: after GLIDEIN_TRITON for keys with that prefix (which every setting shares), else the whole name.
CLOSENESS = 0.75
WHOLE_NAME_CLOSENESS = 0.85


def closest_setting(name: str) -> str:
    """The setting whose name is closest to ``name`` ("" when none is close)."""
    import difflib  # noqa: PLC0415 (only a config with an unknown key needs it)

    upper = name.upper()
    if upper.startswith(PREFIX):
        tails = {key[len(PREFIX) :]: key for key in DEFAULTS}
        matches = difflib.get_close_matches(upper[len(PREFIX) :], list(tails), n=1, cutoff=CLOSENESS)
        return tails[matches[0]] if matches else ""
    matches = difflib.get_close_matches(upper, list(DEFAULTS), n=1, cutoff=WHOLE_NAME_CLOSENESS)
    return matches[0] if matches else ""


def unknown_settings(config: Mapping[str, str]) -> list[tuple[str, str]]:
    """(key, the closest setting or "") of each key of ``config`` that looks meant for the plugin but is no
    setting, which the plugin ignores: a ``GLIDEIN_TRITON*`` key, or a ``GLIDEIN_T*`` or ``*TRITON*`` key
    (not one of those the plugin publishes, ``TRITON_*``) close to a setting's name."""
    found = []
    for key in config:
        upper = key.upper()
        if (
            not ("TRITON" in upper or upper.startswith("GLIDEIN_T"))
            or key in DEFAULTS
            or key in RETIRED_SETTINGS
            or upper.endswith(OWN_KEYS)
        ):
            continue
        close = closest_setting(key)
        if upper.startswith(PREFIX) or (close and not upper.startswith("TRITON_")):
            found.append((key, close))
    return sorted(found)


def retired_settings(config: Mapping[str, str]) -> list[tuple[str, str]]:
    """(key, why it is gone) of each retired setting that ``config`` sets (:data:`RETIRED_SETTINGS`)."""
    return [(key, RETIRED_SETTINGS[key]) for key in sorted(config) if key in RETIRED_SETTINGS]


def unknown_settings_text(config: Mapping[str, str]) -> str:
    """One line naming the ignored keys of ``config``: each retired setting with why it is gone, each other
    key with the setting it was probably meant as ("" when there are none)."""
    parts = [
        f"retired setting of glidein-triton, ignored: {key} ({why})" for key, why in retired_settings(config)
    ]
    words = [f"{key} (did you mean {close}?)" if close else key for key, close in unknown_settings(config)]
    if words:
        listed = ", ".join(words)
        parts.append(f"not settings of glidein-triton, ignored: {listed} (docs/settings.md lists them)")
    return "; ".join(parts)


def default_value(field: str) -> Any:
    """The parsed default of a ``Settings`` field: for the state file and the hooks, which read no config."""
    spec = SPEC_BY_FIELD[field]
    return spec.parse(spec.key, spec.default)


@dataclass(frozen=True)
class Settings:
    """Everything the startup script needs to know from glidein_config: one field per row of SETTINGS
    (tests/test_settings.py checks that they match), filled by :meth:`from_config`."""

    enabled: bool
    required: bool
    image: str
    model_repository: str
    models: tuple[str, ...]
    runtime: str
    server_binary: str
    gpu_mode: str
    http_port: int
    grpc_port: int
    metrics_port: int
    metrics: bool
    ready_timeout: float
    instance_start_timeout: float
    stop_grace: float
    server_args: tuple[str, ...]
    server_memory_limit: int | None
    reserved_cpus: int
    reserved_memory: int | None
    remote: bool
    address: str
    tls_cert: str
    tls_key: str
    tls_root_cert: str
    pool: str
    pool_name: str
    pool_connection_age: float
    pool_connection_grace: float
    load_timeout: float
    restart_limit: int
    restart_backoff: float
    restart_window: float
    idle_memory_growth: int
    watchdog_period: float
    entry_gpus: bool
    periodic_period: float
    job_repositories: tuple[str, ...]
    code_repositories: tuple[str, ...]
    job_model_size_limit: int
    pool_identities: tuple[str, ...]
    pool_cert_hours: int

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> Settings:
        """Validate every key, in the table's order; the first invalid one raises ConfigError.

        A key that is unset or blank takes its default; the server image defaults to the ``tritonserver``
        key of SINGULARITY_IMAGES_DICT.
        """
        values: dict[str, Any] = {}
        for spec in SETTINGS:
            if not spec.field:
                continue  # read by the startup shell script only
            value = config.get(spec.key, "")
            values[spec.field] = spec.parse(spec.key, value if _trimmed(value) else spec.default)
        if not values["image"]:
            images = images_dict(config.get(IMAGES_DICT, ""))
            values["image"] = images.get(SERVER_IMAGE_KEY, "")
        mount = cvmfs.mount_dir(config)  # CVMFS mounted by cvmfsexec: its paths, as GlideinWMS's
        for field in ("image", "model_repository"):
            values[field] = cvmfs.resolve(values[field], mount)
        for field in ("job_repositories", "code_repositories"):  # the policy's trusted prefixes
            values[field] = cvmfs.resolve_all(values[field], mount)
        if values["pool"] == "server":
            values["remote"] = True  # a pool server serves other nodes: remote mode, with its own TLS
        return cls(**values).checked()

    def checked(self) -> Settings:
        """Checks across keys: remote mode needs mutual TLS (a pool server makes its own unless the operator
        gives it), TLS needs both certificate and key."""
        if self.remote and not (self.pool == "server" and not self.tls_cert):
            # Remote jobs come from other nodes: no front door checks their uid, the client certificate is
            # the only thing that keeps out everyone else who can reach the node's address.
            missing = [
                key
                for key, value in (
                    ("GLIDEIN_TRITON_TLS_CERT", self.tls_cert),
                    ("GLIDEIN_TRITON_TLS_KEY", self.tls_key),
                    ("GLIDEIN_TRITON_TLS_ROOT_CERT", self.tls_root_cert),
                )
                if not value
            ]
            if missing:
                message = failure_messages.REMOTE_WITHOUT_MUTUAL_TLS.format(missing=" and ".join(missing))
                raise ConfigError(message)
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError(failure_messages.HALF_A_TLS_SET_UP.format())
        if self.tls_root_cert and not self.tls_cert:
            raise ConfigError(failure_messages.ROOT_CERTIFICATE_ALONE.format())
        return self


def required_flag(config: Mapping[str, str]) -> bool:
    """GLIDEIN_TRITON_REQUIRED alone, so that a failure elsewhere still gets the right exit code.

    An unreadable value counts as required: the operator meant something, and failing loudly is safer.
    """
    try:
        return parse_bool("GLIDEIN_TRITON_REQUIRED", config.get("GLIDEIN_TRITON_REQUIRED", ""))
    except ConfigError:
        return True
