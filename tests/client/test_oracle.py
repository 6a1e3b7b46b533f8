"""The oracle check: a perfect network's output for the bundled COCO annotations (hrnet/oracle.py,
built from the reference description) through hrnet.grouping and the client's COCO scoring must
give back the annotations (AP, AR >= 0.99, keypoint error <= 1.5 network-input pixels, no bias);
and deliberate half-pixel, flip and centre mistakes must break those bounds."""

import json

import numpy as np
import pytest

from client import coco, coco_eval
from client import oracle as oracle_eval
from hrnet import oracle, preprocess
from tests.client.conftest import read_summary

# Issue 10's bounds; a correct pipeline has no systematic offset (the stride-4 quantisation is
# symmetric), and 0.2 px is ~4 standard errors of a mean over the 181 bundled keypoints.
MIN_AP = MIN_AR = 0.99
MAX_ERROR_PX = 1.5
MAX_BIAS_PX = 0.2


def score(mini_set, render=oracle.network_output):
    run = oracle_eval.run_oracle(mini_set, mini_set.ids, render=render)
    assert run.failed == {}
    stats = coco.evaluate(mini_set.annotation_file,
                          coco.collect_results(run.done, mini_set.ids), mini_set.ids)
    return run, stats


def broken_bounds(run, stats) -> set[str]:
    broken = {name for name, low in (("AP", MIN_AP), ("AR", MIN_AR)) if not stats[name] >= low}
    if not run.mean_error <= MAX_ERROR_PX:
        broken.add("error")
    if not max(abs(b) for b in run.bias) <= MAX_BIAS_PX:
        broken.add("bias")
    if run.unmatched_people:
        broken.add("unmatched")
    return broken


def shifted(dx, dy):
    """The oracle with every peak moved by (dx, dy) network-input pixels: what grouping would
    report if it made the opposite mistake."""
    def render(keypoints, size, flip_test=True):
        moved = np.array(keypoints, np.float64)
        moved[..., 0] += dx
        moved[..., 1] += dy
        return oracle.network_output(moved, size, flip_test=flip_test)
    return render


def mirrored_pass(mirror):
    """The oracle with its second pass built by `mirror(keypoints, width)`."""
    def render(keypoints, size, flip_test=True):
        keypoints = np.asarray(keypoints, np.float64)
        tags = oracle.TAG_STEP * (1.0 + np.arange(len(keypoints)))
        return np.stack([oracle.one_pass(keypoints, size, tags),
                         oracle.one_pass(mirror(keypoints, size[0]), size, tags)])
    return render


# ------------------------------------------------------------------------------- the oracle itself

def test_input_geometry_is_the_reference_worked_example():
    """docs/pipeline.md's worked example: 640x425 -> input 832x512, trans [[1.204706, 0, 30.494118], [0, 1.204706, 0.602353]]."""
    size, trans = oracle.input_geometry(640, 425)
    assert size == (832, 512)
    np.testing.assert_allclose(trans, [[1.204706, 0, 30.494118], [0, 1.204706, 0.602353]], atol=1e-6)


@pytest.mark.parametrize("w, h", [(640, 425), (500, 333), (640, 429), (333, 500), (512, 512),
                                  (301, 777), (1001, 97)])
def test_preprocessing_meta_agrees_with_the_reference_geometry(w, h):
    """The input size, centre and scale the serving preprocessing hands on describe the same
    affine as the reference (so mapping with either is the same up to float32 rounding)."""
    inp, center, scale = preprocess.preprocess(np.zeros((h, w, 3), np.uint8))
    size, trans = oracle.input_geometry(w, h)
    assert (inp.shape[3], inp.shape[2]) == size
    np.testing.assert_allclose(preprocess.get_affine_transform(center, scale, size), trans,
                               rtol=1e-6, atol=1e-4)


def test_peak_and_tags_where_the_reference_puts_them():
    """A keypoint at input (4j + 2, 4i + 2) is the centre of output pixel (i, j) (x4 resize with
    align_corners=False): peak 1 there, the person's tag around it, the other person's elsewhere."""
    people = np.zeros((2, oracle.NUM_JOINTS, 3))
    people[0, 5] = (4 * 10 + 2, 4 * 7 + 2, 2)
    people[1, 5] = (4 * 40 + 2, 4 * 20 + 2, 1)   # v=1 (labelled, occluded) gets a peak too
    people[1, 6] = (100.0, 100.0, 0)             # v=0: not labelled, no peak
    out = oracle.network_output(people, (256, 128))
    assert out.shape == (2, 34, 32, 64) and out.dtype == np.float32
    heat, tags = out[0, 5], out[0, 17 + 5]
    assert heat[7, 10] == 1 and heat[20, 40] == 1 and heat.max() == 1
    assert np.count_nonzero(heat == 1) == 2 and not out[0, 6].any()
    assert tags[6:9, 9:12].tolist() == [[oracle.TAG_STEP] * 3] * 3
    assert tags[19:22, 39:42].tolist() == [[2 * oracle.TAG_STEP] * 3] * 3
    # channels a person lacks carry its tag around its other joints (its body region)
    assert out[0, 17 + 0, 7, 10] == oracle.TAG_STEP and out[0, 17 + 0, 20, 40] == 2 * oracle.TAG_STEP
    # sub-pixel: half an input pixel to the right moves the maximum of the Gaussian by 1/8 pixel
    people[0, 5, 0] += 0.5
    heat = oracle.network_output(people, (256, 128))[0, 5]
    assert heat[7, 11] > heat[7, 9]


