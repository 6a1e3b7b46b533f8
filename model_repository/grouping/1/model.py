"""Triton Python model: HRNet output maps -> grouped people (keypoints in image pixels).

Runs unchanged on Triton's python backend; the algorithm lives in hrnet/grouping.py.
"""

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

try:
    from hrnet.grouping import GroupingParams, group, warm_up
except ImportError:  # Triton puts only the model dirs on sys.path; the repo root holds hrnet/
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from hrnet.grouping import GroupingParams, group, warm_up

_BOOLEANS = {"true": True, "false": False}
# Parameters settable from config.pbtxt; num_joints is fixed by the output dims [-1, 17, 3].
_PARSERS = {
    "max_num_people": int,
    "detection_threshold": float,
    "tag_threshold": float,
    "nms_kernel": int,
    "use_detection_val": bool,
    "ignore_too_much": bool,
    "adjust": bool,
    "refine": bool,
    "flip_test": bool,
    "threads": int,  # worker threads for the per-joint searches; 0 (default): one per core, up to 4
}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.model_name = args.get("model_name", config.get("name", "grouping"))
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.params = parse_params(params, self.model_name)
        # Compile the grouping kernels now, not on the first request (numba caches them on
        # disk: ~15 s the first time on a machine, well under a second after).
        warm_up(self.params)

    def execute(self, requests):
        # One response per request; bad maps fail only their own request.
        responses = []
        for request in requests:
            try:
                output = _input(request, "OUTPUT")
                center = _input(request, "CENTER")
                scale = _input(request, "SCALE")
                keypoints, scores = group(output, center, scale, self.params)
            except ValueError as exc:
                error = pb_utils.TritonError(f"{self.model_name}: {exc}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("KEYPOINTS", np.ascontiguousarray(keypoints, dtype=np.float32)),
                pb_utils.Tensor("SCORES", np.ascontiguousarray(scores, dtype=np.float32)),
            ]))
        return responses


def parse_params(params, model_name="grouping"):
    """GroupingParams from config.pbtxt string parameters; a bad value raises ValueError."""
    unknown = set(params) - set(_PARSERS)
    if unknown:
        raise ValueError(f"{model_name}: unknown parameter(s) {sorted(unknown)}")
    values = {}
    for key, text in params.items():
        kind = _PARSERS[key]
        if kind is bool:
            value = _BOOLEANS.get(text.strip().lower())
            if value is None:
                raise ValueError(f"{model_name}: parameter {key} must be 'true' or 'false', got {text!r}")
        else:
            try:
                value = kind(text)
            except ValueError:
                raise ValueError(
                    f"{model_name}: parameter {key} must be {kind.__name__}, got {text!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"{model_name}: parameter {key} must be finite, got {text!r}")
        values[key] = value
    try:
        return dataclasses.replace(GroupingParams(), **values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{model_name}: bad parameters: {exc}") from None


def _input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"input tensor {name} is missing")
    return tensor.as_numpy()
