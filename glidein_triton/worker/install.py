"""Installing the pre-job hook where GlideinWMS's job wrapper runs it.

The job wrapper processes ``.gwms.d/exec/prejob`` in lexicographic order: it runs each executable file as
``./<file> <glidein_config>`` and sources each other ``*.sh`` file, inside the job's container when there
is one (after copying ``.gwms.d`` into the job's sandbox). Both files are POSIX sh and need nothing but the
job's sandbox: the agent (:mod:`agent`) loads the models on the host and leaves its answer there.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from glidein_triton.worker import failure_messages, glidein_paths
from glidein_triton.worker.errors import CorruptionError

PACKAGE_DIR = Path(__file__).resolve().parent.parent
SCRIPTS_DIR = PACKAGE_DIR / "scripts"
#: (script in the payload, name in .gwms.d/exec/prejob, mode): the numbers fix the order in every locale.
PREJOB_FILES = (
    ("glidein_triton_prejob.sh", "glidein_triton_1_prejob.sh", 0o755),
    ("glidein_triton_prejob_env.sh", "glidein_triton_2_prejob_env.sh", 0o644),  # sourced: not executable
)
#: Jobs load and unload models on the shared server; with Triton's default strict readiness the whole server
#: would answer "not ready" while any one model loads or unloads (seconds), to every job's client.
#: Readiness of a model is asked for per model (/v2/models/<model>/ready). The operator may still set it.
NON_STRICT_READINESS = "--strict-readiness=false"
#: Triton exits at startup when any model fails to load: with every model of the repository loaded (``*``),
#: one KIND_GPU or TensorRT model that this node cannot run would take the server down for every job. Then
#: the server starts with the models that load and the others are reported. Models named one by one in
#: GLIDEIN_TRITON_MODELS are required: Triton's default stays.
NO_EXIT_ON_ERROR = "--exit-on-error=false"


def default_server_args(operator_args: Sequence[str], models: Sequence[str] = ("*",)) -> list[str]:
    """The server options the plugin needs, unless the operator's GLIDEIN_TRITON_SERVER_ARGS set them."""
    given = {word.split("=", 1)[0] for word in operator_args}
    defaults = [(NON_STRICT_READINESS, "--strict-readiness")]
    if list(models) == ["*"]:
        defaults.append((NO_EXIT_ON_ERROR, "--exit-on-error"))
    return [option for option, name in defaults if name not in given]


def install_prejob(work_dir: Path) -> Path:
    """Install the pre-job hook into the glidein's ``.gwms.d``; returns the prejob directory."""
    prejob_dir = glidein_paths.phase_dir(work_dir, "prejob")
    try:
        prejob_dir.mkdir(parents=True, exist_ok=True)
        for source, name, mode in PREJOB_FILES:
            shutil.copyfile(SCRIPTS_DIR / source, prejob_dir / name)
            (prejob_dir / name).chmod(mode)
    except OSError as error:
        message = failure_messages.PREJOB_NOT_INSTALLED.format(directory=prejob_dir, error=error)
        raise CorruptionError(message) from error
    return prejob_dir
