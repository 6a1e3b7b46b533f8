"""HTTP/REST against a real server process: every endpoint with tritonclient.http (sync and
async_infer, JSON and binary tensors), the error table (status and message, the same message as
gRPC), 12 MB tensors both ways, shared memory, the repository, restricted APIs, and the flags
that turn endpoints off. Raw requests (http.client) where tritonclient would refuse to send them."""

import gzip
import http.client
import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from tests.conftest import subset_repo
from tests.serverproc import start_server


@pytest.fixture(scope="module")
def client(server):
    c = httpclient.InferenceServerClient(server.http_url)
    yield c
    c.close()


def raw(server, method, path, body=b"", headers=None):
    """(status, parsed JSON body or None, headers) of one raw HTTP request."""
    host, port = server.http_url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return resp.status, parsed, dict(resp.getheaders())


def _input(name, array, binary=True):
    dtype = "BYTES" if array.dtype == np.object_ else np.dtype(array.dtype).name.upper().replace("FLOAT", "FP")
    t = httpclient.InferInput(name, list(array.shape), dtype)
    t.set_data_from_numpy(array, binary_data=binary)
    return t


# ---- health and metadata ---------------------------------------------------------------------

def test_health(client):
    assert client.is_server_live()
    assert not client.is_server_ready()  # strict readiness: fail_load failed (Triton answers 400)
    assert client.is_model_ready("identity")
    assert client.is_model_ready("versioned", "3") and not client.is_model_ready("versioned", "2")
    assert not client.is_model_ready("fail_load")


def test_server_and_model_metadata(client, triton_client):
    meta = client.get_server_metadata()
    assert meta["name"] == triton_client.get_server_metadata().name
    assert "binary_tensor_data" in meta["extensions"]
    assert client.get_model_metadata("identity") == {
        "name": "identity", "versions": ["1"], "platform": "python",
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, -1]}],
        "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, -1]}]}
    assert client.get_model_metadata("versioned", "1")["versions"] == ["1", "3"]


def test_model_config_is_triton_json(client):
    config = client.get_model_config("identity")
    assert config["name"] == "identity" and config["max_batch_size"] == 8  # numbers, not strings
    assert config["input"][0]["dims"] == [-1] and config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["instance_group"][0]["count"] == 2
    steps = client.get_model_config("ensemble_add")["ensemble_scheduling"]["step"]
    assert [s["model_version"] for s in steps] == [-1, -1]


def test_statistics_match_grpc(client, triton_client):
    x = np.ones(4, np.float32)
    for _ in range(3):
        client.infer("add_sub", [_input("INPUT0", x), _input("INPUT1", x)])
    by_http = client.get_inference_statistics("add_sub")["model_stats"][0]
    by_grpc = triton_client.get_inference_statistics("add_sub", as_json=True)["model_stats"][0]
    assert by_http["inference_stats"]["success"]["count"] >= 3
    for field in ("inference_count", "execution_count"):
        assert by_http[field] == int(by_grpc[field])
    assert by_http["inference_stats"]["success"]["count"] == int(by_grpc["inference_stats"]["success"]["count"])
    everything = client.get_inference_statistics()["model_stats"]
    assert {"identity", "add_sub", "ensemble_add"} <= {s["name"] for s in everything}


# ---- inference -------------------------------------------------------------------------------

@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_infer_json_and_binary(client, binary_in, binary_out):
    a = np.arange(4, dtype=np.float32)
    b = np.full(4, 0.5, np.float32)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary_out) for n in ("OUTPUT0", "OUTPUT1")]
    result = client.infer("add_sub", [_input("INPUT0", a, binary_in), _input("INPUT1", b, binary_in)],
                          outputs=outputs, request_id="r-7")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    response = result.get_response()
    assert response["id"] == "r-7" and response["model_name"] == "add_sub"
    assert all(("parameters" in o) == binary_out for o in response["outputs"])


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_tensors(client, binary):
    strings = np.array([["hello", "wörld", ""]], np.object_)
    result = client.infer("echo_bytes", [_input("INPUT0", strings, binary)],
                          outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary),
                                   httpclient.InferRequestedOutput("LENGTH", binary_data=binary)])
    out = result.as_numpy("OUTPUT0")
    assert [x.decode() if isinstance(x, bytes) else x for x in out.reshape(-1)] == ["HELLO", "WöRLD", ""]
    np.testing.assert_array_equal(result.as_numpy("LENGTH"), [[5, 6, 0]])


