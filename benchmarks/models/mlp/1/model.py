"""The benchmark MLP: 1024 -> 4096 -> 4096 -> 1000, ReLU, weights drawn from a fixed seed (~100 MB).

The same functions serve the Triton python-backend model and the in-process baseline (mlp_job.py).
"""

import numpy as np

LAYERS = (1024, 4096, 4096, 1000)
SEED = 20261125


def build_weights():
    """Deterministic float32 weights: the same model in the server and in every in-process job."""
    generator = np.random.default_rng(SEED)
    return [
        (generator.standard_normal((rows, columns), dtype=np.float32) / np.sqrt(rows)).astype(np.float32)
        for rows, columns in zip(LAYERS[:-1], LAYERS[1:])
    ]


def forward(weights, batch):
    """Scores for a (n, 1024) float32 batch."""
    activation = batch
    for position, matrix in enumerate(weights):
        activation = activation @ matrix
        if position < len(weights) - 1:
            np.maximum(activation, 0, out=activation)
    return activation


class TritonPythonModel:
    def initialize(self, args):
        self.weights = build_weights()

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils  # noqa: PLC0415 (only in Triton; jobs import this file too)

        batches = [pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy() for r in requests]
        scores = forward(self.weights, np.concatenate(batches))
        responses, start = [], 0
        for batch in batches:
            part = scores[start : start + len(batch)]
            start += len(batch)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SCORES", part.astype(np.float32))]))
        return responses
