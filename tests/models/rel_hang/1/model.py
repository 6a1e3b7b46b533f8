"""rel_hang: OUTPUT0 = INPUT0 after `sleep_ms` milliseconds (request parameter, default 0);
EXECUTIONS = how many requests this instance has executed, this one included."""

import json
import time

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.executions = 0

    def execute(self, requests):
        responses = []
        for request in requests:
            self.executions += 1
            sleep_ms = int(json.loads(request.parameters()).get("sleep_ms", 0))
            if sleep_ms > 0:
                time.sleep(sleep_ms / 1000)
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", x),
                pb_utils.Tensor("EXECUTIONS", np.array([self.executions], dtype=np.int32))]))
        return responses
