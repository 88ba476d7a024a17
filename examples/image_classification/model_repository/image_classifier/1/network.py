"""A small convolutional image classifier in numpy, with deterministic weights made at load time.

It stands in for a real trained network (densenet_onnx in Triton's examples) so that the example runs on
any CPU server with the python backend and needs nothing downloaded. The same module is imported by the
Triton model (model.py) and by the client's local fallback, so both compute the same probabilities.
"""

from __future__ import annotations

import numpy as np

CHANNELS = 3
SIZE = 64
CLASSES = 10
SEED = 20240611


def _layer(generator: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """He-initialised weights, as float32."""
    return (generator.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


class Network:
    """conv 3x3 (8), ReLU, 2x2 average pool, conv 3x3 (16), ReLU, global average, dense, softmax."""

    def __init__(self, seed: int = SEED) -> None:
        generator = np.random.default_rng(seed)
        self.conv1 = _layer(generator, (8, CHANNELS, 3, 3), CHANNELS * 9)
        self.conv2 = _layer(generator, (16, 8, 3, 3), 8 * 9)
        self.dense = _layer(generator, (16, CLASSES), 16)
        self.bias = (generator.standard_normal(CLASSES) * 0.1).astype(np.float32)

    @staticmethod
    def _convolve(images: np.ndarray, kernels: np.ndarray) -> np.ndarray:
        """Valid 3x3 convolution of (batch, channels, height, width) images, followed by ReLU."""
        windows = np.lib.stride_tricks.sliding_window_view(images, (3, 3), axis=(2, 3))
        return np.maximum(np.einsum("bchwij,fcij->bfhw", windows, kernels, optimize=True), 0.0)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (batch, CLASSES), for float32 images of shape (batch, 3, 64, 64)."""
        if images.ndim != 4 or images.shape[1:] != (CHANNELS, SIZE, SIZE):
            raise ValueError(
                f"expected images of shape (batch, {CHANNELS}, {SIZE}, {SIZE}), got {images.shape}"
            )
        hidden = self._convolve(images.astype(np.float32), self.conv1)
        batch, filters, height, width = hidden.shape
        hidden = hidden[:, :, : height // 2 * 2, : width // 2 * 2]
        hidden = hidden.reshape(batch, filters, height // 2, 2, width // 2, 2).mean(axis=(3, 5))
        hidden = self._convolve(hidden, self.conv2).mean(axis=(2, 3))
        logits = hidden @ self.dense + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exponentials = np.exp(logits)
        return (exponentials / exponentials.sum(axis=1, keepdims=True)).astype(np.float32)
