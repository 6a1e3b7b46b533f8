"""Micro-benchmark: hrnet.grouping.group vs the torch replica of mmpose (tests/hrnet/reference_ae.py).

    .venv/bin/python -m hrnet.bench_grouping [--repeat 5] [--no-reference]

Synthetic network-like outputs at 512x832 input (128x208 maps): smooth background noise, person
blobs with smooth tag fields, a consistent flipped pass. Prints ms per image and whether the two
agree exactly. The reference needs torch (tests only); --no-reference times ours alone.
"""

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from hrnet.grouping import FLIP_INDEX, GroupingParams, group

CASES = (("3 people", 3), ("20 people", 20), ("crowded, 50 people", 50))
K = 17


def _smooth(rng, h, w, cell):
    coarse = rng.standard_normal((max(2, h // cell), max(2, w // cell))).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def synthetic_output(rng, h, w, n_people, noise=0.03):
    """[2, 34, h, w] float32 shaped like HRNet-W32 AE outputs (original + mirrored pass)."""
    heat = np.stack([noise * _smooth(rng, h, w, 8) for _ in range(K)])
    tags = np.stack([0.5 * _smooth(rng, h, w, 16) for _ in range(K)])
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n_people):
        cy, cx, tag = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(-4, 4)
        for k in range(K):
            if rng.random() < 0.25:
                continue
            g = np.exp(-((yy - cy - rng.normal(0, 5)) ** 2 + (xx - cx - rng.normal(0, 3)) ** 2) / 4.5)
            heat[k] += rng.uniform(0.2, 1.0) * g
            tags[k] = tags[k] * (1 - g) + tag * g
    first = np.concatenate([heat, tags])
    flip = np.asarray(FLIP_INDEX)
    second = np.concatenate([heat[flip], tags[flip]])[:, :, ::-1]
    second = second + 0.02 * rng.standard_normal(second.shape)
    return np.stack([first, second]).astype(np.float32)


def _timed(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 208), metavar=("H", "W"),
                        help="output map size (input is 4x)")
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args(argv)
    reference = None
    params = GroupingParams()  # fused multiply-add: torch's kernel on AVX2/AVX512 CPUs
    if not args.no_reference:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "hrnet"))
        from reference_ae import reference_group as reference
    center, scale = (320, 212), (3.453125, 2.125)
    h, w = args.size
    print(f"maps {h}x{w} (input {4 * h}x{4 * w}), {args.repeat} runs, median")
    print(f"{'case':<22}{'persons':>8}{'ours ms':>10}{'reference ms':>14}{'identical':>11}")
    for name, people in CASES:
        output = synthetic_output(np.random.default_rng(people), h, w, people)
        (kp, sc), ours = _timed(lambda: group(output, center, scale, params), args.repeat)
        ref_ms, same = "-", "-"
        if reference is not None:
            (rk, rs), ref = _timed(lambda: reference(output, center, scale), 1)
            ref_ms = f"{ref * 1e3:.0f}"
            same = str(rk.shape == kp.shape and np.array_equal(rk, kp) and np.array_equal(rs, sc))
        print(f"{name:<22}{len(kp):>8}{ours * 1e3:>10.1f}{ref_ms:>14}{same:>11}")


if __name__ == "__main__":
    main()
