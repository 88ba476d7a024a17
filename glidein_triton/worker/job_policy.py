"""What a job may load from its own repository: the operator's policy for job models.

* A job repository must be under a prefix of ``GLIDEIN_TRITON_JOB_REPOSITORIES`` or
  ``GLIDEIN_TRITON_CODE_REPOSITORIES`` (``/cvmfs/<vo>/models``), checked on the resolved path, so an
  absolute path or a symlink cannot reach a job sandbox (another job's model) or the glidein directory.
* Nothing of the model, nor a directory from the prefix to the model, may be changeable by anyone but the
  repository's trusted owners (root and the prefix's owner, never the glidein's user:
  :mod:`model_snapshot`). The model is copied into a private snapshot as it is checked; the snapshot is
  what is vetted and what the server loads.
* ``config.pbtxt`` is read as Triton reads it (:mod:`pbtxt`) and decided on by :func:`decide`: every
  top-level field must be one of Triton's ``ModelConfig``, file names in it must stay in the model
  directory, and a model that runs code in the server (:data:`CODE_FIELDS`, a backend or platform outside
  the data ones, parameters that name files, shared libraries or Python files in the model directory)
  loads only from ``GLIDEIN_TRITON_CODE_REPOSITORIES``. An ensemble names the models it needs, which the
  loader vets as models of the same job.
"""

# Imported by the agent for each job: os.path keeps it as light as model_registry.
# ruff: noqa: PTH112, PTH118, PTH119, PTH120, PTH123

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass

from glidein_triton.worker import model_snapshot, pbtxt
from glidein_triton.worker.model_snapshot import is_under

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Union

    Decision = Union["Refusal", "Vetted"]

CONFIG_FILE = "config.pbtxt"
#: A larger config.pbtxt is refused unread.
MAX_CONFIG_BYTES = 1 << 20
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
#: The fields of Triton's ModelConfig (common/protobuf/model_config.proto); Triton refuses any other.
CONFIG_FIELDS = frozenset(
    {
        "name",
        "platform",
        "backend",
        "runtime",
        "version_policy",
        "max_batch_size",
        "input",
        "output",
        "batch_input",
        "batch_output",
        "optimization",
        "dynamic_batching",
        "sequence_batching",
        "ensemble_scheduling",
        "instance_group",
        "default_model_filename",
        "cc_model_filenames",
        "metric_tags",
        "parameters",
        "model_warmup",
        "model_operations",
        "model_transaction_policy",
        "model_repository_agents",
        "response_cache",
        "model_metrics",
    }
)
REPEATED_FIELDS = frozenset(
    {"input", "output", "batch_input", "batch_output", "instance_group", "cc_model_filenames"}
    | {"metric_tags", "parameters", "model_warmup"}
)
#: Top-level fields that make Triton load code, whatever their content.
CODE_FIELDS = {
    "runtime": "a runtime (a backend library or a Python-based backend)",
    "model_operations": "custom operations (model_operations op_library_filename)",
    "model_repository_agents": "repository agents (model_repository_agents)",
}
#: Fields, at any depth, whose value Triton opens as a file of the model directory.
FILE_FIELDS = frozenset({"default_model_filename", "label_filename", "data_file", "input_data_file"})
#: A parameter whose key has one of these words (between underscores) names a file, a library or an
#: environment, whatever the backend (EXECUTION_ENV_PATH, trt_engine_cache_path, ...).
FILE_PARAMETER = re.compile(
    r"(?:^|[_.\- ])(?:PATHS?|FILES?|FILENAMES?|LIBS?|LIBRAR(?:Y|IES)|DIRS?|DIRECTOR(?:Y|IES)|PLUGINS?|ENV)"
    r"(?:$|[_.\- ])",
    re.IGNORECASE,
)
CODE_SUFFIXES = (".py", ".so", ".pyc", ".tgz", ".tar.gz")


@dataclass(frozen=True)
class Refusal:
    """The model may not load for a job, from any repository."""

    reason: str


