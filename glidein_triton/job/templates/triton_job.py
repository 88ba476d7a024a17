#!/usr/bin/env python3
"""Example job for a glidein with Triton: find the server, wait for the models, run one inference on each.

Written by ``glidein-triton submit-example``; replace the inference with the job's own. The models are the
arguments, else ``TritonModels`` of the job ad (``$_CONDOR_JOB_AD``). Each model gets one request of zeros
shaped from its metadata, and the shapes of its outputs are printed. Needs python3, numpy and
tritonclient[grpc] with glidein_triton.job.client: all in the slim client image (apptainer/tritonclient.def).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import triton_to_np_dtype

from glidein_triton.job.client import connect, parse_ad


def models_from_job_ad() -> list[str]:
    """``TritonModels`` of the job ad, as a list of names."""
    path = os.environ.get("_CONDOR_JOB_AD", "")
    if not path or not Path(path).is_file():
        return []
    value = parse_ad(Path(path).read_text()).get("tritonmodels", "")
    return [name for name in value.replace(",", " ").split() if name]


def zeros_request(metadata: dict[str, Any]) -> list[Any]:
    """One input of zeros (or empty strings) per model input, batch and variable dimensions set to 1."""
    inputs = []
    for tensor in metadata["inputs"]:
        shape = [max(1, int(dimension)) for dimension in tensor["shape"]]
        request = grpcclient.InferInput(tensor["name"], shape, tensor["datatype"])
        if tensor["datatype"] == "BYTES":
            request.set_data_from_numpy(np.full(shape, b"", dtype=np.object_))
        else:
            request.set_data_from_numpy(np.zeros(shape, dtype=triton_to_np_dtype(tensor["datatype"])))
        inputs.append(request)
    return inputs


def main(arguments: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    models = arguments or models_from_job_ad()
    client = connect("grpc", models=models, timeout=300)
    server = client.get_server_metadata(as_json=True)
    print(f"Triton {server['version']} at {os.environ.get('TRITON_GRPC_URL', '(from the machine ad)')}")
    for model in models:
        metadata = client.get_model_metadata(model, as_json=True)
        result = client.infer(model, zeros_request(metadata))
        shapes = ", ".join(
            f"{out['name']} {list(result.as_numpy(out['name']).shape)}" for out in metadata["outputs"]
        )
        print(f"{model}: one inference, outputs {shapes}")
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
