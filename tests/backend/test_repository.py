"""The model repository over real RPCs: explicit load/unload (config override, files,
unload_dependents, requests in flight), version policy, failed models, --model-config-name."""

import json
import re
import queue
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.backend.rpc_helpers import expect_error, infer_input
from tests.conftest import subset_repo
from tests.serverproc import start_server


@pytest.fixture(scope="module")
def explicit_server(test_repo):
    with start_server(test_repo, "--model-control-mode", "explicit", "--load-model", "identity",
                      "--load-model", "alt_config", "--model-config-name", "batched") as s:
        yield s


@pytest.fixture(scope="module")
def explicit(explicit_server):
    client = grpcclient.InferenceServerClient(explicit_server.url)
    yield client
    client.close()


def _index(client):
    return {(m.name, m.version): (m.state, m.reason) for m in client.get_model_repository_index().models}


def _state(client, name):
    rows = [v for (n, _), v in _index(client).items() if n == name]
    assert len(rows) == 1, rows
    return rows[0]


def test_only_the_named_models_load_in_explicit_mode(explicit):
    index = _index(explicit)
    assert index[("identity", "1")] == ("READY", "")
    assert index[("alt_config", "1")] == ("READY", "")
    assert _state(explicit, "add_sub") == ("UNAVAILABLE", "unloaded")
    # Never loaded: unknown to the server, as in Triton (after an unload it is "not ready").
    with expect_error("INVALID_ARGUMENT", "Request for unknown model: 'add_sub' is not found"):
        explicit.is_model_ready("add_sub")
    assert explicit.is_server_ready()  # nothing failed
    # Ready-only index.
    ready = {m.name for m in explicit.get_model_repository_index().models if m.state == "READY"}
    assert {"identity", "alt_config"} <= ready


def test_load_infer_unload(explicit, explicit_server):
    explicit.load_model("add_sub")
    assert explicit.is_model_ready("add_sub")
    a = np.ones(4, np.float32)
    out = explicit.infer("add_sub", [infer_input("INPUT0", a), infer_input("INPUT1", a)]).as_numpy("OUTPUT0")
    np.testing.assert_array_equal(out, a + a)
    explicit.unload_model("add_sub")
    assert not explicit.is_model_ready("add_sub")
    assert _state(explicit, "add_sub") == ("UNAVAILABLE", "unloaded")
    with expect_error("NOT_FOUND", "Request for unknown model: 'add_sub' has no available versions"):
        explicit.infer("add_sub", [infer_input("INPUT0", a), infer_input("INPUT1", a)])
    assert "add_sub: finalize" in explicit_server.log  # finalize() ran at unload


def test_failed_load_is_reported_and_others_keep_serving(explicit):
    with expect_error("UNAVAILABLE", "fail_load", "fail_load refuses to initialize"):
        explicit.load_model("fail_load")
    state, reason = _state(explicit, "fail_load")
    assert state == "UNAVAILABLE" and "fail_load refuses to initialize" in reason
    assert not explicit.is_server_ready()
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(explicit.infer("identity", [infer_input("INPUT0", x)]).as_numpy("OUTPUT0"), x)
    explicit.unload_model("fail_load")
    assert explicit.is_server_ready()


def test_load_unknown_model_folder(explicit):
    with expect_error("INVALID_ARGUMENT", "failed to load 'no_such_model'"):
        explicit.load_model("no_such_model")
    with expect_error("INVALID_ARGUMENT", "invalid model name '../identity'"):
        explicit.load_model("../identity")


def test_config_override_and_reload(explicit):
    config = {"backend": "python", "max_batch_size": 2,
              "input": [{"name": "INPUT0", "data_type": "TYPE_INT32", "dims": [2]}],
              "output": [{"name": "OUTPUT0", "data_type": "TYPE_INT32", "dims": [2]}]}
    explicit.load_model("alt_config", config=json.dumps(config))
    try:
        assert explicit.get_model_config("alt_config").config.max_batch_size == 2
        with expect_error("INVALID_ARGUMENT", "inference request batch-size must be <= 2 for 'alt_config'"):
            explicit.infer("alt_config", [infer_input("INPUT0", np.ones((3, 2), np.int32))])
        with expect_error("INVALID_ARGUMENT", "failed to parse model config override"):
            explicit.load_model("alt_config", config="{not json")
        assert explicit.get_model_config("alt_config").config.max_batch_size == 2  # still serving
    finally:
        explicit.load_model("alt_config")  # back to the file (configs/batched.pbtxt here)
    assert explicit.get_model_config("alt_config").config.max_batch_size == 4


