"""The catalogue of the failures docs/troubleshooting.md explains: each message's one home.

Every entry has the table it is listed in (an error_gen failure type, or the periodic or cleanup script's
log), its message as a ``str.format`` template with named fields, the cause and the fix (Markdown, as
the page shows them). The code words its failures with ``ENTRY.format(...)``; the page's tables are
generated from this module (``glidein-triton troubleshooting-doc``), so the two cannot drift.

An entry with ``literal_in`` is still written out in that file (a shell script, which runs before any
Python; or a module that has not yet been moved onto the catalogue): a test checks that the file has
each fixed part of the template.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from glidein_triton.worker.word_rules import MODEL_NAME_RULE

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs 3 ms of every start
    from typing import Literal

    Section = Literal["Config", "VO_Config", "WN_Resource", "Network", "Corruption", "periodic", "cleanup"]

#: the tables of the troubleshooting page, in its order: error_gen failure types, then the scripts' logs
SECTIONS: tuple[Section, ...] = (
    "Config",
    "VO_Config",
    "WN_Resource",
    "Network",
    "Corruption",
    "periodic",
    "cleanup",
)


@dataclass(frozen=True)
class FailureMessage:
    """One failure: where it is listed, its message template, its cause and its fix."""

    section: Section
    template: str
    cause: str
    fix: str
    #: how the page shows a field of the template (else ``<field name>``, underscores as blanks)
    shown: dict[str, str] = field(default_factory=dict, compare=False)
    #: said on the page after the message (where it is written, when that is not the log)
    note: str = ""
    #: a file that still writes the message itself, relative to the repository
    literal_in: str = ""

    def format(self, **fields: object) -> str:
        """The message with ``fields`` put in."""
        return self.template.format(**fields)


_KEY = {"key": "<KEY>"}
_FIRST_ERROR_LINE = {"line": "<the server's first error line>"}

# --- Config: a setting is wrong ---

OPTION_NEWER_THAN_SERVER = FailureMessage(
    "Config",
    "GLIDEIN_TRITON_SERVER_ARGS: {option} needs {first_release} or later: not in the server ({release})",
    "an option newer than the server image's release",
    "drop the option, or use a newer image",
)
NOT_A_TRUTH_VALUE = FailureMessage(
    "Config",
    "{key}={value!r} is not a truth value: use True/False (also T/F, Yes/No, Y/N, 1/0)",
    "a switch has a value GlideinWMS would not read as true or false",
    "use one of the listed words",
    _KEY,
)
NOT_A_CHOICE = FailureMessage(
    "Config",
    "{key}={value!r} is not allowed: use one of {choices}",
    "`GLIDEIN_TRITON_RUNTIME` or `GLIDEIN_TRITON_GPU` misspelt",
    "use a listed value",
    _KEY,
)
NOT_A_POOL_NAME = FailureMessage(
    "Config",
    "{key}={value!r} is not a pool name: use 1-64 letters, digits, '.', '_' or '-'",
    "`GLIDEIN_TRITON_POOL_NAME` with blanks, quotes or other signs",
    "use a plain word, the same on the pool's servers and clients",
    _KEY,
)
NOT_A_PORT = FailureMessage(
    "Config",
    "{key}={value!r} is not a port: use 0 (choose a free port) or 1024-65535",
    "a fixed port below 1024 or not a number",
    "use 0 (recommended: several glideins share a node)",
    _KEY,
)
NOT_SECONDS = FailureMessage(
    "Config",
    "{key}={value!r} is not a number of seconds from {low:g} to {high:g}",
    "a timeout out of range",
    "see the [settings reference](settings.md)",
    _KEY,
)
NOT_A_WHOLE_NUMBER = FailureMessage(
    "Config",
    "{key}={value!r} is not a whole number from {low} to {high}",
    "a count or size out of range (`GLIDEIN_TRITON_RESTART_LIMIT`, `GLIDEIN_TRITON_IDLE_MEMORY_GROWTH`, "
    "`GLIDEIN_TRITON_JOB_MODEL_SIZE_LIMIT`, `GLIDEIN_TRITON_RESERVED_CPUS`)",
    "see the [settings reference](settings.md)",
    _KEY,
)
NOT_AN_ADDRESS = FailureMessage(
    "Config",
    "{key}={value!r} is not an IPv4 address",
    "`GLIDEIN_TRITON_ADDRESS` is a host name or an IPv6 address",
    "the node's IPv4 address to publish, or leave it empty (remote mode then finds it)",
    _KEY,
)
NOT_A_MEMORY_LIMIT = FailureMessage(
    "Config",
    "{key}={value!r} is not a memory limit: use auto, 0 (no limit) or {low}-{high} (MiB)",
    "`GLIDEIN_TRITON_SERVER_MEMORY_LIMIT` with a unit, or below what a server needs to start",
    "a number of MiB, `auto` or 0 ([security.md](security.md))",
    _KEY,
)
NOT_A_MEMORY_RESERVATION = FailureMessage(
    "Config",
    "{key}={value!r} is not a memory reservation: use auto, 0 or 1-{high} (MiB)",
    "`GLIDEIN_TRITON_RESERVED_MEMORY` with a unit or out of range",
    "a number of MiB, `auto` or 0",
    _KEY,
)
NOT_ARGUMENTS = FailureMessage(
    "Config",
    "{key}={value!r} cannot be split into arguments: {error}",
    "`GLIDEIN_TRITON_SERVER_ARGS` has an unbalanced quote",
    "quote as a shell would (the value is split, never run by a shell)",
    _KEY,
)
NOT_PATTERNS = FailureMessage(
    "Config",
    "{key}={value!r} names no pattern",
    "`GLIDEIN_TRITON_POOL_IDENTITIES` is set to commas and blanks only",
    "glob patterns of the identities allowed to enrol, e.g. `*@frontend.example.org`, or `*`",
    _KEY,
)
NOT_A_PATH_PREFIX = FailureMessage(
    "Config",
    "{key}={value!r}: {prefix!r} is not an absolute path prefix other than /",
    "`GLIDEIN_TRITON_JOB_REPOSITORIES` or `GLIDEIN_TRITON_CODE_REPOSITORIES` has a relative path, or `/` "
    "(which would allow every repository)",
    "absolute directories, e.g. `/cvmfs/example.org/models` "
    "([security.md](security.md#job-models-the-operators-policy))",
    _KEY,
)
OPTION_NOT_ALLOWED = FailureMessage(
    "Config",
    "{key}: tritonserver option {option!r} is not allowed here; allowed (as --option=value): {allowed}",
    "`GLIDEIN_TRITON_SERVER_ARGS` sets an option the plugin sets itself (ports, addresses, repository, API "
    "restrictions)",
    "drop it; use the matching setting",
    {**_KEY, "allowed": "<list>"},
)
NOT_A_MODEL_NAME = FailureMessage(
    "Config",
    f"{{key}}: {{name!r}} is not a model name ({MODEL_NAME_RULE}), or use *",
    "a typo in `GLIDEIN_TRITON_MODELS`",
    "names of letters, digits, `_`, `.`, `-` (not `.` or `..`), separated by commas or spaces",
    _KEY,
)
REMOTE_WITHOUT_MUTUAL_TLS = FailureMessage(
    "Config",
    "GLIDEIN_TRITON_REMOTE=True requires mutual TLS: set {missing}",
    "remote mode without a server certificate, its key or the root certificate of the clients: jobs of other "
    "nodes come through no front door, and only the client certificate keeps everyone else out",
    "give the server a certificate, its key and the CA of its clients (e.g. on CVMFS)",
)
HALF_A_TLS_SET_UP = FailureMessage(
    "Config",
    "GLIDEIN_TRITON_TLS_CERT and GLIDEIN_TRITON_TLS_KEY must be set together",
    "half a TLS set-up",
    "set both",
)
ROOT_CERTIFICATE_ALONE = FailureMessage(
    "Config",
    "GLIDEIN_TRITON_TLS_ROOT_CERT needs GLIDEIN_TRITON_TLS_CERT and _KEY",
    "a root certificate for client authentication without the server's own certificate",
    "set all three, or drop the root certificate",
)
TLS_FILE_MISSING = FailureMessage(
    "Config",
    "TLS file {path} does not exist (GLIDEIN_TRITON_TLS_*)",
    "the certificate is not on the node",
    "ship it (e.g. on CVMFS) or fix the path",
    literal_in="glidein_triton/worker/access.py",
)

# --- VO_Config: the image or the models ---

NO_SERVER_IMAGE = FailureMessage(
    "VO_Config",
    "no server image: set GLIDEIN_TRITON_IMAGE (or the tritonserver key of SINGULARITY_IMAGES_DICT) to an "
    "image on CVMFS, e.g. {image} (Triton {release}); see docs/images.md",
    "a container runtime was chosen but no image named",
    "`glidein-triton frontend-xml` sets `GLIDEIN_TRITON_IMAGE` to a CVMFS image ([images.md](images.md))",
    {"image": "<path>"},
)
IMAGE_MISSING = FailureMessage(
    "VO_Config",
    "server image {image} does not exist on this node",
    "a path that is not there: a typo, or CVMFS not mounted or not yet synchronised",
    "`glidein-triton check --image <image>` on the node; `ls` the path to trigger the autofs mount",
    literal_in="glidein_triton/worker/runtime.py",
)
REPOSITORY_NOT_A_DIRECTORY = FailureMessage(
    "VO_Config",
    "model repository {path} is not a directory (GLIDEIN_TRITON_MODEL_REPOSITORY)",
    "the repository is not visible on the node",
    "fix the path, or leave it empty and let jobs load their models",
)
STARTUP_MODELS_FAILED = FailureMessage(
    "VO_Config",
    "tritonserver could not load its startup models (GLIDEIN_TRITON_MODELS from "
    "GLIDEIN_TRITON_MODEL_REPOSITORY): {line}",
    "a model named in `GLIDEIN_TRITON_MODELS` is not in the repository (`failed to poll model 'x': model "
    "not found in any model repository.`), its `config.pbtxt` does not parse (`Poll failed for model "
    "directory 'x': failed to read text proto`), or its code fails at load (`Failed to create instance: "
    "<the model's exception>`, `Stub process 'x_0' is not healthy`). Named models are required; with `*` "
    "the server starts without them",
    "fix the model or the name; `TritonFailureDetail` has the server's own line, the evidence the log tail",
    _FIRST_ERROR_LINE,
    literal_in="glidein_triton/worker/server.py",
)

# --- WN_Resource: the node lacks something ---

NO_CONTAINER_RUNTIME = FailureMessage(
    "WN_Resource",
    "no container runtime: SINGULARITY_PATH={configured!r} is not executable and {runtimes} is not on PATH",
    "`GLIDEIN_TRITON_RUNTIME=apptainer` (or `singularity`) on a node without it",
    "use `auto`, which falls back to the process runtime, or an entry whose nodes have Apptainer",
    {"configured": "<path>"},
    literal_in="glidein_triton/worker/runtime.py",
)
NO_SERVER_BINARY = FailureMessage(
    "WN_Resource",
    "tritonserver binary {binary!r} not found or not executable (GLIDEIN_TRITON_SERVER_BINARY)",
    "the process runtime without a `tritonserver` on the node",
    "give the binary's path, or use the container runtime",
    literal_in="glidein_triton/worker/runtime.py",
)
NO_USABLE_GPU = FailureMessage(
    "WN_Resource",
    "GLIDEIN_TRITON_GPU=gpu but this glidein has no usable GPU: {reason}",
    "no `nvidia-smi`, the driver not loaded (`NVIDIA-SMI has failed because it couldn't communicate with the "
    "NVIDIA driver`), `CUDA_VISIBLE_DEVICES` naming no device, a driver too old for the image's CUDA, a "
    "compute capability below the release's minimum, no `libcuda`/NVML for `--nv`",
    "check the node with `glidein-triton check`; have the entry request GPUs from the site (`Request_GPUs`)",
)
FAILED_ON_GPUS = FailureMessage(
    "WN_Resource",
    "tritonserver failed on its GPUs: {line}",
    "`GLIDEIN_TRITON_GPU=gpu` and the server exited for a GPU reason (e.g. `has kind KIND_GPU but no GPUs "
    "are available`)",
    "as above; in `auto` mode the server starts on the CPU instead",
    {"line": "<error line>"},
)
INSTANCE_NOT_STARTED = FailureMessage(
    "WN_Resource",
    "{runtime} instance could not be started",
    "Apptainer refused the instance: no user namespaces, a bad bind path, an image it cannot read",
    "the evidence has Apptainer's own `FATAL:` line; `glidein-triton check` tests `instance list`",
    literal_in="glidein_triton/worker/server.py",
)
EXITED_BEFORE_READY = FailureMessage(
    "WN_Resource",
    "tritonserver exited before it was ready: {line}",
    "the server stopped at start for the reason of its first error line (`error: ...` or an `E` line of its "
    "log, the `CudaDriverHelper has not been initialized.` line of every node without a GPU left out): "
    "`--exit-on-error=true` set by the operator, a server killed, an image without `tritonserver` (no line "
    "then)",
    "read that line, then the log tail in the evidence; `glidein-triton check` compares the driver with the "
    "image",
    _FIRST_ERROR_LINE,
    literal_in="glidein_triton/worker/server.py",
)
EXITED_UNDER_MEMORY_LIMIT = FailureMessage(
    "WN_Resource",
    "tritonserver exited before it was ready (its data limited to {limit} MiB: "
    "GLIDEIN_TRITON_SERVER_MEMORY_LIMIT): {line}",
    "only when the limit is the cause: the log shows a failed allocation (`pthread_create`, `Cannot allocate "
    "memory`, `Resource temporarily unavailable`, `std::bad_alloc`) or the server crashed (SIGSEGV, SIGABRT, "
    "SIGBUS) under the limit. It needs more than the limit: large models, or a node with many cores (each "
    "server thread maps an 8 MiB stack)",
    "raise `GLIDEIN_TRITON_SERVER_MEMORY_LIMIT`, or 0 for no limit ([security.md](security.md))",
    {**_FIRST_ERROR_LINE, "limit": "<n>"},
    literal_in="glidein_triton/worker/server.py",
)
NOT_READY = FailureMessage(
    "WN_Resource",
    "tritonserver was not ready after {timeout:g} s (GLIDEIN_TRITON_READY_TIMEOUT): {line}",
    "large models, a slow file system (the startup log says every few seconds which models are still "
    "loading); the line, when there is one, is the first thing that went wrong",
    "raise `GLIDEIN_TRITON_READY_TIMEOUT`",
    {**_FIRST_ERROR_LINE, "timeout": "<seconds>"},
    literal_in="glidein_triton/worker/server.py",
)
NOT_READY_UNDER_MEMORY_LIMIT = FailureMessage(
    "WN_Resource",
    "tritonserver was not ready after {timeout:g} s (GLIDEIN_TRITON_READY_TIMEOUT; its data limited to "
    "{limit} MiB: GLIDEIN_TRITON_SERVER_MEMORY_LIMIT): {line}",
    "only when the limit is the cause: a process of the server is within 16 MiB of the limit, so a backend "
    "thread it waits for could not start (seen with the python backend under 256 MiB)",
    "raise `GLIDEIN_TRITON_SERVER_MEMORY_LIMIT`",
    {**_FIRST_ERROR_LINE, "timeout": "<seconds>", "limit": "<n>"},
    literal_in="glidein_triton/worker/server.py",
)
INSTANCE_START_TIMEOUT = FailureMessage(
    "WN_Resource",
    "{runtime} instance start took more than {timeout:g} s (GLIDEIN_TRITON_INSTANCE_START_TIMEOUT; a remote "
    "image is downloaded and converted then)",
    "a remote (`docker://`) image being downloaded and converted, or a slow file system",
    "use an image on CVMFS ([images.md](images.md)); or raise `GLIDEIN_TRITON_INSTANCE_START_TIMEOUT`",
    {"timeout": "<seconds>"},
    literal_in="glidein_triton/worker/server.py",
)
OPTION_REFUSED = FailureMessage(
    "WN_Resource",
    "tritonserver does not accept {option}: the server's Triton release is older than that option "
    "(docs/images.md lists what each release supports)",
    "an image whose release could not be read (an image file or URI without `yy.mm` in its name) is older "
    "than an option the plugin gave it",
    "an image of Triton 2.40 or later; or, for that release, the settings in "
    "[images.md](images.md#what-each-release-supports)",
    literal_in="glidein_triton/worker/server.py",
)
NO_PYTHON = FailureMessage(
    "WN_Resource",
    "no Python >= 3.9 found (tried: {candidates}{versions_found}): set GLIDEIN_TRITON_PYTHON to a Python "
    ">= 3.9 (on EL8, where python3 is 3.6: install the python39 package, whose python3.9 is found on PATH)",
    "the node's `python3` is older than 3.9 (EL8: 3.6) and no other candidate runs",
    "install `python39` on EL8 nodes (`python3.9` is then found), or set `GLIDEIN_TRITON_PYTHON` to an "
    "interpreter the nodes have ([lifecycle.md](lifecycle.md#python-on-the-worker-node))",
    {"versions_found": "; <versions found>"},
    literal_in="glidein_triton/scripts/glidein_triton_setup.sh",
)
INTERRUPTED = FailureMessage(
    "WN_Resource",
    "startup interrupted by {signal}",
    "the glidein was killed while the server started",
    "nothing to fix in the plugin: the server was stopped",
)
FILES_NOT_WRITABLE = FailureMessage(
    "WN_Resource",
    "cannot write the plugin's files in {directory}: {error}",
    "`<work dir>/triton` (or a directory in it) is a link, or was made by another user before the startup "
    "ran (possible only when the work directory is writable by others, e.g. a glidein started with umask "
    "000): the plugin never uses it",
    "report the node: another local user prepared the directory; the batch system's scratch directory "
    "should not be writable by others",
    {"directory": "<dir>", "error": "<dir> is not a directory of this user (uid <n>)"},
)

CLEANUP_NOT_INSTALLED = FailureMessage(
    "WN_Resource",
    "cannot install the cleanup script into {directory}: {error}",
    "the work directory is not writable",
    "check the disk (`glidein-triton check` does)",
    {"directory": "<dir>"},
)

# --- Network ---

PORTS_TAKEN = FailureMessage(
    "Network",
    "tritonserver could not bind its ports: {line}",
    "another process took a port between the choice and the bind, three times in a row, or a fixed port is "
    "in use",
    "leave the ports at 0; with fixed ports, one glidein per node only",
    _FIRST_ERROR_LINE,
    literal_in="glidein_triton/worker/server.py",
)
UNRESOLVABLE_NAME = FailureMessage(
    "Network",
    "cannot resolve this node's name {name}: {error}; set GLIDEIN_TRITON_ADDRESS",
    "remote mode on a node without a resolvable name",
    "set the address to publish",
    literal_in="glidein_triton/worker/access.py",
)
LOOPBACK_ONLY = FailureMessage(
    "Network",
    "{name} resolves to loopback addresses only; set GLIDEIN_TRITON_ADDRESS",
    "same",
    "same",
    literal_in="glidein_triton/worker/access.py",
)

# --- Corruption: the plugin's own files ---

NO_WORKER_CODE = FailureMessage(
    "Corruption",
    "worker code not found: GLIDEIN_TRITON_DIR='{directory}' (the payload tarball)",
    "the worker tarball is missing from the entry's `<files>`, or not untarred with "
    '`absdir_outattr="GLIDEIN_TRITON_DIR"`',
    "`glidein-triton factory-xml` adds it; serve the files `glidein-triton payload` writes",
    {"directory": "<dir>"},
    literal_in="glidein_triton/scripts/glidein_triton_setup.sh",
)
PUBLISH_FAILED = FailureMessage(
    "Corruption",
    "could not write glidein_config or condor_vars.lst with add_config_line.source",
    "the glidein's helper failed (disk full, permissions)",
    "the evidence has its stderr",
)
CONFIG_UNREADABLE = FailureMessage(
    "Corruption",
    "cannot read glidein_config {path}: {error}",
    "the glidein_config that glidein_startup.sh named is not there or not readable: a damaged glidein",
    "report the node; the glidein's stderr has the rest",
)
NO_CONFIG_HELPER = FailureMessage(
    "Corruption",
    "ADD_CONFIG_LINE_SOURCE in {path} does not name a file: {helper!r}",
    "glidein_config names no GlideinWMS `add_config_line.source`: not a glidein of GlideinWMS, or a damaged "
    "one",
    "run the plugin from a GlideinWMS glidein (the simulated one: `glidein-triton demo`)",
)
CONFIG_LOCK_HELD = FailureMessage(
    "Corruption",
    "could not write glidein_config in {timeout:g} s: its lock is held by another script",
    "another script of the glidein holds glidein_config's lock (`gconfig_add_safe`) and does not let go",
    "find the stuck script in the glidein's stderr",
    {"timeout": "<seconds>"},
)
PREJOB_NOT_INSTALLED = FailureMessage(
    "Corruption",
    "cannot install the pre-job hook into {directory}: {error}",
    "`.gwms.d/exec/prejob` of the work directory cannot be written",
    "check the disk (`glidein-triton check` does)",
    {"directory": "<dir>"},
)
CLEANUP_SCRIPT_MISSING = FailureMessage(
    "Corruption",
    "the cleanup script {path} is missing from the plugin's files",
    "the worker tarball is incomplete",
    "serve the files `glidein-triton payload` writes, unchanged",
)
INTERNAL_ERROR = FailureMessage(
    "Corruption",
    "internal error in glidein-triton: {type}: {error}",
    "a bug",
    "report it with the glidein's stderr",
    {"error": "<message>"},
)

# --- the periodic script's log ---

RESTART_LIMIT = FailureMessage(
    "periodic",
    "restart limit reached ({restarts} in the last {window:g} s, GLIDEIN_TRITON_RESTART_LIMIT and _WINDOW): "
    "backing off until {until}",
    "the server crashed `GLIDEIN_TRITON_RESTART_LIMIT` times within the window (e.g. requests larger than "
    "its memory limit, from another local user): it is started again once the oldest restart leaves the "
    "window",
    "find what crashed it in `triton/server.log`; `GLIDEIN_TRITON_RESTART_WINDOW` sets the window",
    {"restarts": "<n>", "window": "<seconds>", "until": "<time>"},
)
RESTART_LIMIT_FOR_GOOD = FailureMessage(
    "periodic",
    "restart limit reached ({limit}, GLIDEIN_TRITON_RESTART_LIMIT)",
    "the server crashed `GLIDEIN_TRITON_RESTART_LIMIT` times with `GLIDEIN_TRITON_RESTART_WINDOW=0` (the "
    "glidein's whole life), or the limit is 0: it stays down",
    "find what crashed it in `triton/server.log`; a window (the default: 3600 s) lets it come back",
)
STATE_NOT_TRUSTED = FailureMessage(
    "periodic",
    "state file not trusted, ignored: {reason}",
    "`triton/state.json` could have been written by another user (its owner, its mode, a link, or a "
    "directory others may write): nothing in it is run, so the server is not restarted or stopped from it",
    "someone tampered with the glidein's files, or they were copied by another user: report the node",
)
IDLE_MEMORY_RESTART = FailureMessage(
    "periodic",
    "tritonserver idle with {resident} MiB resident (over {floor} + {growth} MiB, "
    "GLIDEIN_TRITON_IDLE_MEMORY_GROWTH): restarted, not counted as a restart",
    "the server's resident memory stayed high while no job used it (refused large requests leave it so)",
    "nothing; raise `GLIDEIN_TRITON_IDLE_MEMORY_GROWTH` if models of your own need more (0: never)",
    {"resident": "<n>", "floor": "<low>"},
    note="(`exit_message`)",
)

# --- the cleanup script's log ---

GROUP_SURVIVED = FailureMessage(
    "cleanup",
    "process group {pgid} still has {pids}",
    "a server process survived SIGTERM and SIGKILL (stuck in the kernel, e.g. on a hung GPU or file system)",
    "the batch system's own cleanup of the slot removes it; report the node",
)
PORTS_STILL_OPEN = FailureMessage(
    "cleanup",
    "ports {ports} still accept connections",
    "something still listens on the server's ports",
    "same",
)

#: every entry, in the page's order
CATALOGUE = tuple(value for value in tuple(globals().values()) if isinstance(value, FailureMessage))
