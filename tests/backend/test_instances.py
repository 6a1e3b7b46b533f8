"""Instances, devices and backends, over real RPCs: every instance is created, executed and
finalized on one thread of its own; `instance_group` kinds and device ids (`gpus`) reach each
backend, which applies its own rules (onnxruntime: KIND_GPU without a GPU build runs on the CPU
and says so; KIND_AUTO resolves to CPU here); backends are a registry, imported lazily. In
process: the batching helper every tensor backend shares."""

import ast
import json
import queue
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from backend import batching, registry
from backend.errors import InvalidArgument
from backend.types import InferRequest
from tests.backend.rpc_helpers import infer_input
from tests.conftest import subset_repo
from tests.serverproc import ROOT, start_server

THREADS_MODEL = textwrap.dedent('''
    import json, os, threading, time
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def initialize(self, args):
            self.args = args
            self.init_thread = threading.get_ident()

        def execute(self, requests):
            time.sleep(0.2)  # long enough for concurrent requests to spread over the instances
            seen = json.dumps({"name": self.args["model_instance_name"],
                               "kind": self.args["model_instance_kind"],
                               "device": self.args["model_instance_device_id"],
                               "init_thread": self.init_thread,
                               "exec_thread": threading.get_ident()})
            return [pb_utils.InferenceResponse([pb_utils.Tensor("SEEN", np.array([seen.encode()], dtype=np.object_))])
                    for _ in requests]

        def finalize(self):
            with open(os.path.join(self.args["model_repository"], "finalized.jsonl"), "a") as f:
                f.write(json.dumps({"name": self.args["model_instance_name"], "init_thread": self.init_thread,
                                    "thread": threading.get_ident()}) + "\\n")
''')
THREADS_CONFIG = '''
name: "threads"
backend: "python"
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "SEEN" data_type: TYPE_STRING dims: [ 1 ] } ]
instance_group [ { count: 2 kind: KIND_GPU gpus: [ 0, 1 ] }, { count: 1 kind: KIND_CPU } ]
'''


def test_each_instance_is_created_run_and_finalized_on_its_own_thread(tmp_path):
    model = tmp_path / "threads"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(THREADS_MODEL)
    (model / "config.pbtxt").write_text(THREADS_CONFIG)
    with start_server(tmp_path, "--model-control-mode", "explicit", "--load-model", "threads") as s:
        client = grpcclient.InferenceServerClient(s.url)
        seen, done = {}, queue.Queue()
        for _ in range(3):  # rounds of 10 concurrent requests until all 5 instances answered
            for i in range(10):
                client.async_infer("threads", [infer_input("INPUT0", np.array([i], np.int32))],
                                   callback=lambda result, error: done.put((result, error)))
            for _ in range(10):
                result, error = done.get(timeout=60)
                assert error is None, error
                info = json.loads(result.as_numpy("SEEN")[0])
                seen[info["name"]] = info
            if len(seen) == 5:
                break
        # count 2 on each of gpus 0 and 1, then the CPU group: Triton's args per instance.
        assert {n: (i["kind"], i["device"]) for n, i in seen.items()} == {
            "threads_0_0": ("GPU", "0"), "threads_0_1": ("GPU", "0"), "threads_0_2": ("GPU", "1"),
            "threads_0_3": ("GPU", "1"), "threads_1_0": ("CPU", "0")}
        for info in seen.values():
            assert info["exec_thread"] == info["init_thread"], info
        assert len({i["init_thread"] for i in seen.values()}) == 5  # one thread each
        client.unload_model("threads")
        client.close()
    finalized = [json.loads(line) for line in (model / "finalized.jsonl").read_text().splitlines()]
    assert sorted(f["name"] for f in finalized) == sorted(seen)
    for f in finalized:
        assert f["thread"] == f["init_thread"] == seen[f["name"]]["init_thread"], f


def _gpu_build() -> bool:
    import onnxruntime as ort
    return bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()))


