"""`client.coco_eval --url a,b`: two real pose servers (the tiny random-weight HRNet) share the
images; one is killed (SIGKILL) mid-run and every image is still evaluated exactly once, with the
same results as one server gives."""

import json
import signal
import subprocess
import sys
import time

import pytest
import tritonclient.grpc as grpcclient

from client import coco
from client.pose import infer_pose
from tests.client.conftest import read_summary
from tests.reliability.samples import small_image
from tests.serverproc import ROOT, start_server

ANNOTATIONS = f"{ROOT}/data/coco_mini/annotations/person_keypoints_val2017.json"
COPIES = 3     # the 4 annotated mini-set images, 3 times: 12 images
DISTINCT = 4   # of 4 different stand-in pictures


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """(image folder, annotation file, {id: picture}): the mini set's annotations repeated under
    new ids, with small flat stand-in pictures (fast on the tiny network)."""
    root = tmp_path_factory.mktemp("failover_data")
    with open(ANNOTATIONS) as f:
        mini = json.load(f)
    images, annotations, pictures = [], [], {}
    for copy in range(COPIES):
        for im in mini["images"]:
            new_id = copy * 10_000_000 + im["id"]
            name = f"{copy}_{im['file_name']}"
            pictures[new_id] = small_image(len(images) % DISTINCT)
            (root / name).write_bytes(pictures[new_id])
            images.append({**im, "id": new_id, "file_name": name})
        annotations += [{**a, "id": copy * 10_000_000 + a["id"],
                         "image_id": copy * 10_000_000 + a["image_id"]} for a in mini["annotations"]]
    annotation_file = root / "annotations.json"
    annotation_file.write_text(json.dumps({**mini, "images": images, "annotations": annotations}))
    return root, annotation_file, pictures


def coco_eval(url, dataset, out, *extra):
    images, annotations, _ = dataset
    return subprocess.Popen([sys.executable, "-m", "client.coco_eval", "--url", url, "--images",
                             str(images), "--annotations", str(annotations), "--out", str(out),
                             *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def journal(out):
    path = out.with_name(out.stem + ".partial.jsonl")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_coco_eval_over_two_endpoints_survives_a_lost_one(tiny_pose_repo, dataset, tmp_path):
    _, _, pictures = dataset
    ids = set(pictures)
    with start_server(tiny_pose_repo) as a, start_server(tiny_pose_repo) as b:
        # What one server answers for each picture.
        with grpcclient.InferenceServerClient(b.url) as one:
            answers = {p: infer_pose(one, "hrnet_pose", p) for p in set(pictures.values())}

        out = tmp_path / "results.json"
        run = coco_eval(f"{a.url},{b.url}", dataset, out, "--concurrency", "2")
        end = time.monotonic() + 120
        while len(journal(out)) < 3 and time.monotonic() < end and run.poll() is None:
            time.sleep(0.02)
        a.stop(signal.SIGKILL)
        done_at_kill = len(journal(out))
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr[-2000:]

    assert 3 <= done_at_kill < len(ids)   # killed mid-run
    entries = journal(out)
    assert len(entries) == len(ids) and all("results" in e for e in entries)
    assert sorted(e["image_id"] for e in entries) == sorted(ids)   # each exactly once
    summary = read_summary(out)
    assert summary["evaluated_images"] == len(ids) and summary["failures"] == []
    # The killed server's request in flight, or the first one sent to it after, went again to
    # the other server.
    assert summary["retries"] >= 1
    assert f"2 endpoints, {summary['retries']} request(s) sent again" in stdout
    assert {e["image_id"]: e["results"] for e in entries} == {
        i: coco.person_results(i, *answers[p]) for i, p in pictures.items()}
