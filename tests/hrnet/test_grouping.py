"""hrnet.grouping against the torch replica of mmpose's post-processing (reference_ae.py):
identical people, order, keypoints and scores on synthetic and network-like maps."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrnet import grouping
from hrnet.grouping import GroupingParams, group
from hrnet.synthetic import CENTER, SCALE, flip_pair, network_like

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_ae  # noqa: E402
from reference_ae import aggregate, reference_group  # noqa: E402

K = 17


def _torch_fma():
    """Whether this machine's torch bilinear kernel fuses multiply-adds (AVX2/AVX512 builds do).
    (Outputs with H + W <= 128 take another, vectorised kernel: the probe stays above that.)"""
    x = np.random.default_rng(0).standard_normal((1, 1, 16, 20)).astype(np.float32) * 3
    want = F.interpolate(torch.from_numpy(x), size=(64, 80), mode="bilinear", align_corners=False).numpy()[0, 0]
    out = np.concatenate([x, x], axis=1)  # [1, 2, h, w]: one heatmap, one tag map
    ys, xs = np.mgrid[0:64, 0:80]
    for fused in (True, False):
        maps = grouping._Maps(out, GroupingParams(num_joints=1, flip_test=False, fused_multiply_add=fused))
        if np.array_equal(maps.heat_at(0, ys, xs), want):
            return fused
    raise AssertionError("torch's bilinear resize matches neither the fused nor the plain float32 formula")


FMA = _torch_fma()


def params(**kw):
    return GroupingParams(fused_multiply_add=FMA, **kw)


def assert_parity(output, center=CENTER, scale=SCALE, **cfg):
    """group() == reference_group() exactly; returns the keypoints and scores."""
    flip = cfg.get("flip_test", True)
    ref_cfg = {k: v for k, v in cfg.items() if k != "flip_test"}
    want_kp, want_sc = reference_group(output, center, scale, flip_test=flip, **ref_cfg)
    got_kp, got_sc = group(output, center, scale, params(**cfg))
    assert got_kp.dtype == np.float32 and got_sc.dtype == np.float32
    assert got_kp.shape == want_kp.shape, (got_kp.shape, want_kp.shape)
    np.testing.assert_array_equal(got_kp, want_kp)
    np.testing.assert_array_equal(got_sc, want_sc)
    return got_kp, got_sc


# ------------------------------------------------------------------------------ map builders

def people_maps(h, w, people, sigma=1.0):
    """Gaussian peaks (low-resolution coordinates) with a constant tag per person footprint."""
    heat = np.zeros((K, h, w), np.float32)
    tags = np.zeros((K, h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for person in people:
        for k, (y, x, amp) in person["joints"].items():
            g = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma ** 2))
            heat[k] += amp * g
            tags[k][g > 0.02] = person["tag"]
    return heat, tags


def random_people(rng, h, w, n, spread=4.0, apart=False):
    """n people with all 17 joints scattered around a centre, tags 4 apart."""
    people = []
    for i in range(n):
        cy, cx = rng.uniform(3, h - 3), ((i + 0.5) * w / n if apart else rng.uniform(3, w - 3))
        people.append({"tag": float(4 * i - 2 * n + rng.uniform(-0.3, 0.3)),
                       "joints": {k: (np.clip(cy + rng.normal(0, spread), 0, h - 1),
                                      np.clip(cx + rng.normal(0, spread), 0, w - 1),
                                      rng.uniform(0.3, 1.0)) for k in range(K)}})
    return people


# ------------------------------------------------------------------------------------ tests

def ref_peak_counts(output):
    """Per joint: NMS survivors above the threshold in the reference's aggregated heatmaps."""
    heat, _ = aggregate(output, True, K)
    keep = (F.max_pool2d(heat, 5, 1, 2) == heat) & (heat > 0.1)
    return keep.flatten(2).sum(2)[0].numpy()


