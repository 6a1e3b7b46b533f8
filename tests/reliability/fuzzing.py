"""Hypothesis strategies for random server calls: ModelInferRequests (names, datatypes, shapes,
byte lengths, parameters, typed contents, shared-memory parameters), repository and shared-memory
calls and undecodable bytes; and `Fuzzer`, which sends them and checks each answer."""

import collections
import time

import grpc
import numpy as np
from hypothesis import strategies as st

from backend import bytes_tensor
from proto import grpc_service_pb2 as pb

from .wire import Client, set_param, use_shm

C = grpc.StatusCode
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES", "BF16"]
SIZES = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2,
         "UINT32": 4, "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}
CONTENTS = ["bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents",
            "fp32_contents", "fp64_contents", "bytes_contents"]
# Models too slow to execute thousands of times (a 300 ms batching delay) are left out.
SKIP_MODELS = {"batch_delay"}
# Models fed only values in [0, 1) when a request is meant to reach them: hrnet/grouping.py runs for
# seconds on maps of huge finite values (~1e20: 10 s, then IndexError), a pipeline issue of its own.
BOUNDED_MODELS = {"grouping"}
HOSTILE_NAMES = ["..", "../identity", "a/b", "/etc/passwd", "identity/../add_sub", "", " ", "\x00",
                 "x" * 300, "ünïcode", "%2e%2e", "..\\..\\x"]
HOSTILE_KEYS = ["/../../etc/passwd", "../x", "/a/b", "", "/", "//", "/..", "/dev/null", "/\x00x",
                "/" + "k" * 300, "/rel_fuzz_missing"]
PARAM_KEYS = ["timeout", "priority", "sequence_id", "sequence_start", "sequence_end", "headers",
              "binary_data_output", "triton_enable_empty_final_response", "triton_x", "custom",
              "classification", "shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"]
I64 = st.integers(-2**63, 2**63 - 1)


def small_text(max_size=12):
    return st.text(max_size=max_size)


def param_values():
    return st.one_of(st.booleans(), I64, st.integers(0, 2**64 - 1).map(lambda v: ("u", v)),
                     small_text(), st.floats(allow_nan=True))


def fill_param(p, value):
    # ("u", v) sends v as uint64_param even when small (set_param would send it as int64).
    if isinstance(value, tuple):
        p.uint64_param = value[1]
    else:
        set_param(p, value)


@st.composite
def param_maps(draw, keys=PARAM_KEYS, max_size=3):
    keys = draw(st.lists(st.one_of(st.sampled_from(keys), small_text(8)), max_size=max_size, unique=True))
    return {k: draw(param_values()) for k in keys}


@st.composite
def shm_params(draw, regions):
    params = {"shared_memory_region": draw(st.one_of(st.sampled_from(regions), small_text(8)))}
    if draw(st.booleans()):
        params["shared_memory_byte_size"] = draw(st.one_of(st.integers(-8, 4096), I64, small_text(4)))
    if draw(st.booleans()):
        params["shared_memory_offset"] = draw(st.one_of(st.integers(-8, 4096), I64))
    return params


SIZES_NP = {"INT32": "<i4", "FP32": "<f4", "INT64": "<i8", "FP64": "<f8"}


def _consistent_bytes(draw, datatype, shape, bounded=False):
    """Data of exactly the size the shape needs (to get past validation into the model)."""
    count = int(np.prod(shape, dtype=object)) if shape else 1
    if count > 4096:
        return draw(st.binary(max_size=64))
    if bounded and datatype in SIZES_NP:
        seed = draw(st.integers(0, 2**32 - 1))
        return np.random.default_rng(seed).random(count).astype(SIZES_NP[datatype]).tobytes()
    if datatype == "BYTES":
        items = draw(st.lists(st.binary(max_size=16), min_size=count, max_size=count))
        return bytes_tensor.serialize(np.array(items + [b""], dtype=object)[:count])
    size = SIZES.get(datatype, 4) * count
    kind = draw(st.sampled_from(["zeros", "random", "nan"]))
    if kind == "zeros" or size == 0:
        return bytes(size)
    if kind == "nan" and datatype in ("FP32", "FP64", "FP16"):
        return np.full(count, np.nan, {"FP32": "<f4", "FP64": "<f8", "FP16": "<f2"}[datatype]).tobytes()
    return draw(st.binary(min_size=size, max_size=size))


