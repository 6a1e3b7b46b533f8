"""echo_bytes: BYTES in, BYTES out. OUTPUT0 upper-cases every element, LENGTH gives its size."""

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            upper = np.array([s.upper() for s in x.reshape(-1)], dtype=np.object_).reshape(x.shape)
            lengths = np.array([len(s) for s in x.reshape(-1)], dtype=np.int32).reshape(x.shape)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", upper), pb_utils.Tensor("LENGTH", lengths)]))
        return responses
