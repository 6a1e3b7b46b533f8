"""The bad-input matrix: malformed requests against every model of the test repository and of
model_repository/, each expecting its gRPC code and a fragment of Triton's message; after each one
the server must still be live and answer a correct request of the same model correctly."""

import struct
import zlib

import grpc
import numpy as np
import pytest

from proto import grpc_service_pb2 as pb

from .conftest import escaped_exceptions, model_names
from .samples import GOOD, POSE_MODELS, check_serves, coco_image, good_request
from .wire import OK, Client, ShmRegion, request, set_param, use_shm

C = grpc.StatusCode
CASES = []


class Bad:
    def __init__(self, id, model, send, code, fragment):
        self.id, self.model, self.send, self.code, self.fragment = id, model, send, code, fragment


def infer_case(id, model, mutate, code, fragment):
    """A correct request of `model`, broken by `mutate(msg)` (in place)."""
    def send(c):
        msg, _ = good_request(model, id=id)
        mutate(msg)
        return c.infer(msg)[:2]
    CASES.append(Bad(id, model, send, code, fragment))


def call_case(id, model, code, fragment):
    """A hand-written call: the decorated function(client) returns (code, details)."""
    def deco(fn):
        CASES.append(Bad(id, model, fn, code, fragment))
        return fn
    return deco


def _set(field, value):
    def mutate(msg):
        setattr(msg, field, value)
    return mutate


def _input(attr, value, index=0):
    def mutate(msg):
        t = msg.inputs[index]
        if attr == "shape":
            del t.shape[:]
            t.shape.extend(value)
        else:
            setattr(t, attr, value)
    return mutate


def _raw(fn, index=0):
    def mutate(msg):
        msg.raw_input_contents[index] = fn(msg.raw_input_contents[index])
    return mutate


def _image(data: bytes):
    def mutate(msg):
        msg.raw_input_contents[0] = struct.pack("<I", len(data)) + data
    return mutate


def _png_header(width, height) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's header; no pixel data)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + \
        chunk(b"IEND", b"")


# ---- request header, model and version ------------------------------------------------------
infer_case("unknown-model", "identity", _set("model_name", "no_such_model"),
           C.INVALID_ARGUMENT, "Request for unknown model: 'no_such_model' is not found")
infer_case("empty-model-name", "identity", _set("model_name", ""),
           C.INVALID_ARGUMENT, "Request for unknown model: '' is not found")
infer_case("model-not-loaded", "identity", _set("model_name", "fail_load"),
           C.UNAVAILABLE, "'fail_load' has no available versions")
for v in ("abc", "-1", "0", str(2**70), "1.5", " 1", "+1", "1_0", "\u0661"):
    infer_case(f"version-{v[:8]!r}", "add_sub", _set("model_version", v),
               C.INVALID_ARGUMENT, f"failed to get model version from specified version string '{v}'")
infer_case("version-not-found", "add_sub", _set("model_version", "99"),
           C.NOT_FOUND, "'add_sub' version 99 is not found")
infer_case("version-outside-policy", "versioned", _set("model_version", "2"),
           C.NOT_FOUND, "'versioned' version 2 is not found")

# ---- inputs: names, datatypes, shapes ---------------------------------------------------------
infer_case("unknown-datatype", "identity", _input("datatype", "FP128"),
           C.INVALID_ARGUMENT, "invalid datatype 'FP128' for input 'INPUT0'")
infer_case("lowercase-datatype", "add_onnx", _input("datatype", "fp32"),
           C.INVALID_ARGUMENT, "invalid datatype 'fp32'")
infer_case("wrong-datatype", "add_sub", _input("datatype", "FP64"),
           C.INVALID_ARGUMENT, "inference input 'INPUT0' data-type is 'FP64', but model 'add_sub' expects 'FP32'")
infer_case("unknown-input", "add_sub", _input("name", "INPUT9"),
           C.INVALID_ARGUMENT, "unexpected inference input 'INPUT9' for model 'add_sub'")
infer_case("negative-dim", "identity", _input("shape", [2, -5]),
           C.INVALID_ARGUMENT, "unexpected shape for input 'INPUT0' for model 'identity'. Dimensions must be "
                               "non-negative, got [2,-5]")
infer_case("zero-batch", "add_onnx", lambda m: [_input("shape", [0, 4], i)(m) for i in (0, 1)],
           C.INVALID_ARGUMENT, "batch-size must be >= 1")
