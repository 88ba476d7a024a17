#!/usr/bin/env python3
"""Example job for a glidein with Triton: find the server, wait for the models, run one inference on each.

Written by ``glidein-triton submit-example``; replace the inference with the job's own. Self-contained: it
needs only python3 (>= 3.9), numpy and tritonclient[grpc] (the slim client image of
apptainer/tritonclient.def has them; glidein-triton itself is not needed on the worker node).

The server's address is ``$TRITON_GRPC_URL`` (the glidein's job environment), else ``TritonGRPCURL`` of the
machine ad (``$_CONDOR_MACHINE_AD``: it is there when a job wrapper clears the environment). No
credential is needed: the glidein's front door admits its jobs by their user. The models are the
arguments, else ``TritonModels`` of the job ad (``$_CONDOR_JOB_AD``). Each model gets one request of zeros
shaped from its metadata, and the shapes of its outputs are printed. Exit code 0: done; 1: no server, or
not ready in time.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

#: how long to wait for the server and the models (the glidein's pre-job hook usually has them ready)
READY_TIMEOUT = 300.0


def read_ad(variable: str) -> dict[str, str]:
    """The ClassAd file named by ``$variable`` (``Name = value`` lines), keyed by lower-case name."""
    path = os.environ.get(variable, "")
    if not path or not Path(path).is_file():
        return {}
    attributes = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        name, equals, value = line.partition("=")
        if equals:
            attributes[name.strip().lower()] = value.strip().strip('"')
    return attributes


def server_url(machine_ad: dict[str, str]) -> str:
    """``host:port`` of the glidein's gRPC endpoint; SystemExit naming where it was looked for."""
    url = os.environ.get("TRITON_GRPC_URL", "") or machine_ad.get("tritongrpcurl", "")
    if not url:
        failure = machine_ad.get("tritonfailure", "")
        sys.exit(
            "no Triton server: $TRITON_GRPC_URL is not set and the machine ad ($_CONDOR_MACHINE_AD) has no "
            "TritonGRPCURL" + (f" (TritonFailure: {failure})" if failure else "")
        )
    return url.split("://")[-1].rstrip("/")


def wait_until_ready(client: Any, models: list[str]) -> None:
    """Wait until the server and ``models`` are ready; SystemExit after READY_TIMEOUT."""
    deadline = time.monotonic() + READY_TIMEOUT
    waiting = "the server"
    while time.monotonic() < deadline:
        try:
            if client.is_server_ready():
                waiting = ", ".join(m for m in models if not client.is_model_ready(m))
                if not waiting:
                    return
        except InferenceServerException as error:
            waiting = f"the server ({error})"
        time.sleep(1)
    sys.exit(f"not ready after {READY_TIMEOUT:.0f} s: {waiting}")


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
    machine_ad = read_ad("_CONDOR_MACHINE_AD")
    models = arguments or read_ad("_CONDOR_JOB_AD").get("tritonmodels", "").replace(",", " ").split()
    url = server_url(machine_ad)
    client = grpcclient.InferenceServerClient(url, ssl=machine_ad.get("tritongrpctls", "").lower() == "true")
    wait_until_ready(client, models)
    server = client.get_server_metadata(as_json=True)
    print(f"Triton {server['version']} at {url}")
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