def _shape_for(draw, dims, batching, batch):
    return [batch if i == 0 and batching else (draw(st.integers(0, 6)) if d == -1 else d)
            for i, d in enumerate(dims)]


@st.composite
def plausible_requests(draw, models: dict, regions: list):
    """A correct request for a real model (data from raw bytes, contents or the shared-memory
    region), then at most one random defect: these reach the models and the output paths."""
    name = draw(st.sampled_from(sorted(models)))
    spec = models[name]
    msg = pb.ModelInferRequest(model_name=name, id=draw(small_text(16)),
                               model_version=draw(st.sampled_from(["", "", "", "1"])))
    if draw(st.booleans()):
        msg.parameters["custom"].string_param = draw(small_text())
    if draw(st.integers(0, 3)) == 0:
        msg.parameters["timeout"].int64_param = draw(st.one_of(st.integers(0, 100), st.integers(10**6, 10**7)))
    batch = draw(st.integers(1, 3))
    for inp_name, datatype, dims in spec["inputs"]:
        shape = _shape_for(draw, dims, spec["batching"], batch)
        t = msg.inputs.add(name=inp_name, datatype=datatype, shape=shape)
        bounded = name in BOUNDED_MODELS
        data = _consistent_bytes(draw, datatype, shape, bounded)
        # (the shared-memory region holds whatever earlier outputs left there: not for bounded models)
        how = draw(st.sampled_from(["raw", "raw", "raw", "contents"] + ([] if bounded else ["shm"])))
        if how == "shm" and len(data) <= 4096:
            use_shm(t, "rel_fuzz", len(data), draw(st.integers(0, 4096 - len(data))))
        elif how == "contents" and datatype in ("INT32", "FP32", "BYTES", "INT64", "FP64") and \
                np.prod(shape, dtype=object) <= 1024:  # (larger: random bytes, see _consistent_bytes)
            if datatype == "BYTES":
                t.contents.bytes_contents.extend(bytes_tensor.deserialize(data).tolist())
            else:
                field = {"INT32": "int_contents", "FP32": "fp32_contents", "INT64": "int64_contents",
                         "FP64": "fp64_contents"}[datatype]
                getattr(t.contents, field).extend(np.frombuffer(data, SIZES_NP[datatype]).tolist())
        else:
            msg.raw_input_contents.append(data)
    for out_name in draw(st.lists(st.sampled_from(spec["outputs"]), unique=True, max_size=len(spec["outputs"]))):
        o = msg.outputs.add(name=out_name)
        if draw(st.integers(0, 3)) == 0:
            size = draw(st.integers(0, 4096))
            use_shm(o, "rel_fuzz", size, draw(st.integers(0, 4096 - size)))
    defect = draw(st.sampled_from(["none", "none", "dtype", "dim", "drop-input", "raw-bytes",
                                   "extra-raw", "param", "version", "output"]))
    if defect == "dtype" and msg.inputs:
        msg.inputs[draw(st.integers(0, len(msg.inputs) - 1))].datatype = draw(st.sampled_from(DATATYPES))
    elif defect == "dim" and msg.inputs:
        t = msg.inputs[draw(st.integers(0, len(msg.inputs) - 1))]
        if t.shape:
            t.shape[draw(st.integers(0, len(t.shape) - 1))] = draw(st.one_of(st.integers(-2, 9), I64))
    elif defect == "drop-input" and msg.inputs:
        msg.inputs.pop(draw(st.integers(0, len(msg.inputs) - 1)))
    elif defect == "raw-bytes" and msg.raw_input_contents:
        i = draw(st.integers(0, len(msg.raw_input_contents) - 1))
        msg.raw_input_contents[i] = draw(st.binary(max_size=64))
    elif defect == "extra-raw":
        msg.raw_input_contents.append(draw(st.binary(max_size=16)))
    elif defect == "param":
        for k, v in draw(param_maps()).items():
            fill_param(msg.parameters[k], v)
    elif defect == "version":
        msg.model_version = draw(small_text(4))
    elif defect == "output":
        o = msg.outputs.add(name=draw(small_text(6)))
        for k, v in draw(shm_params(regions)).items():
            fill_param(o.parameters[k], v)
    return ("ModelInfer", msg)