infer_case("zero-dim-fixed", "add_sub", _input("shape", [0]),
           C.INVALID_ARGUMENT, "unexpected shape for input 'INPUT0' for model 'add_sub'. Expected [4], got [0]")
infer_case("wrong-rank", "raises", _input("shape", [5, 1]),
           C.INVALID_ARGUMENT, "Expected [-1], got [5,1]")
infer_case("no-shape-batching", "identity", _input("shape", []),
           C.INVALID_ARGUMENT, "input 'INPUT0' has no shape but model requires batch dimension for 'identity'")
infer_case("batch-too-large", "identity", _input("shape", [9, 5]),
           C.INVALID_ARGUMENT, "inference request batch-size must be <= 8 for 'identity'")
infer_case("batch-mismatch", "add_onnx", _input("shape", [2, 4], 1),
           C.INVALID_ARGUMENT, "input 'INPUT1' batch size does not match other inputs for 'add_onnx'")
infer_case("shape-overflow", "hrnet_om", _input("shape", [2**31, 3, 2**31, 2**31]),
           C.INVALID_ARGUMENT, "input byte size mismatch for input 'input' for model 'hrnet_om'")
infer_case("shape-overflow-int64", "identity", _input("shape", [1, 2**63 - 1]),
           C.INVALID_ARGUMENT, "input byte size mismatch for input 'INPUT0' for model 'identity'")
infer_case("empty-but-huge", "hrnet_om", lambda m: (_input("shape", [2**62, 3, 0, 0])(m), _raw(lambda b: b"")(m)),
           C.INVALID_ARGUMENT,
           "unexpected shape for input 'input' for model 'hrnet_om': [4611686018427387904, 3, 0, 0] is too large")
infer_case("empty-but-huge-bytes", "echo_bytes",
           lambda m: (_input("shape", [1, 0, 2**62, 2**62])(m), _raw(lambda b: b"")(m)),
           C.INVALID_ARGUMENT, "unexpected shape for input 'INPUT0' for model 'echo_bytes'")
infer_case("duplicate-input", "add_sub", lambda m: setattr(m.inputs[1], "name", "INPUT0"),
           C.INVALID_ARGUMENT, "input 'INPUT0' was specified more than once for model 'add_sub'")
infer_case("missing-input", "add_sub", lambda m: (m.inputs.pop(), m.raw_input_contents.pop()),
           C.INVALID_ARGUMENT, "expected 2 inputs but got 1 inputs for model 'add_sub'")


def _thousand_inputs(msg):
    for i in range(1000):
        msg.inputs.add(name=f"EXTRA{i}", datatype="FP32", shape=[4])
        msg.raw_input_contents.append(b"\0" * 16)


infer_case("thousand-inputs", "add_sub", _thousand_inputs,
           C.INVALID_ARGUMENT, "unexpected inference input 'EXTRA0' for model 'add_sub'")

# ---- input data -------------------------------------------------------------------------------
infer_case("raw-too-short", "add_sub", _raw(lambda b: b[:-4]),
           C.INVALID_ARGUMENT, "input byte size mismatch for input 'INPUT0' for model 'add_sub'. Expected 16, got 12")
infer_case("raw-too-long", "ensemble_add", _raw(lambda b: b + b"\0" * 3),
           C.INVALID_ARGUMENT, "input byte size mismatch for input 'INPUT0' for model 'ensemble_add'. Expected 32, got 35")
infer_case("raw-missing", "add_sub", lambda m: m.raw_input_contents.pop(),
           C.INVALID_ARGUMENT, "unable to find data for input tensor 'INPUT1' for model 'add_sub' in request")
infer_case("raw-extra", "raises", lambda m: m.raw_input_contents.append(b"\0" * 4),
           C.INVALID_ARGUMENT, "raw input contents for model 'raises'")


def _contents_and_raw(msg):
    msg.inputs[0].contents.fp32_contents.extend([1.0] * 4)


infer_case("contents-with-raw", "add_sub", _contents_and_raw,
           C.INVALID_ARGUMENT, "contents field must not be specified when using raw_input_contents for 'INPUT0'")


def _contents_wrong_field(msg):
    del msg.raw_input_contents[:]
    msg.inputs[0].contents.int_contents.extend([1, 2, 3, 4])
    msg.inputs[1].contents.fp32_contents.extend([1.0] * 4)


