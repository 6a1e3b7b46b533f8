"""OUTPUT0 = INPUT0 + helper.OFFSET, with `helper` the sibling module of this file (each twin
has its own helper.py with a different OFFSET)."""

import helper

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = (x + helper.OFFSET).astype(x.dtype)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", out)]))
        return responses
