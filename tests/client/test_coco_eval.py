"""client.coco_eval end to end against the in-process fake server (deterministic answers,
rejections, interruptions); tests/client/test_with_server.py runs it against the real server."""

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import grpc
import pytest

from client import coco_eval
from tests.client.conftest import read_summary
from tests.client.fake_triton import FakeServer, FakeTriton, digest

ROOT = Path(__file__).resolve().parents[2]


def test_perfect_answers_score_one(fake_server, mini_set, tmp_path, capsys):
    out = tmp_path / "results.json"
    vis = tmp_path / "vis"
    code = coco_eval.main(["--url", fake_server.url, "--out", str(out), "--concurrency", "2",
                           "--vis-dir", str(vis)])
    assert code == 0
    printed = capsys.readouterr()
    assert "0.654" in printed.out and "images/s" in printed.out
    assert "MEANINGLESS" not in printed.err

    summary = read_summary(out)
    assert summary["stats"] == {name: 1.0 for name in summary["stats"]}
    assert summary["evaluated_images"] == 4 and summary["failures"] == []
    assert set(summary["latency_ms"]) >= {"p50", "p90", "p99"}
    results = json.loads(out.read_text())
    assert len(results) == 12 and all(len(r["keypoints"]) == 51 for r in results)

    pictures = sorted(vis.glob("*.png"))
    assert [p.stem for p in pictures] == [mini_set.path(i).stem for i in mini_set.ids]
    image = mini_set.images[785]
    assert cv2.imread(str(pictures[0])).shape == (image["height"] + 28, 2 * image["width"], 3)


def test_random_weights_are_announced(truth_answers, tmp_path, capsys):
    with FakeServer(FakeTriton(truth_answers, random_weights=True)) as server:
        out = tmp_path / "results.json"
        assert coco_eval.main(["--url", server.url, "--out", str(out), "--limit", "1"]) == 0
    printed = capsys.readouterr()
    assert "hrnet_om" in printed.err and "MEANINGLESS" in printed.err
    assert "MEANINGLESS" in printed.out, "repeated beside the table"
    assert read_summary(out)["ap_meaningless"] is True


def test_rejected_image_is_listed_then_retried_on_resume(truth_answers, mini_set, tmp_path,
                                                         capsys):
    bad = digest(mini_set.path(40083).read_bytes())
    triton = FakeTriton(truth_answers, reject={bad})
    out = tmp_path / "results.json"
    with FakeServer(triton) as server:
        assert coco_eval.main(["--url", server.url, "--out", str(out)]) == 1
        summary = read_summary(out)
        assert [f["image_id"] for f in summary["failures"]] == [40083]
        assert "unable to decode" in summary["failures"][0]["error"]
        assert summary["evaluated_images"] == 3
        assert "000000040083.jpg" in capsys.readouterr().err

        triton.reject.clear()
        triton.requests.clear()
        assert coco_eval.main(["--url", server.url, "--out", str(out), "--resume"]) == 0
        assert triton.requests == [bad], "only the failed image is sent again"
    summary = read_summary(out)
    assert summary["evaluated_images"] == 4 and summary["stats"]["AP"] == 1.0


def test_unavailable_answer_from_a_live_server_is_an_image_failure(truth_answers, mini_set,
                                                                  tmp_path):
    """UNAVAILABLE also means overload or an execution timeout: the run goes on."""
    bad = digest(mini_set.path(785).read_bytes())
    triton = FakeTriton(truth_answers, reject={bad}, reject_code=grpc.StatusCode.UNAVAILABLE)
    out = tmp_path / "results.json"
    with FakeServer(triton) as server:
        assert coco_eval.main(["--url", server.url, "--out", str(out)]) == 1
    summary = read_summary(out)
    assert [f["image_id"] for f in summary["failures"]] == [785]
    assert summary["evaluated_images"] == 3


def test_interrupted_run_resumes_without_redoing_images(truth_answers, mini_set, tmp_path):
    triton = FakeTriton(truth_answers, delay_s=0.5)
    out = tmp_path / "results.json"
    journal = tmp_path / "results.partial.jsonl"
    with FakeServer(triton) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "client.coco_eval", "--url", server.url, "--out", str(out)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (journal.exists() and journal.read_text().count("\n") >= 1):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert "--resume" in err
        done = [json.loads(line)["image_id"] for line in journal.read_text().splitlines()]
        assert 1 <= len(done) < 4 and not out.exists()

        triton.requests.clear()
        assert coco_eval.main(["--url", server.url, "--out", str(out), "--resume"]) == 0
    redone = {digest(mini_set.path(i).read_bytes()) for i in mini_set.ids if i not in done}
    assert sorted(triton.requests) == sorted(redone)
    assert read_summary(out)["stats"]["AP"] == 1.0


def test_lost_server_stops_the_run_and_keeps_finished_images(truth_answers, tmp_path, capsys):
    triton = FakeTriton(truth_answers, delay_s=0.3)
    out = tmp_path / "results.json"
    server = FakeServer(triton)

    def stop_after_first():
        while len(triton.requests) < 2:
            time.sleep(0.01)
        time.sleep(0.1)
        server.stop()

    stopper = threading.Thread(target=stop_after_first)
    stopper.start()
    code = coco_eval.main(["--url", server.url, "--out", str(out)])
    stopper.join()
    assert code == 2
    assert server.url in capsys.readouterr().err
    lines = (tmp_path / "results.partial.jsonl").read_text().splitlines()
    assert 1 <= sum("results" in json.loads(line) for line in lines) < 4


def test_unreachable_server(free_url, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        coco_eval.main(["--url", free_url, "--out", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert free_url in err and "hrnet_pose" in err


def test_unknown_model(fake_server, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        coco_eval.main(["--url", fake_server.url, "--model", "nope",
                        "--out", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    assert "'nope'" in capsys.readouterr().err


def test_data_arguments(fake_server, mini_set, tmp_path):
    root = mini_set.image_dir.parent
    out = tmp_path / "r.json"
    assert coco_eval.main(["--url", fake_server.url, "--out", str(out), "--coco-root", str(root),
                           "--limit", "2"]) == 0
    assert read_summary(out)["evaluated_images"] == 2
    assert coco_eval.main(["--url", fake_server.url, "--out", str(out), "--images",
                           str(mini_set.image_dir), "--annotations",
                           str(mini_set.annotation_file)]) == 0
    assert read_summary(out)["evaluated_images"] == 4
    assert coco_eval.main(["--url", fake_server.url, "--out", str(out), "--coco-root",
                           str(tmp_path)]) == 1
    with pytest.raises(SystemExit):
        coco_eval.main(["--coco-root", str(root), "--images", str(root)])
    with pytest.raises(SystemExit):
        coco_eval.main(["--images", str(root)])
