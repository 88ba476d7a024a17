#!/usr/bin/env python3
"""Classify an image with the glidein's ``image_classifier`` model and print the top classes.

In the spirit of Triton's image_client.py with densenet_onnx: the image (a binary PPM file, a .npy array,
or a built-in test pattern) is scaled to 3x64x64, sent to the server, and Triton's classification
extension returns the top classes as ``score:index:label``. With ``--local-fallback``, when the job finds
no server, the same network runs in-process instead (glidein_triton.job.client's fallback hook).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np

from glidein_triton.job.client import NoServerError, connect

MODEL = "image_classifier"
SIZE = 64
MODEL_DIR = Path(__file__).resolve().parent / "model_repository" / MODEL


def read_ppm(path: Path) -> np.ndarray:
    """A binary PPM (P6, 8-bit) image as a (height, width, 3) uint8 array."""
    data = path.read_bytes()
    fields: list[bytes] = []
    position = 0
    while len(fields) < 4:
        while data[position : position + 1].isspace():
            position += 1
        if data[position : position + 1] == b"#":
            position = data.index(b"\n", position)
            continue
        end = position
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[position:end])
        position = end
    magic, width, height, maximum = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    if magic != b"P6" or maximum != 255:
        raise ValueError(f"{path}: only binary 8-bit PPM (P6, maximum 255) is read, not {magic!r}/{maximum}")
    pixels = np.frombuffer(data, dtype=np.uint8, count=width * height * 3, offset=position + 1)
    return pixels.reshape(height, width, 3)


def test_pattern() -> np.ndarray:
    """A deterministic 96x128 colour image: gradients and a bright disc."""
    rows, columns = np.mgrid[0:96, 0:128]
    disc = ((rows - 40) ** 2 + (columns - 80) ** 2 < 25**2) * 255
    return np.stack([columns * 2, rows * 2, disc], axis=-1).clip(0, 255).astype(np.uint8)


def load(path: Path | None) -> np.ndarray:
    if path is None:
        return test_pattern()
    if path.suffix == ".npy":
        return np.load(path)
    return read_ppm(path)


def preprocess(image: np.ndarray) -> np.ndarray:
    """(height, width, 3) pixels -> (3, 64, 64) float32, nearest-neighbour scaled, centred on 0."""
    height, width = image.shape[:2]
    rows = np.arange(SIZE) * height // SIZE
    columns = np.arange(SIZE) * width // SIZE
    scaled = image[rows][:, columns, :3].astype(np.float32) / 255.0
    return ((scaled - 0.5) / 0.25).transpose(2, 0, 1).copy()


class ServerClassifier:
    """The top classes computed by the server (Triton's classification extension)."""

    where = "server"

    def __init__(self, client, protocol: str) -> None:
        self.client = client
        self.module = importlib.import_module(f"tritonclient.{protocol}")

    def __call__(self, image: np.ndarray, classes: int) -> list[str]:
        """``score:index:label`` of the top ``classes``."""
        request = self.module.InferInput("IMAGE", [1, *image.shape], "FP32")
        request.set_data_from_numpy(image[np.newaxis])
        output = self.module.InferRequestedOutput("PROBABILITIES", class_count=classes)
        result = self.client.infer(MODEL, [request], outputs=[output])
        return [entry.decode() for entry in result.as_numpy("PROBABILITIES").reshape(-1)]


class LocalClassifier:
    """The fallback: the model's own network in this process, answering like the server."""

    where = "in-process fallback"

    def __init__(self, error: NoServerError) -> None:
        sys.path.insert(0, str(MODEL_DIR / "1"))
        self.network = importlib.import_module("network").Network()
        self.labels = (MODEL_DIR / "labels.txt").read_text().split()

    def __call__(self, image: np.ndarray, classes: int) -> list[str]:
        probabilities = self.network(image[np.newaxis])[0]
        top = np.argsort(-probabilities, kind="stable")[:classes]
        return [f"{probabilities[index]:f}:{index}:{self.labels[index]}" for index in top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "image", nargs="?", type=Path, help="a binary PPM (.ppm) or .npy image (default: a test pattern)"
    )
    parser.add_argument("--classes", type=int, default=3, help="how many top classes to print")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--url", help="host:port of the server (default: found from the job)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server")
    parser.add_argument(
        "--local-fallback", action="store_true", help="run the model in-process when there is no server"
    )
    args = parser.parse_args()
    image = preprocess(load(args.image))
    found = connect(
        args.protocol,
        args.url,
        timeout=args.timeout,
        models=[MODEL],
        fallback=LocalClassifier if args.local_fallback else None,
    )
    classify = found if isinstance(found, LocalClassifier) else ServerClassifier(found, args.protocol)
    top = classify(image, args.classes)
    print(f"image: {args.image or 'test pattern'}; classified by the {classify.where} ({args.protocol})")
    for entry in top:
        score, index, label = entry.split(":", 2)
        print(f"    {float(score):.4f} ({index}) = {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