def test_mirrored_pass_flipped_back_is_the_first():
    """The second pass, flipped back along W with left/right channels swapped (what mmpose's
    flip_feature_maps does), is the first: the oracle's two passes agree."""
    rng = np.random.default_rng(0)
    people = np.concatenate([rng.uniform(0, 500, (3, 17, 2)), rng.integers(0, 3, (3, 17, 1))], axis=2)
    out = oracle.network_output(people, (512, 576))
    swap = list(oracle.FLIP_INDEX) + [oracle.NUM_JOINTS + k for k in oracle.FLIP_INDEX]
    np.testing.assert_allclose(out[1][swap][:, :, ::-1], out[0], atol=1e-6)


# --------------------------------------------------------------------- the check on real annotations

def test_perfect_network_scores_perfectly_on_the_bundled_set(mini_set):
    run, stats = score(mini_set)
    assert broken_bounds(run, stats) == set(), (stats, run.summary())
    assert run.people == run.predictions == 12
    assert run.keypoints == 181, "every labelled keypoint matched"
    # The stride-4 maps leave an error, and grouping (adjust) recovers part of the sub-pixel place.
    assert 0.5 < run.mean_error


@pytest.mark.parametrize("mistake, render, broken", [
    # align_corners=True-style mapping (u = q / 4): half an output pixel = 2 input pixels
    ("half an output pixel", shifted(2.0, 2.0), {"AP", "AR", "error", "bias"}),
    # the +0.5 of adjust missing: the error alone stays under 1.5 px, the bias shows it
    ("half an input pixel in x", shifted(0.5, 0.0), {"bias"}),
    ("left/right not swapped in the mirrored pass",
     mirrored_pass(lambda kp, w: np.stack([w - kp[..., 0], kp[..., 1], kp[..., 2]], -1)),
     {"AP", "AR", "error", "bias"}),
    ("mirrored pass one input pixel off (W - 1 - x)",
     mirrored_pass(lambda kp, w: oracle.mirrored(kp, w - 1)), {"bias"}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_mistakes_break_the_bounds(mini_set, mistake, render, broken):
    run, stats = score(mini_set, render)
    assert broken_bounds(run, stats) >= broken, (mistake, stats, run.summary())


def test_unrounded_centre_breaks_the_bounds(mini_set, monkeypatch):
    """The preprocessing handing grouping round(w/2), round(h/2) unrounded (3 of the 4 images
    have an odd height): the inverse transform is off by half an image pixel."""
    real = preprocess.preprocess

    def unrounded(image, **kwargs):
        inp, _, scale = real(image, **kwargs)
        return inp, np.array([image.shape[1] / 2, image.shape[0] / 2], np.float32), scale

    monkeypatch.setattr(preprocess, "preprocess", unrounded)
    run, stats = score(mini_set)
    assert "bias" in broken_bounds(run, stats), run.summary()


# ------------------------------------------------------------------------ python -m client.coco_eval --oracle

def test_cli_oracle_needs_no_server_and_says_what_it_measures(mini_set, free_url, tmp_path, capsys):
    out = tmp_path / "oracle.json"
    assert coco_eval.main(["--oracle", "--url", free_url, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = read_summary(out)
    assert summary["oracle"] is True and summary["evaluated_images"] == 4
    assert summary["stats"]["AP"] >= MIN_AP and summary["stats"]["AR"] >= MIN_AR
    error = summary["keypoint_error"]
    assert error["mean_keypoint_error_px"] <= MAX_ERROR_PX and error["matched_keypoints"] == 181
    # the same table as a server run, the error beside it, and the label
    assert coco.format_table(summary["stats"]) in printed
    assert f"mean keypoint error {error['mean_keypoint_error_px']:.3f} px" in printed
    assert "NOT the accuracy of a network" in printed and "upper bound" in printed
    assert len(json.loads(out.read_text())) == 12


def test_cli_oracle_data_arguments(mini_set, tmp_path, capsys):
    out = tmp_path / "oracle.json"
    assert coco_eval.main(["--oracle", "--coco-root", str(mini_set.image_dir.parent),
                           "--limit", "2", "--out", str(out)]) == 0
    assert read_summary(out)["evaluated_images"] == 2
    assert "2 of 2 images" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        coco_eval.main(["--oracle", "--resume", "--out", str(out)])
    assert exit_info.value.code == 1
    assert "--resume" in capsys.readouterr().err
