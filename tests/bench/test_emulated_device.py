"""The emulated device of `make bench` (bench/emulated_om) in a real server: hrnet_pose runs through
it and grouping finds the synthetic people in its maps (trained-like output, not zeros); each pass
takes at least the configured device time, and its sessions share one device. Speed itself is measured by `make bench`, not here."""

import glob
import os
import time

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


def test_sessions_share_one_device(tmp_path):
    """Two sessions (instances) of the emulated device run their passes one after another on the
    one device: two flip pairs at once take four passes' time, never two."""
    repo = build_repo(str(tmp_path / "repo"), pass_ms=100, preprocess=2, grouping=2, sessions=2)
    with start_server(repo) as s:
        client = wait_ready(s.url, "hrnet_om")
        x = grpcclient.InferInput("input", [2, 3, 512, 512], "FP32")
        x.set_data_from_numpy(np.zeros((2, 3, 512, 512), np.float32))
        client.infer("hrnet_om", [x])  # (its maps for this size are made once)
        before = _compute_ns(client)
        done = []
        start = time.monotonic()
        for _ in range(2):
            client.async_infer("hrnet_om", [x], callback=lambda result, error: done.append(error))
        while len(done) < 2 and time.monotonic() - start < 30:
            time.sleep(0.01)
        elapsed = time.monotonic() - start
        assert done == [None, None]
        assert elapsed >= 4 * 0.1 - 0.01  # four 100 ms passes, one at a time
        # both sessions had their pair on the device at once: one waited for the other's passes
        # (one session would have run them in turn: 2 x 200 ms of executions)
        assert _compute_ns(client) - before >= 0.55e9
        client.close()


def _compute_ns(client):
    stats = client.get_inference_statistics("hrnet_om", as_json=True)["model_stats"][0]["inference_stats"]
    return int(stats["compute_infer"]["ns"])
