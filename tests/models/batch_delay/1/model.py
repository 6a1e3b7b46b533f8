"""batch_delay: echoes INPUT0 and reports in BATCH the total batch size of the execution that
served the request, so a client can see dynamic batching happen. A request parameter
`sleep_ms` (int) makes the execution take at least that long (to fill the queue)."""

import json
import time

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() for r in requests]
        batch = sum(x.shape[0] for x in inputs)
        sleep_ms = max(int(json.loads(r.parameters()).get("sleep_ms", 0)) for r in requests)
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
        responses = []
        for x in inputs:
            seen = np.full((x.shape[0], 1), batch, dtype=np.int32)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", x), pb_utils.Tensor("BATCH", seen)]))
        return responses
