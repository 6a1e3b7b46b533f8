import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            model = pb_utils.get_input_tensor_by_name(request, "MODEL").as_numpy()[0]  # bytes
            inputs = [pb_utils.Tensor(name.encode(), pb_utils.get_input_tensor_by_name(request, name).as_numpy())
                      for name in ("INPUT0", "INPUT1")]
            bls = pb_utils.InferenceRequest(model_name=model, request_id=b"from-bytes",
                                            requested_output_names=[b"OUTPUT0", b"OUTPUT1"], inputs=inputs)
            response = bls.exec()
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
            responses.append(pb_utils.InferenceResponse(response.output_tensors()))
        return responses
