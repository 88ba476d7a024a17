"""What a started server reports about itself: the GPUs it initialised, GPU failures, models that failed.

Triton has no API that lists the GPUs it uses; its log has one ``CUDA memory pool is created on device N``
line per GPU it initialised (core ``cuda_memory_manager.cc``), and ``CUDA memory pool disabled`` when it
initialised none. Models that could not load stay in the repository index as ``UNAVAILABLE`` with their
reason (with ``--exit-on-error=false`` the server starts without them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs 3 ms of every start
    from typing import Any

MEMORY_POOL = re.compile(r"CUDA memory pool is created on device (\d+)")
#: Phrases of Triton's and CUDA's errors when the GPUs given to a server cannot be used.
GPU_FAILURE_PHRASES = (
    "no GPUs are available",
    "unsupported gpu id",
    "no CUDA-capable device",
    "CUDA driver version is insufficient",
    "forward compatibility was attempted on non supported HW",
    "system has unsupported display driver / cuda driver combination",
)
#: Triton's error lines: ``E1201 14:26:20.181979 821 model_lifecycle.cc:642] ...``, or main's ``error: ...``.
ERROR_LINE = re.compile(r"^(E\d{4} |error: )")
#: The part of an ``E`` line after its prefix (date, time, thread, source file), without its quotes.
ERROR_PREFIX = re.compile(r'^E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "?')
#: Error lines every server writes without a GPU: they are not the cause of anything.
HARMLESS_ERRORS = ("CudaDriverHelper has not been initialized",)
#: Phrases of the errors of a model the server could not find or load (model_repository_manager.cc,
#: model_lifecycle.cc, backend_model.cc, and main's summary).
MODEL_FAILURE_PHRASES = (
    "failed to poll model",
    "Poll failed for model",
    "failed to load '",
    "load failed for model",
    "Failed to create instance",
    "failed to load all models",
)
#: What the server logs of each model it loads at start (model_lifecycle.cc); its HTTP endpoint answers only
#: after they all loaded, so its log is where the progress of a start is.
LOADING = re.compile(r'"loading: ([^:"]+):\d+"')
LOADED = re.compile(r"successfully loaded '([^']+)'")
FAILED_TO_LOAD = re.compile(r"failed to load '([^']+)'")
#: At most this many model names in a progress line.
NAMES_SHOWN = 8
#: Words of a failed allocation in a server's log: a thread stack or a buffer over the data limit.
ALLOCATION_FAILURE_PHRASES = (
    "pthread_create",
    "cannot allocate memory",
    "bad_alloc",
    "resource temporarily unavailable",
)


def read_log(path: str | Path) -> str:
    """The server log's text ("" when it cannot be read)."""
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def initialised_gpus(log_text: str) -> list[int]:
    """The CUDA device numbers (as the server saw them) that got a memory pool, in order, once each."""
    return list(dict.fromkeys(int(number) for number in MEMORY_POOL.findall(log_text)))


def gpu_failure(text: str) -> str:
    """The first error line that says the GPUs could not be used ("" when none does)."""
    for line in text.splitlines():
        if ERROR_LINE.match(line) and any(phrase.lower() in line.lower() for phrase in GPU_FAILURE_PHRASES):
            return line.strip()
    return ""


def failed_models(index: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(name, reason) of each model of the repository index that is UNAVAILABLE with a reason."""
    return [
        (str(entry.get("name", "")), str(entry.get("reason", "")))
        for entry in index
        if entry.get("state") == "UNAVAILABLE" and entry.get("reason")
    ]


def first_error(text: str) -> str:
    """The server's first error line that says something ("" when none): the text of an ``E`` line without
    its prefix (up to its first escaped newline), main's ``error: ...``, or a refused option."""
    for line in text.splitlines():
        if "unrecognized option" in line:
            return line.strip()
        if not ERROR_LINE.match(line) or any(phrase in line for phrase in HARMLESS_ERRORS):
            continue
        message = ERROR_PREFIX.sub("", line.strip(), count=1)
        return message.split("\\n", 1)[0].rstrip('" ')
    return ""


def model_failure(error_line: str) -> bool:
    """Whether an error line says that a model could not be found or loaded."""
    return any(phrase in error_line for phrase in MODEL_FAILURE_PHRASES)


def allocation_failure(text: str) -> bool:
    """Whether a server log shows an allocation that failed."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in ALLOCATION_FAILURE_PHRASES)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def loading_progress(log_text: str) -> str:
    """Which models a starting server is loading, has loaded and failed to load, from its log."""
    loaded = list(dict.fromkeys(LOADED.findall(log_text)))
    failed = [name for name in dict.fromkeys(FAILED_TO_LOAD.findall(log_text)) if name not in loaded]
    loading = [name for name in dict.fromkeys(LOADING.findall(log_text)) if name not in {*loaded, *failed}]
    parts = [
        f"{label} {_names(names)}"
        for label, names in (("loading", loading), ("loaded", loaded), ("failed", failed))
        if names
    ]
    return "; ".join(parts) or "no model loading yet"
