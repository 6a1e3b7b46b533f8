"""all_types: OUT_<T> = IN_<T> for every Triton datatype, checking on the way that each input
arrives with the numpy dtype its config declares."""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.names = [i["name"] for i in config["input"]]
        self.dtypes = {i["name"]: pb_utils.triton_string_to_numpy(i["data_type"]) for i in config["input"]}

    def execute(self, requests):
        responses = []
        for request in requests:
            outputs = []
            for name in self.names:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is None:
                    continue
                x = tensor.as_numpy()
                if x.dtype != self.dtypes[name]:
                    raise pb_utils.TritonModelException(f"{name} arrived as {x.dtype}")
                outputs.append(pb_utils.Tensor("OUT_" + name[3:], x))
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
