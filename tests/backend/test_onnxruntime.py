"""The ONNX Runtime backend: add_onnx over real RPCs (dynamic batch dimension, `backend:` vs
`platform:`, inputs completed from the graph), and in process: thread counts never
oversubscribe the cores, execution providers for KIND_GPU without a GPU."""

import json
import os

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import text_format

from backend import config as config_util
from backend.backends import onnxruntime_backend
from proto import model_config_pb2 as mc
from tests.backend.rpc_helpers import expect_error, infer_input
from tests.serverproc import start_server


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_add_onnx_any_batch(triton_client, batch):
    a = np.random.default_rng(batch).random((batch, 4), dtype=np.float32)
    b = np.full((batch, 4), 0.5, np.float32)
    result = triton_client.infer("add_onnx", [infer_input("INPUT0", a), infer_input("INPUT1", b)])
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b)


def test_backend_field_and_config_completed_from_the_graph(test_repo):
    """`backend: "onnxruntime"` with no tensors declared: inputs/outputs come from the ONNX graph."""
    with start_server(test_repo, "--model-control-mode", "explicit") as s:
        client = grpcclient.InferenceServerClient(s.url)
        client.load_model("add_onnx", config=json.dumps({"backend": "onnxruntime", "max_batch_size": 4}))
        cfg = client.get_model_config("add_onnx").config
        assert (cfg.platform, cfg.backend) == ("onnxruntime_onnx", "onnxruntime")
        meta = client.get_model_metadata("add_onnx")
        assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
            ("INPUT0", "FP32", [-1, 4]), ("INPUT1", "FP32", [-1, 4])]
        a = np.ones((2, 4), np.float32)
        out = client.infer("add_onnx", [infer_input("INPUT0", a), infer_input("INPUT1", a)]).as_numpy("OUTPUT0")
        np.testing.assert_array_equal(out, a + a)
        # A config that disagrees with the graph is refused at load.
        bad = {"platform": "onnxruntime_onnx", "max_batch_size": 4,
               "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [4]}]}
        with expect_error("INVALID_ARGUMENT", "unexpected input 'X' in model configuration of 'add_onnx'"):
            client.load_model("add_onnx", config=json.dumps(bad))


def _load(test_repo, extra: str):
    text = open(os.path.join(test_repo, "add_onnx", "config.pbtxt")).read() + extra
    config = config_util.normalize(text_format.Parse(text, mc.ModelConfig()), "add_onnx")
    model_dir = os.path.join(test_repo, "add_onnx")
    return onnxruntime_backend.load(config, 1, model_dir, os.path.join(model_dir, "1"))


def _intra(model):
    return [i.session.get_session_options().intra_op_num_threads for i in model.instances]


def test_default_threads_never_oversubscribe(test_repo):
    cores = os.cpu_count() or 1
    for count in (1, 2, 3):
        model = _load(test_repo, f"instance_group [ {{ count: {count} kind: KIND_CPU }} ]")
        threads = _intra(model)
        assert len(threads) == count
        assert sum(threads) <= max(cores, count)  # at least one thread per instance
        assert all(t >= 1 for t in threads)


def test_threads_from_config_parameters(test_repo):
    model = _load(test_repo, 'parameters { key: "intra_op_thread_count" value: { string_value: "1" } }\n'
                             'parameters { key: "inter_op_thread_count" value: { string_value: "1" } }')
    assert _intra(model) == [1]
    assert model.instances[0].session.get_session_options().inter_op_num_threads == 1


def test_onnxruntime_session_entries_from_config_parameters(test_repo):
    model = _load(test_repo, 'parameters { key: "session.intra_op.allow_spinning" value: { string_value: "0" } }')
    entries = model.instances[0].session.get_session_options().get_session_config_entry
    assert entries("session.intra_op.allow_spinning") == "0"


def test_kind_gpu_uses_the_gpu_providers_present_else_cpu():
    import onnxruntime as ort
    available = set(ort.get_available_providers())
    providers = onnxruntime_backend._providers(mc.ModelInstanceGroup.KIND_GPU, 1)
    assert providers[-1] == "CPUExecutionProvider"
    assert {name for name, _ in providers[:-1]} <= available & {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
    assert all(options == {"device_id": 1} for _, options in providers[:-1])
    assert onnxruntime_backend._providers(mc.ModelInstanceGroup.KIND_CPU) == ["CPUExecutionProvider"]
