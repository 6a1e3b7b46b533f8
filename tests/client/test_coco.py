"""The evaluation path itself: results writer, journal, xtcocotools evaluation, report table."""

import json
import shutil

import numpy as np
import pytest

from client import coco
from tests.client.conftest import truth_as_detections


def evaluate_through_writer(mini_set, detections, tmp_path):
    """Detections {image id: (keypoints, scores)} -> journal -> results file -> stats."""
    journal_path = tmp_path / "results.partial.jsonl"
    with coco.ResultsJournal(journal_path, resume=False) as journal:
        for image_id, (keypoints, scores) in detections.items():
            journal.record(image_id, coco.person_results(image_id, keypoints, scores), 0.01)
    state = coco.ResultsJournal.read(journal_path)
    coco.write_json(tmp_path / "results.json", coco.collect_results(state.done, mini_set.ids))
    results = json.loads((tmp_path / "results.json").read_text())
    return coco.evaluate(mini_set.annotation_file, results, mini_set.ids)


def test_ground_truth_fed_back_scores_perfectly(mini_set, tmp_path):
    truth = {i: truth_as_detections(mini_set, i) for i in mini_set.ids}
    stats = evaluate_through_writer(mini_set, truth, tmp_path)
    assert stats == {name: 1.0 for name in coco.STAT_NAMES}


@pytest.mark.parametrize("oks, expected", [
    # Matches at OKS thresholds .50 .55 .60 .65 .70, not from .75 on: half of the ten.
    (0.72, {"AP": 0.5, "AP .5": 1.0, "AP .75": 0.0, "AP (M)": 0.5, "AP (L)": 0.5,
            "AR": 0.5, "AR .5": 1.0, "AR .75": 0.0, "AR (M)": 0.5, "AR (L)": 0.5}),
    # Below the lowest threshold nothing matches.
    (0.45, {name: 0.0 for name in coco.STAT_NAMES}),
])
def test_known_keypoint_error_gives_known_ap(mini_set, tmp_path, oks, expected):
    """Shifting every labelled joint so that its OKS term is exp(-e) = oks sets each person's OKS
    to exactly `oks` (xtcocotools: e = d^2 / (2 sigma)^2 / area / 2)."""
    variances = (2 * coco.COCO_SIGMAS) ** 2
    shifted = {}
    for image_id in mini_set.ids:
        people = [a for a in mini_set.annotations[image_id] if a["num_keypoints"] > 0]
        keypoints, scores = truth_as_detections(mini_set, image_id)
        areas = np.array([a["area"] for a in people])[:, None]
        keypoints[:, :, 0] += np.sqrt(-np.log(oks) * 2 * areas * variances)
        shifted[image_id] = (keypoints, scores)
    stats = evaluate_through_writer(mini_set, shifted, tmp_path)
    assert stats == pytest.approx(expected, abs=1e-9)


def test_missing_people_lower_recall(mini_set, tmp_path):
    """Dropping one of the 12 labelled people: precision stays 1, recall drops to 11/12."""
    truth = {i: truth_as_detections(mini_set, i) for i in mini_set.ids}
    keypoints, scores = truth[197388]
    truth[197388] = (keypoints[1:], scores[1:])
    stats = evaluate_through_writer(mini_set, truth, tmp_path)
    assert stats["AR .5"] == pytest.approx(11 / 12)
    assert stats["AP"] < 1.0


def test_evaluation_covers_only_the_given_images(mini_set):
    image_id = mini_set.ids[0]
    keypoints, scores = truth_as_detections(mini_set, image_id)
    results = coco.person_results(image_id, keypoints, scores)
    assert coco.evaluate(mini_set.annotation_file, results, [image_id])["AP"] == pytest.approx(1)
    assert coco.evaluate(mini_set.annotation_file, results, mini_set.ids)["AR"] < 1.0