def test_async_infer_and_compression(client):
    x = np.random.default_rng(0).standard_normal((3, 100)).astype(np.float32)
    pending = [client.async_infer("identity", [_input("INPUT0", x * i)]) for i in range(4)]
    for i, p in enumerate(pending):
        np.testing.assert_array_equal(p.get_result().as_numpy("OUTPUT0"), x * i)
    for algorithm in ("gzip", "deflate"):
        result = client.infer("identity", [_input("INPUT0", x)], request_compression_algorithm=algorithm,
                              response_compression_algorithm=algorithm)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x)


def test_12_mb_tensors_both_ways(client):
    x = np.random.default_rng(1).standard_normal((1, 3_000_000)).astype(np.float32)  # 12 MB
    result = client.infer("identity", [_input("INPUT0", x)])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x)


def test_binary_data_output_request_parameter(server):
    x = np.arange(4, dtype=np.float32)
    header = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4],
                                     "parameters": {"binary_data_size": 16}}],
                         "parameters": {"binary_data_output": True}}).encode()
    status, body, headers = raw(server, "POST", "/v2/models/identity/infer", header + x.tobytes(),
                                {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200
    n = int(headers["Inference-Header-Content-Length"])
    assert isinstance(body, bytes) and np.array_equal(np.frombuffer(body[n:], np.float32), x)
    assert json.loads(body[:n])["outputs"][0]["parameters"] == {"binary_data_size": 16}


def test_system_shared_memory(client):
    x = np.arange(16, dtype=np.float32).reshape(1, 16)
    handles = [shm.create_shared_memory_region(n, "/http_" + n, 64) for n in ("in", "out")]
    try:
        shm.set_shared_memory_region(handles[0], [x])
        client.register_system_shared_memory("in", "/http_in", 64)
        client.register_system_shared_memory("out", "/http_out", 64)
        status = client.get_system_shared_memory_status()
        assert {r["name"]: r["byte_size"] for r in status} == {"in": 64, "out": 64}
        assert client.get_system_shared_memory_status("in")[0]["key"] == "/http_in"
        inp = httpclient.InferInput("INPUT0", [1, 16], "FP32")
        inp.set_shared_memory("in", 64)
        out = httpclient.InferRequestedOutput("OUTPUT0")
        out.set_shared_memory("out", 64)
        result = client.infer("identity", [inp], outputs=[out])
        assert "data" not in result.get_output("OUTPUT0")  # its bytes went to the region
        np.testing.assert_array_equal(shm.get_contents_as_numpy(handles[1], np.float32, [1, 16]), x)
        client.unregister_system_shared_memory("in")
        assert [r["name"] for r in client.get_system_shared_memory_status()] == ["out"]
        client.unregister_system_shared_memory()
        assert client.get_system_shared_memory_status() == []
        assert client.get_cuda_shared_memory_status() == []
        client.unregister_cuda_shared_memory()  # perf_analyzer's start-up call: a no-op
    finally:
        for h in handles:
            shm.destroy_shared_memory_region(h)


# ---- errors: status, message, and the server keeps serving -----------------------------------

def _infer_body(name="INPUT0", datatype="FP32", shape=(1, 4), data=(1, 2, 3, 4), **extra):
    return json.dumps({"inputs": [{"name": name, "datatype": datatype, "shape": list(shape), "data": list(data)}],
                       **extra}).encode()


_BINARY_16 = b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"parameters":{"binary_data_size":16}}]}'

