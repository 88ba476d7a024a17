"""What a job may load from its own repository: the operator's policy for job models.

* A job repository must be under a prefix of ``GLIDEIN_TRITON_JOB_REPOSITORIES`` or
  ``GLIDEIN_TRITON_CODE_REPOSITORIES`` (``/cvmfs/<vo>/models``), checked on the resolved path, so an
  absolute path or a symlink cannot reach a job sandbox (another job's model) or the glidein directory.
* Nothing of the model (nor a directory between the prefix and the model) may be writable by the glidein's
  user, who is also every job's user: a job could otherwise swap another job's model. Writable means: on a
  read-write file system, owned by this user (an owner can always chmod), or group/other writable by
  permission bits (root, which ignores the bits, is never a glidein user).
* A model that runs code in the server (python backend, custom backends, backend libraries or Python files
  in the model directory, execution environments, repository agents; read from ``config.pbtxt``) loads
  only from ``GLIDEIN_TRITON_CODE_REPOSITORIES``; elsewhere only data models (ONNX, TensorRT plans,
  TorchScript, TensorFlow, OpenVINO, FIL, ensembles).
"""

# Imported by the agent for each job: os.path keeps it as light as model_registry.
# ruff: noqa: PTH112, PTH114, PTH116, PTH118, PTH120, PTH123

from __future__ import annotations

import os
import re
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

CONFIG_FILE = "config.pbtxt"
DATA_BACKENDS = frozenset({"onnxruntime", "tensorrt", "pytorch", "tensorflow", "openvino", "fil"})
DATA_PLATFORMS = frozenset(
    {
        "onnxruntime_onnx",
        "tensorrt_plan",
        "pytorch_libtorch",
        "tensorflow_savedmodel",
        "tensorflow_graphdef",
        "ensemble",
    }
)
FIELD = r'^\s*{}\s*:\s*"([^"]*)"'
#: Configuration that makes Triton run code from the model or next to it, whatever the backend.
CODE_CONFIGURATION = (
    (re.compile(r"^\s*runtime\s*:", re.MULTILINE), "a runtime (a backend library or Python-based backend)"),
    (re.compile(r"EXECUTION_ENV_PATH"), "an execution environment (EXECUTION_ENV_PATH)"),
    (re.compile(r"\bmodel_repository_agents\b"), "repository agents (model_repository_agents)"),
)


class PolicyError(ValueError):
    """The operator's policy refuses this model for a job."""


def is_under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def code_file(name: str) -> bool:
    """A shared library or Python file: Triton loads ``libtriton_<backend>.so`` and ``model.py`` from a
    model's own directory before its backend directory."""
    return name.endswith((".py", ".so")) or ".so." in name


def code_reason(model_dir: str) -> str:
    """Why the model in ``model_dir`` runs code in the server, or "" for a data model."""
    try:
        with open(os.path.join(model_dir, CONFIG_FILE), errors="replace") as stream:
            config = stream.read()
    except OSError:
        return f"no readable {CONFIG_FILE} (Triton would pick the backend from the files)"
    for pattern, reason in CODE_CONFIGURATION:
        if pattern.search(config):
            return reason
    backend = re.search(FIELD.format("backend"), config, re.MULTILINE)
    platform = re.search(FIELD.format("platform"), config, re.MULTILINE)
    if backend and backend.group(1) not in DATA_BACKENDS:
        return f"backend {backend.group(1)!r}"
    if not backend and (not platform or platform.group(1) not in DATA_PLATFORMS):
        return f"platform {platform.group(1)!r}" if platform else "no backend or platform in its config"
    for directory, _subdirectories, files in os.walk(model_dir):
        for name in files:
            if code_file(name):
                return f"the file {os.path.relpath(os.path.join(directory, name), model_dir)}"
    return ""


def writable(path: str) -> bool:
    """Whether the glidein's user can change ``path`` (see the module doc); a symlink by its target."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return False
        status = os.stat(path)
    except OSError:
        return False
    if status.st_uid == os.geteuid():
        return True
    if status.st_mode & stat.S_IWOTH:
        return True
    return bool(status.st_mode & stat.S_IWGRP) and status.st_gid in {os.getegid(), *os.getgroups()}


class Policy:
    """The operator's prefixes (resolved once)."""

    def __init__(self, job_prefixes: Sequence[str], code_prefixes: Sequence[str]) -> None:
        self.code_prefixes = [os.path.realpath(prefix) for prefix in code_prefixes]
        self.prefixes = [os.path.realpath(prefix) for prefix in job_prefixes] + self.code_prefixes

    def model_directory(self, repository: str, model: str) -> str:
        """The resolved directory of ``model`` in the job's ``repository``, if the policy allows it."""
        if not self.prefixes:
            raise PolicyError(
                f"{model}: this glidein loads no models from job repositories "
                "(the operator allows none: GLIDEIN_TRITON_JOB_REPOSITORIES)"
            )
        directory = os.path.realpath(os.path.join(repository, model))
        prefix = next((prefix for prefix in self.prefixes if is_under(directory, prefix)), "")
        if not prefix:
            raise PolicyError(
                f"{model}: {directory} is not under a job repository the operator allows "
                f"({', '.join(self.prefixes)})"
            )
        if not os.path.isdir(directory):
            raise PolicyError(f"{model}: no model directory {directory}")
        self.check_not_writable(model, prefix, directory)
        reason = code_reason(directory)
        if reason and not any(is_under(directory, code) for code in self.code_prefixes):
            trusted = ", ".join(self.code_prefixes) or "none"
            raise PolicyError(
                f"{model}: runs code in the server ({reason}); such models load only from repositories "
                f"trusted for code (GLIDEIN_TRITON_CODE_REPOSITORIES: {trusted})"
            )
        return directory

    def check_not_writable(self, model: str, prefix: str, directory: str) -> None:
        """Refuse a model the glidein's user could change: its tree, and the directories above it."""
        paths = [directory]
        parent = os.path.dirname(directory)
        while is_under(parent, prefix) and parent != prefix:
            paths.append(parent)
            parent = os.path.dirname(parent)
        for root, subdirectories, files in os.walk(directory):
            for name in subdirectories + files:
                path = os.path.join(root, name)
                if os.path.islink(path) and not any(
                    is_under(os.path.realpath(path), allowed) for allowed in self.prefixes
                ):
                    raise PolicyError(f"{model}: {path} links outside the allowed job repositories")
                paths.append(path)
        for path in paths:
            if writable(path):
                raise PolicyError(
                    f"{model}: {path} is writable by the glidein's user (jobs run as that user): "
                    "a job repository must be read-only to it, e.g. on CVMFS"
                )
