"""A correct request for each model of the test repositories, with a check of its answer: after
every malformed request the tests send one to prove the server still serves correctly."""

import os

import cv2
import numpy as np

from .wire import OK, Client, output, request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COCO_IMAGES = os.path.join(ROOT, "data", "coco_mini", "val2017")
POSE_MODELS = ("preprocess", "hrnet_om", "grouping", "hrnet_pose")


def small_image(i: int = 0) -> bytes:
    """A small dark flat JPEG (`i` varies size and shade): the tiny random-weight network finds
    fewer peaks in it than in a photo, so grouping takes under a second instead of ten."""
    return cv2.imencode(".jpg", np.full((16 + 4 * i, 16, 3), 20 + 10 * i, np.uint8))[1].tobytes()


def coco_image(index: int = 0) -> bytes:
    names = sorted(os.listdir(COCO_IMAGES))
    with open(os.path.join(COCO_IMAGES, names[index % len(names)]), "rb") as f:
        return f.read()


def _fp32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _same(name_in, name_out):
    def check(req_arrays, resp):
        np.testing.assert_array_equal(output(resp, name_out), req_arrays[name_in])
    return check


def _add_sub(out_sum="OUTPUT0", out_diff="OUTPUT1"):
    def check(a, resp):
        np.testing.assert_allclose(output(resp, out_sum), a["INPUT0"] + a["INPUT1"], rtol=1e-6)
        if out_diff:
            np.testing.assert_allclose(output(resp, out_diff), a["INPUT0"] - a["INPUT1"], rtol=1e-6)
    return check


def _echo_bytes(a, resp):
    want = np.array([s.upper() for s in a["INPUT0"].reshape(-1)], dtype=object)
    assert list(output(resp, "OUTPUT0").reshape(-1)) == list(want)


def _twin(a, resp):
    assert output(resp, "OUTPUT0").shape == a["INPUT0"].shape


def _version(a, resp):
    assert output(resp, "VERSION").tolist() == [3]  # the latest version the policy serves


def _pose(a, resp):
    kp = output(resp, "KEYPOINTS")
    assert kp.ndim == 3 and kp.shape[1:] == (17, 3) and np.isfinite(kp).all()
    assert output(resp, "SCORES").shape == (kp.shape[0],)


def _preprocess(a, resp):
    x = output(resp, "INPUT")
    assert x.shape[:2] == (2, 3) and x.shape[2] % 64 == 0 and x.shape[3] % 64 == 0
    assert output(resp, "CENTER").shape == (2,) and output(resp, "SCALE").shape == (2,)


def _net(a, resp):
    assert output(resp, "output1").shape == (1, 34, 16, 16)


def _grouping(a, resp):
    assert output(resp, "KEYPOINTS").shape[1:] == (17, 3)


def _grouping_maps():
    """Network output for an image and its mirror (flip_test): one peak per joint, equal tags."""
    maps = np.zeros((2, 34, 24, 24), np.float32)
    for j in range(17):
        maps[0, j, 3 + j, 8 + j % 5] = 0.9
        maps[1, j, 3 + j, 15 - j % 5] = 0.9
    return maps


def _int32(*shape):
    return np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)


def _introspect(a, resp):
    assert output(resp, "ARGS").shape == (1,) and b"model_config" in output(resp, "ARGS")[0]


GOOD = {
    "identity": (lambda: {"INPUT0": _fp32(2, 5)}, _same("INPUT0", "OUTPUT0")),
    "add_sub": (lambda: {"INPUT0": _fp32(4), "INPUT1": _fp32(4, seed=1)}, _add_sub()),
    "add_onnx": (lambda: {"INPUT0": _fp32(3, 4), "INPUT1": _fp32(3, 4, seed=1)}, _add_sub()),
    "ensemble_add": (lambda: {"INPUT0": _fp32(2, 4), "INPUT1": _fp32(2, 4, seed=1)}, _add_sub()),
    "bls_add": (lambda: {"INPUT0": _fp32(4), "INPUT1": _fp32(4, seed=1)}, _add_sub("OUTPUT0", None)),
    "async_bls": (lambda: {"INPUT0": _fp32(4), "INPUT1": _fp32(4, seed=1)}, _add_sub("SUM", "DIFF")),
    "echo_bytes": (lambda: {"INPUT0": np.array([[b"ab", b"", b"x\x00y"]], dtype=object)}, _echo_bytes),
    "raises": (lambda: {"INPUT0": _int32(5)}, _same("INPUT0", "OUTPUT0")),
    "ensemble_raises": (lambda: {"IN": _int32(3)}, _same("IN", "OUT")),
    "alt_config": (lambda: {"INPUT0": _int32(2)}, _same("INPUT0", "OUTPUT0")),
    "batch_delay": (lambda: {"INPUT0": _fp32(1, 1)}, _same("INPUT0", "OUTPUT0")),
    "slow": (lambda: {"INPUT0": _int32(1)}, _same("INPUT0", "OUTPUT0")),
    "twin_a": (lambda: {"INPUT0": _int32(1)}, _twin),
    "twin_b": (lambda: {"INPUT0": _int32(1)}, _twin),
    "versioned": (lambda: {"INPUT0": _int32(1)}, _version),
    "introspect": (lambda: {"INPUT0": _int32(1)}, _introspect),
    "rel_hang": (lambda: {"INPUT0": _int32(1)}, _same("INPUT0", "OUTPUT0")),
    "preprocess": (lambda: {"IMAGE": np.array([coco_image()], dtype=object)}, _preprocess),
    "hrnet_om": (lambda: {"input": _fp32(1, 3, 64, 64)}, _net),
    "grouping": (lambda: {"OUTPUT": _grouping_maps(), "CENTER": np.array([64, 64], np.float32),
                          "SCALE": np.array([128, 128], np.float32)}, _grouping),
    "hrnet_pose": (lambda: {"IMAGE": np.array([small_image()], dtype=object)}, _pose),
}


def good_request(model: str, id: str = "") -> tuple:
    """(request, arrays sent) of a correct request for `model`."""
    arrays = GOOD[model][0]()
    return request(model, arrays, id=id), arrays


def check_serves(client: Client, model: str):
    """Send the correct request of `model` and check the answer (raises AssertionError)."""
    msg, arrays = good_request(model, id=f"check-{model}")
    code, details, resp = client.infer(msg, timeout=120)
    assert code == OK, f"correct request to {model} failed after the bad one: {code} {details}"
    assert resp.id == f"check-{model}" and resp.model_name == model
    GOOD[model][1](arrays, resp)
