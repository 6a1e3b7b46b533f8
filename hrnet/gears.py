"""`python -m hrnet.gears [--annotations person_keypoints_val2017.json] [--input-size 512]`: the
`dynamic_dims` gears an OM needs (ATC's --dynamic_dims, the ais_bench backend's parameter).

The network input of an image is the preprocessing's size (short side `input_size`, long side
rounded up to a multiple of 64), so a gear is (H, W) = (512, 512 + 64k) or (512 + 64k, 512).
Without a file: 512..1024 in both orientations (17 gears, aspect ratios up to 2:1). With a COCO
annotation file: exactly the sizes its images need, and which images the default set misses.
ATC takes at most 100 gears: beyond that it says so and exits 1.
"""

import argparse
import json
import sys

from hrnet.preprocess import get_multi_scale_size

MAX_GEARS = 100  # ATC's limit
DEFAULT_LONGEST = 1024


def input_size(width: int, height: int, size: int = 512) -> tuple:
    """(H, W) of the network input for a width x height image."""
    (w, h), _, _ = get_multi_scale_size(width, height, size)
    return h, w


def ordered(gears) -> list:
    """ATC's order as the shared docs write it: landscape (H = short) by W, then portrait by H."""
    gears = set(gears)
    short = min(min(g) for g in gears) if gears else 0
    land = sorted(g for g in gears if g[0] == short)
    return land + sorted((g for g in gears if g[0] != short), key=lambda g: (g[1], g[0]))


def default_gears(size: int = 512, longest: int = DEFAULT_LONGEST) -> list:
    short = input_size(size, size, size)[0]
    longs = range(short, longest + 1, 64)
    return ordered([(short, w) for w in longs] + [(h, short) for h in longs])


def dynamic_dims(gears) -> str:
    return ";".join(f"{h},{w}" for h, w in gears)


def annotation_gears(path: str, size: int = 512) -> dict:
    """{(H, W): [image ids]} for every image of a COCO annotation file."""
    with open(path) as f:
        images = json.load(f)["images"]
    out = {}
    for im in images:
        out.setdefault(input_size(int(im["width"]), int(im["height"]), size), []).append(im["id"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hrnet.gears", description=__doc__.split("\n\n")[0])
    p.add_argument("--annotations", help="COCO annotation file (its images' width/height)")
    p.add_argument("--input-size", type=int, default=512)
    args = p.parse_args(argv)
    if not args.annotations:
        print(dynamic_dims(default_gears(args.input_size)))
        return 0
    needed = annotation_gears(args.annotations, args.input_size)
    gears = ordered(needed)
    default = set(default_gears(args.input_size))
    outside = {g: ids for g, ids in needed.items() if g not in default}
    n_images = sum(len(ids) for ids in needed.values())
    print(f"{n_images} images need {len(gears)} gears; {sum(map(len, outside.values()))} images fall outside "
          f"the default {len(default)} ({args.input_size}..{DEFAULT_LONGEST} both orientations)", file=sys.stderr)
    for g in ordered(outside):
        print(f"  {g[0]}x{g[1]} (HxW): image ids {' '.join(map(str, sorted(outside[g])))}", file=sys.stderr)
    if len(gears) > MAX_GEARS:
        print(f"error: {len(gears)} gears are needed and ATC takes at most {MAX_GEARS}: build one OM per "
              f"subset of the images (e.g. landscape and portrait) and serve each as its own model",
              file=sys.stderr)
        return 1
    print(dynamic_dims(gears))
    return 0


if __name__ == "__main__":
    sys.exit(main())
