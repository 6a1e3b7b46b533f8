"""The ais_bench (Ascend OM) backend against a real server process. There is no NPU, CANN or
ais_bench here: the server imports the TEST DOUBLE tests/ais_bench_double (put on its PYTHONPATH),
which runs an OM written by the double's `atc` with ONNX Runtime and refuses what the runtime
refuses (batch other than 1, dims that are no compiled gear, use after release, calls from a
thread other than the session's creator). Its journal (one JSON line per session create, device
run and release, with thread ids and times) is what these tests read back.

Checked: gears refused before any device call with the nearest ones; batch N split into N calls;
device_ids x count instances running concurrently, one call at a time each; the missing-package
case; release on unload (free_resource, or finalize on older versions); statistics (compute_infer
is the device time) and the --log-verbose sumary() log; the double itself (in process)."""

import json
import os
import queue
import shutil
import subprocess
import threading
import time

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper

from tests.backend.rpc_helpers import expect_error, infer_input
from tests.serverproc import ROOT, start_server

DOUBLE = os.path.join(ROOT, "tests", "ais_bench_double")
ATC_SCRIPT = os.path.join(ROOT, "scripts", "atc_hrnet.sh")
GEARS = "8,8;8,16;16,8"  # tiny gears: this model pools 4x4, any size works in ONNX Runtime
DELAY_MS = 40  # the double's emulated device time per run


def pool_onnx(path):
    """input [N,3,H,W] -> output1 [N,3,H/4,W/4]: 4x4 average pooling (numpy oracle: block means)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("output1", TensorProto.FLOAT, ["N", 3, "h", "w"])
    node = helper.make_node("AveragePool", ["input"], ["output1"], kernel_shape=[4, 4], strides=[4, 4])
    model = helper.make_model(helper.make_graph([node], "pool", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def block_means(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 4, 4, w // 4, 4).mean(axis=(3, 5))


def double_env(**extra):
    """The server's environment: the double importable, its atc on PATH."""
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": DOUBLE + (os.pathsep + path if path else ""),
            "PATH": os.path.join(DOUBLE, "bin") + os.pathsep + os.environ["PATH"], **extra}