def test_synthetic_people_are_found_where_they_are():
    rng = np.random.default_rng(1)
    h, w = 64, 96
    people = random_people(rng, h, w, 3, spread=3.0, apart=True)  # no two persons' joints merge
    output = flip_pair(*people_maps(h, w, people), rng, noise=0.005)
    kp, sc = assert_parity(output)
    assert len(kp) == 3 and np.all(sc > 0)
    # a low-resolution peak at x lies at input x' = 4x + 2 (pixel centres at +0.5); then
    # transform_preds: image = x' * box / input_size + center - box / 2. Bilinear maps peak on
    # the low-resolution grid (up to 2 input px off) and adjust is +-0.25 px: 2.75 px at most.
    box = np.array(SCALE) * 200
    per_px = box / (4 * np.array([w, h]))
    for person in people:
        truth = {k: np.array([4 * x + 2, 4 * y + 2]) * per_px + np.array(CENTER) - box / 2
                 for k, (y, x, _) in person["joints"].items()}
        errors = [max(np.abs(p[k, :2] - t).max() for k, t in truth.items()) for p in kp]
        best = int(np.argmin(errors))
        assert errors[best] < 2.75 * per_px.max(), errors
        assert all(kp[best, k, 2] > 0.1 for k in truth)


def test_no_people():
    rng = np.random.default_rng(2)
    heat = 0.05 * rng.random((K, 32, 48)).astype(np.float32)  # all below detection_threshold
    output = flip_pair(heat, rng.standard_normal((K, 32, 48)))
    kp, sc = assert_parity(output)
    assert kp.shape == (0, K, 3) and sc.shape == (0,)


def test_crowded_scene_over_max_num_people():
    rng = np.random.default_rng(3)
    h = w = 96
    people = random_people(rng, h, w, 40, spread=2.0)
    output = flip_pair(*people_maps(h, w, people, sigma=0.8), rng, noise=0.01)
    # more than 30 candidates per joint (top-k cuts) and more than 30 persons to match
    assert np.all(ref_peak_counts(output) > 30)
    kp, _ = assert_parity(output)
    assert len(kp) > 30


# ------------------------------------------------------------- crowded scenes: more than 30 persons

def _crowded(name):
    """The crowded scenes, 35 to 70 persons found on 64x80 maps (small: the replica's refine scans
    the whole input-size map per person)."""
    if name.startswith("trained-like"):
        n = int(name.split()[1])
        output = network_like(np.random.default_rng(n), 64, 80, n)  # tags in [-4, 4]: many close ones
        return np.round(output * 16) / 16 if name.endswith("quantised") else output
    rng = np.random.default_rng(3)  # "blobs": 50 people, tags 4 apart
    return flip_pair(*people_maps(64, 80, random_people(rng, 64, 80, 50, spread=2.0), sigma=0.8), rng, noise=0.01)


CROWDED = ["trained-like 40", "trained-like 60", "trained-like 60 quantised", "blobs 50"]


def _record_assignments(monkeypatch):
    """The replica's assignment problems as it solves them: [(cost float64 [n, m], pairs)]."""
    calls = []

    class Recording(reference_ae.Munkres):
        def compute(self, cost_matrix):
            cost = np.array(cost_matrix, np.float64)
            pairs = super().compute(cost_matrix)
            calls.append((cost, [tuple(p) for p in pairs]))
            return pairs

    monkeypatch.setattr(reference_ae, "Munkres", Recording)
    return calls


def _certain(cost):
    """(number of person columns, which costs certainly pass the tag threshold 1): round(d) = 0
    (cost = round(d) * 100 - val with val < 50; the padding columns cost 1e10)."""
    persons = int(np.count_nonzero(cost[0] < 1e9))
    return persons, np.round(cost[:, :persons] / 100) == 0


def _joins_past(calls, first):
    """Candidates the replica gave to a person after the `first` persons, certainly accepted:
    what matching against only the first persons (the old cap) can never do."""
    joins = 0
    for cost, pairs in calls:
        persons, certain = _certain(cost)
        joins += sum(first <= c < persons and certain[r, c] for r, c in pairs)
    return joins


