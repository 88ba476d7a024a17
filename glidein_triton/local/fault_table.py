"""The faults tried on the real server and what happens: the source of docs/reliability.md.

tests/test_faults.py injects each fault and asserts every column of its row (error_gen report, detail,
exit code, published attributes, what is left); tests/test_reliability_doc.py checks that
docs/reliability.md is the text generated here. ``glidein-triton reliability-doc --output
docs/reliability.md`` rewrites it after a change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from glidein_triton.operator import generated_doc
from glidein_triton.worker import failure_messages

#: How error_gen reported the startup: a failure (OK with TritonFailure, or ERROR when required), a ready
#: server, no otrb_output.xml at all, or a file error_gen could not finish.
REPORTS = ("failure", "ready", "none", "unreadable")


@dataclass(frozen=True)
class Fault:
    """One fault and what the plugin does about it."""

    key: str
    fault: str
    injected: str
    #: one of REPORTS
    report: str
    #: error_gen failure type (also the start of the published TritonFailure); "" when none
    failure: str = ""
    #: words that the report's detail (and the startup's stderr) contain
    detail: str = ""
    #: exit code of the startup script with GLIDEIN_TRITON_REQUIRED false; None for cleanup-only rows
    exit_code: int | None = 0
    #: exit code with GLIDEIN_TRITON_REQUIRED true (tested too); None where it does not apply
    required_exit_code: int | None = 1
    #: HasTriton in the machine ad: "True", "False", or "" when nothing could be published
    has_triton: str = "False"
    left: str = "nothing"


FAULTS = (
    Fault(
        "image_missing",
        "Server image missing",
        "apptainer runtime, `GLIDEIN_TRITON_IMAGE` names a file that does not exist",
        "failure",
        "VO_Config",
        "does not exist on this node",
    ),
    Fault(
        "runtime_missing",
        "Container runtime missing",
        "`GLIDEIN_TRITON_RUNTIME=apptainer`, `SINGULARITY_PATH` not executable, no apptainer on PATH",
        "failure",
        "WN_Resource",
        "no container runtime",
    ),
    Fault(
        "server_binary_missing",
        "tritonserver binary missing",
        "process runtime, `GLIDEIN_TRITON_SERVER_BINARY` names no file",
        "failure",
        "WN_Resource",
        "not found or not executable",
    ),
    Fault(
        "instance_start_fails",
        "Container instance does not start",
        "the image is a file of random bytes: the stand-in apptainer refuses it (`could not open image`, "
        "exit 255) as Apptainer refuses a damaged SIF",
        "failure",
        "WN_Resource",
        "instance could not be started",
    ),
    Fault(
        "image_without_server",
        "Image without tritonserver",
        "a sandbox image with no `tritonserver`: the instance starts, `exec` fails",
        "failure",
        "WN_Resource",
        "exited before it was ready",
        left="nothing (the instance is stopped)",
    ),
    Fault(
        "image_without_python",
        "Image without python3",
        "a sandbox image with `tritonserver` but no `python3`, which runs the front door's relay",
        "failure",
        "VO_Config",
        "the image needs python3",
        left="nothing (the instance is stopped)",
    ),
    Fault(
        "unbindable_repository",
        "Model repository Apptainer cannot bind",
        "apptainer runtime, the model repository path contains `:`",
        "failure",
        "VO_Config",
        "cannot be bound into the container",
    ),
    Fault(
        "model_exits_at_load",
        "Model kills its backend process at load",
        "python-backend model calling `os._exit(3)` in `initialize`",
        "failure",
        "VO_Config",
        "could not load its startup models",
    ),
    Fault(
        "model_segfaults_at_load",
        "Model segfaults at load",
        "python-backend model reading address 0 with ctypes in `initialize`",
        "failure",
        "VO_Config",
        "could not load its startup models",
    ),
    Fault(
        "model_kills_server_at_load",
        "Model crashes the server at load",
        "python-backend model sending SIGKILL to tritonserver in `initialize`",
        "failure",
        "WN_Resource",
        "exited before it was ready",
    ),
    Fault(
        "readiness_timeout",
        "Server never ready",
        "model sleeping 60 s in `initialize`, `GLIDEIN_TRITON_READY_TIMEOUT=3`",
        "failure",
        "WN_Resource",
        "was not ready after 3 s",
    ),
    Fault(
        "fixed_ports_taken",
        "Fixed ports taken",
        "`GLIDEIN_TRITON_*_PORT` set to three ports that listeners hold",
        "failure",
        "Network",
        "could not bind its ports",
    ),
    Fault(
        "auto_ports_taken",
        "Every chosen port taken",
        "ports chosen by the plugin (0): the free-port probe hands out held ports on all 3 attempts "
        "(in-process run)",
        "failure",
        "Network",
        "could not bind its ports",
    ),
    Fault(
        "server_killed_mid_job",
        "Server killed while a job sends requests",
        "SIGKILL to the server's process group while a gRPC client sends inference requests",
        "ready",
        exit_code=0,
        required_exit_code=None,
        has_triton="True",
        left="nothing after cleanup, which also removes the killed server's /dev/shm regions; the client "
        "gets an error; HasTriton stays True in the ad until the periodic check (issue 4) updates it",
    ),
    Fault(
        "startup_sigterm",
        "SIGTERM to the startup script while the server loads",
        "two SIGTERMs to the startup script once the state file records the server (slow model)",
        "failure",
        "WN_Resource",
        failure_messages.INTERRUPTED.format(signal="signal 15"),
    ),
    Fault(
        "startup_sigkill",
        "SIGKILL to the startup script while the server loads",
        "SIGKILL to the startup script once the state file records the server (slow model); process and "
        "apptainer runtimes",
        "none",
        exit_code=-9,
        required_exit_code=None,
        left="the server (and instance) until cleanup, which finds them in the state file (written before "
        "the wait) and stops them; nothing after cleanup",
    ),
    Fault(
        "cleanup_twice",
        "Cleanup run twice",
        "the cleanup scripts run twice after a ready server",
        "none",
        "",
        "nothing to clean up",
        exit_code=None,
        required_exit_code=None,
        has_triton="True",
    ),
    Fault(
        "cleanup_without_startup",
        "Cleanup without a startup",
        "the cleanup script run with no startup: without `GLIDEIN_TRITON_CODE_DIR`, and with it but no state",
        "none",
        "",
        "nothing to clean up",
        exit_code=None,
        required_exit_code=None,
        has_triton="",
    ),
    Fault(
        "two_glideins",
        "Two glideins on one node",
        "two glideins of one user start at the same time (apptainer runtime, one instance namespace); one "
        "is cleaned up",
        "ready",
        exit_code=0,
        required_exit_code=None,
        has_triton="True",
        left="the other glidein's server and instance keep serving; nothing after its cleanup",
    ),
    Fault(
        "workdir_read_only",
        "Read-only work directory",
        "the glidein directory is a tmpfs remounted read-only after the glidein's files are in place",
        "none",
        "WN_Resource",
        "Read-only file system",
        has_triton="",
        left="nothing; nothing could be published or reported (error_gen writes into the work directory); "
        "the reason is in stderr",
    ),
    Fault(
        "state_dir_read_only",
        "Read-only plugin directory",
        "a read-only tmpfs mounted at `<work dir>/triton`",
        "failure",
        "WN_Resource",
        "Read-only file system",
    ),
    Fault(
        "workdir_full",
        "Full work directory",
        "the glidein directory is a 4 MiB tmpfs, filled up after the glidein's files are in place",
        "unreadable",
        "WN_Resource",
        "No space left on device",
        has_triton="",
        left="nothing; error_gen cannot finish otrb_output.xml, nothing is published; the reason is in "
        "stderr",
    ),
    Fault(
        "state_dir_full",
        "Full plugin directory",
        "a full 64 KiB tmpfs mounted at `<work dir>/triton`",
        "failure",
        "WN_Resource",
        "No space left on device",
    ),
    Fault(
        "unusual_paths",
        "Blanks and non-ASCII in the work directory",
        "work directory `glidein work ü 漢字` (state, log, glidein_config, image path); process and "
        "apptainer runtimes",
        "ready",
        exit_code=0,
        required_exit_code=None,
        has_triton="True",
        left="nothing after cleanup; inference works over gRPC and HTTP",
    ),
    Fault(
        "python_backend_unusual_path",
        "Blanks and non-ASCII in the model repository (process runtime)",
        "model repository `model repo é ☃` with a python-backend model: Triton's python backend starts its "
        "stub through `bash -c` with the path unquoted (it then never gets ready) and reads paths as ASCII; "
        "in a container the path is /models",
        "failure",
        "VO_Config",
        "uses Triton's python backend, which cannot load models from",
    ),
    Fault(
        "config_cut_in_value",
        "glidein_config cut in a value",
        "the last line is cut: `GLIDEIN_TRITON_MODEL_REPOSITORY <half a path>` without a newline",
        "failure",
        "VO_Config",
        "is not a directory",
    ),
    Fault(
        "config_cut_in_switch",
        "glidein_config cut in the switch",
        "the last line is cut: `GLIDEIN_TRITON Tr`",
        "failure",
        "Config",
        "is not a truth value",
    ),
    Fault(
        "config_without_add_config_line_source",
        "glidein_config without ADD_CONFIG_LINE_SOURCE",
        "the `ADD_CONFIG_LINE_SOURCE` line removed",
        "failure",
        "Corruption",
        "cannot source ADD_CONFIG_LINE_SOURCE",
        has_triton="",
        left="nothing; nothing can be published without GlideinWMS's helpers",
    ),
    Fault(
        "config_without_condor_vars_file",
        "glidein_config without CONDOR_VARS_FILE",
        "the `CONDOR_VARS_FILE` line removed",
        "failure",
        "Corruption",
        "could not write glidein_config or condor_vars.lst",
        has_triton="",
        left="nothing (the server started, then was stopped); no attribute reaches the machine ad",
    ),
    Fault(
        "config_without_error_gen",
        "glidein_config without ERROR_GEN_PATH",
        "the `ERROR_GEN_PATH` line removed",
        "none",
        "",
        "no ERROR_GEN_PATH in glidein_config",
        exit_code=0,
        required_exit_code=None,
        has_triton="True",
        left="nothing after cleanup; the server runs, the result is only in stderr",
    ),
)
FAULTS_BY_KEY = {fault.key: fault for fault in FAULTS}

HEADER = """\
# Reliability: faults tried and what happens

