"""Models without config.pbtxt, as Triton fills them (server docs "Auto-Generated Model
Configuration", core AutoCompleteBackendFields): the backend from the model file of the first
version folder (model.onnx -> onnxruntime, model.py -> python), the name from the folder, the rest
from the backend (the ONNX graph's tensors and default max_batch_size 4 with the dynamic batcher;
model.py's auto_complete_config); --disable-auto-complete-config turns the backend part off and
makes config.pbtxt required. Real servers; tests/models/noconfig_py and an ONNX graph built here."""

import json
import os

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from proto import model_config_pb2 as mc

from backend import config as config_util
from tests.backend.rpc_helpers import infer_input
from tests.conftest import subset_repo
from tests.serverproc import start_server


def _repo(test_repo, dest, *names):
    import build_onnx
    repo = subset_repo(test_repo, dest, "noconfig_py", *names)
    os.makedirs(repo / "noconfig_onnx" / "1")
    build_onnx.add_sub(str(repo / "noconfig_onnx" / "1" / "model.onnx"))
    return repo


@pytest.fixture(scope="module")
def auto(test_repo, tmp_path_factory):
    with start_server(_repo(test_repo, tmp_path_factory.mktemp("noconfig"))) as s:
        yield grpcclient.InferenceServerClient(s.url)


def test_python_model_without_config_is_completed_by_auto_complete_config(auto):
    cfg = auto.get_model_config("noconfig_py").config
    assert (cfg.name, cfg.backend, cfg.default_model_filename) == ("noconfig_py", "python", "model.py")
    assert cfg.max_batch_size == 8 and cfg.HasField("dynamic_batching")
    assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in cfg.input] == [("INPUT0", "TYPE_FP32", [4])]
    assert [t.name for t in cfg.output] == ["OUTPUT0"]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(auto.infer("noconfig_py", [infer_input("INPUT0", x)]).as_numpy("OUTPUT0"), 2 * x)


def test_onnx_model_without_config_is_completed_from_the_graph(auto):
    cfg = auto.get_model_config("noconfig_onnx").config
    assert (cfg.backend, cfg.platform, cfg.default_model_filename) == ("onnxruntime", "onnxruntime_onnx", "model.onnx")
    # every tensor of the graph leads with a dynamic dimension: Triton's default batching
    assert cfg.max_batch_size == 4 and list(cfg.dynamic_batching.preferred_batch_size) == [4]
    assert [(t.name, list(t.dims)) for t in cfg.input] == [("INPUT0", [4]), ("INPUT1", [4])]
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("OUTPUT0", [4]), ("OUTPUT1", [4])]
    a, b = np.ones((3, 4), np.float32), np.full((3, 4), 2, np.float32)
    result = auto.infer("noconfig_onnx", [infer_input("INPUT0", a), infer_input("INPUT1", b)])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_disable_auto_complete_config(test_repo, tmp_path):
    repo = _repo(test_repo, tmp_path / "repo", "introspect", "add_onnx")
    os.makedirs(repo / "io_less_onnx" / "1")
    os.link(repo / "add_onnx" / "1" / "model.onnx", repo / "io_less_onnx" / "1" / "model.onnx")
    (repo / "io_less_onnx" / "config.pbtxt").write_text('backend: "onnxruntime"\n')
    with start_server(repo, "--disable-auto-complete-config") as s:
        client = grpcclient.InferenceServerClient(s.url)
        index = {m.name: m for m in client.get_model_repository_index().models}
        for name in ("noconfig_py", "noconfig_onnx"):
            assert index[name].state == "UNAVAILABLE"
            assert f"failed to open text file for read {os.path.realpath(repo / name / 'config.pbtxt')}" \
                in index[name].reason
        assert "configuration expects 0 inputs, model provides 2" in index["io_less_onnx"].reason
        # introspect's tensors come from its auto_complete_config, which is not called now
        assert client.is_model_ready("introspect")
        assert list(client.get_model_metadata("introspect").inputs) == []
        # a complete config.pbtxt is unaffected
        a = np.ones((1, 4), np.float32)
        out = client.infer("add_onnx", [infer_input("INPUT0", a), infer_input("INPUT1", a)]).as_numpy("OUTPUT0")
        np.testing.assert_array_equal(out, a + a)


@pytest.mark.parametrize("files, default, expected", [
    (["model.py"], "", ("python", "model.py")),
    (["model.onnx"], "", ("onnxruntime", "model.onnx")),
    (["model.py", "model.onnx"], "", ("onnxruntime", "model.onnx")),  # Triton checks ONNX first
    (["model.om"], "", ("ais_bench", "model.om")),  # this server's own backend
    (["weights.bin"], "", ("", "")),
    (["model.onnx"], "model.py", ("python", "model.py")),  # default_model_filename decides
])
def test_backend_from_the_model_file(tmp_path, files, default, expected):
    for version in ("2", "1"):  # the first version folder by name is looked at
        os.makedirs(tmp_path / version)
    for f in files:
        (tmp_path / "1" / f).write_bytes(b"")
    config = mc.ModelConfig(default_model_filename=default)
    config_util.fill_backend(config, str(tmp_path))
    assert (config.backend, config.default_model_filename) == expected


def test_a_configured_backend_is_kept(tmp_path):
    os.makedirs(tmp_path / "1")
    (tmp_path / "1" / "model.py").write_bytes(b"")
    config = mc.ModelConfig(platform="onnxruntime_onnx")
    config_util.fill_backend(config, str(tmp_path))
    assert (config.backend, config.default_model_filename) == ("", "")
    assert json.loads(config_util.to_json(config))["platform"] == "onnxruntime_onnx"

