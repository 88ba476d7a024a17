"""The benchmark MLP of models/mlp on the GPU Triton gives this instance, with PyTorch."""

import importlib.util
from pathlib import Path

import numpy as np

CPU_MODEL = Path(__file__).resolve().parents[2] / "mlp" / "1" / "model.py"


def cpu_model():
    """models/mlp's module: its weights (same seed) and layer layout."""
    spec = importlib.util.spec_from_file_location("benchmark_mlp", CPU_MODEL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TritonPythonModel:
    def initialize(self, args):
        import torch  # noqa: PLC0415 (only the GPU check's server needs it)

        self.torch = torch
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}")
        self.weights = [torch.from_numpy(matrix).to(self.device) for matrix in cpu_model().build_weights()]

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils  # noqa: PLC0415 (only in Triton)

        batches = [pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy() for r in requests]
        with self.torch.no_grad():
            activation = self.torch.from_numpy(np.concatenate(batches)).to(self.device)
            for position, matrix in enumerate(self.weights):
                activation = activation @ matrix
                if position < len(self.weights) - 1:
                    activation = self.torch.relu(activation)
            scores = activation.cpu().numpy()
        responses, start = [], 0
        for batch in batches:
            part = scores[start : start + len(batch)]
            start += len(batch)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SCORES", part.astype(np.float32))]))
        return responses