<!-- Generated from glidein_triton/local/fault_table.py by `glidein-triton reliability-doc --output
     docs/reliability.md`. Do not edit by hand: tests/test_faults.py asserts every row on the real
     tritonserver, and a test fails when this file and the table in the code differ. -->

Each fault below is injected by `tests/test_faults.py` (marked `server` where it starts the real
tritonserver) into a simulated glidein (`glidein_triton/local/glidein.py`, the GlideinWMS doubles, the
stand-in apptainer), and the test checks every column. After each one the tests also check that nothing
is left: no process of the glidein (by command line and working directory, sampled while it runs), no
listening port of its servers, no stand-in container instance, no held `glidein_config` lock, no state
or temporary state file, and no /dev/shm region of its servers.

The startup's exit code is 0 unless `GLIDEIN_TRITON_REQUIRED` is true (then 1 on failure, with an
`ERROR` report): every failure row is run both ways. A failure report is `OK` with the metrics
`HasTriton False`, `TritonFailure <type>` (and `TritonFailureDetail` from the Python side), and the
machine ad gets `HasTriton = False` and `TritonFailure = "<type>: <message>"`.

"""
TABLE_HEAD = (
    "| fault | how the tests inject it | error_gen report | detail contains | exit code | HasTriton "
    "| left afterwards |\n|---|---|---|---|---|---|---|\n"
)

FOOTER = """
## Not covered yet

