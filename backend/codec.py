"""ModelInferRequest -> InferRequest and InferResponse -> ModelInferResponse: where tensors enter
and leave the server. Inputs become np.frombuffer views of the request bytes (or of a
shared-memory copy); outputs leave as one raw_output_contents entry each, in order."""

import numpy as np

from proto import grpc_service_pb2 as pb

from . import bytes_tensor, dtypes, validation
from .errors import InvalidArgument, ServerError
from .model import Model
from .shm import SharedMemoryManager
from .types import InferRequest, InferResponse, RequestedOutput

# Request parameters with a meaning to the server; other `triton_` keys are reserved.
_KNOWN = {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "headers",
          "binary_data_output", "triton_enable_empty_final_response"}


def param_value(p: pb.InferParameter):
    kind = p.WhichOneof("parameter_choice")
    return None if kind is None else getattr(p, kind)


def param_dict(pmap) -> dict:
    """A protobuf parameter map (any message with a 'parameter_choice' oneof) as plain values."""
    return {k: param_value(v) for k, v in pmap.items()}


def _shm_params(params: dict, what: str, model: str):
    region = params.get("shared_memory_region")
    if region is None:
        return None
    if not isinstance(region, str):
        raise InvalidArgument(f"'shared_memory_region' of {what} for model '{model}' must be a string")
    size = params.get("shared_memory_byte_size")
    if size is None:
        raise InvalidArgument(f"'shared_memory_byte_size' is missing for {what} for model '{model}'")
    offset = params.get("shared_memory_offset", 0)
    if not isinstance(size, int) or not isinstance(offset, int) or isinstance(size, bool) \
            or isinstance(offset, bool):
        raise InvalidArgument(f"shared memory byte size and offset of {what} for model '{model}' "
                              "must be integers")
    return region, offset, size


def decode_request(msg: pb.ModelInferRequest, model: Model, shm: SharedMemoryManager) -> InferRequest:
    name = model.name
    params = param_dict(msg.parameters)
    for key in params:
        if key.startswith("triton_") and key not in _KNOWN:
            raise InvalidArgument(f"parameter keys starting with 'triton_' are reserved for Triton usage "
                                  f"and should not be specified, got '{key}' for model '{name}'")
    timeout = params.get("timeout", 0)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
        raise InvalidArgument(f"'timeout' parameter must be a non-negative integer for model '{name}'")

    specs = []
    for t in msg.inputs:
        if t.datatype not in dtypes.WIRE_NAMES:
            raise InvalidArgument(f"invalid datatype '{t.datatype}' for input '{t.name}' for model '{name}'")
        specs.append((t.name, t.datatype, tuple(t.shape)))
    batch = validation.check_inputs(model, specs)

    raw = msg.raw_input_contents
    raw_used = 0
    inputs = {}
    datatypes = {}
    for t in msg.inputs:
        shape = tuple(t.shape)
        region = _shm_params(param_dict(t.parameters), f"input '{t.name}'", name)
        has_contents = t.HasField("contents")
        if region is not None:
            if has_contents:
                raise InvalidArgument(
                    f"contents field must not be specified when using shared memory for '{t.name}' "
                    f"for model '{name}'")
            buf = shm.read(*region)
        elif has_contents:
            if len(raw):
                raise InvalidArgument(
                    f"contents field must not be specified when using raw_input_contents for "
                    f"'{t.name}' for model '{name}'")
            buf = _from_contents(t, name)
        else:
            if raw_used >= len(raw):
                raise InvalidArgument(
                    f"unable to find data for input tensor '{t.name}' for model '{name}' in request.")
            buf = raw[raw_used]
            raw_used += 1
        inputs[t.name] = _to_array(buf, t.name, t.datatype, shape, name)
        datatypes[t.name] = t.datatype
    if raw_used < len(raw):
        raise InvalidArgument(
            f"expected {raw_used} raw input contents for model '{name}', got {len(raw)}")

    outputs = None
    if len(msg.outputs):
        outputs = []
        for o in msg.outputs:
            oparams = param_dict(o.parameters)
            if "classification" in oparams:
                raise InvalidArgument(
                    f"classification output is not supported by this server (output '{o.name}' "
                    f"for model '{name}')")
            outputs.append(RequestedOutput(o.name, _shm_params(oparams, f"output '{o.name}'", name)))
        validation.check_outputs(model, [o.name for o in outputs])
    for inp_name, spec in model.inputs.items():
        if spec.reshape is not None and inp_name in inputs:
            lead = (batch,) if model.max_batch_size > 0 else ()
            inputs[inp_name] = inputs[inp_name].reshape(lead + tuple(spec.reshape))
    return InferRequest(model_name=name, model_version=model.version_str, id=msg.id, inputs=inputs,
                        input_datatypes=datatypes, outputs=outputs, parameters=params,
                        timeout_us=timeout)


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


