"""The job of the wrapper tests: connect with the client helper, infer, then ask what CMSSW's SonicTriton
asks (repository index, model configuration and metadata) and the statistics, over HTTP and gRPC with no
header, with every file it opens recorded. Prints one JSON object. Run as ``python wrapper_job.py REPO
MODEL WATCHED``: REPO goes on sys.path (the helper, as a client image would ship it), WATCHED is the
directory under which the job may open files only in its own sandbox."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

opened: list[str] = []


def audit(event: str, arguments: tuple[Any, ...]) -> None:
    if event == "open" and isinstance(arguments[0], (str, bytes)):
        opened.append(os.path.abspath(os.fsdecode(arguments[0])))  # noqa: PTH100 (no file access in a hook)


sys.addaudithook(audit)
sys.path.insert(0, sys.argv[1])
MODEL, WATCHED = sys.argv[2], sys.argv[3]

import numpy as np  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from glidein_triton.job import client  # noqa: E402


def http_status(url: str, method: str, path: str) -> int:
    data = b"{}" if method == "POST" else None
    request = urllib.request.Request(f"http://{url}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback server)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def grpc_answer(call: Any) -> str:
    try:
        call()
    except InferenceServerException as error:
        return str(error)
    return "answered"


def main() -> None:
    report: dict[str, Any] = {"status": os.environ.get("TRITON_MODELS_STATUS", "")}
    try:
        grpc = client.connect(models=[MODEL], timeout=60)
    except client.NoServerError as error:
        report["error"] = str(error)
        print(json.dumps(report))
        return
    tensor = grpcclient.InferInput("INPUT0", [4], "INT32")
    tensor.set_data_from_numpy(np.array([1, 2, 3, 4], dtype=np.int32))
    report["output"] = grpc.infer(MODEL, [tensor]).as_numpy("OUTPUT0").tolist()
    http = client.find_endpoint("http").url
    report["http"] = {
        "index": http_status(http, "POST", "/v2/repository/index"),
        "statistics": http_status(http, "GET", "/v2/models/stats"),
        "config": http_status(http, "GET", f"/v2/models/{MODEL}/config"),
        "metadata": http_status(http, "GET", f"/v2/models/{MODEL}"),
    }
    report["grpc"] = {
        "index": grpc_answer(grpc.get_model_repository_index),
        "config": grpc_answer(lambda: grpc.get_model_config(MODEL)),
        "metadata": grpc_answer(lambda: grpc.get_model_metadata(MODEL)),
        "statistics": grpc_answer(lambda: grpc.get_inference_statistics(MODEL)),
    }
    report["opened_outside_sandbox"] = sorted(
        {path for path in opened if path.startswith(WATCHED) and not path.startswith(str(Path.cwd()))}
    )
    print(json.dumps(report))


main()