infer_case("contents-wrong-type", "add_sub", _contents_wrong_field,
           C.INVALID_ARGUMENT, "unexpected explicit tensor data for input tensor 'INPUT0' for model 'add_sub'")


def _contents_too_few(msg):
    del msg.raw_input_contents[:]
    msg.inputs[0].contents.fp32_contents.extend([1.0] * 3)
    msg.inputs[1].contents.fp32_contents.extend([1.0] * 4)


infer_case("contents-too-few", "add_sub", _contents_too_few,
           C.INVALID_ARGUMENT, "input byte size mismatch for input 'INPUT0' for model 'add_sub'")
infer_case("bytes-length-past-end", "echo_bytes", _raw(lambda b: struct.pack("<I", 1000) + b[4:]),
           C.INVALID_ARGUMENT, "string length 1000 runs past the end of the buffer")
infer_case("bytes-too-many-elements", "echo_bytes", _raw(lambda b: b + struct.pack("<I", 1) + b"z"),
           C.INVALID_ARGUMENT, "unexpected number of string elements 4, expecting 3 for inference input 'INPUT0' "
                               "for model 'echo_bytes'")
infer_case("bytes-truncated-prefix", "echo_bytes", _raw(lambda b: b[:6] + b"\x01\x00"),
           C.INVALID_ARGUMENT, "incomplete string length indicator for inference input 'INPUT0'")
infer_case("bytes-too-few-elements", "echo_bytes", _raw(lambda b: b[:6]),
           C.INVALID_ARGUMENT, "expected 3 string elements, got 1 for inference input 'INPUT0'")
infer_case("bytes-count-overflow", "echo_bytes", _input("shape", [1, 2**62]),
           C.INVALID_ARGUMENT, "string elements, got 3 for inference input 'INPUT0' for model 'echo_bytes'")

# ---- outputs and parameters ------------------------------------------------------------------
infer_case("unknown-output", "add_onnx", lambda m: m.outputs.add(name="NOPE"),
           C.INVALID_ARGUMENT, "unexpected inference output 'NOPE' for model 'add_onnx'")
infer_case("duplicate-output", "identity", lambda m: [m.outputs.add(name="OUTPUT0") for _ in range(2)],
           C.INVALID_ARGUMENT, "output 'OUTPUT0' was requested more than once for model 'identity'")
infer_case("reserved-parameter", "identity", lambda m: set_param(m.parameters["triton_evil"], 1),
           C.INVALID_ARGUMENT, "parameter keys starting with 'triton_' are reserved for Triton usage and should not "
                               "be specified, got 'triton_evil' for model 'identity'")
infer_case("timeout-not-int", "identity", lambda m: set_param(m.parameters["timeout"], "soon"),
           C.INVALID_ARGUMENT, "invalid value type for 'timeout' parameter, expected int64_param.")
infer_case("priority-not-int", "identity", lambda m: set_param(m.parameters["priority"], "high"),
           C.INVALID_ARGUMENT, "invalid value type for 'priority' parameter, expected int64_param or uint64_param.")
infer_case("priority-double", "identity", lambda m: set_param(m.parameters["priority"], 1.5),
           C.INVALID_ARGUMENT, "invalid value type for 'priority' parameter, expected int64_param or uint64_param.")
infer_case("timeout-negative", "batch_delay", lambda m: set_param(m.parameters["timeout"], -5),
           C.INVALID_ARGUMENT, "'timeout' parameter must be a non-negative integer")


# ---- shared memory ------------------------------------------------------------------------------
def _shm_input(msg, region, size, offset=None, index=0):
    use_shm(msg.inputs[index], region, size, offset)
    del msg.raw_input_contents[index]


infer_case("shm-unregistered", "identity", lambda m: _shm_input(m, "ghost", 40),
           C.NOT_FOUND, "Unable to find shared memory region: 'ghost'")


def _register(c, name, key, size, offset=0):
    return c.call("SystemSharedMemoryRegister",
                  pb.SystemSharedMemoryRegisterRequest(name=name, key=key, offset=offset, byte_size=size))


def _with_region(size, body):
    """Register a fresh region of `size` bytes as 'rel_region', run body(c, region), clean up."""
    def send(c):
        with ShmRegion(size) as region:
            code, details, _ = _register(c, "rel_region", region.key, size)
            assert code == OK, details
            try:
                return body(c, region)
            finally:
                c.call("SystemSharedMemoryUnregister", pb.SystemSharedMemoryUnregisterRequest(name="rel_region"))
    return send


