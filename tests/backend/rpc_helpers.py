"""Helpers for the server tests: tritonclient inputs from numpy, one error check for both
tritonclient and raw gRPC calls (code AND message fragments), and raw calls built from
tritonclient's own generated protobuf (the protocol as the client defines it: streams, typed
contents). The malformed-request matrix builds its messages from ours: tests/reliability/wire.py."""

import contextlib

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

MAX_MESSAGE = 2**31 - 1


def infer_input(name: str, array: np.ndarray, datatype: str | None = None) -> grpcclient.InferInput:
    inp = grpcclient.InferInput(name, list(array.shape), datatype or np_to_triton_dtype(array.dtype))
    inp.set_data_from_numpy(array)
    return inp


def outputs(*names) -> list:
    return [grpcclient.InferRequestedOutput(n) for n in names]


class _Caught:
    code = ""
    message = ""


@contextlib.contextmanager
def expect_error(code: str, *fragments: str):
    """The block must fail with gRPC status `code` (e.g. "INVALID_ARGUMENT") and a message
    holding every fragment. Works for tritonclient exceptions and raw grpc.RpcError."""
    caught = _Caught()
    with pytest.raises((InferenceServerException, grpc.RpcError)) as info:
        yield caught
    err = info.value
    if isinstance(err, InferenceServerException):
        caught.code, caught.message = str(err.status()).replace("StatusCode.", ""), err.message()
    else:
        caught.code, caught.message = err.code().name, err.details()
    assert caught.code == code, f"expected {code}, got {caught.code}: {caught.message}"
    for fragment in fragments:
        assert fragment in caught.message, f"{fragment!r} not in {caught.message!r}"


def raw_stub(url: str):
    channel = grpc.insecure_channel(url, options=[("grpc.max_send_message_length", MAX_MESSAGE),
                                                  ("grpc.max_receive_message_length", MAX_MESSAGE)])
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def raw_request(model: str, tensors: dict, **fields) -> pb.ModelInferRequest:
    """ModelInferRequest with each numpy array as a raw_input_contents entry, in order."""
    req = pb.ModelInferRequest(model_name=model, **fields)
    for name, array in tensors.items():
        req.inputs.add(name=name, datatype=np_to_triton_dtype(array.dtype), shape=array.shape)
        req.raw_input_contents.append(array.tobytes())
    return req


def as_array(response: pb.ModelInferResponse, index: int, dtype) -> np.ndarray:
    out = response.outputs[index]
    return np.frombuffer(response.raw_output_contents[index], dtype).reshape(out.shape)
