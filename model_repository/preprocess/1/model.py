"""Triton Python model: one encoded JPEG/PNG -> HRNet input, center and scale.

Runs unchanged on Triton's python backend; the algorithm lives in hrnet/preprocess.py.
"""

import json
import sys
from pathlib import Path

import cv2
import triton_python_backend_utils as pb_utils

try:
    from hrnet import preprocess
except ImportError:  # Triton puts only the model dirs on sys.path; the repo root holds hrnet/
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from hrnet import preprocess

_BOOLEANS = {"true": True, "false": False}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.model_name = args.get("model_name", config.get("name", "preprocess"))
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        unknown = set(params) - {"input_size", "flip_test", "max_image_pixels", "max_input_pixels",
                                 "opencv_threads"}
        if unknown:
            raise ValueError(f"{self.model_name}: unknown parameter(s) {sorted(unknown)}")
        self.input_size = _positive_int(params, "input_size", 512, self.model_name)
        self.max_pixels = _positive_int(params, "max_image_pixels", preprocess.MAX_IMAGE_PIXELS, self.model_name)
        self.max_input_pixels = _positive_int(params, "max_input_pixels", preprocess.MAX_INPUT_PIXELS, self.model_name)
        flip = params.get("flip_test", "true").strip().lower()
        if flip not in _BOOLEANS:
            raise ValueError(
                f"{self.model_name}: parameter flip_test must be 'true' or 'false', got {flip!r}")
        self.flip_test = _BOOLEANS[flip]
        if "opencv_threads" in params:
            # OpenCV's pool is process-wide (one process per model in Triton; here, the server's)
            cv2.setNumThreads(_positive_int(params, "opencv_threads", 1, self.model_name))

    def execute(self, requests):
        # One response per request; a bad image fails only its own request.
        responses = []
        for request in requests:
            try:
                outputs = self._run(request)
            except preprocess.ImageError as exc:
                error = pb_utils.TritonError(f"{self.model_name}: invalid IMAGE: {exc}",
                                             pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses

    def _run(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, "IMAGE")
        if tensor is None:
            raise preprocess.ImageError("input tensor is missing")
        images = tensor.as_numpy()
        if images.size != 1:
            raise preprocess.ImageError(f"expected exactly one encoded image, got {images.size} elements")
        data = images.reshape(-1)[0]
        if not isinstance(data, bytes):  # BYTES elements arrive as bytes; anything else is misuse
            raise preprocess.ImageError(f"expected bytes, got {type(data).__name__}")
        img = preprocess.decode_image(data, max_pixels=self.max_pixels)
        net_input, center, scale = preprocess.preprocess(
            img, input_size=self.input_size, flip_test=self.flip_test, max_input_pixels=self.max_input_pixels)
        return [pb_utils.Tensor("INPUT", net_input),
                pb_utils.Tensor("CENTER", center),
                pb_utils.Tensor("SCALE", scale)]


def _positive_int(params, key, default, model_name):
    text = params.get(key, default)
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{model_name}: parameter {key} must be an integer, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"{model_name}: parameter {key} must be positive, got {value}")
    return value