def run_atc(onnx_path, soc="Ascend310P3", gears=GEARS, env=None):
    return subprocess.run(["bash", ATC_SCRIPT, soc, gears], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ONNX": str(onnx_path), **(env or {})})


CONFIG = f'''
name: "om"
backend: "ais_bench"
max_batch_size: 0
input [ {{ name: "input" data_type: TYPE_FP32 dims: [ -1, 3, -1, -1 ] }} ]
output [ {{ name: "output1" data_type: TYPE_FP32 dims: [ -1, 3, -1, -1 ] }} ]
instance_group [ {{ count: 1 kind: KIND_MODEL }} ]
parameters {{ key: "device_ids" value: {{ string_value: "0" }} }}
parameters {{ key: "dynamic_dims" value: {{ string_value: "{GEARS}" }} }}
'''


@pytest.fixture(scope="module")
def om_repo(tmp_path_factory):
    """A repository with model `om` (the pooling ONNX through the double's atc) and `identity`."""
    repo = tmp_path_factory.mktemp("om_repo")
    version = repo / "om" / "1"
    version.mkdir(parents=True)
    pool_onnx(version / "model.onnx")
    done = run_atc(version / "model.onnx", env=double_env())
    assert done.returncode == 0, done.stderr
    (repo / "om" / "config.pbtxt").write_text(CONFIG)
    shutil.copytree(os.path.join(ROOT, "tests", "models", "identity"), repo / "identity")
    return repo


class Journal:
    def __init__(self, path):
        self.path = path
        self.mark()

    def mark(self):
        self.offset = os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def since(self, event=None, offset=None):
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            f.seek(self.offset if offset is None else offset)
            lines = [json.loads(line) for line in f]
        return [e for e in lines if event is None or e["event"] == event]

    def wait_for(self, event, count, timeout=30):
        end = time.monotonic() + timeout
        while len(self.since(event)) < count and time.monotonic() < end:
            time.sleep(0.05)
        return self.since(event)


@pytest.fixture(scope="module")
def om_server(om_repo, tmp_path_factory):
    journal = str(tmp_path_factory.mktemp("journal") / "journal.jsonl")
    env = double_env(AIS_BENCH_DOUBLE_JOURNAL=journal, AIS_BENCH_DOUBLE_DELAY_MS=str(DELAY_MS))
    with start_server(om_repo, "--model-control-mode", "explicit", "--load-model", "om", "--log-verbose", "1",
                      env=env) as s:
        s.journal = Journal(journal)
        yield s


@pytest.fixture
def client(om_server):
    c = grpcclient.InferenceServerClient(om_server.url)
    om_server.journal.mark()
    yield c
    c.close()


def _load(client, **parameters):
    cfg = client.get_model_config("om", as_json=True)["config"]
    for key, value in parameters.items():
        if key in ("instance_group", "default_model_filename"):
            cfg[key] = value
        else:
            cfg.setdefault("parameters", {})[key] = {"string_value": value}
    client.load_model("om", config=json.dumps(cfg))


def test_a_request_off_the_gears_is_refused_before_any_device_call(client, om_server):
    x = np.ones((1, 3, 12, 8), np.float32)
    with expect_error("INVALID_ARGUMENT", "model 'om'", "[1, 3, 12, 8]", "dims 12,8 are not one of the OM's 3 gears",
                      "nearest gears: 8,8; 16,8; 8,16"):
        client.infer("om", [infer_input("input", x)])
    assert om_server.journal.since("infer") == []  # the device never saw it
    x = np.random.default_rng(0).random((1, 3, 8, 16), dtype=np.float32)
    out = client.infer("om", [infer_input("input", x)]).as_numpy("output1")
    np.testing.assert_allclose(out, block_means(x), rtol=1e-6)
    (call,) = om_server.journal.since("infer")
    assert (call["mode"], call["shapes"]) == ("dymdims", [[1, 3, 8, 16]])
    assert client.is_server_live()


def test_a_batch_of_n_runs_as_n_device_calls_in_order(client, om_server):
    x = np.random.default_rng(1).random((3, 3, 16, 8), dtype=np.float32)
    x[1] += 10  # each image distinct: a mix-up of the order would show
    x[2] += 20
    out = client.infer("om", [infer_input("input", x)]).as_numpy("output1")
    np.testing.assert_allclose(out, block_means(x), rtol=1e-6)
    calls = om_server.journal.since("infer")
    assert [c["shapes"] for c in calls] == [[[1, 3, 16, 8]]] * 3
    assert len({c["session"] for c in calls}) == 1
    assert all(a["end_ns"] <= b["start_ns"] for a, b in zip(calls, calls[1:]))  # one after the other


def test_statistics_count_device_time_and_the_log_shows_sumary(client, om_server):
    before = client.get_inference_statistics("om", as_json=True)["model_stats"][0]
    x = np.zeros((2, 3, 8, 8), np.float32)
    for _ in range(3):
        client.infer("om", [infer_input("input", x)])
    after = client.get_inference_statistics("om", as_json=True)["model_stats"][0]
    calls = om_server.journal.since("infer")
    assert len(calls) == 6

    def grew(key, field="ns"):
        a, b = after["inference_stats"][key], before["inference_stats"][key]
        return int(a.get(field, 0)) - int(b.get(field, 0))
    assert grew("compute_infer", "count") == 3
    device_ns = sum(c["exec_ms"] for c in calls) * 1e6
    assert abs(grew("compute_infer") - device_ns) <= 6 * 1000  # the exec_time_list values, in ns
    assert grew("compute_infer") >= 6 * DELAY_MS * 1e6
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 3
    exec_ms = ", ".join(f"{c['exec_ms']:.3f}" for c in calls[-2:])
    assert f"model 'om' instance 'om_0_0' (NPU 0): 2 device runs, exec ms (sumary) {exec_ms}" in om_server.log


def test_device_instances_run_concurrently_one_call_each(client, om_server):
    _load(client, device_ids="0,1", instance_group=[{"count": 2, "kind": "KIND_MODEL"}])
    creates = om_server.journal.since("create")
    assert sorted(c["device"] for c in creates) == [0, 0, 1, 1]
    assert len({c["thread"] for c in creates}) == 4
    om_server.journal.mark()
    x = np.zeros((1, 3, 8, 8), np.float32)
    done = queue.Queue()
    for i in range(8):
        client.async_infer("om", [infer_input("input", x)], callback=lambda result, error: done.put(error))
    assert all(done.get(timeout=60) is None for _ in range(8))
    calls = om_server.journal.since("infer")
    assert len(calls) == 8
    threads = {c["session"]: c["thread"] for c in creates}
    for c in calls:
        assert threads[c["session"]] == c["thread"]  # each session called only where it was created
    for s in threads:
        mine = sorted((c["start_ns"], c["end_ns"]) for c in calls if c["session"] == s)
        assert all(a[1] <= b[0] for a, b in zip(mine, mine[1:])), mine  # one call at a time
    # Concurrency: at some instant several sessions ran at once (8 calls of 40 ms each).
    edges = sorted([(c["start_ns"], 1) for c in calls] + [(c["end_ns"], -1) for c in calls])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak >= 2, calls
    # Back to one instance on NPU 0: the four sessions are released, each on its own thread.
    om_server.journal.mark()
    _load(client, device_ids="0", instance_group=[{"count": 1, "kind": "KIND_MODEL"}])
    released = om_server.journal.wait_for("free_resource", 4)  # replaced versions retire in the background
    assert sorted((r["session"], r["thread"]) for r in released) == sorted(threads.items())


def test_unload_releases_the_sessions(client, om_server):
    creates = om_server.journal.since("create", offset=0)
    live = {creates[-1]["session"]: creates[-1]["thread"]}
    client.unload_model("om")
    released = om_server.journal.since("free_resource")
    assert [(r["session"], r["thread"]) for r in released] == list(live.items())
    assert "released its session on NPU 0 (free_resource" in om_server.log
    client.load_model("om")


@pytest.mark.parametrize("parameters, message", [
    ({"device_ids": "0,7"}, "cannot load"),  # the double's card has NPUs 0 and 1
    ({"device_ids": "a"}, "parameter device_ids 'a' must list distinct NPU ids"),
    ({"dynamic_dims": "8,8;8"}, "parameter dynamic_dims '8,8;8' is not ATC's --dynamic_dims form"),
    ({"dynamic_dims": "8,8,1"}, "parameter dynamic_dims has 3 values a gear, the OM's inputs have 2 dynamic dims"),
    ({"instance_group": [{"count": 1, "kind": "KIND_CPU"}]}, "use KIND_MODEL"),
    ({"default_model_filename": "other.om"}, "other.om' for model 'om' (convert the ONNX with ATC: make om"),
])
def test_bad_device_or_gear_configs_fail_the_load_with_a_reason(client, parameters, message):
    with expect_error("INVALID_ARGUMENT" if "7" not in str(parameters) else "UNAVAILABLE", message):
        _load(client, **parameters)
    assert client.is_model_ready("om")  # a failed reload keeps serving the loaded version


def test_a_gear_the_om_lacks_fails_that_request_with_the_runtime_error(client, om_server):
    """A config listing a gear the OM was not compiled with: the runtime refuses the call and the
    request fails (INTERNAL, naming model, instance, NPU and ais_bench's error); nothing else does."""
    _load(client, dynamic_dims=GEARS + ";16,16")
    with expect_error("INTERNAL", "model 'om' instance 'om_0_0' (NPU 0): ais_bench failed: RuntimeError",
                      "16,16 is not one of the model's 3 gears"):
        client.infer("om", [infer_input("input", np.zeros((1, 3, 16, 16), np.float32))])
    x = np.ones((1, 3, 8, 8), np.float32)
    np.testing.assert_array_equal(client.infer("om", [infer_input("input", x)]).as_numpy("output1"), block_means(x))
    _load(client, dynamic_dims=GEARS)


def test_older_ais_bench_releases_with_finalize(om_repo, tmp_path):
    journal = str(tmp_path / "journal.jsonl")
    env = double_env(AIS_BENCH_DOUBLE_JOURNAL=journal, AIS_BENCH_DOUBLE_API="old")
    with start_server(om_repo, "--model-control-mode", "explicit", "--load-model", "om", env=env) as s:
        c = grpcclient.InferenceServerClient(s.url)
        c.unload_model("om")
        c.close()
    events = Journal(journal)
    (create,) = events.since("create", offset=0)
    (final,) = events.since("finalize", offset=0)
    assert (final["session"], final["thread"]) == (create["session"], create["thread"])


def test_without_ais_bench_the_model_is_unavailable_and_the_others_serve(om_repo):
    with start_server(om_repo) as s:  # no double on the path: like a machine without the wheels
        c = grpcclient.InferenceServerClient(s.url)
        index = {m.name: (m.state, m.reason) for m in c.get_model_repository_index().models}
        state, reason = index["om"]
        assert state == "UNAVAILABLE"
        for fragment in ("model 'om' needs the ais_bench package", "aclruntime and ais_bench wheels",
                         "CANN toolkit", "set_env.sh", "'ais-bench-benchmark' is an unrelated tool"):
            assert fragment in reason, reason
        x = np.array([[1.0, 2.0]], np.float32)
        assert c.is_model_ready("identity")
        np.testing.assert_array_equal(c.infer("identity", [infer_input("INPUT0", x)]).as_numpy("OUTPUT0"), x)
        c.close()


# ---- the double itself (in process): it must refuse what the runtime refuses ---------------------
@pytest.fixture
def double(om_repo, monkeypatch):
    monkeypatch.syspath_prepend(DOUBLE)
    from ais_bench.infer import interface
    return interface


def test_the_double_refuses_what_the_runtime_refuses(double, om_repo):
    path = str(om_repo / "om" / "1" / "model.om")
    s = double.InferSession(0, path)
    assert [(i.name, i.shape, str(i.datatype)) for i in s.get_inputs()] == [("input", [1, 3, -1, -1], "dtype.float32")]
    assert [o.name for o in s.get_outputs()] == ["output1"]
    x = np.ones((1, 3, 8, 16), np.float32)
    np.testing.assert_allclose(s.infer([x], mode="dymdims")[0], block_means(x))
    s.set_dynamic_dims("input:1,3,16,8")
    assert s.run([np.ones((1, 3, 16, 8), np.float32)], out_array=True)[0].shape == (1, 3, 4, 2)
    assert len(s.sumary().exec_time_list) == 2
    refusals = {
        "batch 2": lambda: s.infer([np.ones((2, 3, 8, 8), np.float32)], mode="dymdims"),
        "no gear": lambda: s.infer([np.ones((1, 3, 12, 8), np.float32)], mode="dymdims"),
        "static mode": lambda: s.infer([x], mode="static"),
        "dymhw": lambda: s.infer([x], mode="dymhw"),
        "dymshape": lambda: s.infer([x], mode="dymshape"),
        "not contiguous": lambda: s.infer([np.ones((1, 3, 16, 16), np.float32)[:, :, ::2]], mode="dymdims"),
        "float64": lambda: s.infer([x.astype(np.float64)], mode="dymdims"),
        "set no gear": lambda: s.set_dynamic_dims("input:1,3,12,12"),
    }
    for what, call in refusals.items():
        with pytest.raises(RuntimeError):
            call()
            pytest.fail(what)
    errors = []
    t = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, s.infer, [x], mode="dymdims")))
    t.start()
    t.join()
    assert "thread that created the session" in str(errors[0].value)
    s.free_resource()
    with pytest.raises(RuntimeError, match="released"):
        s.infer([x], mode="dymdims")
    with pytest.raises(RuntimeError, match="acl open device 5"):
        double.InferSession(5, path)


