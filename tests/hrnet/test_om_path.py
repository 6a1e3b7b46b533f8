"""hrnet_pose through the Ascend path (hrnet_om from configs/ascend.pbtxt: the ais_bench backend,
an OM made by scripts/atc_hrnet.sh with the default gears) equals the ONNX path on the bundled
COCO images. No NPU, CANN or ais_bench here: the OM and its runtime are the TEST DOUBLE in
tests/ais_bench_double (its `atc` packs the ONNX, its InferSession runs it with ONNX Runtime one
batch-1 pass at a time), so this checks the serving path (config, gears, the flip pair split into
two device calls and joined), not an NPU's numerics."""

import glob
import os
import shutil
import sys

import numpy as np
import tritonclient.grpc as grpcclient

from hrnet import gears
from tests.backend.test_ais_bench import Journal, double_env, run_atc
from tests.serverproc import ROOT, start_server, wait_ready

IMAGES = sorted(glob.glob(os.path.join(ROOT, "data", "coco_mini", "val2017", "*.jpg")))


def _pose(client, data):
    inp = grpcclient.InferInput("IMAGE", [1], "BYTES")
    inp.set_data_from_numpy(np.array([data], dtype=np.object_))
    result = client.infer("hrnet_pose", [inp])
    return result.as_numpy("KEYPOINTS"), result.as_numpy("SCORES")


def test_the_ascend_config_serves_the_default_gears():
    from google.protobuf import text_format
    from proto import model_config_pb2 as mc
    path = os.path.join(ROOT, "model_repository", "hrnet_om", "configs", "ascend.pbtxt")
    cfg = text_format.Parse(open(path).read(), mc.ModelConfig())
    assert (cfg.name, cfg.backend) == ("hrnet_om", "ais_bench")
    assert cfg.parameters["dynamic_dims"].string_value == gears.dynamic_dims(gears.default_gears())
    assert cfg.parameters["device_ids"].string_value == "0"


def test_hrnet_pose_through_the_om_equals_the_onnx_path(tiny_pose_repo, pose_server, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(tiny_pose_repo, repo)
    done = run_atc(repo / "hrnet_om" / "1" / "model.onnx", gears="",  # the default: python -m hrnet.gears
                   env={**double_env(), "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    journal = tmp_path / "journal.jsonl"
    onnx_client = wait_ready(pose_server.url, "hrnet_pose")
    with start_server(repo, "--model-config-name", "ascend",
                      env=double_env(AIS_BENCH_DOUBLE_JOURNAL=str(journal))) as s:
        om_client = wait_ready(s.url, "hrnet_pose")
        assert om_client.get_model_config("hrnet_om").config.backend == "ais_bench"
        for path in IMAGES:
            data = open(path, "rb").read()
            keypoints, scores = _pose(om_client, data)
            want_kp, want_scores = _pose(onnx_client, data)
            np.testing.assert_array_equal(keypoints, want_kp, err_msg=os.path.basename(path))
            np.testing.assert_array_equal(scores, want_scores, err_msg=os.path.basename(path))
        om_client.close()
    calls = Journal(str(journal)).since("infer", offset=0)
    # Every image: the flip pair as two batch-1 calls of one gear (e.g. 512x832 for 640x425).
    assert len(calls) == 2 * len(IMAGES)
    assert all(c["shapes"][0][0] == 1 and tuple(c["shapes"][0][2:]) in gears.default_gears() for c in calls)
    onnx_client.close()
