"""An emulated accelerator in hrnet_om's place (make bench): each batch-1 pass "runs on the device"
for `pass_ms` (time.sleep: the GIL is free meanwhile, as during an ais_bench or CUDA call) and
returns trained-like maps (hrnet/synthetic.py: people with joint blobs and smooth tags, the mirror
pass consistent), so that grouping works as it would on a real network's output.

The instances of this model are sessions on ONE device: their passes queue on it and run one after
another, back to back (as an NPU or GPU runs the model executions of several sessions or streams),
so `instance_group.count` > 1 never adds device time, it only lets one session's host-side work
(its output's device-to-host copy, the server's work around the call) overlap another's pass."""

import json
import sys
import threading
import time

import numpy as np

import triton_python_backend_utils as pb_utils

PEOPLE = 5


class _Device:
    """One device's clock: a pass submitted while the device is busy starts when the passes
    before it end (not when their callers get the GIL back); the caller sleeps until its own
    pass has ended."""

    def __init__(self):
        self._lock = threading.Lock()
        self._free_at = 0.0  # time.monotonic() when the last queued pass ends

    def run_pass(self, seconds: float):
        with self._lock:
            start = max(time.monotonic(), self._free_at)
            self._free_at = end = start + seconds
        left = end - time.monotonic()
        if left > 0:
            time.sleep(left)


_DEVICE = _Device()  # shared by the instances of one loaded model (they share this module)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.pass_s = float(params.get("pass_ms", "6.6")) / 1000
        root = params.get("project_root", "")
        if root and root not in sys.path:
            sys.path.insert(0, root)
        from hrnet.synthetic import network_like
        self.network_like = network_like
        self.maps = {}  # (H, W) -> [2, 34, H/4, W/4]: made once per input size
        self.lock = threading.Lock()

    def _maps(self, h, w):
        with self.lock:
            if (h, w) not in self.maps:
                rng = np.random.default_rng(h * 10007 + w)
                self.maps[(h, w)] = self.network_like(rng, h // 4, w // 4, PEOPLE)
            return self.maps[(h, w)]

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "input").as_numpy()
            n, _, h, w = x.shape
            maps = self._maps(h, w)
            out = np.empty((n,) + maps.shape[1:], np.float32)
            for i in range(n):  # one batch-1 pass per image, in order, as the ais_bench backend runs them
                _DEVICE.run_pass(self.pass_s)
                out[i] = maps[i % 2]  # the pass's output copied to the host (a fresh array)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("output1", out)]))
        return responses