def _decisive_ties(calls, wider_than):
    """Munkres ties that decide the result, in problems with more than `wider_than` persons: two
    assigned (candidate, person) pairs whose swap costs the same (all four round(d) = 0, so the
    costs only depend on the row) and would be accepted as well: which candidate joins which
    person is munkres 1.1.4's tie-breaking."""
    ties = 0
    for cost, pairs in calls:
        persons, certain = _certain(cost)
        if persons <= wider_than:
            continue
        sure = [(r, c) for r, c in pairs if c < persons and certain[r, c]]
        ties += sum(certain[r1, c2] and certain[r2, c1]
                    for i, (r1, c1) in enumerate(sure) for r2, c2 in sure[i + 1:])
    return ties


@pytest.mark.parametrize("name", CROWDED)
def test_crowded_scene_matches_every_person_found_so_far(name, monkeypatch):
    """mmpose (ignore_too_much=False) matches each joint against every person found so far, not
    just the first max_num_people = 30 (reference-ae section 5). The scene must show it: joints with
    more than 30 candidates above the threshold, more than 30 persons, candidates that join persons
    past the 30th (which the old cap forbade: there they founded persons of their own) and, in the
    trained-like scenes, Munkres ties in problems wider than 30 persons."""
    output = _crowded(name)
    assert ref_peak_counts(output).max() > 30
    calls = _record_assignments(monkeypatch)
    kp, _ = assert_parity(output)
    assert 35 <= len(kp) <= 70
    assert _joins_past(calls, 30) > 0
    if name.startswith("trained-like"):
        assert _decisive_ties(calls, 30) > 0


