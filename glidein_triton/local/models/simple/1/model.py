"""Python-backend model: the sum and the difference of two INT32 tensors."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Triton calls execute() with a batch of requests and expects one response per request."""

    def execute(self, requests):
        responses = []
        for request in requests:
            first = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            second = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            outputs = [
                pb_utils.Tensor("OUTPUT0", (first + second).astype(np.int32)),
                pb_utils.Tensor("OUTPUT1", (first - second).astype(np.int32)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