def _infer_from_region(size, offset=None):
    def body(c, region):
        msg, arrays = good_request("identity")
        region.write(arrays["INPUT0"].tobytes())
        _shm_input(msg, "rel_region", size, offset)
        return c.infer(msg)[:2]
    return body


CASES.append(Bad("shm-region-too-small", "identity", _with_region(16, _infer_from_region(40)),
                 C.INVALID_ARGUMENT, "Invalid offset + byte size for shared memory region: 'rel_region'"))
CASES.append(Bad("shm-offset-past-end", "identity", _with_region(64, _infer_from_region(40, offset=40)),
                 C.INVALID_ARGUMENT, "Invalid offset + byte size for shared memory region: 'rel_region'"))
CASES.append(Bad("shm-negative-offset", "identity", _with_region(64, _infer_from_region(40, offset=-8)),
                 C.INVALID_ARGUMENT, "Invalid offset + byte size for shared memory region: 'rel_region'"))
CASES.append(Bad("shm-wrong-byte-size", "identity", _with_region(64, _infer_from_region(36)),
                 C.INVALID_ARGUMENT, "input byte size mismatch for input 'INPUT0' for model 'identity'"))


def _output_to_region(c, region):
    msg, _ = good_request("identity")
    use_shm(msg.outputs.add(name="OUTPUT0"), "rel_region", 8)
    return c.infer(msg)[:2]


# Triton answers INTERNAL here (server grpc/infer_handler.cc); kept for compatibility.
CASES.append(Bad("shm-output-too-small", "identity", _with_region(8, _output_to_region),
                 C.INTERNAL, "should be at least 40 bytes to hold the results"))


def _shm_and_contents(msg):
    _shm_input(msg, "ghost", 16)
    msg.inputs[0].contents.fp32_contents.extend([1.0] * 4)


infer_case("shm-with-contents", "add_sub", _shm_and_contents,
           C.INVALID_ARGUMENT, "contents field must not be specified when using shared memory for 'INPUT0'")
infer_case("shm-size-not-int", "identity", lambda m: (
    _shm_input(m, "ghost", 40), set_param(m.inputs[0].parameters["shared_memory_byte_size"], "40")),
    C.INVALID_ARGUMENT, "must be integers")


@call_case("shm-register-twice", "identity", C.ALREADY_EXISTS, "shared memory region 'rel_region' already in manager")
def _register_twice(c):
    return _with_region(32, lambda c, region: _register(c, "rel_region", region.key, 32)[:2])(c)


for key in ("/../../etc/passwd", "../etc/passwd", "/a/b", "/..", ""):
    @call_case(f"shm-key-{key!r}", "identity", C.INVALID_ARGUMENT, "invalid key")
    def _bad_key(c, key=key):
        return _register(c, "rel_bad_key", key, 16)[:2]


@call_case("shm-key-missing", "identity", C.INVALID_ARGUMENT, "Unable to open shared memory region: '/rel_no_such_key'")
def _missing_key(c):
    return _register(c, "rel_missing", "/rel_no_such_key", 16)[:2]


@call_case("shm-register-past-end", "identity", C.INVALID_ARGUMENT, "Invalid offset + byte size for shared memory region")
def _register_past_end(c):
    with ShmRegion(16) as region:
        return _register(c, "rel_past_end", region.key, 16, offset=8)[:2]


