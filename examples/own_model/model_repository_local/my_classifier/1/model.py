"""Python-backend stand-in with the tensor interface of config.pbtxt: class probabilities of each image.

A fixed linear map of the per-channel means, then softmax: deterministic, numpy only. It reads its tensor
names from the model configuration, so the same file serves the ONNX- and the TorchScript-named model.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        classes = int(config["output"][0]["dims"][0])
        channels = int(config["input"][0]["dims"][0])
        self.weights = np.linspace(-1.0, 1.0, channels * classes, dtype=np.float32).reshape(channels, classes)

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            logits = images.reshape(len(images), images.shape[1], -1).mean(axis=2) @ self.weights
            exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
            probabilities = exponentials / exponentials.sum(axis=1, keepdims=True)
            output = pb_utils.Tensor(self.output_name, probabilities.astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
