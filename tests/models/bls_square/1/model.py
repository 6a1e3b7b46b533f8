import json

import numpy as np

import triton_python_backend_utils as pb_utils


def _outputs(total, count):
    return pb_utils.InferenceResponse([pb_utils.Tensor("SUM", np.array([total], np.int32)),
                                       pb_utils.Tensor("COUNT", np.array([count], np.int32))])


class TritonPythonModel:
    def execute(self, requests):
        return [self._one(r) for r in requests]

    def _one(self, request):
        mode = json.loads(request.parameters()).get("mode", "")
        n = pb_utils.get_input_tensor_by_name(request, "IN")
        if not 0 <= n.as_numpy()[0] <= 1000:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(
                "IN must be in [0, 1000]", pb_utils.TritonError.INVALID_ARG))
        if mode == "cancel":
            values = np.arange(1, int(n.as_numpy()[0]) + 1, dtype=np.int32)
            responses = pb_utils.InferenceRequest(
                model_name="repeat", requested_output_names=["OUT"],
                inputs=[pb_utils.Tensor("IN", values), pb_utils.Tensor("DELAY", np.full(values.shape, 100, np.uint32))],
            ).exec(decoupled=True)
            count = 0
            for response in responses:
                if response.output_tensors():
                    count += 1
                    responses.cancel()
            return _outputs(0, count)
        if mode == "plain":
            x = np.full(4, n.as_numpy()[0], np.float32)
            responses = list(pb_utils.InferenceRequest(
                model_name="add_sub", requested_output_names=["OUTPUT0"],
                inputs=[pb_utils.Tensor("INPUT0", x), pb_utils.Tensor("INPUT1", x)]).exec(decoupled=True))
            total = int(pb_utils.get_output_tensor_by_name(responses[0], "OUTPUT0").as_numpy().sum())
            return _outputs(total, len(responses))
        target = {"unknown": "no_such_model"}.get(mode, "square")
        bls = pb_utils.InferenceRequest(model_name=target, requested_output_names=["OUT"], inputs=[n])
        if mode == "not_decoupled":
            response = bls.exec()
            raise pb_utils.TritonModelException(response.error().message())
        total = count = 0
        for response in bls.exec(decoupled=True):
            count += 1
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
            if response.output_tensors():
                total += int(pb_utils.get_output_tensor_by_name(response, "OUT").as_numpy()[0])
        return _outputs(total, count)
