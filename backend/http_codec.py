"""The HTTP/REST codec (KServe v2 with Triton's binary tensor data extension): request bodies <->
the core's types. Binary tensors stay views of the request body and leave as views of the output
arrays; only JSON `data` is turned into (and out of) Python lists, as JSON must be."""

import base64
import json

import numpy as np
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from . import bytes_tensor, dtypes, tensor_io
from .errors import InvalidArgument
from .types import InferResult, InputTensor, RequestedOutput, WireRequest

HEADER_LENGTH = "Inference-Header-Content-Length"
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def json_body(body: bytes, what: str, default=None):
    """The JSON object of a request body (an empty body is `default`)."""
    if not body:
        if default is not None:
            return default
        raise InvalidArgument(f"{what}: the request body is empty, expected a JSON object")
    if isinstance(body, memoryview):
        body = body.tobytes()  # (the JSON part only: json reads bytes, not views)
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidArgument(f"{what}: the request body is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what}: the request body must be a JSON object, got {type(value).__name__}")
    return value


def _field(obj: dict, key: str, kind, what: str, default=None):
    value = obj.get(key, default)
    if value is default:
        return value
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if not ok:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidArgument(f"{what}: '{key}' must be {names}, got {json.dumps(value)[:60]}")
    return value


def decode_infer(model_name: str, model_version: str, body: bytes, header_length: str | None) -> WireRequest:
    """POST .../infer: a JSON header, then (binary extension) the binary tensors it announces."""
    binary = memoryview(b"")
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise InvalidArgument(f"{HEADER_LENGTH} must be an integer, got '{header_length[:40]}'") from None
        if n < 0 or n > len(body):
            raise InvalidArgument(f"{HEADER_LENGTH} is {n} but the request body holds {len(body)} bytes")
        binary = memoryview(body)[n:]
        body = body[:n]
    what = f"inference request for model '{model_name}'"
    obj = json_body(body, what)
    request_id = _field(obj, "id", str, what, "")
    params = _field(obj, "parameters", dict, what, {})
    inputs_json = _field(obj, "inputs", list, what, [])
    used = 0
    inputs = []
    for i, t in enumerate(inputs_json):
        if not isinstance(t, dict):
            raise InvalidArgument(f"{what}: inputs[{i}] must be an object")
        name = _field(t, "name", str, f"{what}: inputs[{i}]")
        if name is None:
            raise InvalidArgument(f"{what}: inputs[{i}] has no 'name'")
        where = f"{what}: input '{name}'"
        datatype = _field(t, "datatype", str, where)
        shape = _field(t, "shape", list, where)
        if datatype is None or shape is None:
            raise InvalidArgument(f"{where} needs 'datatype' and 'shape'")
        if not all(tensor_io.is_int(d) for d in shape):
            raise InvalidArgument(f"{where}: 'shape' must be a list of integers, got {json.dumps(shape)[:60]}")
        tparams = _field(t, "parameters", dict, where, {})
        size = tparams.get("binary_data_size")
        data = None
        if size is not None:
            if not tensor_io.is_int(size) or size < 0:
                raise InvalidArgument(f"{where}: 'binary_data_size' must be a non-negative integer")
            if used + size > len(binary):
                raise InvalidArgument(f"{where}: binary_data_size {size} runs past the end of the request body "
                                      f"({len(binary) - used} binary bytes left)")
            data = binary[used:used + size]
            used += size
        elif "data" in t:
            data = _json_tensor(t["data"], datatype, shape, name, model_name)
        inputs.append(InputTensor(name, datatype, tuple(shape), data,
                                  {k: v for k, v in tparams.items() if k != "binary_data_size"}))
    if used != len(binary):
        raise InvalidArgument(f"{what}: {len(binary) - used} bytes of binary data follow the inputs "
                              f"that announce {used} (binary_data_size)")
    outputs = None
    if "outputs" in obj:
        outputs = []
        for i, o in enumerate(_field(obj, "outputs", list, what)):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise InvalidArgument(f"{what}: outputs[{i}] must be an object with a 'name'")
            outputs.append(RequestedOutput(o["name"], parameters=_field(o, "parameters", dict, f"{what}: output", {})))
    return WireRequest(model_name, model_version, request_id, params, inputs, outputs)


