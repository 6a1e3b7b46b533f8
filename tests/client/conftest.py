"""Client test fixtures: the bundled COCO mini set, its ground truth as server answers, and an
in-process fake Triton server (tests/client/fake_triton.py) that returns those answers."""

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from client import coco
from tests.client.fake_triton import FakeServer, FakeTriton, digest


@pytest.fixture(scope="session")
def mini_set() -> coco.CocoImages:
    return coco.load_images(*coco.official_layout(coco.PROJECT_COCO_ROOT))


def read_summary(out: Path) -> dict:
    """The summary coco_eval writes next to its results file `out`."""
    return json.loads(out.with_name(out.stem + ".summary.json").read_text())


def truth_as_detections(mini_set, image_id):
    """The image's annotated people as the server would return them: score 1, v>0 -> 1."""
    keypoints = coco.ground_truth_keypoints(mini_set.annotations[image_id])
    keypoints[:, :, 2] = keypoints[:, :, 2] > 0
    return keypoints, np.ones(len(keypoints), np.float32)


@pytest.fixture(scope="session")
def truth_answers(mini_set) -> dict:
    """sha256 of each mini-set image -> its ground truth people."""
    return {digest(mini_set.path(i).read_bytes()): truth_as_detections(mini_set, i)
            for i in mini_set.ids}


@pytest.fixture
def fake_server(truth_answers):
    """A fake pose server answering every mini-set image with its ground truth."""
    with FakeServer(FakeTriton(dict(truth_answers))) as server:
        yield server


@pytest.fixture
def free_url() -> str:
    """A loopback address nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"
