"""Reading a job's request from its ClassAd (old syntax)."""

from __future__ import annotations

import pytest

from glidein_triton.worker.job_request import (
    RequestError,
    parse_names,
    read_request,
)

JOB_AD = """MyType = "Job"
GlobalJobId = "schedd.example.org#12.0#1700000000"
TritonModelRepository = "/cvmfs/example.org/models/"
tritonmodels = "resnet, bert  ,resnet"
TritonModelsRequired = true
Environment = "A=1 B=2"
"""


def test_request_from_the_job_ad() -> None:
    request = read_request(JOB_AD)
    assert request.repository == "/cvmfs/example.org/models"
    assert request.models == ["resnet", "bert"]
    assert request.required is True
    assert request.job_id == "schedd.example.org#12.0#1700000000"
    assert not request.empty


def test_empty_request() -> None:
    request = read_request('MyType = "Job"\nTritonModelRepositoryX = "/served"\n')
    assert request.empty
    assert (request.models, request.required, request.job_id) == ([], False, "")


def test_bad_names_and_truth_values() -> None:
    with pytest.raises(RequestError, match=r"'\.\./etc' is not a model name") as raised:
        read_request('TritonModels = "ok,../etc"\n')
    assert raised.value.required is False
    with pytest.raises(RequestError, match=r"'a/b' is not a model name") as raised:
        read_request('TritonModels = "a/b"\nTritonModelsRequired = 1\n')
    assert raised.value.required is True
    with pytest.raises(RequestError, match=r"TritonModelsRequired='MY\.X > 1' is not a truth value"):
        read_request('TritonModels = "a"\nTritonModelsRequired = MY.X > 1\n')
    with pytest.raises(RequestError, match=r"'\.\.' is not a model name"):
        parse_names("TritonModels", "..")
