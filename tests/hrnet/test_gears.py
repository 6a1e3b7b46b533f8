"""`python -m hrnet.gears`: the dynamic_dims an OM needs. Oracle: mmpose's bottom-up test sizes as
the shared docs state them (short side 512, long side rounded up to a multiple of 64), ATC's limit
of 100 gears, and the docs' default command line (512..1024 both orientations, 17 gears)."""

import json
import math
import os
import subprocess
import sys

from tests.serverproc import ROOT

COCO_MINI = os.path.join(ROOT, "data", "coco_mini", "annotations", "person_keypoints_val2017.json")


def gears_cli(*args):
    return subprocess.run([sys.executable, "-m", "hrnet.gears", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def expected_gear(width, height):
    short, long_ = min(width, height), max(width, height)
    long_in = math.ceil(512 * long_ / short / 64) * 64
    return (512, long_in) if width >= height else (long_in, 512)


def annotations(path, sizes):
    images = [{"id": i + 1, "width": w, "height": h, "file_name": f"{i + 1}.jpg"} for i, (w, h) in enumerate(sizes)]
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
    return str(path)


def test_default_is_the_docs_17_gears():
    done = gears_cli()
    assert done.returncode == 0
    want = [(512, 512 + 64 * k) for k in range(9)] + [(512 + 64 * k, 512) for k in range(1, 9)]
    assert done.stdout.strip() == ";".join(f"{h},{w}" for h, w in want)
    assert len(want) == 17


def test_gears_of_an_annotation_file():
    done = gears_cli("--annotations", COCO_MINI)
    assert done.returncode == 0, done.stderr
    images = json.load(open(COCO_MINI))["images"]
    want = sorted({expected_gear(im["width"], im["height"]) for im in images}, key=lambda g: g[1])
    assert done.stdout.strip() == ";".join(f"{h},{w}" for h, w in want)  # 512,768;512,832;512,896
    assert "0 images fall outside the default 17" in done.stderr


def test_images_beyond_2_to_1_are_named(tmp_path):
    path = annotations(tmp_path / "a.json", [(640, 480), (640, 200), (200, 640), (300, 640)])
    done = gears_cli("--annotations", path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "512,704;512,1664;1152,512;1664,512"  # landscape by W, portrait by H
    assert "3 images fall outside the default 17" in done.stderr
    assert "512x1664 (HxW): image ids 2" in done.stderr and "1664x512 (HxW): image ids 3" in done.stderr


def test_more_than_100_gears_is_refused_with_a_reason(tmp_path):
    sizes = [(512 + 64 * k, 512) for k in range(61)] + [(512, 512 + 64 * k) for k in range(1, 61)]
    done = gears_cli("--annotations", annotations(tmp_path / "a.json", sizes))
    assert done.returncode == 1
    assert done.stdout == ""
    assert "121 gears are needed and ATC takes at most 100" in done.stderr
