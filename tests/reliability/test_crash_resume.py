"""A crash of the server (SIGKILL) in the middle of `client.coco_eval` loses nothing: the client
stops, says which images are kept and how to go on; `--resume` against a restarted server
completes the run without sending the finished images again."""

import json
import os
import signal
import subprocess
import sys
import time

from proto import grpc_service_pb2 as pb
from tests.serverproc import ROOT, start_server

from .samples import small_image
from .wire import Client

ANNOTATIONS = os.path.join(ROOT, "data", "coco_mini", "annotations", "person_keypoints_val2017.json")


def _dataset(tmp_path):
    """The bundled mini set's annotations with flat stand-in images of the same names (with
    random weights, grouping takes ~1 s on these instead of ~10 s on the photos)."""
    with open(ANNOTATIONS) as f:
        entries = json.load(f)["images"]
    images = tmp_path / "images"
    images.mkdir()
    for i, im in enumerate(entries):
        (images / im["file_name"]).write_bytes(small_image(i))
    return images, {int(im["id"]) for im in entries}


def _coco_eval(url, images, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "client.coco_eval", "--url", url, "--images", str(images),
                             "--annotations", ANNOTATIONS, "--out", str(out), *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _journal(out):
    path = out.with_name(out.stem + ".partial.jsonl")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_server_crash_during_coco_eval_then_resume(tiny_pose_repo, tmp_path):
    images, ids = _dataset(tmp_path)
    n = len(ids)
    out = tmp_path / "out" / "results.json"
    server = start_server(tiny_pose_repo)
    run = _coco_eval(server.url, images, out)
    end = time.monotonic() + 120
    while not _journal(out) and time.monotonic() < end and run.poll() is None:
        time.sleep(0.05)
    server.stop(signal.SIGKILL)  # mid-run: at least one image finished, others not sent yet
    stdout, stderr = run.communicate(timeout=120)
    done_first = {e["image_id"] for e in _journal(out) if "results" in e}
    assert 1 <= len(done_first) < n, (done_first, stderr[-2000:])
    assert run.returncode == 2, stderr[-2000:]
    assert "rerun with --resume" in stderr
    assert not [e for e in _journal(out) if "error" in e]  # the lost server is no image's fault

    with start_server(tiny_pose_repo) as again:
        resumed = _coco_eval(again.url, images, out, "--resume")
        stdout, stderr = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, stderr[-2000:]
        assert f"{len(done_first)} of {n} images already done" in stderr
        journal = _journal(out)
        assert {e["image_id"] for e in journal if "results" in e} == ids
        # Only the images not finished before the crash were sent again.
        with Client(again.url) as c:
            stats = c.call("ModelStatistics", pb.ModelStatisticsRequest(name="hrnet_pose"))[2]
        assert stats.model_stats[0].inference_stats.success.count == n - len(done_first)
    summary = json.loads(out.with_name("results.summary.json").read_text())
    assert summary["evaluated_images"] == n and summary["failures"] == []