def test_no_detections_score_zero(mini_set):
    stats = coco.evaluate(mini_set.annotation_file, [], mini_set.ids)
    assert stats == {name: 0.0 for name in coco.STAT_NAMES}


def test_person_results_format():
    keypoints = np.zeros((2, 17, 3), np.float32)
    keypoints[0, :, 0] = np.linspace(10, 50, 17)
    keypoints[0, :, 1] = np.linspace(100, 20, 17)
    keypoints[0, :, 2] = 0.5
    results = coco.person_results(7, keypoints, np.array([0.8, 0.1]))
    assert len(results) == 2
    first = results[0]
    assert first["image_id"] == 7 and first["category_id"] == 1
    assert len(first["keypoints"]) == 51 and first["keypoints"][:3] == [10.0, 100.0, 0.5]
    assert first["score"] == pytest.approx(0.8)
    assert first["bbox"] == pytest.approx([10, 20, 40, 80])
    back_keypoints, back_scores = coco.results_to_arrays(results)
    np.testing.assert_allclose(back_keypoints, keypoints)
    np.testing.assert_allclose(back_scores, [0.8, 0.1])
    with pytest.raises(ValueError):
        coco.person_results(7, keypoints, np.array([0.8]))


def test_journal_resume_keeps_finished_and_retries_failed(tmp_path):
    path = tmp_path / "r.partial.jsonl"
    person = coco.person_results(1, np.ones((1, 17, 3)), np.ones(1))
    with coco.ResultsJournal(path, resume=False) as journal:
        journal.record(1, person, 0.5)
        journal.record(2, [], 0.25)             # an image without people is finished too
        journal.record_failure(3, "rejected")
    with open(path, "a") as f:
        f.write('{"image_id": 4, "resul')       # a crash in the middle of a line
    state = coco.ResultsJournal.read(path)
    assert sorted(state.done) == [1, 2] and state.failed == {3: "rejected"}
    assert state.latency_s == {1: 0.5, 2: 0.25}

    with coco.ResultsJournal(path, resume=True) as journal:
        journal.record(3, [], 0.1)
    state = coco.ResultsJournal.read(path)
    assert sorted(state.done) == [1, 2, 3] and state.failed == {}
    assert state.done[1] == person

    with coco.ResultsJournal(path, resume=False):
        pass
    assert coco.ResultsJournal.read(path).done == {}


def test_load_images_reports_missing_files(tmp_path):
    annotation_file, _ = coco.official_layout(coco.PROJECT_COCO_ROOT)
    (tmp_path / "val2017").mkdir()
    with pytest.raises(FileNotFoundError, match="4 of 4 images"):
        coco.load_images(annotation_file, tmp_path / "val2017")
    shutil.copy(coco.official_layout(coco.PROJECT_COCO_ROOT)[1] / "000000000785.jpg",
                tmp_path / "val2017")
    with pytest.raises(FileNotFoundError, match="3 of 4 images"):
        coco.load_images(annotation_file, tmp_path / "val2017")


def test_mini_set_listing(mini_set):
    assert mini_set.ids == [785, 40083, 196141, 197388]
    assert mini_set.path(785).name == "000000000785.jpg"
    assert sum(len(coco.ground_truth_keypoints(a)) for a in mini_set.annotations.values()) == 12


def test_table_shows_reference_figures():
    table = coco.format_table({name: 0.5 for name in coco.STAT_NAMES})
    lines = table.splitlines()
    assert len(lines) == 11
    assert lines[1].split() == ["AP", "0.500", "0.654", "0.653"]
    assert lines[6].split() == ["AR", "0.500", "0.710", "0.709"]
    assert lines[4].split() == ["AP", "(M)", "0.500"]


def test_latency_summary():
    summary = coco.latency_summary_ms(np.arange(1, 101) / 1000)
    assert summary["p50"] == pytest.approx(50.5) and summary["max"] == pytest.approx(100)
    assert coco.latency_summary_ms([]) == {}