@st.composite
def random_requests(draw, models: dict, regions: list):
    """A ModelInferRequest with random names, datatypes, shapes, byte lengths and parameters."""
    name = draw(st.one_of(st.sampled_from(sorted(models)), st.sampled_from(HOSTILE_NAMES), small_text()))
    spec = models.get(name, {"inputs": [], "outputs": []})
    msg = pb.ModelInferRequest(model_name=name, id=draw(small_text(16)))
    msg.model_version = draw(st.one_of(st.just(""), st.sampled_from(["1", "2", "3", "0", "-1", "99", "abc",
                                                                     str(2**64)]), small_text(4)))
    for k, v in draw(param_maps()).items():
        fill_param(msg.parameters[k], v)
    for _ in range(draw(st.integers(0, 4))):
        t = msg.inputs.add(
            name=draw(st.one_of(st.sampled_from([i[0] for i in spec["inputs"]] or ["INPUT0"]), small_text(8))),
            datatype=draw(st.one_of(st.sampled_from(DATATYPES), small_text(5))),
            shape=draw(st.lists(st.one_of(st.integers(-3, 8), I64), max_size=6)))
        how = draw(st.sampled_from(["raw", "raw", "contents", "shm", "none"]))
        if how == "shm":
            for k, v in draw(shm_params(regions)).items():
                fill_param(t.parameters[k], v)
        elif how == "contents":
            field = draw(st.sampled_from(CONTENTS))
            values = {"bool_contents": st.booleans(), "int_contents": st.integers(-2**31, 2**31 - 1),
                      "int64_contents": I64, "uint_contents": st.integers(0, 2**32 - 1),
                      "uint64_contents": st.integers(0, 2**64 - 1), "fp32_contents": st.floats(width=32),
                      "fp64_contents": st.floats(), "bytes_contents": st.binary(max_size=8)}[field]
            getattr(t.contents, field).extend(draw(st.lists(values, max_size=16)))
        elif how == "raw":
            msg.raw_input_contents.append(draw(st.binary(max_size=64)))
        if draw(st.integers(0, 7)) == 0:
            for k, v in draw(param_maps(max_size=2)).items():
                fill_param(t.parameters[k], v)
    for out_name in draw(st.lists(st.one_of(st.sampled_from(spec["outputs"] or ["OUTPUT0"]), small_text(6)),
                                  max_size=3)):
        o = msg.outputs.add(name=out_name)
        if draw(st.integers(0, 3)) == 0:
            for k, v in draw(st.one_of(shm_params(regions), param_maps(max_size=2))).items():
                fill_param(o.parameters[k], v)
    return ("ModelInfer", msg)