ERRORS = [
    ("unknown model", "POST", "/v2/models/nope/infer", _infer_body(), {}, 404,
     "Request for unknown model: 'nope' is not found"),
    ("unknown version", "POST", "/v2/models/identity/versions/99/infer", _infer_body(), {}, 404,
     "Request for unknown model: 'identity' version 99 is not found"),
    ("wrong datatype", "POST", "/v2/models/identity/infer", _infer_body(datatype="FP64", id="r1"), {}, 400,
     "[request id: r1] inference input 'INPUT0' data-type is 'FP64', but model 'identity' expects 'FP32'"),
    ("no id: id_unknown", "POST", "/v2/models/identity/infer", _infer_body(name="X"), {}, 400,
     "[request id: <id_unknown>] unexpected inference input 'X' for model 'identity'"),
    ("byte size", "POST", "/v2/models/identity/infer", _infer_body(data=(1, 2, 3)), {}, 400,
     "[request id: <id_unknown>] input byte size mismatch for input 'INPUT0' for model 'identity'. Expected 16, got 12"),
    ("reserved parameter", "POST", "/v2/models/identity/infer", _infer_body(parameters={"triton_x": 1}), {}, 400,
     "parameter keys starting with 'triton_' are reserved for Triton usage and should not be specified, "
     "got 'triton_x' for model 'identity'"),
    ("priority type", "POST", "/v2/models/identity/infer", _infer_body(parameters={"priority": "high"}), {}, 400,
     "invalid value type for 'priority' parameter, expected int64_param or uint64_param."),
    ("timeout type", "POST", "/v2/models/identity/infer", _infer_body(parameters={"timeout": 1.5}), {}, 400,
     "invalid value type for 'timeout' parameter, expected int64_param."),
    ("undecodable JSON", "POST", "/v2/models/identity/infer", b"{not json", {}, 400, "is not valid JSON"),
    ("not an object", "POST", "/v2/models/identity/infer", b"[1, 2]", {}, 400, "must be a JSON object"),
    ("header past the body", "POST", "/v2/models/identity/infer", b"{}",
     {"Inference-Header-Content-Length": "100"}, 400,
     "Inference-Header-Content-Length is 100 but the request body holds 2 bytes"),
    ("binary size past the end", "POST", "/v2/models/identity/infer", _BINARY_16 + b"\0" * 8,
     {"Inference-Header-Content-Length": str(len(_BINARY_16))}, 400,
     "binary_data_size 16 runs past the end of the request body (8 binary bytes left)"),
    ("binary bytes left over", "POST", "/v2/models/identity/infer", _BINARY_16 + b"\0" * 20,
     {"Inference-Header-Content-Length": str(len(_BINARY_16))}, 400,
     "4 bytes of binary data follow the inputs that announce 16 (binary_data_size)"),
    ("bad JSON data", "POST", "/v2/models/identity/infer", _infer_body(data=("a", "b", "c", "d")), {}, 400,
     "unable to parse 'data' of input 'INPUT0' for model 'identity' as FP32"),
    ("bad gzip", "POST", "/v2/models/identity/infer", b"not gzip", {"Content-Encoding": "gzip"}, 400,
     "could not read the request body: Can not decode content-encoding: gzip"),
    ("unknown endpoint", "GET", "/v2/nothing/here", b"", {}, 404, "unknown endpoint '/v2/nothing/here'"),
    ("wrong method", "GET", "/v2/models/identity/infer", b"", {}, 405,
     "method GET is not allowed for '/v2/models/identity/infer'"),
    ("stats of an unknown model", "GET", "/v2/models/nope/stats", b"", {}, 400,
     "requested model 'nope' is not available"),
    ("trace", "GET", "/v2/trace/setting", b"", {}, 501, "not supported by this server (no 'trace' extension)"),
    ("logging", "POST", "/v2/logging", b"{}", {}, 501, "not supported by this server (no 'logging' extension)"),
    ("cuda register", "POST", "/v2/cudasharedmemory/region/r/register", b"{}", {}, 501,
     "CUDA shared memory is not supported"),
    ("shm status unknown", "GET", "/v2/systemsharedmemory/region/nope/status", b"", {}, 404,
     "Unable to find system shared memory region: 'nope'"),
    ("shm register bad body", "POST", "/v2/systemsharedmemory/region/r/register", b'{"key": 5}', {}, 400,
     "needs 'key' (string)"),
    ("repository index bad body", "POST", "/v2/repository/index", b'{"ready": "yes"}', {}, 400,
     "'ready' must be a boolean"),
    ("load without explicit mode", "POST", "/v2/repository/models/identity/load", b"", {}, 503,
     "explicit model load / unload is not allowed if polling is enabled"),
]


@pytest.mark.parametrize("case", ERRORS, ids=[c[0] for c in ERRORS])
def test_error_table(server, case):
    _, method, path, body, headers, status, message = case
    got, parsed, _ = raw(server, method, path, body, headers)
    assert got == status, parsed
    assert isinstance(parsed, dict) and set(parsed) == {"error"}, parsed
    assert message in parsed["error"], parsed
    status, parsed, _ = raw(server, "POST", "/v2/models/identity/infer", _infer_body())  # still serving
    assert status == 200 and parsed["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]


def test_same_message_as_grpc(client, triton_client):
    x = np.ones((1, 4), np.float64)
    messages = []
    for c, mod in ((client, httpclient), (triton_client, grpcclient)):
        inp = mod.InferInput("INPUT0", [1, 4], "FP64")
        inp.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException) as e:
            c.infer("identity", [inp], request_id="same")
        messages.append(e.value.message())
    assert messages[0] == messages[1] == ("[request id: same] inference input 'INPUT0' data-type is 'FP64', "
                                          "but model 'identity' expects 'FP32'")


