import asyncio

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        out = []
        for request in requests:
            n = pb_utils.get_input_tensor_by_name(request, "IN")
            first, second = await asyncio.gather(*(
                pb_utils.InferenceRequest(model_name="square", requested_output_names=["OUT"],
                                          inputs=[n]).async_exec(decoupled=True)
                for _ in range(2)))
            total = 0
            for response in first:
                if response.output_tensors():
                    total += int(response.output_tensors()[0].as_numpy()[0])
            async for response in second:
                if response.output_tensors():
                    total += int(response.output_tensors()[0].as_numpy()[0])
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("SUM", np.array([total], np.int32))]))
        return out