@dataclass(frozen=True)
class Vetted:
    """The model may load: ``code`` says why it runs code in the server ("" for a data model); ``needs``
    are the models an ensemble names."""

    code: str = ""
    needs: tuple[str, ...] = ()


class PolicyError(ValueError):
    """The operator's policy refuses this model for a job."""


def code_file(name: str) -> bool:
    """A shared library or Python file: Triton loads ``libtriton_<backend>.so`` and ``model.py`` from a
    model's own directory before its backend directory."""
    base = os.path.basename(name)
    return base.endswith((".py", ".so", ".pyc")) or ".so." in base or base.startswith("libtriton_")


def plain_file_name(name: str) -> bool:
    """A file name Triton joins to a model directory without leaving it."""
    return bool(name) and not any(character in name for character in "/\\\0") and name not in (".", "..")


def one_string(config: pbtxt.Message, name: str) -> str | Refusal:
    """The value of a singular string field ("" when absent)."""
    values = config.values(name)
    if not values:
        return ""
    value = values[0]
    if not isinstance(value, pbtxt.Scalar) or value.kind != "string":
        return Refusal(f"{CONFIG_FILE}: {name} (line {config.line}) is not a quoted string")
    return value.text


def file_refusal(config: pbtxt.Message) -> Refusal | None:
    """A file field that is not a plain file name, at any depth (cc_model_filenames: its values)."""
    for name, value in config.walk():
        if name in FILE_FIELDS or name == "cc_model_filenames":
            inner = [] if isinstance(value, pbtxt.Scalar) else value.walk()
            scalars = [value] if isinstance(value, pbtxt.Scalar) else [v for n, v in inner if n != "key"]
            for scalar in scalars:
                if (
                    not isinstance(scalar, pbtxt.Scalar)
                    or scalar.kind != "string"
                    or not plain_file_name(scalar.text)
                ):
                    shown = scalar.text if isinstance(scalar, pbtxt.Scalar) else "a message"
                    return Refusal(
                        f"{CONFIG_FILE}: {name} {shown!r} is not a file name in the model directory"
                    )
    return None


def parameter_code(config: pbtxt.Message) -> str:
    """The first parameter (any ``parameters`` map, at any depth) that names a file or library."""
    for name, entry in config.walk():
        if name != "parameters":
            continue
        if not isinstance(entry, pbtxt.Message):
            return "a parameter that is not a key and a value"
        keys = entry.strings("key")
        texts = [
            value.text for field, value in entry.walk() if field != "key" and isinstance(value, pbtxt.Scalar)
        ]
        for key in keys or [""]:
            if FILE_PARAMETER.search(key):
                return f"the parameter {key!r}"
        for text in texts:
            if "/" in text or text.lower().endswith(CODE_SUFFIXES) or "$" in text:
                return f"the parameter {keys[0] if keys else ''!r} (its value {text!r} names a file)"
    return ""


def ensemble_needs(config: pbtxt.Message) -> tuple[str, ...] | Refusal:
    needs: list[str] = []
    for scheduling in config.values("ensemble_scheduling"):
        if not isinstance(scheduling, pbtxt.Message):
            return Refusal(f"{CONFIG_FILE}: ensemble_scheduling is not a message")
        for step in scheduling.values("step"):
            if not isinstance(step, pbtxt.Message):
                return Refusal(f"{CONFIG_FILE}: an ensemble step is not a message")
            if any(step.strings("model_namespace")):
                return Refusal(f"{CONFIG_FILE}: an ensemble step names a model namespace")
            names = step.strings("model_name")
            if len(names) != 1 or len(step.values("model_name")) != 1:
                return Refusal(f"{CONFIG_FILE}: an ensemble step (line {step.line}) needs one model_name")
            if names[0] not in needs:
                needs.append(names[0])
    return tuple(needs)


