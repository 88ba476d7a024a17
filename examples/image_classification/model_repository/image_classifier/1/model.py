"""Python-backend model: image class probabilities from the numpy network in network.py."""

import sys
from pathlib import Path

import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).resolve().parent))
from network import Network  # next to this file, found through the path set above


class TritonPythonModel:
    """Builds the network once per model instance; execute() answers a batch of requests."""

    def initialize(self, args):
        self.network = Network()

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            probabilities = pb_utils.Tensor("PROBABILITIES", self.network(images))
            responses.append(pb_utils.InferenceResponse(output_tensors=[probabilities]))
        return responses
