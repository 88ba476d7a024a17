"""The benchmark burn model: each request costs BURN_MS of this process's CPU time (a busy loop measured with
process_time, so a contended core makes it slower, not cheaper), then its INPUT comes back as its OUTPUT."""

import time

BURN_MS = 10.0


class TritonPythonModel:
    def execute(self, requests):
        import triton_python_backend_utils as pb_utils  # noqa: PLC0415 (only in Triton)

        responses = []
        for request in requests:
            started = time.process_time()
            while time.process_time() - started < BURN_MS / 1000:
                pass
            values = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", values)]))
        return responses
