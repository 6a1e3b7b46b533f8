"""introspect: reports what the backend gives a model. ARGS = initialize()'s args as JSON;
REQUEST = the request's id, parameters and requested output names as JSON. Its inputs and
outputs are declared by auto_complete_config, not by config.pbtxt."""

import json

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        auto_complete_model_config.add_input({"name": "INPUT0", "data_type": "TYPE_INT32", "dims": [1]})
        auto_complete_model_config.add_output({"name": "ARGS", "data_type": "TYPE_STRING", "dims": [1]})
        auto_complete_model_config.add_output({"name": "REQUEST", "data_type": "TYPE_STRING", "dims": [1]})
        return auto_complete_model_config

    def initialize(self, args):
        self.args = json.dumps(args)
        pb_utils.Logger.log_info(f"introspect: initialized as {args['model_instance_name']}")

    def execute(self, requests):
        responses = []
        for request in requests:
            seen = {"request_id": request.request_id(),
                    "parameters": json.loads(request.parameters()),
                    "requested_output_names": sorted(request.requested_output_names())}
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("ARGS", np.array([self.args.encode()], dtype=np.object_)),
                pb_utils.Tensor("REQUEST", np.array([json.dumps(seen).encode()], dtype=np.object_))]))
        return responses
