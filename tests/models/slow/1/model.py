"""slow: echoes INPUT0 after sleeping `sleep_ms` (request parameter, default 0) and returns the
name of the instance that ran it, so tests can see executions overlap across instances."""

import json
import time

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.instance = args["model_instance_name"]

    def execute(self, requests):
        responses = []
        for request in requests:
            sleep_ms = int(json.loads(request.parameters()).get("sleep_ms", 0))
            if sleep_ms:
                time.sleep(sleep_ms / 1000)
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            name = np.array([self.instance.encode()], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", x), pb_utils.Tensor("INSTANCE", name)]))
        return responses
