import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        labels = {"model": args["model_name"], "version": args["model_version"]}
        self.requests = pb_utils.MetricFamily(
            "custom_requests_n", "Requests seen by the model", pb_utils.MetricFamily.COUNTER,
        ).Metric(labels={**labels, "kind": "requests"})
        self.last = pb_utils.MetricFamily(
            "custom_last_value", "Last INPUT0 value", pb_utils.MetricFamily.GAUGE).Metric(labels=labels)
        self.hist = pb_utils.MetricFamily(
            "custom_value_hist", "INPUT0 values", pb_utils.MetricFamily.HISTOGRAM,
        ).Metric(labels=labels, buckets=[1.0, 10.0, 100.0])

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            self.last.set(float(x[0]))
            self.hist.observe(float(x[0]))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        self.requests.increment(len(requests))
        return responses