def _crossing_scene():
    """35 persons with distinct tags: 20 show joint 0 (visited first), 25 joint 1 (10 of them
    with joint 0, so 15 new persons: 35 > 30 after the second joint), all the other joints
    (35 candidates each, more than top-k's 30)."""
    rng = np.random.default_rng(8)
    h, w = 40, 96
    people = []
    for i in range(35):  # on a 5 x 7 grid, 8 x 13 cells apart: no two persons' peaks merge
        cy, cx = 4 + 8 * (i // 7), 8 + 13 * (i % 7)
        joints = {k: (cy + rng.uniform(-2, 2), cx + rng.uniform(-3, 3), rng.uniform(0.3, 1.0)) for k in range(K)}
        if i >= 20:
            del joints[0]
        if i < 10:
            del joints[1]
        people.append({"tag": float(2 * i - 35), "joints": joints})
    return flip_pair(*people_maps(h, w, people), rng, noise=0.01)


@pytest.mark.parametrize("name", ["trained-like 60", "blobs 50", "crossing"])
def test_ignore_too_much_true_skips_joints_once_full(name, monkeypatch):
    """ignore_too_much=True (mmpose's other semantics): candidates are matched against the first
    max_num_people persons only, and once that many exist the joint is skipped. Parity with the
    replica, whose problems never reach 30 persons, and the result differs from False."""
    output = _crossing_scene() if name == "crossing" else _crowded(name)
    calls = _record_assignments(monkeypatch)
    kp, sc = assert_parity(output, ignore_too_much=True)
    assert calls and max(_certain(cost)[0] for cost, _ in calls) < 30
    full_kp, full_sc = group(output, CENTER, SCALE, params())
    assert not (kp.shape == full_kp.shape and np.array_equal(kp, full_kp) and np.array_equal(sc, full_sc))
    if name == "crossing":
        # the second joint took it past 30; no joint after it was matched (refine may find them
        # again, but the scores are those of one or two joints)
        assert len(kp) == 35
        matched = group(output, CENTER, SCALE, params(ignore_too_much=True, refine=False))[0]
        assert np.count_nonzero(matched[:, :, 2], axis=1).max() <= 2


def test_munkres_tie_takes_the_reference_pick():
    # Persons with tags 0 and 0.6 (joint 0), then two joint-1 candidates with tag 0.3: at the
    # same distance 0.42 from both, round(d) = 0, so the costs only depend on the row and every
    # assignment is optimal. munkres 1.1.4 stars the first zero of each row: (0, 0), (1, 1).
    # (Off-grid centres: a peak on a low-resolution pixel is a 2x2 plateau at input size.)
    h, w = 32, 32
    people = [{"tag": 0.0, "joints": {0: (8.3, 8.3, 0.9)}}, {"tag": 0.6, "joints": {0: (8.3, 24.3, 0.8)}},
              {"tag": 0.3, "joints": {1: (20.3, 24.3, 0.7)}}, {"tag": 0.3, "joints": {1: (20.3, 8.3, 0.6)}}]
    kp, _ = assert_parity(flip_pair(*people_maps(h, w, people)))
    assert len(kp) == 2
    per_px = np.array(SCALE) * 200 / (4 * np.array([w, h]))
    x_in = (kp[:, 1, 0] - CENTER[0] + SCALE[0] * 100) / per_px[0]
    # the stronger candidate (x=24, first in top-k order) went to the first person
    np.testing.assert_allclose(x_in, [4 * 24.3 + 2, 4 * 8.3 + 2], atol=2.75)
    from munkres import Munkres
    assert Munkres().compute([[-0.7, -0.7], [-0.6, -0.6]]) == [(0, 0), (1, 1)]


@pytest.mark.parametrize("h,w,seed", [(128, 128, 0), (128, 208, 1), (160, 128, 2)])
def test_network_like_maps(h, w, seed):
    rng = np.random.default_rng(10 + seed)
    assert_parity(network_like(rng, h, w, n_people=2 + seed % 2))


@pytest.mark.parametrize("h,w,seed", [(48, 64, 0), (48, 64, 1), (37, 50, 2)])
def test_network_like_small_many_people(h, w, seed):
    # (37x50: tiles and cells cut by the map border)
    rng = np.random.default_rng(20 + seed)
    output = network_like(rng, h, w, n_people=10, noise=0.06)
    if seed % 2:
        output = np.round(output * 16) / 16  # quantised: ties everywhere (NMS, top-k, refine argmax)
    assert_parity(output)


def test_flip_test_false_batch_one():
    rng = np.random.default_rng(4)
    output = network_like(rng, 64, 80, n_people=3)[:1]
    assert_parity(output, flip_test=False)


@pytest.mark.parametrize("cfg", [dict(adjust=False), dict(refine=False), dict(use_detection_val=False),
                                 dict(max_num_people=5), dict(nms_kernel=3), dict(tag_threshold=0.5),
                                 dict(ignore_too_much=True), dict(ignore_too_much=True, max_num_people=3)])
def test_other_parameters(cfg):
    rng = np.random.default_rng(5)
    assert_parity(network_like(rng, 48, 48, n_people=4), **cfg)


def test_border_plateaus():
    # Peaks on the border rows/columns: bilinear x4 (align_corners=False) clamps, so the two
    # outermost input-size rows/columns are equal and both survive NMS; their order is topk's.
    h, w = 40, 56
    spots = [(0, 10), (h - 1, 20), (15, 0), (22, w - 1), (0, 0), (h - 1, w - 1), (0, 30), (h - 1, 40)]
    people = [{"tag": float(i), "joints": {k: (y, x, 0.5 + 0.05 * i) for k in range(K)}}
              for i, (y, x) in enumerate(spots)]
    heat, tags = people_maps(h, w, people)
    output = flip_pair(heat, tags)
    ref_heat, _ = aggregate(output, True, K)
    pooled = F.max_pool2d(ref_heat, 5, 1, 2)
    vals = torch.where(pooled == ref_heat, ref_heat, 0).flatten(2).topk(30, dim=2).values[0]
    vals = vals[vals > 0.1]
    assert len(torch.unique(vals)) < len(vals)  # the case really has ties in the top-k
    assert_parity(output)


def test_torch_topk_order_of_equal_values():
    rng = np.random.default_rng(6)
    for trial in range(20):
        n = int(rng.integers(2000, 70000))
        values = rng.integers(0, int(rng.integers(2, 50)), n).astype(np.float32)
        values[rng.random(n) < 0.8] = 0
        want = torch.from_numpy(values).topk(30)
        idx, vals = grouping.torch_topk(values, 30)
        np.testing.assert_array_equal(idx, want.indices.numpy())
        np.testing.assert_array_equal(vals, want.values.numpy())


def test_border_ties_on_a_negative_background():
    # A negative local maximum among the first 30 pixels: the top-k heap starts below 0, so the
    # NMS zeros enter it too (the dense replay).
    h, w = 40, 56
    spots = [(0, 12), (h - 1, 30), (20, 0), (25, w - 1)]
    people = [{"tag": float(i), "joints": {k: (y, x, 0.6 + 0.05 * i) for k in range(K)}}
              for i, (y, x) in enumerate(spots)]
    heat, tags = people_maps(h, w, people)
    heat -= 0.2 + 0.001 * np.arange(w, dtype=np.float32)  # decreasing to the right: (0, 0) is a maximum
    assert_parity(flip_pair(heat, tags))


def test_border_ties_on_a_plateau():
    # A constant background: every pixel of it is an NMS maximum (equal neighbours), all tied,
    # so the heap minimum never rises above it and the replay scans the whole map.
    h, w = 96, 128
    people = [{"tag": float(i), "joints": {k: (y, x, 0.6 + 0.05 * i) for k in range(K)}}
              for i, (y, x) in enumerate([(0, 12), (h - 1, 30), (20, 0)])]
    heat, tags = people_maps(h, w, people)
    assert_parity(flip_pair(np.maximum(heat, np.float32(0.05)), tags))


@pytest.mark.parametrize("seed", range(4))
def test_compiled_munkres_is_munkres_1_1_4(seed):
    """Same pairs as the library on tie-heavy matrices of mmpose's shape (cost = round(d) * 100
    - val, extra columns padded with 1e10) and on wide ones (the library pads rows with 0)."""
    from munkres import Munkres
    rng = np.random.default_rng(seed)
    for _ in range(300):
        n, m = (int(v) for v in rng.integers(1, 12 if seed < 3 else 40, 2))
        cost = rng.integers(0, 3, (n, m)) * 100.0 - rng.choice([0.2, 0.5, 0.7], n)[:, None]
        if seed == 1:
            cost = np.round(rng.uniform(0, 4, (n, m))) * 100 - rng.uniform(0.1, 1, (n, 1))
        if n > m:  # mmpose pads extra columns with 1e10
            cost = np.concatenate((cost, np.zeros((n, n - m), np.float32) + 1e10), axis=1)
        want = Munkres().compute(cost.tolist())
        assert grouping.kernels.munkres(cost).tolist() == [list(p) for p in want]


def test_interior_cells_resize_weights_are_the_kernels_constants():
    """The kernels resize a cell off the map's outer ring with written-out weights
    (grouping_kernels._W0): torch's x4 tables (grouping._axis) must give every such pixel those
    weights and the previous/own or own/next source index, at any size."""
    for n in [*range(3, 40), 128, 208, 1023]:
        (i0, i1), (w0, w1) = grouping._axis(n, 4 * n)
        for cell in range(1, n - 1):
            for j in range(4):
                x = 4 * cell + j
                assert (i0[x], i1[x]) == ((cell - 1, cell) if j < 2 else (cell, cell + 1)), (n, x)
                assert (w0[x], w1[x]) == (grouping.kernels._W0[j], 1 - grouping.kernels._W0[j]), (n, x)


def test_compiled_means_are_numpys():
    """Person scores (each person's float32 .mean()) and person tags (np.mean(axis=0) of its tags:
    in refine and in tag matching) come from kernels: the same float32 sums in the same order as
    numpy's, checked over magnitudes 1e-4..1e4, every length up to 40, the pairwise sum's splits
    past 128, and tags of one dimension (numpy sums that column pairwise) and of two (row by row)."""
    rng = np.random.default_rng(0)
    for n in [*range(1, 41), 128, 129, 300]:
        values = (rng.standard_normal((40, n, 3)) * np.exp(rng.uniform(-9, 9, (40, n, 3)))).astype(np.float32)
        want = np.array([person[:, 2].mean() for person in values], np.float32)
        np.testing.assert_array_equal(grouping.kernels.row_means(np.ascontiguousarray(values[:, :, 2])), want)
    for i in range(4000):
        n, dims = int(rng.integers(1, 18)), 1 + i % 2  # one tag dimension without flip test, two with
        tags = (rng.standard_normal((n, dims)) * np.exp(rng.uniform(-9, 9, (n, dims)))).astype(np.float32)
        start = np.unique(np.concatenate([[0, n], rng.integers(0, n + 1, 3)])).astype(np.int64)
        want = np.stack([np.mean(tags[a:b], axis=0) for a, b in zip(start[:-1], start[1:])])
        np.testing.assert_array_equal(grouping.kernels.group_means(tags, start), want)


def test_equal_founding_tags_collide_like_mmpose():
    # Persons are keyed by their founding tag: equal tags make the later candidate overwrite.
    h, w = 32, 48
    people = [{"tag": 1.0, "joints": {0: (8, 8, 0.9)}}, {"tag": 1.0, "joints": {0: (20, 36, 0.8)}},
              {"tag": 5.0, "joints": {0: (20, 10, 0.7), 1: (21, 11, 0.6)}}]
    kp, _ = assert_parity(flip_pair(*people_maps(h, w, people)), refine=False)
    assert len(kp) == 2


def test_plain_float32_kernel_matches_torch_default_build(tmp_path):
    # torch without AVX2 kernels (ATEN_CPU_CAPABILITY=default) resizes without fused multiply-add.
    rng = np.random.default_rng(7)
    output = network_like(rng, 32, 40, n_people=2)
    np.save(tmp_path / "out.npy", output)
    code = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); from reference_ae import reference_group;"
            "k, s = reference_group(np.load(sys.argv[2]), (320, 212), (3.453125, 2.125));"
            "np.save(sys.argv[3], k); np.save(sys.argv[4], s)")
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(tmp_path / "out.npy"),
                    str(tmp_path / "k.npy"), str(tmp_path / "s.npy")], check=True, env=env)
    kp, sc = group(output, CENTER, SCALE, GroupingParams(fused_multiply_add=False))
    np.testing.assert_array_equal(kp, np.load(tmp_path / "k.npy"))
    np.testing.assert_array_equal(sc, np.load(tmp_path / "s.npy"))