def test_model_config_name_picks_the_alternative_file(explicit):
    cfg = explicit.get_model_config("alt_config").config
    assert cfg.max_batch_size == 4
    assert [(g.name, g.count) for g in cfg.instance_group] == [("alt_config_0", 2)]
    assert cfg.HasField("dynamic_batching")
    x = np.arange(8, dtype=np.int32).reshape(4, 2)
    np.testing.assert_array_equal(explicit.infer("alt_config", [infer_input("INPUT0", x)]).as_numpy("OUTPUT0"), x)
    # Models without configs/batched.pbtxt keep their config.pbtxt.
    assert explicit.get_model_config("identity").config.max_batch_size == 8


MODEL_PY = b'''
import triton_python_backend_utils as pb_utils
import numpy as np


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", np.array([42], np.int32))]) for _ in requests]
'''


def test_load_with_files_and_default_model_filename(explicit):
    config = {"backend": "python", "default_model_filename": "answer.py",
              "input": [{"name": "IN", "data_type": "TYPE_INT32", "dims": [1]}],
              "output": [{"name": "OUT", "data_type": "TYPE_INT32", "dims": [1]}]}
    explicit.load_model("uploaded", config=json.dumps(config), files={"file:1/answer.py": MODEL_PY})
    try:
        out = explicit.infer("uploaded", [infer_input("IN", np.array([0], np.int32))]).as_numpy("OUT")
        assert out[0] == 42
    finally:
        explicit.unload_model("uploaded")
    with expect_error("INVALID_ARGUMENT", "leaves the model folder"):
        explicit.load_model("uploaded", config=json.dumps(config), files={"file:../escape.py": MODEL_PY})


def test_loading_an_ensemble_loads_its_steps_and_unload_dependents(explicit):
    explicit.load_model("ensemble_add")
    assert explicit.is_model_ready("ensemble_add") and explicit.is_model_ready("add_onnx")
    # Without unload_dependents the ensemble stays loaded (its step is gone: it fails, naming it).
    explicit.unload_model("add_onnx")
    assert explicit.is_model_ready("ensemble_add")
    a = np.ones((1, 4), np.float32)
    with expect_error("NOT_FOUND", "in ensemble 'ensemble_add', step 0 (model 'add_onnx'): "
                                   "Request for unknown model: 'add_onnx' has no available versions"):
        explicit.infer("ensemble_add", [infer_input("INPUT0", a), infer_input("INPUT1", a)])
    explicit.load_model("add_onnx")
    explicit.unload_model("add_onnx", unload_dependents=True)
    assert not explicit.is_model_ready("ensemble_add")
    assert _state(explicit, "ensemble_add") == ("UNAVAILABLE", "unloaded")
    assert explicit.is_model_ready("identity")  # a step of it, but not unloaded


def test_requests_in_flight_complete_across_unload(explicit):
    explicit.load_model("slow")
    done = queue.Queue()
    explicit.async_infer("slow", [infer_input("INPUT0", np.array([3], np.int32))], parameters={"sleep_ms": 800},
                         callback=lambda result, error: done.put((result, error)))
    time.sleep(0.3)
    explicit.unload_model("slow")
    result, error = done.get(timeout=30)
    assert error is None, error.message()
    assert result.as_numpy("OUTPUT0")[0] == 3
    assert not explicit.is_model_ready("slow")


