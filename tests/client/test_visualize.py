"""Pose pictures: what is drawn where, and the CLI against a (fake) server."""

import cv2
import numpy as np
import pytest

from client import visualize
from client.visualize import CENTRE, LEFT, RIGHT


def person(**joints):
    """One person [1,17,3]; joints given as index=(x, y, score)."""
    keypoints = np.zeros((1, 17, 3), np.float32)
    for index, value in joints.items():
        keypoints[0, int(index[1:])] = value
    return keypoints


def hue(pixel):
    """The dominant channel of a drawn pixel (antialiased lines blend at their edges)."""
    assert np.any(pixel), "nothing drawn here"
    return int(np.argmax(pixel))


def test_joints_and_limbs_are_coloured_by_side():
    image = np.zeros((200, 200, 3), np.uint8)
    keypoints = person(j0=(100, 20, 0.9), j5=(60, 60, 0.9), j6=(140, 60, 0.9),
                       j7=(60, 140, 0.9), j8=(140, 140, 0.1))
    drawn = visualize.draw_poses(image, keypoints, np.array([0.77]), min_score=0.2)
    assert not image.any(), "the input image must stay untouched"
    assert tuple(drawn[20, 100]) == CENTRE          # nose
    assert tuple(drawn[60, 60]) == LEFT             # left shoulder
    assert tuple(drawn[60, 140]) == RIGHT           # right shoulder
    assert hue(drawn[100, 60]) == hue(LEFT)         # left upper arm (5-7)
    assert hue(drawn[60, 100]) == hue(CENTRE)       # shoulder line (5-6) joins both sides
    assert not drawn[140, 140].any()                # right elbow below min score: not drawn
    assert not drawn[100, 140].any()                # so neither is the right upper arm
    assert drawn[:20, 40:90].any(), "the person score is written above the person"


def test_people_without_confident_joints_are_skipped():
    image = np.zeros((50, 50, 3), np.uint8)
    keypoints = person(j0=(25, 25, 0.1))
    assert not visualize.draw_poses(image, keypoints, np.array([0.1]), 0.2).any()
    assert visualize.draw_poses(image, keypoints, np.array([0.1]), 0.0).any()


def test_side_by_side_layout():
    left, right = np.zeros((40, 30, 3), np.uint8), np.full((40, 50, 3), 255, np.uint8)
    picture = visualize.side_by_side([("a", left), ("b", right)])
    assert picture.shape == (40 + visualize.TITLE_HEIGHT, 80, 3)
    assert (picture[visualize.TITLE_HEIGHT:, 30:] == 255).all()


def test_cli_writes_png_of_image_size(fake_server, mini_set, tmp_path, capsys):
    source = mini_set.path(197388)
    out = tmp_path / "pose.png"
    assert visualize.main([str(source), "--url", fake_server.url, "-o", str(out)]) == 0
    original = cv2.imread(str(source))
    picture = cv2.imread(str(out))
    assert picture.shape == original.shape
    assert (picture != original).any(axis=2).sum() > 1000, "skeletons drawn"
    assert "5 people found, 5 drawn" in capsys.readouterr().out


def test_cli_unreachable_server(free_url, mini_set, capsys):
    with pytest.raises(SystemExit) as exit_info:
        visualize.main([str(mini_set.path(785)), "--url", free_url])
    assert exit_info.value.code == 2
    assert free_url in capsys.readouterr().err
