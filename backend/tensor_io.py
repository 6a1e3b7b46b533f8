"""Where tensors enter and leave the core, whatever the transport: a WireRequest becomes an
InferRequest (reserved parameters, validation, shared memory, np.frombuffer views of the request
bytes) and an InferResponse becomes OutputTensors (shared-memory outputs written). Triton's
messages and codes throughout."""

import numpy as np

from . import bytes_tensor, dtypes, validation
from .errors import InvalidArgument, ServerError
from .model import Model
from .shm import SharedMemoryManager
from .types import InferRequest, InferResponse, OutputTensor, RequestedOutput, WireRequest

# Request parameters with a meaning to the server; other `triton_` keys are reserved.
_KNOWN = {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "headers",
          "binary_data_output", "triton_enable_empty_final_response"}
SHM_KEYS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


def is_int(v) -> bool:
    """An integer of JSON or Python, not a bool (bool is an int subclass)."""
    return isinstance(v, int) and not isinstance(v, bool)


def request_prefix(request_id: str) -> str:
    """Triton's prefix of request-validation messages (core LogRequest())."""
    return f"[request id: {request_id or '<id_unknown>'}] "


def check_parameters(params: dict, model_name: str) -> int:
    """The request-wide parameters Triton checks; returns the timeout in microseconds."""
    for key in params:
        if key.startswith("triton_") and key not in _KNOWN:
            raise InvalidArgument(f"parameter keys starting with 'triton_' are reserved for Triton usage "
                                  f"and should not be specified, got '{key}' for model '{model_name}'")
    if "priority" in params and not is_int(params["priority"]):
        raise InvalidArgument("invalid value type for 'priority' parameter, expected int64_param or uint64_param.")
    timeout = params.get("timeout", 0)
    if not is_int(timeout):
        raise InvalidArgument("invalid value type for 'timeout' parameter, expected int64_param.")
    if timeout < 0:
        raise InvalidArgument(f"'timeout' parameter must be a non-negative integer for model '{model_name}'")
    return timeout


def shm_target(params: dict, what: str, model: str):
    """(region, offset, byte size) from a tensor's shared-memory parameters, or None."""
    region = params.get("shared_memory_region")
    if region is None:
        return None
    if not isinstance(region, str):
        raise InvalidArgument(f"'shared_memory_region' of {what} for model '{model}' must be a string")
    size = params.get("shared_memory_byte_size")
    if size is None:
        raise InvalidArgument(f"'shared_memory_byte_size' is missing for {what} for model '{model}'")
    offset = params.get("shared_memory_offset", 0)
    if not is_int(size) or not is_int(offset):
        raise InvalidArgument(f"shared memory byte size and offset of {what} for model '{model}' "
                              "must be integers")
    return region, offset, size


def prepare(wire: WireRequest, model: Model, shm: SharedMemoryManager) -> InferRequest:
    """Validate a decoded request against the model and resolve its tensors."""
    name = model.name
    timeout = check_parameters(wire.parameters, name)
    prefix = request_prefix(wire.id)
    for t in wire.inputs:
        if t.datatype not in dtypes.WIRE_NAMES:
            raise InvalidArgument(f"{prefix}invalid datatype '{t.datatype}' for input '{t.name}' for model '{name}'")
    try:
        batch = validation.check_inputs(model, [(t.name, t.datatype, tuple(t.shape)) for t in wire.inputs])
    except ServerError as e:
        raise e.prefixed(prefix) from None
    inputs = {}
    datatypes = {}
    for t in wire.inputs:
        region = shm_target(t.parameters, f"input '{t.name}'", name)
        buf = shm.read(*region) if region is not None else t.data
        if buf is None:
            raise InvalidArgument(f"unable to find data for input tensor '{t.name}' for model '{name}' in request.")
        try:
            inputs[t.name] = to_array(buf, t.name, t.datatype, tuple(t.shape), name)
        except ServerError as e:
            raise e.prefixed(prefix) from None
        datatypes[t.name] = t.datatype

    outputs = None
    if wire.outputs is not None:
        outputs = []
        for o in wire.outputs:
            if "classification" in o.parameters:
                raise InvalidArgument(
                    f"classification output is not supported by this server (output '{o.name}' "
                    f"for model '{name}')")
            outputs.append(RequestedOutput(o.name, shm_target(o.parameters, f"output '{o.name}'", name),
                                           o.parameters))
        validation.check_outputs(model, [o.name for o in outputs])
    for inp_name, spec in model.inputs.items():
        if spec.reshape is not None and inp_name in inputs:
            lead = (batch,) if model.max_batch_size > 0 else ()
            inputs[inp_name] = inputs[inp_name].reshape(lead + tuple(spec.reshape))
    return InferRequest(model_name=name, model_version=model.version_str, id=wire.id, inputs=inputs,
                        input_datatypes=datatypes, outputs=outputs, parameters=wire.parameters,
                        timeout_us=timeout)


def to_array(buf, tensor: str, datatype: str, shape: tuple, model: str) -> np.ndarray:
    """The tensor's raw bytes as an array of its shape: a view for fixed-size types."""
    count = 1
    for d in shape:
        count *= d
    if datatype == "BYTES":
        try:
            flat = bytes_tensor.deserialize(buf, count)
        except ValueError as e:
            raise InvalidArgument(f"{e} for inference input '{tensor}' for model '{model}'")
        return _reshape(flat, shape, tensor, model)
    expected = count * dtypes.element_size(datatype)
    nbytes = len(buf) if not isinstance(buf, np.ndarray) else buf.nbytes
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


def outputs(resp: InferResponse, req: InferRequest, model: Model, shm: SharedMemoryManager,
            partial: bool = False) -> list:
    """The response's outputs in request (else config) order, cast to their wire datatypes;
    shared-memory outputs are written to their regions and carry no array. `partial`: a decoupled
    model's response may hold only some of the outputs (the others are left out)."""
    wanted = req.outputs if req.outputs is not None else [RequestedOutput(n) for n in model.outputs]
    result = []
    for want in wanted:
        array = resp.outputs.get(want.name)
        if array is None and partial:
            continue
        if array is None:
            raise ServerError(f"output '{want.name}' was not produced by model '{model.name}'")
        array = np.asarray(array)
        spec = model.outputs.get(want.name)
        datatype = spec.datatype if spec is not None else dtypes.wire_from_numpy(array.dtype)
        if datatype != "BYTES":
            dt = dtypes.numpy_dtype(datatype)
            if array.dtype != dt:
                array = array.astype(dt)
        out = OutputTensor(want.name, datatype, tuple(array.shape), array,
                           requested=want if req.outputs is not None else None)
        if want.shm is not None:
            region, offset, size = want.shm
            data = raw_bytes(array, datatype)
            shm.write(region, offset, size, data, want.name)
            out.array = None
            out.parameters = {"shared_memory_region": region, "shared_memory_byte_size": len(data)}
            if offset:
                out.parameters["shared_memory_offset"] = offset
        result.append(out)
    return result


def raw_bytes(array: np.ndarray, datatype: str):
    """The wire bytes of an output array: a memoryview of it when C-contiguous (no copy), else
    one copy; BYTES serialised with length prefixes."""
    if datatype == "BYTES":
        return memoryview(bytes_tensor.serialize_array(array))  # (its own array: no copy to bytes)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    if not array.size:
        return b""
    try:
        return memoryview(array).cast("B")
    except (TypeError, ValueError):  # a dtype without a buffer format (bfloat16 as void)
        return array.tobytes()