def test_inverse_affine_by_hand():
    # 640x425 image: s = 512/425, input 832x512, center (320, 212), scale (3.453125, 2.125).
    # One joint: a separable low-resolution bump at (r, c) with the larger neighbours below and
    # right, so the input-size argmax is (4r+2, 4c+2) and adjust moves -0.25 (the pixel above /
    # left is higher): keypoint at input (4c+2.25, 4r+2.25).
    h, w, r, c = 128, 208, 50, 120
    heat = np.zeros((K, h, w), np.float32)
    heat[0, r - 1:r + 2, c - 1:c + 2] = np.outer([0.25, 1.0, 0.5], [0.25, 1.0, 0.5])
    output = np.concatenate([heat, np.zeros_like(heat)])[None]
    kp, _ = group(output, CENTER, SCALE, params(flip_test=False, refine=False))
    s = 512 / 425
    x_in, y_in = 4 * c + 2.25, 4 * r + 2.25
    want = (x_in / s + 320 - 832 / (2 * s), y_in / s + 212 - 512 / (2 * s))
    assert kp.shape == (1, K, 3)
    np.testing.assert_allclose(kp[0, 0, :2], want, atol=1e-4)
    assert np.all(kp[0, 1:, 2] == 0)


@pytest.mark.parametrize("output,cfg,match", [
    (np.zeros((2, 30, 8, 8), np.float32), {}, "34"),
    (np.zeros((1, 34, 8, 8), np.float32), {}, r"\[2, 34"),
    (np.zeros((2, 34, 8, 8), np.float32), {"flip_test": False}, r"\[1, 34"),
    (np.zeros((34, 8, 8), np.float32), {}, "shape"),
    (np.full((2, 34, 8, 8), np.nan, np.float32), {}, "NaN"),
    (np.full((2, 34, 8, 8), -np.inf, np.float32), {}, "infinite"),
    (np.full((2, 34, 8, 8), 1e20, np.float32), {}, r"within \+-1e\+06"),
])
def test_bad_output_raises(output, cfg, match):
    with pytest.raises(ValueError, match=match):
        group(output, CENTER, SCALE, params(**cfg))


