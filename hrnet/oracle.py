"""The output a perfect HRNet AE network would give for annotated people: a test oracle.

Used by the oracle evaluation (client/oracle.py, `python -m client.coco_eval --oracle`), which runs
these maps through grouping and the COCO scoring to bound what the post-processing alone can reach.

The geometry is derived from the description of mmpose's pipeline (docs/pipeline.md), not from
hrnet/grouping.py, and its constants are restated here for the same reason (an oracle that
imported the flip index or the stride from the code under test would share its mistakes):

* Input geometry (pipeline.md, "Centre, scale and the size rule"): the short side becomes 512,
  the long side is rounded up to a multiple of 64, and the affine is a similarity of factor
  512 / min(w, h) taking (round(w/2), round(h/2)) (Python's round, half to even) to the input's
  centre. Restated here, not taken from hrnet/preprocess.py, so that the centre and scale the
  preprocessing hands to grouping are checked too.
* Frame. Post-processing reports a joint at `peak pixel + 0.5 (+-0.25)` and then inverts the
  preprocessing affine ("Adjust and scores", "Back to image pixels"): coordinates of the network
  input put pixel i on [i, i+1), its centre at i + 0.5. A keypoint mapped through the
  preprocessing affine is a point `q` of this frame.
* Stride-4 map. The x4 bilinear resize with align_corners=False ("Flip test and resize")
  stretches output pixel j over input pixels 4j..4j+3, its centre at 4j + 2: `u = q / 4 - 0.5`
  in output-pixel indices (also where mmpose's training puts its targets on average: it
  truncates `q / 4` to an integer).
* Mirrored pass ("Flip test and resize"). The second image is the input flipped along W (pixel
  i <-> W-1-i, so `q <-> W - q`); a perfect network sees each person mirrored, so the anatomical
  joint k shows in channel FLIP_INDEX[k]. That pass is stored as the network returns it:
  mirrored, channels of the mirrored image; grouping has to flip it back.
* Heat: a Gaussian of sigma 2 output pixels (mmpose's bottom-up `sigma=2`), peak 1, centred at the
  sub-pixel position, the maximum over people where they overlap (as mmpose's target generator).
  Keypoints with v > 0 get a peak: COCO's v=1 (labelled, occluded) and v=2 (visible) are the
  ones mmpose trains on (`pt[2] > 0`) and the ones OKS scores; v=0 are not labelled.
* Tags: one value per person, TAG_STEP apart (tag_threshold is 1), constant over the person:
  within 3 sigma of a joint-k peak (the extent of mmpose's target) channel k carries that
  person's tag (the nearer peak's where two overlap), elsewhere the tag of the person with the
  nearest labelled joint of any kind. So a person's own region has its tag in every channel, and
  refine, looking for a joint the person lacks, finds only background heat there instead of
  another person's joint at full height.
"""

from __future__ import annotations

import math

import numpy as np

# COCO's left/right permutation and the network's output stride (pipeline.md).
FLIP_INDEX = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
NUM_JOINTS = len(FLIP_INDEX)
STRIDE = 4
INPUT_SIZE = 512  # the short side of the network input
SIGMA = 2.0      # output pixels
TAG_STEP = 3.0   # between people: tag distance 3 * sqrt(2) with two passes, far above 1


def input_geometry(width: int, height: int) -> tuple[tuple[int, int], np.ndarray]:
    """Network input size (W, H) and the 2x3 affine image -> input frame of a width x height
    image (pipeline.md, "Centre, scale and the size rule")."""
    def ceil64(x):
        return int(math.ceil(x / 64)) * 64
    if width < height:
        size = (INPUT_SIZE, ceil64(INPUT_SIZE / width * height))
    else:  # landscape and square
        size = (ceil64(INPUT_SIZE / height * width), INPUT_SIZE)
    s = INPUT_SIZE / min(width, height)
    cx, cy = round(width / 2), round(height / 2)
    trans = np.array([[s, 0.0, size[0] / 2 - s * cx], [0.0, s, size[1] / 2 - s * cy]])
    return size, trans


def to_input_frame(keypoints: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """[..., 2+] image-pixel (x, y, ...) -> the same with x, y through the 2x3 affine `trans`."""
    out = np.array(keypoints, dtype=np.float64)
    xy = out[..., :2].copy()
    out[..., 0] = trans[0, 0] * xy[..., 0] + trans[0, 1] * xy[..., 1] + trans[0, 2]
    out[..., 1] = trans[1, 0] * xy[..., 0] + trans[1, 1] * xy[..., 1] + trans[1, 2]
    return out


def mirrored(keypoints: np.ndarray, width: int) -> np.ndarray:
    """The people of the W-flipped input: x -> W - x, joint k in channel FLIP_INDEX[k]."""
    out = np.array(keypoints, dtype=np.float64)[:, list(FLIP_INDEX)]
    out[..., 0] = width - out[..., 0]
    return out


def one_pass(keypoints: np.ndarray, size: tuple[int, int], tags: np.ndarray,
             sigma: float = SIGMA) -> np.ndarray:
    """float32 [2K, H/4, W/4] (heatmaps, then tags) for people [P, K, 3] (x, y, v) given in the
    network-input frame of an input of `size` (W, H); tags [P]."""
    width, height = size
    h, w = height // STRIDE, width // STRIDE
    out = np.zeros((2 * NUM_JOINTS, h, w), np.float32)
    ys = np.arange(h, dtype=np.float64)[None, :, None]
    xs = np.arange(w, dtype=np.float64)[None, None, :]
    labelled = keypoints[:, :, 2] > 0
    u = keypoints[:, :, 0] / STRIDE - 0.5    # output-pixel indices [P, K]
    v = keypoints[:, :, 1] / STRIDE - 0.5
    if not labelled.any():
        return out
    # each person's squared distance to its nearest labelled joint [P, h, w]: the body regions
    near = np.full((len(keypoints), h, w), np.inf)
    for p, k in zip(*np.nonzero(labelled)):
        np.minimum(near[p], (xs[0] - u[p, k]) ** 2 + (ys[0] - v[p, k]) ** 2, out=near[p])
    body = tags[near.argmin(axis=0)]
    for k in range(NUM_JOINTS):
        people = np.flatnonzero(labelled[:, k])
        if people.size == 0:
            out[NUM_JOINTS + k] = body
            continue
        d2 = (xs - u[people, k, None, None]) ** 2 + (ys - v[people, k, None, None]) ** 2  # [p, h, w]
        out[k] = np.exp(-d2 / (2 * sigma ** 2)).max(axis=0)
        nearest = d2.argmin(axis=0)
        out[NUM_JOINTS + k] = np.where(d2.min(axis=0) <= (3 * sigma) ** 2, tags[people][nearest], body)
    return out


def network_output(keypoints: np.ndarray, size: tuple[int, int], sigma: float = SIGMA,
                   flip_test: bool = True) -> np.ndarray:
    """float32 [2 (flip_test) or 1, 2K, H/4, W/4]: a perfect network's output for the people
    [P, K, 3] (x, y, v) in the network-input frame, and for the mirrored input (still mirrored)."""
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, NUM_JOINTS, 3)
    tags = TAG_STEP * (1.0 + np.arange(len(keypoints)))
    passes = [one_pass(keypoints, size, tags, sigma)]
    if flip_test:
        passes.append(one_pass(mirrored(keypoints, size[0]), size, tags, sigma))
    return np.stack(passes)
