"""Micro-benchmark: hrnet.grouping.group vs the torch replica of mmpose (tests/hrnet/reference_ae.py).

    .venv/bin/python -m bench.grouping [--repeat 5] [--no-reference]

Synthetic network-like outputs (hrnet/synthetic.py) at 512x832 input (128x208 maps). Prints ms
per image and whether the two agree exactly. The reference needs torch (tests only); --no-reference times ours alone.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.timing import timed
from hrnet.grouping import GroupingParams, group
from hrnet.synthetic import CENTER, MAPS, SCALE, network_like

CASES = (("3 people", 3), ("20 people", 20), ("crowded, 50 people", 50), ("crowded, 60 people", 60))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size", type=int, nargs=2, default=MAPS, metavar=("H", "W"),
                        help="output map size (input is 4x)")
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args(argv)
    reference = None
    params = GroupingParams()  # fused multiply-add: torch's kernel on AVX2/AVX512 CPUs
    if not args.no_reference:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "hrnet"))
        from reference_ae import reference_group as reference
    center, scale = CENTER, SCALE
    h, w = args.size
    print(f"maps {h}x{w} (input {4 * h}x{4 * w}), {args.repeat} runs, median")
    print(f"{'case':<22}{'persons':>8}{'ours ms':>10}{'reference ms':>14}{'identical':>11}")
    for name, people in CASES:
        output = network_like(np.random.default_rng(people), h, w, people)
        ours, (kp, sc) = timed(lambda: group(output, center, scale, params), args.repeat)
        ref_ms, same = "-", "-"
        if reference is not None:
            ref, (rk, rs) = timed(lambda: reference(output, center, scale), 1, warmup=0)
            ref_ms = f"{ref * 1e3:.0f}"
            same = str(rk.shape == kp.shape and np.array_equal(rk, kp) and np.array_equal(rs, sc))
        print(f"{name:<22}{len(kp):>8}{ours * 1e3:>10.1f}{ref_ms:>14}{same:>11}")


if __name__ == "__main__":
    main()