@pytest.mark.parametrize("center,scale", [((1, 2, 3), SCALE), (CENTER, (1.0,)), (CENTER, (np.inf, 1.0))])
def test_bad_center_scale_raises(center, scale):
    with pytest.raises(ValueError):
        group(np.zeros((2, 34, 8, 8), np.float32), center, scale, params())


@pytest.mark.parametrize("field,value", [("nms_kernel", 4), ("max_num_people", 0), ("num_joints", 14),
                                         ("detection_threshold", float("nan")), ("detection_threshold", -0.1),
                                         ("threads", -1), ("threads", 1.5)])
def test_bad_params_raise(field, value):
    with pytest.raises(ValueError):
        dataclasses.replace(GroupingParams(), **{field: value})


@pytest.mark.parametrize("seed", range(3))
def test_any_small_map_groups_without_fault(seed):
    """Kernels index without bounds checks: odd sizes (1 pixel, not multiples of the tile), plateaus,
    extreme but accepted values and other parameters must still work (NUMBA_BOUNDSCHECK=1 makes
    an out-of-range index raise here instead of reading past an array)."""
    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 14, 2))
        flip = bool(rng.integers(2))
        cfg = dict(flip_test=flip, nms_kernel=int(rng.choice([1, 3, 5, 7])),
                   max_num_people=int(rng.integers(1, min(30, 16 * h * w) + 1)),
                   detection_threshold=float(rng.choice([0.0, 0.1, 0.5])))
        scale = float(rng.choice([1e-3, 1.0, 1e3, 1e5]))  # |values| stay under the 1e6 limit
        out = (rng.standard_normal((2 if flip else 1, 2 * K, h, w)) * scale).astype(np.float32)
        if rng.random() < 0.3:
            out[:, :K] = np.float32(rng.choice([0.0, 0.3]))  # a plateau: every pixel ties
        kp, sc = group(out, CENTER, SCALE, params(**cfg))
        assert kp.shape == (len(sc), K, 3) and np.isfinite(kp).all() and np.isfinite(sc).all()