# ---- ATC conversion (scripts/atc_hrnet.sh) ----------------------------------------------------------
def test_atc_script_without_atc_exits_2_and_writes_nothing(tmp_path):
    pool_onnx(tmp_path / "model.onnx")
    done = run_atc(tmp_path / "model.onnx", env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "install the CANN toolkit" in done.stderr
    assert "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]


def test_atc_script_command_line_and_no_half_written_om(tmp_path):
    onnx_path = tmp_path / "model.onnx"
    pool_onnx(onnx_path)
    log = tmp_path.parent / f"{tmp_path.name}-atc.log"
    done = run_atc(onnx_path, "Ascend310P3", "512,512;512,576", env=double_env(ATC_STUB_LOG=str(log)))
    assert done.returncode == 0, done.stderr
    (argv,) = [json.loads(line) for line in log.read_text().splitlines()]
    scratch = argv[2].removeprefix("--output=").removesuffix("/model")
    assert os.path.dirname(scratch) == str(tmp_path) and os.path.basename(scratch).startswith(".atc.")
    assert argv == ["--framework=5", f"--model={onnx_path}", f"--output={scratch}/model", "--input_format=NCHW",
                    "--input_shape=input:1,3,-1,-1", "--dynamic_dims=512,512;512,576",
                    "--soc_version=Ascend310P3", "--log=error"]
    assert sorted(os.listdir(tmp_path)) == ["model.om", "model.onnx"]  # scratch removed
    first = (tmp_path / "model.om").read_bytes()
    # A version that names the file model_linux_x86_64.om: still model.om.
    done = run_atc(onnx_path, "Ascend310P3", "512,512", env=double_env(ATC_STUB_SUFFIX="1"))
    assert done.returncode == 0 and sorted(os.listdir(tmp_path)) == ["model.om", "model.onnx"]
    second = (tmp_path / "model.om").read_bytes()
    assert second != first
    # A failing ATC leaves the previous OM as it was and no scratch.
    done = run_atc(onnx_path, "Ascend310P3", "512,512", env=double_env(ATC_STUB_FAIL="1"))
    assert done.returncode != 0
    assert sorted(os.listdir(tmp_path)) == ["model.om", "model.onnx"]
    assert (tmp_path / "model.om").read_bytes() == second
