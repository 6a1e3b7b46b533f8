"""The clients against real server processes: `pose_server` (the project's model repository with
a reduced-size random-weight HRNet) and `server` (the test repository, for `identity`)."""

import csv
import json

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from backend import cli
from client import coco_eval, perf, visualize
from tests.client.conftest import read_summary

QUICK = ["-s", "50", "-r", "6"]   # lenient stability, few windows: a smoke-size measurement


def pose_requests(url) -> int:
    stats = grpcclient.InferenceServerClient(url).get_inference_statistics("hrnet_pose")
    return sum(s.inference_stats.success.count for s in stats.model_stats)


@pytest.fixture(scope="module")
def evaluated(pose_server, tmp_path_factory):
    """One full coco_eval run on the mini set: (out path, exit code, stderr)."""
    out = tmp_path_factory.mktemp("eval") / "results.json"
    vis = out.parent / "vis"
    code = coco_eval.main(["--url", pose_server.url, "--out", str(out), "--concurrency", "2",
                           "--vis-dir", str(vis)])
    return out, code


def test_coco_eval_end_to_end(evaluated, mini_set):
    out, code = evaluated
    assert code == 0
    summary = read_summary(out)
    assert summary["evaluated_images"] == 4 and summary["failures"] == []
    assert summary["ap_meaningless"] is True, "the reduced model runs random weights"
    assert all(0 <= v <= 1 or v == -1 for v in summary["stats"].values())
    results = json.loads(out.read_text())
    assert {r["image_id"] for r in results} <= set(mini_set.ids)
    assert all(len(r["keypoints"]) == 51 and np.isfinite(r["keypoints"]).all() for r in results)
    assert len(list((out.parent / "vis").glob("*.png"))) == 4


def test_coco_eval_resumes_without_redoing_images(evaluated, pose_server, tmp_path):
    out, _ = evaluated
    journal = out.with_name("results.partial.jsonl")
    lines = journal.read_text().splitlines()
    resumed_out = tmp_path / "results.json"
    # As a run killed after three images leaves it: three records and a torn fourth line.
    torn = "\n".join(lines[:3]) + "\n" + lines[3][:20]
    tmp_path.joinpath("results.partial.jsonl").write_text(torn)
    before = pose_requests(pose_server.url)
    assert coco_eval.main(["--url", pose_server.url, "--out", str(resumed_out), "--resume"]) == 0
    assert pose_requests(pose_server.url) - before == 1
    assert read_summary(resumed_out)["evaluated_images"] == 4
    # The server is deterministic: the resumed run's results equal the uninterrupted run's.
    assert json.loads(resumed_out.read_text()) == json.loads(out.read_text())


def test_visualize_draws_the_server_answer(pose_server, mini_set, tmp_path, capsys):
    source, out = mini_set.path(196141), tmp_path / "pose.png"
    assert visualize.main([str(source), "--url", pose_server.url, "-o", str(out),
                           "--min-score", "0"]) == 0
    original, picture = cv2.imread(str(source)), cv2.imread(str(out))
    assert picture.shape == original.shape
    found = int(capsys.readouterr().out.split(":")[1].split()[0])
    assert (picture != original).any() == (found > 0)


def run_perf(args, tmp_path):
    report = tmp_path / "perf.csv"
    # A smoke-size measurement on a shared machine may not settle: exit 3, figures still written.
    assert perf.main([*args, *QUICK, "-f", str(report)]) in (0, cli.EXIT_UNSTABLE)
    rows = list(csv.reader(report.open()))
    assert rows[0] == perf.CSV_HEADER
    return rows[1:]


def test_perf_on_pose_pipeline(pose_server, tmp_path, capsys):
    rows = run_perf(["-m", "hrnet_pose", "-u", pose_server.url, "-p", "1500"], tmp_path)
    assert len(rows) == 1 and float(rows[0][1]) > 0
    printed = capsys.readouterr().out
    for step in ("preprocess", "hrnet_om", "grouping"):
        assert f"{step}, version: 1" in printed


def test_perf_on_raw_network(pose_server, tmp_path):
    rows = run_perf(["-m", "hrnet_om", "-u", pose_server.url, "--shape", "input:1,3,128,128",
                     "-p", "300"], tmp_path)
    assert float(rows[0][1]) > 0 and float(rows[0][6]) > 0, "server compute infer reported"


@pytest.mark.parametrize("mode", [[], ["--async"], ["--streaming"],
                                  ["--shared-memory", "system"]])
def test_perf_on_identity(server, tmp_path, mode):
    rows = run_perf(["-m", "identity", "-u", server.url, "--shape", "INPUT0:16", "-p", "200",
                     "--concurrency-range", "1:2", *mode], tmp_path)
    assert sorted(int(r[0]) for r in rows) == [1, 2]
    assert all(float(r[1]) > 0 for r in rows)
