"""async_bls: an `async def execute` that awaits two BLS calls to add_sub at once
(InferenceRequest.async_exec), one for OUTPUT0 (SUM) and one for OUTPUT1 (DIFF)."""

import asyncio

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        responses = []
        for request in requests:
            inputs = [pb_utils.get_input_tensor_by_name(request, "INPUT0"),
                      pb_utils.get_input_tensor_by_name(request, "INPUT1")]
            calls = [pb_utils.InferenceRequest(model_name="add_sub", requested_output_names=[name],
                                               inputs=inputs).async_exec()
                     for name in ("OUTPUT0", "OUTPUT1")]
            sum_resp, diff_resp = await asyncio.gather(*calls)
            for r in (sum_resp, diff_resp):
                if r.has_error():
                    raise pb_utils.TritonModelException(r.error().message())
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("SUM", pb_utils.get_output_tensor_by_name(sum_resp, "OUTPUT0").as_numpy()),
                pb_utils.Tensor("DIFF", pb_utils.get_output_tensor_by_name(diff_resp, "OUTPUT1").as_numpy())]))
        return responses
