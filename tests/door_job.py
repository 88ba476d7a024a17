"""A job of the front-door tests, with unmodified Triton clients (no header, no token): what it may do
works, what it may not is refused. Run as ``python door_job.py GRPC_URL HTTP_URL MODEL``; prints one JSON
object: each call's outcome, "ok" or the error."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

GRPC_URL, HTTP_URL, MODEL = sys.argv[1:4]
#: A python model the job would run inside the server: uploaded as a ``file:`` override of a load.
PLANTED = b"import os\nos.system('touch /tmp/planted-by-a-job')\nclass TritonPythonModel:\n    pass\n"
OVERRIDE = json.dumps({"name": "planted", "backend": "python"})


def outcome(call: Callable[[], Any]) -> str:
    try:
        call()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "ok"


def infer(client: Any, module: Any) -> list[int]:
    """One inference of the demo model with ``client`` of ``module`` (tritonclient.grpc or .http)."""
    inputs = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
    answer = client.infer(MODEL, inputs).as_numpy("OUTPUT0")
    assert answer is not None
    return [int(value) for value in answer[0][:4]]


def main() -> None:
    grpc = grpcclient.InferenceServerClient(GRPC_URL)
    http = httpclient.InferenceServerClient(HTTP_URL)
    files = {"file:1/model.py": PLANTED}
    report = {
        "grpc": {
            "ready": outcome(lambda: grpc.is_server_ready() or sys.exit("not ready")),
            "metadata": outcome(lambda: grpc.get_model_metadata(MODEL)),
            "config": outcome(lambda: grpc.get_model_config(MODEL)),
            "index": outcome(grpc.get_model_repository_index),
            "statistics": outcome(lambda: grpc.get_inference_statistics(MODEL)),
            "infer": outcome(lambda: infer(grpc, grpcclient)),
            "load": outcome(lambda: grpc.load_model("planted", config=OVERRIDE, files=files)),
            "unload": outcome(lambda: grpc.unload_model(MODEL)),
            "shared-memory": outcome(lambda: grpc.register_system_shared_memory("x", "/x", 64)),
            "logging": outcome(lambda: grpc.update_log_settings({"log_verbose_level": 1})),
            "trace": outcome(lambda: grpc.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]})),
            "infer after": outcome(lambda: infer(grpc, grpcclient)),
        },
        "http": {
            "ready": outcome(lambda: http.is_server_ready() or sys.exit("not ready")),
            "metadata": outcome(lambda: http.get_model_metadata(MODEL)),
            "config": outcome(lambda: http.get_model_config(MODEL)),
            "index": outcome(http.get_model_repository_index),
            "statistics": outcome(lambda: http.get_inference_statistics(MODEL)),
            "infer": outcome(lambda: infer(http, httpclient)),
            "load": outcome(
                lambda: http.load_model(
                    "planted",
                    config=OVERRIDE,
                    files={name: base64.b64encode(data) for name, data in files.items()},
                )
            ),
            "unload": outcome(lambda: http.unload_model(MODEL)),
            "shared-memory": outcome(lambda: http.register_system_shared_memory("x", "/x", 64)),
            "logging": outcome(lambda: http.update_log_settings({"log_verbose_level": 1})),
            "trace": outcome(lambda: http.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]})),
            "infer after": outcome(lambda: infer(http, httpclient)),
        },
    }
    print(json.dumps(report))


main()