def _json_string(x) -> bytes:
    # A BYTES element of JSON data: a string only (UTF-8 on the wire).
    if isinstance(x, str):
        return x.encode()
    raise TypeError("BYTES elements must be strings")


def _json_tensor(data, datatype: str, shape: list, name: str, model: str):
    """JSON `data` (flat or nested, row-major) as the tensor's raw bytes."""
    if datatype not in dtypes.WIRE_NAMES:
        return None  # the core names the bad datatype
    try:
        if datatype == "BYTES":
            return bytes_tensor.serialize_array(np.array(data, dtype=np.object_), to_bytes=_json_string).tobytes()
        if datatype == "BF16":
            raise TypeError("BF16 data must be sent as binary data")
        arr = np.array(data, dtype=dtypes.numpy_dtype(datatype))
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidArgument(f"unable to parse 'data' of input '{name}' for model '{model}' as {datatype}: {e}") from None
    return arr.reshape(-1).tobytes()


def encode_infer(result: InferResult, binary_output: bool) -> tuple:
    """(JSON header bytes, [binary chunks]) of an InferResult. Outputs go binary when requested
    (their `binary_data` parameter, else the request's `binary_data_output`)."""
    outputs = []
    chunks = []
    for out in result.outputs:
        entry = {"name": out.name, "datatype": out.datatype, "shape": list(out.shape)}
        # (a shared-memory output is just named: Triton's HTTP answer echoes no parameters for it,
        # and perf_analyzer's client reads 'binary_data_size' from any parameters it finds)
        params = {}
        if out.array is not None:
            want = out.requested.parameters.get("binary_data") if out.requested is not None else None
            if want if isinstance(want, bool) else binary_output:
                data = tensor_io.raw_bytes(out.array, out.datatype)
                params["binary_data_size"] = len(data)
                chunks.append(data)
            else:
                entry["data"] = _json_data(out.array, out.datatype)
        if params:
            entry["parameters"] = params
        outputs.append(entry)
    header = {"model_name": result.model_name, "model_version": result.model_version}
    if result.id:
        header["id"] = result.id
    if result.parameters:
        header["parameters"] = result.parameters
    header["outputs"] = outputs
    return json.dumps(header, separators=(",", ":")).encode(), chunks


def _json_data(array: np.ndarray, datatype: str) -> list:
    if datatype == "BYTES":
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in array.reshape(-1)]
    if datatype == "FP16":
        array = array.astype(np.float32)
    return array.reshape(-1).tolist()


def repository_parameters(obj: dict, what: str) -> dict:
    """load/unload parameters: `config` a JSON string, `file:<path>` base64 content (tritonclient)."""
    params = _field(obj, "parameters", dict, what, {})
    out = {}
    for key, value in params.items():
        if key.startswith("file:"):
            if not isinstance(value, str):
                raise InvalidArgument(f"{what}: '{key}' must be a base64 string")
            try:
                out[key] = base64.b64decode(value, validate=True)
            except ValueError:
                raise InvalidArgument(f"{what}: '{key}' is not valid base64") from None
        else:
            out[key] = value
    return out


def config_json(config) -> dict:
    """A ModelConfig as Triton's HTTP endpoint shows it: proto field names, every field, and 64-bit
    integers as JSON numbers (protobuf's JSON mapping writes them as strings)."""
    obj = json_format.MessageToDict(config, preserving_proto_field_name=True,
                                    always_print_fields_with_no_presence=True)
    _numbers(config.DESCRIPTOR, obj)
    return obj


def _numbers(descriptor, obj: dict):
    for field in descriptor.fields:
        if field.name not in obj:
            continue
        value = obj[field.name]
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            vfield = message.fields_by_name["value"]
            for k, v in value.items():
                if vfield.message_type is not None:
                    _numbers(vfield.message_type, v)
                elif vfield.type in _INT64:
                    value[k] = int(v)
        elif message is not None:
            for item in (value if isinstance(value, list) else [value]):
                _numbers(message, item)
        elif field.type in _INT64:
            obj[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