def test_concurrent_calls_match_sequential_ones():
    """The kernels release the GIL: calls from several threads run at once and must not share
    state (each call owns its caches)."""
    from concurrent.futures import ThreadPoolExecutor
    outputs = [network_like(np.random.default_rng(seed), 48, 64, n_people=3) for seed in range(8)]
    want = [group(o, CENTER, SCALE, params()) for o in outputs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda o: group(o, CENTER, SCALE, params()), outputs * 3))
    for i, (kp, sc) in enumerate(got):
        np.testing.assert_array_equal(kp, want[i % len(outputs)][0])
        np.testing.assert_array_equal(sc, want[i % len(outputs)][1])


@pytest.mark.parametrize("threads", [1, 3, 17])
def test_thread_count_does_not_change_the_result(threads):
    output = network_like(np.random.default_rng(5), 48, 64, n_people=4)
    want = group(output, CENTER, SCALE, params())
    got = group(output, CENTER, SCALE, params(threads=threads))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_refine_skips_joints_without_positive_heat():
    """A joint whose heat is negative everywhere is never refined in (mmpose keeps only heat > 0):
    its queries are skipped, with the same result."""
    rng = np.random.default_rng(11)
    output = network_like(rng, 48, 64, n_people=4)
    output[:, 3] = -0.5 + 0.05 * rng.standard_normal(output[:, 3].shape)  # joint 3 (and its flip, 4)
    output[:, 4] = -0.5 + 0.05 * rng.standard_normal(output[:, 4].shape)
    kp, _ = assert_parity(output)
    assert len(kp) and not (kp[:, 3:5, 2] > 0).any()