@call_case("shm-status-unknown", "identity", C.NOT_FOUND, "Unable to find system shared memory region: 'ghost'")
def _status_unknown(c):
    return c.call("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest(name="ghost"))[:2]


@call_case("cuda-shm-register", "identity", C.UNIMPLEMENTED, "CUDA shared memory is not supported")
def _cuda_register(c):
    return c.call("CudaSharedMemoryRegister", pb.CudaSharedMemoryRegisterRequest(
        name="gpu", raw_handle=b"\0" * 64, device_id=0, byte_size=64))[:2]


# ---- repository -----------------------------------------------------------------------------
def _load(c, name, **params):
    req = pb.RepositoryModelLoadRequest(model_name=name)
    for k, v in params.items():
        set_param(req.parameters[k.replace("__", ":")], v)
    return c.call("RepositoryModelLoad", req)[:2]


for name in ("a/b", "../models", "..", "identity/../add_sub", "/etc", "", "x\0y"):
    @call_case(f"load-name-{name!r}", "identity", C.INVALID_ARGUMENT, "invalid model name")
    def _bad_name(c, name=name):
        return _load(c, name)

    @call_case(f"unload-name-{name!r}", "identity", C.INVALID_ARGUMENT, "invalid model name")
    def _bad_unload(c, name=name):
        return c.call("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name=name))[:2]


_IDENTITY_JSON = ('{"name": "rel_upload", "backend": "python", "max_batch_size": 0, '
                  '"input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [1]}], '
                  '"output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [1]}]}')

for path in ("../../evil.py", "1/../../evil.py", "/tmp/evil.py", "1/../../../models/identity/1/model.py"):
    @call_case(f"load-file-{path!r}", "identity", C.INVALID_ARGUMENT, "leaves the model folder")
    def _file_escape(c, path=path):
        return _load(c, "rel_upload", config=_IDENTITY_JSON, **{f"file__{path}": b"raise SystemExit(3)\n"})


@call_case("load-name-too-long", "identity", C.INVALID_ARGUMENT, "invalid model name")
def _long_name(c):
    return _load(c, "x" * 300, config=_IDENTITY_JSON, **{"file__1/model.py": b""})


for label, files in (("too-long", {"x" * 300: b""}), ("nul", {"1/a\0b": b""}),
                     ("under-a-file", {"1/model.py": b"", "1/model.py/x": b""})):
    @call_case(f"load-file-{label}", "identity", C.INVALID_ARGUMENT, "cannot write the model files")
    def _unwritable(c, files=files):
        return _load(c, "rel_upload", config=_IDENTITY_JSON, **{f"file__{k}": v for k, v in files.items()})


@call_case("load-file-without-config", "identity", C.INVALID_ARGUMENT, "'config' must be provided together with model files")
def _file_no_config(c):
    return _load(c, "rel_upload", **{"file__1/model.py": b"x = 1\n"})


@call_case("load-invalid-json", "identity", C.INVALID_ARGUMENT, "failed to parse model config override")
def _bad_json(c):
    return _load(c, "add_sub", config='{"backend": "python", "input": [')


@call_case("load-json-unknown-field", "add_sub", C.INVALID_ARGUMENT, "failed to parse model config override")
def _json_unknown_field(c):
    return _load(c, "add_sub", config='{"backend": "python", "no_such_field": 1}')


@call_case("load-json-other-name", "add_sub", C.INVALID_ARGUMENT, "unexpected 'name' in model configuration")
def _json_other_name(c):
    return _load(c, "add_sub", config='{"name": "identity", "backend": "python"}')


@call_case("load-config-not-string", "identity", C.INVALID_ARGUMENT, "'config' parameter must be a JSON string")
def _config_int(c):
    return _load(c, "add_sub", config=7)


@call_case("load-unknown-model", "identity", C.INVALID_ARGUMENT, "no model folder 'no_such_model'")
def _load_unknown(c):
    return _load(c, "no_such_model")


@call_case("repository-name", "identity", C.UNIMPLEMENTED, "'repository_name' must be empty")
def _repo_name(c):
    return c.call("RepositoryModelLoad",
                  pb.RepositoryModelLoadRequest(repository_name="other", model_name="identity"))[:2]


# ---- corrupted protobuf -----------------------------------------------------------------------
for rpc, payload in (("ModelInfer", b"\xff\xff\xff\xff"), ("ModelInfer", b"\x0a\x05abc"),
                     ("RepositoryModelLoad", b"\x12\xff\x01"), ("SystemSharedMemoryRegister", b"\x08"),
                     ("ModelMetadata", b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01")):
    @call_case(f"corrupt-{rpc}-{payload[:3].hex()}", "identity", C.INVALID_ARGUMENT, "could not parse")
    def _corrupt(c, rpc=rpc, payload=payload):
        return c.call_bytes(rpc, payload)[:2]


# ---- metadata and statistics -----------------------------------------------------------------
@call_case("metadata-bad-version", "identity", C.INVALID_ARGUMENT, "failed to get model version")
def _meta_version(c):
    return c.call("ModelMetadata", pb.ModelMetadataRequest(name="identity", version="x"))[:2]


@call_case("statistics-unknown-model", "identity", C.INVALID_ARGUMENT, "requested model 'ghost' is not available")
def _stats_unknown(c):
    return c.call("ModelStatistics", pb.ModelStatisticsRequest(name="ghost"))[:2]


# ---- the pose pipeline ------------------------------------------------------------------------
_PRE = "in ensemble 'hrnet_pose', step 0 (model 'preprocess'): preprocess: invalid IMAGE: "
infer_case("image-empty", "hrnet_pose", _image(b""), C.INVALID_ARGUMENT, _PRE + "empty image data")
infer_case("image-truncated", "hrnet_pose", _image(coco_image()[:5000]),
           C.INVALID_ARGUMENT, _PRE + "truncated JPEG")
infer_case("image-not-an-image", "hrnet_pose", _image(b"GIF89a this is not a JPEG"),
           C.INVALID_ARGUMENT, _PRE + "not a JPEG or PNG image")
infer_case("image-huge-header", "hrnet_pose", _image(_png_header(60000, 60000)),
           C.INVALID_ARGUMENT, _PRE + "image too large: 60000x60000")
infer_case("image-huge-header-direct", "preprocess", _image(_png_header(2**31 - 1, 2)),
           C.INVALID_ARGUMENT, "preprocess: invalid IMAGE: image too large")
infer_case("image-two-elements", "hrnet_pose", _input("shape", [2]),
           C.INVALID_ARGUMENT, "unexpected shape for input 'IMAGE' for model 'hrnet_pose'. Expected [1], got [2]")
infer_case("image-as-uint8", "preprocess", _input("datatype", "UINT8"),
           C.INVALID_ARGUMENT, "data-type is 'UINT8', but model 'preprocess' expects 'BYTES'")


def _nan_input(value):
    def send(c):
        x = np.zeros((1, 3, 64, 64), np.float32)
        x[0, 1, 10:20, 10:20] = value
        code, details, resp = c.infer(request("hrnet_om", {"input": x}))
        if code == OK:  # the network computes on; the server must not fall over
            from .wire import output
            assert not np.isfinite(output(resp, "output1")).all()
        return code, details
    return send


# The network itself is pure arithmetic: NaN/Inf in, NaN out, no failure (grouping refuses it).
CASES.append(Bad("nan-network-input", "hrnet_om", _nan_input(np.nan), OK, ""))
CASES.append(Bad("inf-network-input", "hrnet_om", _nan_input(np.inf), OK, ""))
infer_case("network-wrong-channels", "hrnet_om", lambda m: (
    _input("shape", [1, 4, 64, 64])(m), _raw(lambda b: b + b[:64 * 64 * 4])(m)),
    C.INVALID_ARGUMENT,
    "unexpected shape for input 'input' for model 'hrnet_om'. Expected [-1,3,-1,-1], got [1,4,64,64]")
infer_case("network-empty-image", "hrnet_om", lambda m: (_input("shape", [1, 3, 0, 0])(m), _raw(lambda b: b"")(m)),
           C.INTERNAL, "model 'hrnet_om'")
infer_case("grouping-wrong-channels", "grouping", lambda m: (
    _input("shape", [2, 17, 24, 24])(m), _raw(lambda b: b[:len(b) // 2])(m)),
    C.INVALID_ARGUMENT,
    "unexpected shape for input 'OUTPUT' for model 'grouping'. Expected [-1,34,-1,-1], got [2,17,24,24]")
infer_case("grouping-no-flip-pair", "grouping", lambda m: (
    _input("shape", [1, 34, 24, 24])(m), _raw(lambda b: b[:len(b) // 2])(m)),
    C.INVALID_ARGUMENT, "grouping: output must be [2, 34, h, w]")
infer_case("grouping-nan-maps", "grouping", _raw(lambda b: b[:-4] + np.float32(np.nan).tobytes()),
           C.INVALID_ARGUMENT, "grouping: output contains NaN or infinite values")
infer_case("grouping-huge-maps", "grouping", _raw(lambda b: np.full(len(b) // 4, 1e20, np.float32).tobytes()),
           C.INVALID_ARGUMENT, "grouping: output values must lie within +-1e+06")
infer_case("grouping-inf-center", "grouping", _raw(lambda b: np.float32([np.inf, 1]).tobytes(), index=1),
           C.INVALID_ARGUMENT, "grouping: center must be finite")


# ---- the tests -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(rel_server):
    with Client(rel_server.url) as c:
        yield c


def test_matrix_is_large_and_covers_the_pipeline():
    assert len({c.id for c in CASES}) == len(CASES) >= 40
    assert set(POSE_MODELS) <= {c.model for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_request(case, client, rel_server):
    code, details = case.send(client)
    assert (code, case.fragment in details) == (case.code, True), \
        f"{case.id}: expected {case.code.name} with '{case.fragment}', got {code.name}: {details}"
    assert client.live() and rel_server.alive()
    check_serves(client, case.model)


def test_every_model_refuses_malformed_inputs(client, rel_repo):
    """For each model of the repository, built from its metadata: an unknown input name, a wrong
    datatype and a wrong rank; each refused with its message, then the model still serves."""
    for model in model_names(rel_repo):
        code, details, meta = client.call("ModelMetadata", pb.ModelMetadataRequest(name=model))
        if code != OK:  # a model that failed to load: refused as not available
            code, details, _ = client.infer(pb.ModelInferRequest(model_name=model))
            assert code == C.UNAVAILABLE and f"'{model}' has no available versions" in details
            continue
        if not meta.inputs:
            continue
        _, _, cfg = client.call("ModelConfig", pb.ModelConfigRequest(name=model))
        if cfg.config.model_transaction_policy.decoupled:  # streams only: tests/backend/test_decoupled.py
            code, details, _ = client.infer(pb.ModelInferRequest(model_name=model))
            assert code == C.UNIMPLEMENTED and "decoupled transaction policy" in details
            continue
        first = meta.inputs[0]
        shape = [max(d, 1) for d in first.shape]
        base = pb.ModelInferRequest(model_name=model)
        for inp in meta.inputs:
            base.inputs.add(name=inp.name, datatype=inp.datatype, shape=[max(d, 1) for d in inp.shape])
            base.raw_input_contents.append(b"")
        for kind in ("unknown-input", "wrong-datatype", "wrong-rank"):
            msg = pb.ModelInferRequest()
            msg.CopyFrom(base)
            t = msg.inputs[0]
            if kind == "unknown-input":
                t.name = "NO_SUCH_INPUT"
                want = f"unexpected inference input 'NO_SUCH_INPUT' for model '{model}'"
            elif kind == "wrong-datatype":
                t.datatype = "INT8" if first.datatype != "INT8" else "FP32"
                want = f"inference input '{first.name}' data-type is '{t.datatype}', but model '{model}' expects"
            else:
                del t.shape[:]
                t.shape.extend(shape + [1, 1])
                want = f"unexpected shape for input '{first.name}' for model '{model}'"
            code, details, _ = client.infer(msg)
            assert code == C.INVALID_ARGUMENT and want in details, (model, kind, code, details)
            assert client.live()
        if model in GOOD and model != "hrnet_pose":  # (the pipeline is checked by the matrix)
            check_serves(client, model)


def test_stream_survives_bad_requests(client):
    """On ModelStreamInfer a bad request gets an error message with its id; the stream goes on."""
    bad = request("identity", {"INPUT0": np.zeros((1, 4), np.float32)}, id="bad-1")
    bad.inputs[0].datatype = "FP16"
    misshapen = request("add_sub", {"INPUT0": np.zeros(3, np.float32), "INPUT1": np.zeros(4, np.float32)},
                        id="bad-2")
    good, _ = good_request("identity", id="good-1")
    replies = list(client.stub.ModelStreamInfer(iter([bad, misshapen, good]), timeout=60))
    by_id = {r.infer_response.id: r for r in replies}
    assert set(by_id) == {"bad-1", "bad-2", "good-1"}
    assert "data-type is 'FP16'" in by_id["bad-1"].error_message
    assert "unexpected shape for input 'INPUT0'" in by_id["bad-2"].error_message
    assert by_id["good-1"].error_message == "" and len(by_id["good-1"].infer_response.raw_output_contents) == 1


def test_stream_survives_undecodable_messages(client):
    stream = client.channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer",
                                          response_deserializer=pb.ModelStreamInferResponse.FromString)
    good, _ = good_request("identity", id="good-2")
    replies = list(stream(iter([b"\xff\xff\xff", good.SerializeToString()]), timeout=60))
    assert len(replies) == 2
    errors = [r.error_message for r in replies if r.error_message]
    assert errors == ["could not parse the ModelStreamInfer request: Error parsing message with type "
                      "'inference.ModelInferRequest'"]
    assert [r.infer_response.id for r in replies if not r.error_message] == ["good-2"]


def test_no_exception_escaped(rel_server, client):
    """After the matrix, the log holds no exception the server did not map to a status."""
    assert client.live()
    assert escaped_exceptions(rel_server.log) == []