- Pre-job and periodic scripts (issue 4): faults in them, and concurrent pre-jobs during the soak, are
  extension points (`glidein_triton/local/soak.py`, `CycleHooks`).
- A SIGKILL of the startup script between the launch of the server and the state file update that records
  its pid (about a millisecond) leaves a server that cleanup cannot find; a container instance is still
  stopped, since it is recorded before it starts.

## Soak

`glidein-triton soak --cycles 200` runs start/stop cycles of a simulated glidein and compares processes,
open file descriptors, listening ports, /dev/shm and disk usage before and after (see
[testing.md](testing.md)).
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def report_text(fault: Fault) -> str:
    """The error_gen column."""
    if fault.report == "failure":
        required = " (`ERROR` if required)" if fault.required_exit_code is not None else ""
        return f"`OK`, TritonFailure `{fault.failure}`{required}"
    if fault.report == "ready":
        return "`OK`, HasTriton True"
    if fault.report == "unreadable":
        return "otrb_output.xml left unfinished"
    return "none"


def exit_text(fault: Fault) -> str:
    if fault.exit_code is None:
        return "0 (cleanup)"
    if fault.exit_code < 0:
        return f"killed (signal {-fault.exit_code})"
    required = f"; {fault.required_exit_code} if required" if fault.required_exit_code is not None else ""
    return f"{fault.exit_code}{required}"


def row(fault: Fault) -> str:
    cells = [
        fault.fault,
        fault.injected,
        report_text(fault),
        f"`{fault.detail}`" if fault.detail else "",
        exit_text(fault),
        fault.has_triton or "not published",
        fault.left,
    ]
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |\n"


def markdown() -> str:
    """The whole page."""
    return HEADER + TABLE_HEAD + "".join(row(fault) for fault in FAULTS) + FOOTER


def main(argv: Sequence[str] | None = None) -> int:
    return generated_doc.main("reliability-doc", __doc__, markdown, argv)
