#!/usr/bin/env python3
"""Send batches to your own model on the glidein's Triton server and print what comes back.

Written for a model exported from PyTorch (docs/pytorch-to-triton.md); change the names and the data.

* Tensor names. An ONNX model keeps the names given to ``torch.onnx.export`` (``input_names``,
  ``output_names``): here ``IMAGE`` and ``PROBABILITIES``. A TorchScript model stores none: Triton's
  ``pytorch`` backend calls them ``INPUT__0``, ``OUTPUT__0``... (``--input INPUT__0 --output OUTPUT__0``).
* Shapes. With ``max_batch_size > 0`` in config.pbtxt, its ``dims`` leave out the batch dimension: the
  client sends ``[batch, *dims]`` (``[n, 3, 224, 224]`` here) and gets ``[batch, *output dims]`` back.
* Batching. One request carries at most ``max_batch_size`` items: this splits ``--items`` into requests
  of ``--batch`` (never more than the server allows). Send batches, not one request per item; the server's
  dynamic batcher merges the requests of several jobs.

The model's metadata (names, data types, shapes) is read from the server first, so a wrong name or shape
is reported before any inference. Its ``max_batch_size`` comes from its configuration: on a glidein the
server's configuration API is the glidein agent's alone, so it is read from the model's ``config.pbtxt`` in
the repository the job knows (``$TRITON_MODEL_REPOSITORY``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from glidein_triton.job.client import NoServerError, connect

#: Triton data types -> numpy (the ones an exported PyTorch model usually has)
NUMPY_TYPES = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32}


def tensor(metadata: dict, name: str, kind: str) -> dict:
    """The metadata of the model's input or output ``name``; SystemExit listing the names it has."""
    found = {entry["name"]: entry for entry in metadata[kind]}
    if name not in found:
        sys.exit(f"{metadata['name']} has no {kind[:-1]} {name!r}; its {kind}: {', '.join(found)}")
    return found[name]


def make_items(count: int, shape: list[int], data_type: str) -> np.ndarray:
    """``count`` items of ``shape``: stands in for your data (read files, preprocess, stack)."""
    if any(size < 0 for size in shape):
        sys.exit(f"the input has a variable dimension ({shape}): make items of the shape your data has")
    generator = np.random.default_rng(seed=1)
    return generator.random((count, *shape)).astype(NUMPY_TYPES[data_type])


def infer_in_batches(client, args: argparse.Namespace, items: np.ndarray, data_type: str) -> np.ndarray:
    """The model's output for every item, one request per batch, in order."""
    results = []
    for start in range(0, len(items), args.batch):
        batch = items[start : start + args.batch]
        request = grpcclient.InferInput(args.input, list(batch.shape), data_type)
        request.set_data_from_numpy(batch)
        wanted = grpcclient.InferRequestedOutput(args.output)
        result = client.infer(args.model, [request], outputs=[wanted])
        results.append(result.as_numpy(args.output))
    return np.concatenate(results)


def max_batch_size_of(client: grpcclient.InferenceServerClient, model: str) -> int:
    """From the server's configuration API, else (restricted on a glidein) from the model's config.pbtxt."""
    try:
        return int(client.get_model_config(model, as_json=True)["config"].get("max_batch_size", 0))
    except InferenceServerException:
        config = Path(os.environ.get("TRITON_MODEL_REPOSITORY", ""), model, "config.pbtxt")
        found = re.search(r"^\s*max_batch_size\s*:\s*(\d+)", config.read_text(), re.MULTILINE)
        return int(found.group(1)) if found else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", default="my_classifier", help="model name (its directory in the repository)"
    )
    parser.add_argument("--input", default="IMAGE", help="input tensor name (TorchScript: INPUT__0)")
    parser.add_argument(
        "--output", default="PROBABILITIES", help="output tensor name (TorchScript: OUTPUT__0)"
    )
    parser.add_argument("--items", type=int, default=10, help="how many items to send")
    parser.add_argument("--batch", type=int, default=4, help="items per request")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the server and model"
    )
    args = parser.parse_args()
    try:
        client = connect("grpc", models=[args.model], timeout=args.timeout)
    except NoServerError as error:
        print(error, file=sys.stderr)
        return 1
    metadata = client.get_model_metadata(args.model, as_json=True)
    max_batch_size = max_batch_size_of(client, args.model)
    if max_batch_size == 0:
        sys.exit(f"{args.model} takes no batch dimension (max_batch_size 0): send single items of its shape")
    args.batch = min(args.batch, max_batch_size)
    source = tensor(metadata, args.input, "inputs")
    tensor(metadata, args.output, "outputs")
    # metadata shapes include the batch dimension as -1 when the model batches
    item_shape = [int(size) for size in source["shape"][1:]]
    items = make_items(args.items, item_shape, source["datatype"])
    outputs = infer_in_batches(client, args, items, source["datatype"])
    print(f"{args.model}: {args.input} {list(items.shape)} {source['datatype']} in,", end=" ")
    print(f"{args.output} {list(outputs.shape)} out,", end=" ")
    print(f"in requests of up to {args.batch} (max_batch_size {max_batch_size})")
    for index, row in enumerate(outputs[:3]):
        print(f"  item {index}: top class {int(np.argmax(row))} ({float(np.max(row)):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
