"""CVMFS paths where cvmfsexec mounted CVMFS elsewhere, translated as GlideinWMS translates them.

cvmfs_setup.sh writes ``CVMFS_MOUNT_DIR`` into glidein_config when it mounted the repositories somewhere
other than /cvmfs (cvmfsexec); singularity_lib.sh reads it (the environment's value first:
``cvmfs_set_mount_dir``) and rewrites each ``/cvmfs/...`` path into it (``cvmfs_resolve_path``), following
one link whose target is again on /cvmfs; its containers get the mount bound at /cvmfs. Every side of the
plugin translates the paths it reads here (settings, job repositories, the node check); the startup shell
script does the same with the same key for the Pythons it tries.
"""

# Imported by the agent: os.path keeps it light.
# ruff: noqa: PTH114, PTH115

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

CVMFS = "/cvmfs"
MOUNT_DIR_KEY = "CVMFS_MOUNT_DIR"


def mount_dir(config: Mapping[str, str], environ: Mapping[str, str] | None = None) -> str:
    """Where CVMFS is mounted when not at /cvmfs ("" when it is, or nobody said): the environment's
    CVMFS_MOUNT_DIR, else glidein_config's, without one trailing ``/`` (as ``${CVMFS_MOUNT_DIR%/}``)."""
    found = (os.environ if environ is None else environ).get(MOUNT_DIR_KEY, "").strip()
    found = found or config.get(MOUNT_DIR_KEY, "").strip()
    found = found[:-1] if found.endswith("/") else found
    return "" if found == CVMFS else found


def in_cvmfs(path: str) -> bool:
    """``/cvmfs`` or a path under it, literally (the path GlideinWMS and the operators write)."""
    return path == CVMFS or path.startswith(CVMFS + "/")


def resolve(path: str, mount: str) -> str:
    """``path`` with /cvmfs replaced by ``mount``; a link there to another /cvmfs path is followed once."""
    if not mount or not in_cvmfs(path):
        return path
    translated = mount + path[len(CVMFS) :]
    if os.path.islink(translated):
        target = os.readlink(translated)
        if in_cvmfs(target):
            translated = mount + target[len(CVMFS) :]
    return translated


def as_written(path: str, mount: str) -> str:
    """A path under ``mount`` as its /cvmfs path (the same on every node); any other path unchanged."""
    if mount and (path == mount or path.startswith(mount + "/")):
        return CVMFS + path[len(mount) :]
    return path


def resolve_all(paths: Sequence[str], mount: str) -> tuple[str, ...]:
    return tuple(resolve(path, mount) for path in paths)