def test_onnxruntime_device_kinds_and_ids(test_repo, tmp_path):
    """KIND_GPU with gpus [0, 1]: an instance per GPU; without onnxruntime-gpu (here) each runs
    on the CPU provider and the log says so. KIND_AUTO: a GPU only where the build has one."""
    repo = subset_repo(test_repo, tmp_path / "repo", "add_onnx")
    with start_server(repo, "--model-control-mode", "explicit", "--load-model", "add_onnx") as s:
        client = grpcclient.InferenceServerClient(s.url)
        base = client.get_model_config("add_onnx", as_json=True)["config"]
        gpu = {**base, "instance_group": [{"kind": "KIND_GPU", "count": 1, "gpus": [0, 1]}]}
        client.load_model("add_onnx", config=json.dumps(gpu))
        group = client.get_model_config("add_onnx", as_json=True)["config"]["instance_group"][0]
        assert (group["kind"], group["gpus"]) == ("KIND_GPU", [0, 1])
        a = np.arange(8, dtype=np.float32).reshape(2, 4)
        out = client.infer("add_onnx", [infer_input("INPUT0", a), infer_input("INPUT1", a)]).as_numpy("OUTPUT0")
        np.testing.assert_array_equal(out, a + a)
        if not _gpu_build():
            for name in ("add_onnx_0_0", "add_onnx_0_1"):
                assert f"instance '{name}': KIND_GPU but no GPU execution provider" in s.log, s.log
                assert f"model 'add_onnx' instance '{name}': CPUExecutionProvider" in s.log, s.log
            assert "make install GPU=1" in s.log
        auto = {**base, "instance_group": [{"kind": "KIND_AUTO", "count": 1}]}
        client.load_model("add_onnx", config=json.dumps(auto))
        kind = client.get_model_config("add_onnx", as_json=True)["config"]["instance_group"][0]["kind"]
        assert kind == ("KIND_GPU" if _gpu_build() else "KIND_CPU")
        client.close()


def test_backends_are_imported_when_a_model_needs_them():
    """Starting the server imports no runtime backend (the core's python and ensemble aside): a
    missing runtime fails only its models."""
    code = ("import sys, backend.server; "
            "print(sorted(m for m in sys.modules if m.startswith('backend.backends.') or m in ('onnxruntime', 'ais_bench')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(out.stdout)
    assert not set(loaded) - {"backend.backends.python_backend", "backend.backends.ensemble"}, loaded
    assert registry.backend_for_platform("onnxruntime_onnx") == "onnxruntime"
    assert registry.spec("ais_bench").default_filename == "model.om"
    with pytest.raises(InvalidArgument, match=r"unable to find backend 'tensorflow' for model 'm' \(this server has: "
                                              r"ais_bench, ensemble, onnxruntime, python\)"):
        registry.spec("tensorflow", "m")


def _requests(*sizes):
    return [InferRequest("m", id=str(i), inputs={"X": np.full((n, 2), i, np.float32)}) for i, n in enumerate(sizes)]


def test_batching_helper_concatenates_and_splits_by_rows():
    reqs = _requests(1, 3, 2)
    (feed,) = batching.feeds(reqs, batched=True)
    np.testing.assert_array_equal(feed["X"], np.repeat([0, 1, 2], [1, 3, 2])[:, None] * np.ones((1, 2)))
    out = batching.responses(reqs, True, "m", [{"Y": feed["X"] * 10}])
    for r, resp in zip(reqs, out):
        assert resp.id == r.id
        np.testing.assert_array_equal(resp.outputs["Y"], r.inputs["X"] * 10)
    # Without a batch dimension every request is its own feed.
    assert [f["X"].shape for f in batching.feeds(reqs, batched=False)] == [(1, 2), (3, 2), (2, 2)]
    # A fixed-batch runtime: slices of its batch, contiguous, and joined back in order.
    x = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]  # not contiguous
    parts = batching.slices({"X": x}, 1)
    assert [p["X"].shape for p in parts] == [(1, 2)] * 3 and all(p["X"].flags.c_contiguous for p in parts)
    np.testing.assert_array_equal(batching.concatenate(parts)["X"], x)
