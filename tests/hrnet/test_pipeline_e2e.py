"""End to end: the COCO mini images through the `hrnet_pose` ensemble of a real server give
exactly what the three stages give when called in process (same ONNX, same parameters)."""

import glob
import os

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient

from hrnet import grouping, preprocess
from tests.serverproc import wait_ready

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = sorted(glob.glob(os.path.join(ROOT, "data", "coco_mini", "val2017", "*.jpg")))


@pytest.fixture(scope="module")
def client(pose_server):
    c = wait_ready(pose_server.url, "hrnet_pose")
    yield c
    c.close()


@pytest.fixture(scope="module")
def session(tiny_pose_repo):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(os.path.join(tiny_pose_repo, "hrnet_om", "1", "model.onnx"),
                                sess_options=opts, providers=["CPUExecutionProvider"])


def in_process(data: bytes, session):
    inp, center, scale = preprocess.preprocess(preprocess.decode_image(data))
    out = session.run(["output1"], {"input": inp})[0]
    return grouping.group(out, center, scale, grouping.GroupingParams())


def test_mini_set_is_bundled():
    assert len(IMAGES) == 4


@pytest.mark.parametrize("path", IMAGES, ids=os.path.basename)
def test_ensemble_equals_stages_in_process(path, client, session):
    data = open(path, "rb").read()
    inp = grpcclient.InferInput("IMAGE", [1], "BYTES")
    inp.set_data_from_numpy(np.array([data], dtype=np.object_))
    result = client.infer("hrnet_pose", [inp], request_id=os.path.basename(path))
    keypoints, scores = result.as_numpy("KEYPOINTS"), result.as_numpy("SCORES")
    assert result.get_response().id == os.path.basename(path)
    assert keypoints.dtype == np.float32 and scores.dtype == np.float32
    assert keypoints.ndim == 3 and keypoints.shape[1:] == (17, 3)
    assert scores.shape == (keypoints.shape[0],)
    assert np.isfinite(keypoints).all() and np.isfinite(scores).all()
    want_kp, want_scores = in_process(data, session)
    np.testing.assert_array_equal(keypoints, want_kp)
    np.testing.assert_array_equal(scores, want_scores)


def test_random_weights_are_visible_to_clients(client):
    cfg = client.get_model_config("hrnet_om").config
    assert cfg.parameters["weights"].string_value == "random-init"


def test_bad_image_is_invalid_argument_naming_the_step(client):
    from tritonclient.utils import InferenceServerException
    inp = grpcclient.InferInput("IMAGE", [1], "BYTES")
    inp.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    with pytest.raises(InferenceServerException) as e:
        client.infer("hrnet_pose", [inp])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "in ensemble 'hrnet_pose'" in e.value.message() and "preprocess" in e.value.message()
    assert client.is_server_live()