def decide(config_text: str, files: Sequence[str]) -> Decision:  # noqa: PLR0911 (one return a rule)
    """The decision on a model from its configuration and its files (relative paths), as Triton reads
    them: a :class:`Refusal`, or :class:`Vetted` with the reason it runs code."""
    try:
        config = pbtxt.parse(config_text)
    except pbtxt.TextFormatError as error:
        return Refusal(f"{CONFIG_FILE}: {error}")
    for name in config.names():
        if name not in CONFIG_FIELDS:
            return Refusal(f"{CONFIG_FILE}: {name} is not a field of Triton's model configuration")
        if name not in REPEATED_FIELDS and len(config.values(name)) > 1:
            return Refusal(f"{CONFIG_FILE}: {name} is given more than once")
    refusal = file_refusal(config)
    if refusal:
        return refusal
    needs = ensemble_needs(config)
    if isinstance(needs, Refusal):
        return needs
    backend, platform = one_string(config, "backend"), one_string(config, "platform")
    if isinstance(backend, Refusal):
        return backend
    if isinstance(platform, Refusal):
        return platform
    code = next((reason for name, reason in CODE_FIELDS.items() if config.values(name)), "")
    if not code and backend and backend not in DATA_BACKENDS:
        code = f"backend {backend!r}"
    if not code and platform and platform not in DATA_PLATFORMS:
        code = f"platform {platform!r}"
    if not code and not backend and not platform:
        code = "no backend or platform in its config (Triton would pick one from the files)"
    code = code or parameter_code(config)
    if not code:
        code = next((f"the file {name}" for name in files if code_file(name)), "")
    return Vetted(code, needs)


class Policy:
    """The operator's prefixes (resolved once) and the size limit of a snapshot."""

    def __init__(
        self, job_prefixes: Sequence[str], code_prefixes: Sequence[str], size_limit: int = 8192 << 20
    ) -> None:
        self.code_prefixes = [os.path.realpath(prefix) for prefix in code_prefixes]
        self.prefixes = [os.path.realpath(prefix) for prefix in job_prefixes] + self.code_prefixes
        self.size_limit = size_limit

    def locate(self, repository: str, model: str) -> tuple[str, str]:
        """(the resolved directory of ``model`` in ``repository``, its prefix), if under a prefix."""
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
        return directory, prefix

    def vet(self, directory: str, prefix: str, snapshot: str) -> Decision:
        """Copy the model in ``directory`` (from :meth:`locate`) to ``snapshot`` and decide on the copy;
        a refused model's copy is removed."""
        decision = self.snapshot_decision(directory, prefix, snapshot)
        if (
            isinstance(decision, Vetted)
            and decision.code
            and not any(is_under(directory, code) for code in self.code_prefixes)
        ):
            trusted = ", ".join(self.code_prefixes) or "none"
            decision = Refusal(
                f"runs code in the server ({decision.code}); such models load only from repositories "
                f"trusted for code (GLIDEIN_TRITON_CODE_REPOSITORIES: {trusted})"
            )
        if isinstance(decision, Refusal):
            shutil.rmtree(snapshot, ignore_errors=True)
        return decision

    def snapshot_decision(self, directory: str, prefix: str, snapshot: str) -> Decision:
        trusted = model_snapshot.trusted_owners(prefix)
        parent = os.path.dirname(directory)
        try:
            while is_under(parent, prefix):  # the directories from the prefix to the model
                descriptor = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    model_snapshot.check_descriptor(descriptor, parent, trusted)
                finally:
                    os.close(descriptor)
                if parent == prefix:
                    break
                parent = os.path.dirname(parent)
            files = model_snapshot.Copier(directory, snapshot, trusted, self.size_limit).copy()
        except model_snapshot.Untrusted as error:
            return Refusal(str(error))
        except OSError as error:
            return Refusal(f"cannot copy the model: {error}")
        if CONFIG_FILE not in files:
            return Refusal(f"no {CONFIG_FILE} (Triton would pick the backend from the files)")
        with open(os.path.join(snapshot, CONFIG_FILE), "rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            return Refusal(f"{CONFIG_FILE} is larger than {MAX_CONFIG_BYTES >> 10} KiB")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return Refusal(f"{CONFIG_FILE} is not UTF-8 text")
        return decide(text, files)
