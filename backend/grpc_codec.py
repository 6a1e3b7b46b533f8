"""The gRPC codec: protobuf messages <-> the core's types. ModelInferRequest becomes a WireRequest
whose inputs are views of the request's own bytes (raw_input_contents, found by grpc_wire); an
InferResult leaves as the wire records of a ModelInferResponse with one raw_output_contents entry
per output, in order, joined once by the response serializer."""

import numpy as np
from google.protobuf import json_format

from proto import grpc_service_pb2 as pb

from . import bytes_tensor, dtypes, grpc_wire, tensor_io
from .errors import InvalidArgument
from .types import InferResult, InputTensor, RequestedOutput, WireRequest


def param_value(p):
    kind = p.WhichOneof("parameter_choice")
    return None if kind is None else getattr(p, kind)


def param_dict(pmap) -> dict:
    """A protobuf parameter map (any message with a 'parameter_choice' oneof) as plain values."""
    return {k: param_value(v) for k, v in pmap.items()}


def decode_request(parsed) -> WireRequest:
    """A grpc_wire.InferMessage (or a plain ModelInferRequest) as a WireRequest. Inputs take, in
    order, their shared-memory region, their typed `contents`, or the next unused
    raw_input_contents entry (Triton's infer_handler rules)."""
    if isinstance(parsed, grpc_wire.InferMessage):
        msg, raw = parsed.msg, parsed.raw if parsed.raw is not None else parsed.msg.raw_input_contents
    else:
        msg, raw = parsed, parsed.raw_input_contents
    name = msg.model_name
    raw_used = 0
    inputs = []
    for t in msg.inputs:
        params = param_dict(t.parameters)
        has_contents = t.HasField("contents")
        data = None
        if "shared_memory_region" in params:
            if has_contents:
                raise InvalidArgument(
                    f"contents field must not be specified when using shared memory for '{t.name}' "
                    f"for model '{name}'")
        elif has_contents:
            if len(raw):
                raise InvalidArgument(
                    f"contents field must not be specified when using raw_input_contents for "
                    f"'{t.name}' for model '{name}'")
            data = _from_contents(t, name)
        elif raw_used < len(raw):
            data = raw[raw_used]
            raw_used += 1
        inputs.append(InputTensor(t.name, t.datatype, tuple(t.shape), data, params))
    if raw_used < len(raw):
        raise InvalidArgument(
            f"expected {raw_used} raw input contents for model '{name}', got {len(raw)}")
    outputs = None
    if len(msg.outputs):
        outputs = [RequestedOutput(o.name, parameters=param_dict(o.parameters)) for o in msg.outputs]
    return WireRequest(msg.model_name, msg.model_version, msg.id, param_dict(msg.parameters), inputs, outputs)


def _from_contents(t, model: str):
    field = dtypes.CONTENTS_FIELD.get(t.datatype)
    present = [f.name for f, _ in t.contents.ListFields()]
    if field is None or any(p != field for p in present):
        raise InvalidArgument(
            f"unexpected explicit tensor data for input tensor '{t.name}' for model '{model}' of type "
            f"'{t.datatype}'" + (f", expected datatype '{t.datatype}'" if field is None else
                                 f": only '{field}' may be set for this datatype"))
    values = getattr(t.contents, field)
    if t.datatype == "BYTES":
        return bytes_tensor.serialize(np.array(list(values), dtype=np.object_))
    return np.asarray(values, dtype=dtypes.numpy_dtype(t.datatype)).tobytes()


def encode_response(result: InferResult) -> list:
    """The ModelInferResponse's wire records (grpc_wire.serialize joins them)."""
    msg = pb.ModelInferResponse(model_name=result.model_name, model_version=result.model_version, id=result.id)
    set_params(msg.parameters, result.parameters)
    tensors = []
    for out in result.outputs:
        entry = msg.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
        set_params(entry.parameters, out.parameters)
        # shared-memory outputs keep an empty entry: indices stay aligned, as Triton does
        tensors.append(b"" if out.array is None else tensor_io.raw_bytes(out.array, out.datatype))
    return grpc_wire.infer_response_chunks(msg, tensors)


def encode_stream_response(result: InferResult) -> list:
    return grpc_wire.stream_response_chunks(encode_response(result))


def set_params(pmap, params: dict):
    for k, v in params.items():
        if isinstance(v, bool):
            pmap[k].bool_param = v
        elif isinstance(v, int):
            pmap[k].int64_param = v
        elif isinstance(v, float):
            pmap[k].double_param = v
        else:
            pmap[k].string_param = str(v)


def server_metadata(meta: dict) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(**meta)


def model_metadata(meta: dict) -> pb.ModelMetadataResponse:
    return json_format.ParseDict(meta, pb.ModelMetadataResponse())


def model_config(config) -> pb.ModelConfigResponse:
    resp = pb.ModelConfigResponse()
    resp.config.CopyFrom(config)
    return resp


def statistics(stats: dict) -> pb.ModelStatisticsResponse:
    return json_format.ParseDict(stats, pb.ModelStatisticsResponse())
