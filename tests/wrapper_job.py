"""The job of the wrapper tests: connect with the client helper, infer, then try what only the admin token
may do, with every file it opens recorded. Prints one JSON object. Run as ``python wrapper_job.py REPO
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


def http_status(url: str, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> int:
    data = json.dumps(body or {}).encode() if method == "POST" else None
    request = urllib.request.Request(f"http://{url}{path}", data=data, method=method)
    request.add_header("triton-token", token)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback server)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def grpc_refusal(call: Any) -> str:
    try:
        call()
    except InferenceServerException as error:
        return str(error)
    return "allowed"


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
    found = client.read_token()
    assert found is not None
    http = client.find_endpoint("http").url
    shared = {"key": "/triton_python_backend_shm_region_x", "offset": 0, "byte_size": 64}
    report["http"] = {
        "load": http_status(http, "POST", f"/v2/repository/models/{MODEL}/load", found.value),
        "unload": http_status(http, "POST", f"/v2/repository/models/{MODEL}/unload", found.value),
        "index": http_status(http, "POST", "/v2/repository/index", found.value),
        "statistics": http_status(http, "GET", "/v2/models/stats", found.value),
        "config": http_status(http, "GET", f"/v2/models/{MODEL}/config", found.value),
        "shared-memory": http_status(
            http, "POST", "/v2/systemsharedmemory/region/x/register", found.value, shared
        ),
        "logging": http_status(http, "POST", "/v2/logging", found.value, {"log_verbose_level": 1}),
        "trace": http_status(http, "POST", "/v2/trace/setting", found.value, {"trace_level": ["TIMESTAMPS"]}),
        "metadata": http_status(http, "GET", f"/v2/models/{MODEL}", found.value),
    }
    report["grpc"] = {
        "load": grpc_refusal(lambda: grpc.load_model(MODEL)),
        "statistics": grpc_refusal(lambda: grpc.get_inference_statistics(MODEL)),
        "shared-memory": grpc_refusal(lambda: grpc.register_system_shared_memory("x", "/x", 64)),
    }
    report["token_source"] = found.source
    report["opened_outside_sandbox"] = sorted(
        {path for path in opened if path.startswith(WATCHED) and not path.startswith(str(Path.cwd()))}
    )
    print(json.dumps(report))


main()
