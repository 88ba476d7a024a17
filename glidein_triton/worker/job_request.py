"""What a job asks of the glidein's Triton server: read from its job ClassAd.

Job ClassAd attributes (``+Name = value`` in the submit file; the agent reads the ad from the job's sandbox,
``.job.ad``, in old ClassAd syntax, one ``Name = expression`` a line; only literals are understood):

* ``TritonModelRepository``: a model repository directory, e.g. on /cvmfs (the operator's policy decides
  whether it may be used: :mod:`job_policy`);
* ``TritonModels``: model names, separated by commas or spaces (default: every model of the repository);
* ``TritonModelsRequired``: ``True`` when the job cannot run without them.
"""

from __future__ import annotations

import os

from glidein_triton.worker import classad
from glidein_triton.worker.word_rules import MODEL_NAME_RULE, is_model_name, truth_value

REPOSITORY = "TritonModelRepository"
MODELS = "TritonModels"
REQUIRED = "TritonModelsRequired"
JOB_ID = "GlobalJobId"


class RequestError(ValueError):
    """The job's request cannot be understood (a bad model name, a value that is not a truth value).

    ``required`` says whether the job needs its models, as far as that part could be read (a required
    flag that cannot be read counts as required: failing loudly is safer).
    """

    def __init__(self, message: str, required: bool = True) -> None:
        super().__init__(message)
        self.required = required


class JobRequest:
    """The models a job asks for, where they are, and whether it needs them."""

    def __init__(self, repository: str, models: list[str], required: bool, job_id: str) -> None:
        self.repository = repository
        self.models = models
        self.required = required
        self.job_id = job_id

    @property
    def empty(self) -> bool:
        return not self.repository and not self.models


def parse_names(source: str, value: str) -> list[str]:
    """Model names separated by commas or spaces, in order, without repeats; a bad name is an error."""
    names: list[str] = []
    for name in value.replace(",", " ").split():
        if not is_model_name(name):
            raise RequestError(f"{source}: {name!r} is not a model name ({MODEL_NAME_RULE})")
        if name not in names:
            names.append(name)
    return names


def parse_truth(source: str, value: str) -> bool:
    """A truth value by the glidein's own rule (:func:`word_rules.truth_value`), quotes around it allowed."""
    truth = truth_value(value.strip().strip('"'))
    if truth is None:
        raise RequestError(f"{source}={value!r} is not a truth value (True or False)")
    return truth


def read_request(job_ad_text: str) -> JobRequest:
    """The job's request, from its job ad."""
    ad = classad.literal_values(job_ad_text, (REPOSITORY, MODELS, REQUIRED, JOB_ID))
    required = parse_truth(REQUIRED, ad.get(REQUIRED, ""))
    repository = ad.get(REPOSITORY, "").strip()
    try:
        models = parse_names(MODELS, ad.get(MODELS, ""))
    except RequestError as error:
        raise RequestError(str(error), required) from error
    return JobRequest(
        repository=os.path.normpath(repository) if repository else "",
        models=models,
        required=required,
        job_id=ad.get(JOB_ID, ""),
    )
