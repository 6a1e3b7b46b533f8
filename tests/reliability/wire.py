"""Raw gRPC access for the reliability tests: hand-built ModelInferRequests (tritonclient refuses
to send most malformed requests), plain calls that return (code, details), shared-memory regions,
and the server's resident memory."""

import os
import uuid

import grpc
import numpy as np

from backend import bytes_tensor
from proto import grpc_service_pb2 as pb
from proto import grpc_service_pb2_grpc as pb_grpc

MAX_MESSAGE = 2**31 - 1
OK = grpc.StatusCode.OK
SERVICE = "/inference.GRPCInferenceService/"


class Client:
    """A channel and stub; `call(rpc, request)` returns (code, details, response)."""

    def __init__(self, url: str, credentials=None, options=()):
        opts = [("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.max_receive_message_length", MAX_MESSAGE), *options]
        self.channel = (grpc.secure_channel(url, credentials, options=opts) if credentials
                        else grpc.insecure_channel(url, options=opts))
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def call(self, rpc: str, request, timeout=60, metadata=None):
        try:
            resp = getattr(self.stub, rpc)(request, timeout=timeout, metadata=metadata)
            return OK, "", resp
        except grpc.RpcError as e:
            return e.code(), e.details() or "", None

    def call_bytes(self, rpc: str, payload: bytes, timeout=30):
        """Send `payload` as the serialized request of `rpc`, whatever it contains."""
        method = self.channel.unary_unary(SERVICE + rpc)
        try:
            return OK, "", method(payload, timeout=timeout)
        except grpc.RpcError as e:
            return e.code(), e.details() or "", None

    def infer(self, request: pb.ModelInferRequest, timeout=60, metadata=None):
        return self.call("ModelInfer", request, timeout, metadata)

    def live(self) -> bool:
        code, _, resp = self.call("ServerLive", pb.ServerLiveRequest(), timeout=10)
        return code == OK and resp.live

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def tensor_bytes(array: np.ndarray) -> bytes:
    if array.dtype == np.object_:
        return bytes_tensor.serialize(array)
    return np.ascontiguousarray(array).tobytes()


WIRE = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.int32): "INT32",
        np.dtype(np.int64): "INT64", np.dtype(np.uint8): "UINT8", np.dtype(np.object_): "BYTES",
        np.dtype(np.bool_): "BOOL"}


def request(model: str, inputs: dict, outputs=(), version: str = "", id: str = "",
            params: dict | None = None) -> pb.ModelInferRequest:
    """A well-formed request: `inputs` name -> numpy array, data as raw_input_contents."""
    msg = pb.ModelInferRequest(model_name=model, model_version=version, id=id)
    for name, array in inputs.items():
        msg.inputs.add(name=name, datatype=WIRE[array.dtype], shape=array.shape)
        msg.raw_input_contents.append(tensor_bytes(array))
    for name in outputs:
        msg.outputs.add(name=name)
    for k, v in (params or {}).items():
        set_param(msg.parameters[k], v)
    return msg


def set_param(p, value):
    """Fill an InferParameter or ModelRepositoryParameter, the field chosen by the value's type."""
    if isinstance(value, bytes):
        p.bytes_param = value  # (ModelRepositoryParameter only: model files)
    elif isinstance(value, bool):
        p.bool_param = value
    elif isinstance(value, int):
        if value >= 2**63:
            p.uint64_param = value
        else:
            p.int64_param = value
    elif isinstance(value, float):
        p.double_param = value
    else:
        p.string_param = str(value)


def use_shm(tensor, region: str, byte_size: int, offset: int | None = None):
    """Point an input or requested output at the shared-memory region named `region` (Triton's
    parameters; no offset parameter when `offset` is None)."""
    tensor.parameters["shared_memory_region"].string_param = region
    tensor.parameters["shared_memory_byte_size"].int64_param = byte_size
    if offset is not None:
        tensor.parameters["shared_memory_offset"].int64_param = offset


def output(resp: pb.ModelInferResponse, name: str, datatype: str | None = None) -> np.ndarray:
    """An output of a response as numpy (raw_output_contents, as tritonclient reads it)."""
    for i, out in enumerate(resp.outputs):
        if out.name == name:
            data = resp.raw_output_contents[i]
            if out.datatype == "BYTES":
                return bytes_tensor.deserialize(data).reshape(tuple(out.shape))
            dt = {v: k for k, v in WIRE.items()}[datatype or out.datatype]
            return np.frombuffer(data, dt).reshape(tuple(out.shape))
    raise KeyError(f"no output {name} in response of {resp.model_name}")


class ShmRegion:
    """A POSIX shared-memory segment created by the test (the client side of system shm)."""

    def __init__(self, size: int, prefix="rel"):
        self.key = f"/{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.path = "/dev/shm" + self.key
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        self.size = size

    def write(self, data: bytes, offset=0):
        with open(self.path, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def unlink(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unlink()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
