import json
import threading
import time

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException("repeat needs the decoupled transaction policy")
        self.threads = []

    def execute(self, requests):
        for request in requests:
            params = json.loads(request.parameters())
            if params.get("mode") == "raise":
                raise pb_utils.TritonModelException("repeat was asked to raise")
            if params.get("mode") == "return":
                return [None]
            if params.get("mode") == "drop":
                continue  # never sends, not even the final flag
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            delays = pb_utils.get_input_tensor_by_name(request, "DELAY").as_numpy()
            thread = threading.Thread(target=self._respond, daemon=True, args=(
                request, request.get_response_sender(), values.copy(), delays.copy(),
                bool(params.get("final_with_last", False))))
            self.threads.append(thread)
            thread.start()
        return None

    def _respond(self, request, sender, values, delays, final_with_last):
        for i, (value, delay) in enumerate(zip(values, delays)):
            time.sleep(delay / 1000)
            if sender.is_cancelled():
                pb_utils.Logger.log_info(f"repeat: request '{request.request_id()}' cancelled after {i} "
                                         f"responses (request.is_cancelled() {request.is_cancelled()})")
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                return
            if value < 0:
                response = pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"negative value {value} at {i}", pb_utils.TritonError.INVALID_ARG))
            else:
                response = pb_utils.InferenceResponse([
                    pb_utils.Tensor("OUT", np.array([value], np.int32)),
                    pb_utils.Tensor("IDX", np.array([i], np.uint32))])
            last = i == len(values) - 1
            if last and final_with_last:
                sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                return
            sender.send(response)
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self):
        for thread in self.threads:
            thread.join()