def _to_array(buf, tensor: str, datatype: str, shape: tuple, model: str) -> np.ndarray:
    count = 1
    for d in shape:
        count *= d
    nbytes = len(buf)
    if datatype == "BYTES":
        try:
            flat = bytes_tensor.deserialize(buf, count)
        except ValueError as e:
            raise InvalidArgument(f"{e} for inference input '{tensor}' for model '{model}'")
        return _reshape(flat, shape, tensor, model)
    expected = count * dtypes.element_size(datatype)
    if expected != nbytes:
        raise InvalidArgument(
            f"input byte size mismatch for input '{tensor}' for model '{model}'. Expected {expected}, "
            f"got {nbytes}")
    return _reshape(np.frombuffer(buf, dtypes.numpy_dtype(datatype), count), shape, tensor, model)


def _reshape(flat: np.ndarray, shape: tuple, tensor: str, model: str) -> np.ndarray:
    try:
        return flat.reshape(shape)
    except ValueError:  # an empty tensor whose other dims overflow numpy's index type
        raise InvalidArgument(f"unexpected shape for input '{tensor}' for model '{model}': "
                              f"{list(shape)} is too large") from None


def encode_response(resp: InferResponse, req: InferRequest, model: Model,
                    shm: SharedMemoryManager) -> pb.ModelInferResponse:
    msg = pb.ModelInferResponse(model_name=resp.model_name, model_version=resp.model_version, id=req.id)
    _set_params(msg.parameters, resp.parameters)
    wanted = req.outputs if req.outputs is not None else [RequestedOutput(n) for n in model.outputs]
    for want in wanted:
        array = resp.outputs.get(want.name)
        if array is None:
            raise ServerError(f"output '{want.name}' was not produced by model '{model.name}'")
        spec = model.outputs.get(want.name)
        datatype = spec.datatype if spec is not None else dtypes.wire_from_numpy(array.dtype)
        out = msg.outputs.add(name=want.name, datatype=datatype, shape=array.shape)
        data = bytes_tensor.serialize(array) if datatype == "BYTES" else _raw(array, datatype)
        if want.shm is not None:
            region, offset, size = want.shm
            shm.write(region, offset, size, data, want.name)
            out.parameters["shared_memory_region"].string_param = region
            out.parameters["shared_memory_byte_size"].int64_param = len(data)
            if offset:
                out.parameters["shared_memory_offset"].int64_param = offset
            msg.raw_output_contents.append(b"")  # keeps indices aligned, as Triton does
        else:
            msg.raw_output_contents.append(data)
    return msg


def _raw(array: np.ndarray, datatype: str):
    dt = dtypes.numpy_dtype(datatype)
    if array.dtype != dt:
        array = array.astype(dt)
    return array.tobytes()  # one copy, C order, whatever the array's strides


def _set_params(pmap, params: dict):
    for k, v in params.items():
        if isinstance(v, bool):
            pmap[k].bool_param = v
        elif isinstance(v, int):
            pmap[k].int64_param = v
        elif isinstance(v, float):
            pmap[k].double_param = v
        else:
            pmap[k].string_param = str(v)
