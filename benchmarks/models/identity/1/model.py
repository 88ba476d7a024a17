"""The benchmark identity model: each request's INPUT sent back as its OUTPUT (what moving bytes costs)."""


class TritonPythonModel:
    def execute(self, requests):
        import triton_python_backend_utils as pb_utils  # noqa: PLC0415 (only in Triton)

        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT", pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy())]
            )
            for r in requests
        ]
