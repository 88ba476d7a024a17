"""The glidein's paths that the plugin reads and writes, in its work directory (where glidein_config is).

* ``.gwms.d/exec/<phase>``: the scripts GlideinWMS runs at each phase (``prejob`` by the job wrapper before
  each job, ``cleanup`` by glidein_startup.sh at exit, in lexicographic order);
* ``execute``: HTCondor's EXECUTE in the glidein's condor_config, the jobs' sandboxes (:mod:`sandboxes`;
  what the agent writes in each is :mod:`sandbox_protocol`);
* ``triton``: the plugin's own directory (its state file ``state.json``, logs, registry, repositories).
"""

from __future__ import annotations

from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    Phase = Literal["setup", "prejob", "postjob", "cleanup", "setup_singularity"]

GWMS_DIR_NAME = ".gwms.d"
EXECUTE_DIR_NAME = "execute"
PLUGIN_DIR_NAME = "triton"
STATE_FILE_NAME = "state.json"


def gwms_dir(work_dir: Path) -> Path:
    """GlideinWMS's ``.gwms.d``, which the job wrapper copies into a job's sandbox for its container."""
    return work_dir / GWMS_DIR_NAME


def phase_dir(work_dir: Path, phase: Phase) -> Path:
    """Where GlideinWMS finds the scripts of ``phase``: ``.gwms.d/exec/<phase>``."""
    return gwms_dir(work_dir) / "exec" / phase


def execute_dir(work_dir: Path) -> Path:
    """HTCondor's execute directory: one ``dir_<starter pid>`` per job."""
    return work_dir / EXECUTE_DIR_NAME


def plugin_dir(work_dir: Path) -> Path:
    """Where the plugin keeps its files (next to glidein_config)."""
    return work_dir / PLUGIN_DIR_NAME


def state_file(work_dir: Path) -> Path:
    """The server's state file (:mod:`state`)."""
    return plugin_dir(work_dir) / STATE_FILE_NAME