@st.composite
def control_calls(draw, models: dict, regions: list, region_keys: list):
    """Repository, shared-memory, metadata calls and undecodable bytes."""
    names = st.one_of(st.sampled_from(HOSTILE_NAMES), small_text(10))
    some_model = st.one_of(st.sampled_from(sorted(models)), names)
    kind = draw(st.sampled_from(["load", "unload", "index", "register", "unregister", "status",
                                 "metadata", "config", "stats", "ready", "bytes"]))
    if kind == "load":
        req = pb.RepositoryModelLoadRequest(model_name=draw(names))
        for key in draw(st.lists(st.one_of(st.just("config"), small_text(8).map(lambda s: "file:" + s),
                                           st.sampled_from(["file:../x.py", "file:/tmp/x", "file:1/model.py"])),
                                 max_size=3, unique=True)):
            set_param(req.parameters[key], draw(st.one_of(
                small_text(30), st.binary(max_size=30), st.booleans(), I64,
                st.sampled_from(['{"backend": "python"}', "{", "[]", "null",
                                 '{"max_batch_size": -1, "backend": "python"}']))))
        return ("RepositoryModelLoad", req)
    if kind == "unload":
        name = draw(names.filter(lambda n: n not in models))
        req = pb.RepositoryModelUnloadRequest(model_name=name)
        if draw(st.booleans()):
            req.parameters["unload_dependents"].bool_param = draw(st.booleans())
        return ("RepositoryModelUnload", req)
    if kind == "index":
        return ("RepositoryIndex", pb.RepositoryIndexRequest(ready=draw(st.booleans()),
                                                             repository_name=draw(st.sampled_from(["", "x"]))))
    if kind == "register":
        return ("SystemSharedMemoryRegister", pb.SystemSharedMemoryRegisterRequest(
            name=draw(st.one_of(st.sampled_from(regions), small_text(8))),
            key=draw(st.one_of(st.sampled_from(region_keys + HOSTILE_KEYS), small_text(12))),
            offset=draw(st.one_of(st.integers(0, 8192), st.integers(0, 2**64 - 1))),
            byte_size=draw(st.one_of(st.integers(0, 8192), st.integers(0, 2**64 - 1)))))
    if kind == "unregister":
        # Not the fuzzer's own region ("" = all): the plausible requests read and write it.
        return ("SystemSharedMemoryUnregister", pb.SystemSharedMemoryUnregisterRequest(
            name=draw(small_text(8).filter(lambda n: n and n not in regions[:1]))))
    if kind == "status":
        return ("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest(name=draw(small_text(8))))
    version = draw(st.one_of(st.just(""), small_text(4), st.sampled_from(["1", "0", "-5", str(2**70)])))
    if kind == "metadata":
        return ("ModelMetadata", pb.ModelMetadataRequest(name=draw(some_model), version=version))
    if kind == "config":
        return ("ModelConfig", pb.ModelConfigRequest(name=draw(some_model), version=version))
    if kind == "stats":
        return ("ModelStatistics", pb.ModelStatisticsRequest(name=draw(some_model), version=version))
    if kind == "ready":
        return ("ModelReady", pb.ModelReadyRequest(name=draw(some_model), version=version))
    rpc = draw(st.sampled_from(["ModelInfer", "RepositoryModelLoad", "SystemSharedMemoryRegister",
                                "ModelMetadata", "ModelStatistics", "RepositoryModelUnload"]))
    return (rpc, draw(st.binary(max_size=64)))


def calls(models, regions, region_keys):
    return st.one_of(plausible_requests(models, regions), plausible_requests(models, regions),
                     random_requests(models, regions), control_calls(models, regions, region_keys))


def model_specs(client: Client) -> dict:
    """name -> inputs [(name, datatype, dims)], outputs, batching; from the server's metadata."""
    index = client.call("RepositoryIndex", pb.RepositoryIndexRequest(ready=True))[2]
    specs = {}
    for m in sorted({m.name for m in index.models} - SKIP_MODELS):
        meta = client.call("ModelMetadata", pb.ModelMetadataRequest(name=m))[2]
        config = client.call("ModelConfig", pb.ModelConfigRequest(name=m))[2].config
        specs[m] = {"inputs": [(i.name, i.datatype, list(i.shape)) for i in meta.inputs],
                    "outputs": [o.name for o in meta.outputs], "batching": config.max_batch_size > 0}
    return specs


class Fuzzer:
    """Sends calls and checks every answer: never UNKNOWN, never a hang, INTERNAL only naming a
    model (or Triton's shared-memory output size error), the server process alive."""

    ALLOWED = {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, C.UNAVAILABLE, C.UNIMPLEMENTED,
               C.ALREADY_EXISTS, C.INTERNAL}

    def __init__(self, client: Client, server):
        self.client, self.server = client, server
        self.codes = collections.Counter()
        self.messages = collections.defaultdict(collections.Counter)  # code -> message head -> n
        self.calls = 0
        self.started = time.monotonic()

    def send(self, call):
        rpc, req = call
        if isinstance(req, bytes):
            code, details, _ = self.client.call_bytes(rpc, req)
        else:
            code, details, _ = self.client.call(rpc, req, timeout=60)
        self.calls += 1
        self.codes[code.name] += 1
        self.messages[code.name][details[:60]] += 1
        assert code in self.ALLOWED, f"{rpc} answered {code.name}: {details}\nrequest: {req!r:.2000}"
        if code == C.INTERNAL:
            assert "model '" in details or "to hold the results" in details, \
                f"INTERNAL not naming a model for {rpc}: {details}\nrequest: {req!r:.2000}"
        assert self.server.alive(), f"server died on {rpc}: {req!r:.2000}"

    def top_messages(self, per_code=3) -> str:
        """The most frequent message starts of each error code."""
        return "\n".join(f"  {code}: " + " | ".join(f"{n} x {m!r}" for m, n in msgs.most_common(per_code))
                         for code, msgs in self.messages.items() if code != "OK")

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        codes = ", ".join(f"{k} {v}" for k, v in self.codes.most_common())
        return f"{self.calls} calls in {elapsed:.0f} s ({self.calls / max(elapsed, 1e-9):.0f}/s): {codes}"