def test_version_policy_specific(explicit):
    explicit.load_model("versioned")
    try:
        index = _index(explicit)
        assert index[("versioned", "1")][0] == "READY" and index[("versioned", "3")][0] == "READY"
        assert ("versioned", "2") not in index
        assert explicit.is_model_ready("versioned", "1") and not explicit.is_model_ready("versioned", "2")
        # An override can change the policy: all versions, or the latest two.
        for policy, versions in (({"all": {}}, ["1", "2", "3"]), ({"latest": {"num_versions": 2}}, ["2", "3"])):
            config = explicit.get_model_config("versioned", as_json=True)["config"]
            config["version_policy"] = policy
            explicit.load_model("versioned", config=json.dumps(config))
            assert list(explicit.get_model_metadata("versioned").versions) == versions
    finally:
        explicit.unload_model("versioned")


def test_load_unload_refused_without_explicit_mode(triton_client):
    for call in (triton_client.load_model, triton_client.unload_model):
        with expect_error("UNAVAILABLE", "explicit model load / unload is not allowed if polling is enabled"):
            call("identity")


def test_failed_model_does_not_stop_the_others(triton_client):
    rows = {m.name: m for m in triton_client.get_model_repository_index().models}
    assert rows["fail_load"].state == "UNAVAILABLE" and rows["fail_load"].reason
    assert all(m.state == "READY" for n, m in rows.items() if n != "fail_load")


def test_only_numeric_version_folders_count(explicit):
    # versioned/ also holds "04" and "draft": not versions (Triton ignores them).
    explicit.load_model("versioned", config=json.dumps({
        "backend": "python", "version_policy": {"latest": {"num_versions": 5}},
        "input": [{"name": "INPUT0", "data_type": "TYPE_INT32", "dims": [1]}],
        "output": [{"name": "VERSION", "data_type": "TYPE_INT32", "dims": [1]}]}))
    try:
        assert list(explicit.get_model_metadata("versioned").versions) == ["1", "2", "3"]
    finally:
        explicit.unload_model("versioned")


BROKEN = {
    "bad_syntax": ('name: "bad_syntax"\nbackend: "python"\nmax_batch_size: lots\n', "failed to parse"),
    "wrong_name": ('name: "another_name"\nbackend: "python"\n', "another_name"),
    "no_backend": ('name: "no_backend"\n', "no_backend"),
    "unknown_backend": ('backend: "tensorflow"\n', "unable to find backend 'tensorflow'"),
    "no_model_file": ('backend: "python"\n', "unable to find"),
    "no_versions": ('backend: "python"\n', "at least one version must be available"),
}


def test_broken_configurations_are_unavailable_with_their_reason(tmp_path, test_repo):
    repo = subset_repo(test_repo, tmp_path / "repo", "identity")
    for name, (text, _) in BROKEN.items():
        (repo / name).mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(text)
        if name != "no_versions":
            (repo / name / "1").mkdir()
    with start_server(repo) as s:
        client = grpcclient.InferenceServerClient(s.url)
        index = _index(client)
        for name, (_, fragment) in BROKEN.items():
            state, reason = index[(name, "")]
            assert state == "UNAVAILABLE" and fragment in reason, (name, reason)
            assert re.search(rf"model '{name}' failed to load: .*", s.log), name
        x = np.ones((1, 2), np.float32)
        np.testing.assert_array_equal(client.infer("identity", [infer_input("INPUT0", x)]).as_numpy("OUTPUT0"), x)


def test_concurrent_loads_of_one_model_leave_nothing_behind(test_repo):
    """Loads (and an unload) of one model at once run one after the other: each reload retires
    the instances it replaces (finalize), none is orphaned and the model ends up ready."""
    from concurrent.futures import ThreadPoolExecutor
    with start_server(test_repo, "--model-control-mode", "explicit") as server:
        client = grpcclient.InferenceServerClient(server.url)
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda _: client.load_model("add_sub"), range(6)))
        assert client.is_model_ready("add_sub")
        client.unload_model("add_sub")
        deadline = time.time() + 10
        loaded = lambda: server.log.count("successfully loaded 'add_sub'")  # noqa: E731
        while server.log.count("add_sub: finalize") < loaded() and time.time() < deadline:
            time.sleep(0.1)
        client.close()
        assert loaded() == 6
        assert server.log.count("add_sub: finalize") == 6
