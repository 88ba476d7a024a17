"""Job sandboxes under HTCondor's execute directory, in both of the starter's layouts.

The starter (starter.cpp) makes ``<EXECUTE>/dir_<starter pid>`` for each job. Its working directory, the one
``_CONDOR_SCRATCH_DIR`` names, where it writes ``.job.ad``, ``.machine.ad``, ``_condor_stdout`` and the
wrapper's error file:

* ``STARTER_NESTED_SCRATCH = true`` (the default since HTCondor 25.4.0): ``dir_<pid>/scratch``, beside the
  condor-owned ``dir_<pid>/htcondor`` and the job's ``dir_<pid>/user`` (its home);
* ``false`` (HTCondor before 25.4, or set so): ``dir_<pid>`` itself.

The job ad decides: a ``.job.ad`` directly in ``dir_<pid>`` is the flat layout (the nested starter never
writes one there, and a nested job cannot write into the condor-owned ``dir_<pid>``); else ``scratch``
beside ``htcondor`` is the nested one.
"""

# The agent serves jobs in threads with os.path strings (job_loader.py).
# ruff: noqa: PTH118, PTH208

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from glidein_triton.worker.sandbox_protocol import JOB_AD_FILE

SANDBOX_PREFIX = "dir_"
NESTED_SCRATCH = "scratch"
NESTED_CONDOR_DIR = "htcondor"


def _is_directory(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def scratch_dir(slot_dir: str) -> str:
    """The job's scratch directory (its ``_CONDOR_SCRATCH_DIR``) for the starter's ``dir_<pid>``."""
    nested = os.path.join(slot_dir, NESTED_SCRATCH)
    if (
        not os.path.lexists(os.path.join(slot_dir, JOB_AD_FILE))
        and _is_directory(nested)
        and _is_directory(os.path.join(slot_dir, NESTED_CONDOR_DIR))
    ):
        return nested
    return slot_dir


def scratch_dirs(execute_dir: str) -> Iterator[tuple[str, str]]:
    """(``dir_<pid>`` name, the job's scratch directory) for each job sandbox, by name."""
    try:
        names = sorted(name for name in os.listdir(execute_dir) if name.startswith(SANDBOX_PREFIX))
    except OSError:
        return
    for name in names:
        yield name, scratch_dir(os.path.join(execute_dir, name))
