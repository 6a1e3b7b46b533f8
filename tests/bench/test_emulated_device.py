"""The emulated device of `make bench` (bench/emulated_om) in a real server: hrnet_pose runs through
it and grouping finds the synthetic people in its maps (trained-like output, not zeros); each pass
takes at least the configured device time. Speed itself is measured by `make bench`, not here."""

import glob
import os

import numpy as np
import tritonclient.grpc as grpcclient

from bench.emulated_device import build_repo
from tests.serverproc import ROOT, start_server, wait_ready

IMAGE = sorted(glob.glob(os.path.join(ROOT, "data", "coco_mini", "val2017", "*.jpg")))[0]


def test_pipeline_through_the_emulated_device(tmp_path):
    repo = build_repo(str(tmp_path / "repo"), pass_ms=50, preprocess=1, grouping=1)
    with start_server(repo) as s:
        client = wait_ready(s.url, "hrnet_pose")
        inp = grpcclient.InferInput("IMAGE", [1], "BYTES")
        inp.set_data_from_numpy(np.array([open(IMAGE, "rb").read()], dtype=np.object_))
        result = client.infer("hrnet_pose", [inp])
        assert result.as_numpy("KEYPOINTS").shape[0] >= 1  # the maps hold people (5 are drawn)
        stats = client.get_inference_statistics("hrnet_om", as_json=True)["model_stats"][0]["inference_stats"]
        assert int(stats["compute_infer"]["ns"]) >= 2 * 50e6  # the flip pair: two 50 ms passes
        client.close()
