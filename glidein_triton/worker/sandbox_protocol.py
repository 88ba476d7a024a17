"""The agent <-> job protocol in a job's sandbox: its file names, the ``pending`` marker, the answer, limits.

The glidein's agent (:mod:`job_loader`) writes into ``<scratch dir>/.glidein_triton/``, in this order:

* ``pending``: how many whole seconds the agent may take to answer (:func:`pending_text`);
* ``claim.json``: the models the job holds, for the reaper (read at most ``MAX_CLAIM_BYTES``);
* ``prejob.env``: the answer (:class:`Answer`), ``NAME=value`` lines: the four variables the pre-job
  exports to the job (``TRITON_MODELS_READY``, ``_FAILED``, ``_STATUS``, ``_ERRORS``), then one
  ``TRITON_MODEL_ERROR=<model>: <reason>`` line per failed model, which the client helper reads.

On a pool client glidein (``GLIDEIN_TRITON_POOL = client``) it writes, before the answer, ``pool.json`` and
``pool_client.key`` (:mod:`pool_discovery`), which ``connect(pool=True)`` reads.

Its readers: the pre-job scripts (POSIX sh: ``glidein_triton_prejob.sh`` and ``glidein_triton_prejob_env.sh``
spell these names themselves, and tests/test_sandbox_protocol.py keeps them equal to this module), the
reaper (:mod:`model_registry`) and the job's client helper (``glidein_triton.job.client``, which ships this
module in the client image). Standard library only, Python >= 3.9.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: The starter's copy of the job ad, in the job's scratch directory.
JOB_AD_FILE = ".job.ad"
#: The agent's directory in the job's scratch directory.
JOB_DIR = ".glidein_triton"
PENDING_FILE = "pending"
CLAIM_FILE = "claim.json"
ANSWER_FILE = "prejob.env"
#: Pool mode (a client glidein): the pool's servers this job may use, and the copy of the glidein's client
#: key that their certificates are for (both 0600; format in glidein_triton.worker.pool_discovery).
POOL_FILE = "pool.json"
POOL_KEY_FILE = "pool_client.key"

#: A claim file larger than this is not read (a job could make it huge to slow the periodic script).
MAX_CLAIM_BYTES = 64 * 1024
#: The agent's answer may take the model load timeout and this margin.
ANSWER_MARGIN = 30
#: What the pre-job waits for the answer when ``pending`` holds no number: the default load timeout (300 s,
#: GLIDEIN_TRITON_LOAD_TIMEOUT) and the margin.
DEFAULT_ANSWER_WAIT = 300 + ANSWER_MARGIN

READY = "TRITON_MODELS_READY"
FAILED = "TRITON_MODELS_FAILED"
STATUS = "TRITON_MODELS_STATUS"
ERRORS = "TRITON_MODELS_ERRORS"
#: The variables the pre-job exports to the job, in the answer's order.
EXPORTED = (READY, FAILED, STATUS, ERRORS)
#: One line per failed model: ``<model>: <reason>`` (a model name holds no ":").
MODEL_ERROR = "TRITON_MODEL_ERROR"

STATUS_READY = "ready"
STATUS_FAILED = "failed"
STATUS_REQUIRED_FAILED = "required-failed"
STATUS_NONE = "none"


def pending_text(seconds: float) -> str:
    """The ``pending`` file: how long the agent may take to answer, in whole seconds."""
    return f"{seconds:.0f}\n"


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


@dataclass(frozen=True)
class Answer:
    """The agent's answer for one job: the models ready, those failed with why, and the status."""

    ready: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)
    status: str = STATUS_NONE

    @classmethod
    def of(cls, ready: Sequence[str], failed: Mapping[str, str], required: bool, asked: bool) -> Answer:
        """The answer for a job that ``asked`` for models (or not), needs them (``required``) or not."""
        if not asked:
            status = STATUS_NONE
        elif not failed:
            status = STATUS_READY
        else:
            status = STATUS_REQUIRED_FAILED if required else STATUS_FAILED
        return cls(tuple(ready), {model: one_line(why) for model, why in failed.items()}, status)

    def text(self) -> str:
        """The answer file: ``NAME=value`` lines, each value on one line."""
        errors = "; ".join(f"{model}: {why}" for model, why in self.failed.items())
        lines = [
            f"{READY}={','.join(self.ready)}",
            f"{FAILED}={','.join(self.failed)}",
            f"{STATUS}={self.status}",
            f"{ERRORS}={one_line(errors)}",
            *(f"{MODEL_ERROR}={model}: {why}" for model, why in self.failed.items()),
        ]
        return "\n".join(lines) + "\n"


def parse_answer(text: str) -> Answer:
    """The answer in an answer file's text. A failed model without its own error line (the pre-job's own
    answer when the agent never answered) has the whole ``TRITON_MODELS_ERRORS`` as its reason."""
    values: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name == MODEL_ERROR:
            model, _, why = value.partition(": ")
            reasons[model] = why
        else:
            values[name] = value
    failed = [model for model in values.get(FAILED, "").split(",") if model]
    return Answer(
        ready=tuple(model for model in values.get(READY, "").split(",") if model),
        failed={model: reasons.get(model, values.get(ERRORS, "")) for model in failed},
        status=values.get(STATUS, ""),
    )
