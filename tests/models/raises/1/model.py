"""raises: echoes INPUT0. The marker 666 raises inside execute (the whole call fails);
the marker 777 returns an error response with code INVALID_ARG for that request only."""

import triton_python_backend_utils as pb_utils

RAISE_MARKER = 666
ERROR_MARKER = 777


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            if (x == RAISE_MARKER).any():
                raise ValueError(f"marker {RAISE_MARKER} found in INPUT0")
            if (x == ERROR_MARKER).any():
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"marker {ERROR_MARKER} is not a valid input", pb_utils.TritonError.INVALID_ARG)))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        return responses