def test_grpc_stream_errors_carry_the_prefix(triton_client):
    import queue
    got = queue.Queue()
    triton_client.start_stream(callback=lambda result, error: got.put(error))
    inp = grpcclient.InferInput("INPUT0", [1, 4], "FP64")
    inp.set_data_from_numpy(np.ones((1, 4), np.float64))
    triton_client.async_stream_infer("identity", [inp], request_id="s-1")
    error = got.get(timeout=30)
    triton_client.stop_stream()
    assert error is not None and error.message().startswith("[request id: s-1] inference input 'INPUT0'")


def test_gzip_request_body(server):
    body = gzip.compress(_infer_body())
    status, parsed, _ = raw(server, "POST", "/v2/models/identity/infer", body, {"Content-Encoding": "gzip"})
    assert status == 200 and parsed["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]


# ---- repository, restrictions and endpoints turned off ---------------------------------------

def test_repository_over_http(test_repo, tmp_path):
    repo = subset_repo(test_repo, tmp_path / "repo", "identity", "add_sub")
    with start_server(repo, "--model-control-mode", "explicit") as s:
        c = httpclient.InferenceServerClient(s.http_url)
        assert {m["name"] for m in c.get_model_repository_index()} == {"identity", "add_sub"}
        c.load_model("identity")
        assert c.is_model_ready("identity")
        ready = c.get_model_repository_index()
        assert [m["name"] for m in ready if m.get("state") == "READY"] == ["identity"]
        # a config override (JSON) and model files (base64 in the request)
        source = (repo / "add_sub" / "1" / "model.py").read_bytes()
        config = json.dumps({"name": "uploaded", "backend": "python", "max_batch_size": 0,
                             "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]},
                                       {"name": "INPUT1", "data_type": "TYPE_FP32", "dims": [4]}],
                             "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]},
                                        {"name": "OUTPUT1", "data_type": "TYPE_FP32", "dims": [4]}]})
        c.load_model("uploaded", config=config, files={"file:1/model.py": source})
        x = np.ones(4, np.float32)
        out = c.infer("uploaded", [_input("INPUT0", x), _input("INPUT1", x)]).as_numpy("OUTPUT0")
        np.testing.assert_array_equal(out, x + x)
        c.unload_model("identity")
        assert not c.is_model_ready("identity")
        with pytest.raises(InferenceServerException, match="Request for unknown model"):
            c.infer("identity", [_input("INPUT0", np.ones((1, 4), np.float32))])


def test_restricted_http_api(test_repo, tmp_path):
    repo = subset_repo(test_repo, tmp_path / "repo", "identity")
    with start_server(repo, "--http-restricted-api", "inference,model-config:infer-key=secret") as s:
        status, parsed, _ = raw(s, "POST", "/v2/models/identity/infer", _infer_body())
        assert status == 403 and parsed == {"error": "This API is restricted, expecting header 'infer-key'"}
        assert raw(s, "GET", "/v2/models/identity/config")[0] == 403
        assert raw(s, "POST", "/v2/models/identity/infer", _infer_body(), {"infer-key": "secret"})[0] == 200
        assert raw(s, "GET", "/v2/health/ready")[0] == 200  # not restricted
        # the gRPC endpoint is not restricted by the HTTP flag
        assert grpcclient.InferenceServerClient(s.url).get_model_config("identity").config.name == "identity"


@pytest.mark.parametrize("flag, gone", [("--allow-http", "HTTPService"), ("--allow-metrics", "Metrics Service"),
                                        ("--allow-grpc", "GRPCInferenceService")])
def test_each_endpoint_can_be_turned_off(test_repo, tmp_path, flag, gone):
    repo = subset_repo(test_repo, tmp_path / "repo", "identity")
    with start_server(repo, flag, "false") as s:
        assert f"Started {gone}" not in s.log
        others = {"HTTPService", "Metrics Service", "GRPCInferenceService"} - {gone}
        assert all(f"Started {o}" in s.log for o in others)
        if gone != "HTTPService":
            meta = httpclient.InferenceServerClient(s.http_url).get_server_metadata()
            assert "binary_tensor_data" in meta["extensions"]
        else:
            meta = grpcclient.InferenceServerClient(s.url).get_server_metadata()
            assert "binary_tensor_data" not in meta.extensions  # named only while HTTP serves it
