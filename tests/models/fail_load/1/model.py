"""fail_load: initialize() raises, so the model never becomes ready."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        raise pb_utils.TritonModelException("fail_load refuses to initialize")

    def execute(self, requests):
        raise AssertionError("never loaded, never executed")
