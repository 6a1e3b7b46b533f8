"""Builds the small ONNX test models with onnx.helper (no torch): `python tests/models/build_onnx.py DIR`."""

import sys

import onnx
from onnx import TensorProto, helper


def add_sub(path: str):
    a = helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["N", 4])
    b = helper.make_tensor_value_info("INPUT1", TensorProto.FLOAT, ["N", 4])
    s = helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["N", 4])
    d = helper.make_tensor_value_info("OUTPUT1", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
                               helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"])],
                              "add_sub", [a, b], [s, d])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


if __name__ == "__main__":
    add_sub(sys.argv[1])
