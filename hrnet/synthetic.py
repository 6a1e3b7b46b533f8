"""Synthetic HRNet AE outputs (tests and benchmarks of hrnet/grouping.py; no network needed).

A trained network's maps look like this: smooth low background heat, a Gaussian blob per visible
joint, tags that are smooth fields near each person's own value on its blobs, and a second pass
(the mirrored input) that agrees up to noise.
"""

import cv2
import numpy as np

from hrnet.grouping import FLIP_INDEX

K = len(FLIP_INDEX)
# The worked example of docs/pipeline.md ("Preprocessing"): a 640x425 image -> input 832x512, maps 128x208.
MAPS = (128, 208)
CENTER, SCALE = (320, 212), (3.453125, 2.125)


def smooth(rng, h, w, cell):
    """A smooth random field [h, w] of unit scale: bicubic resize of coarse noise."""
    coarse = rng.standard_normal((max(2, h // cell), max(2, w // cell))).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def flip_pair(heat, tags, rng=None, noise=0.0):
    """[2, 2K, h, w]: the output for the image and a consistent one for its mirror (mirrored,
    left/right channels swapped), optionally with independent noise on the second."""
    first = np.concatenate([heat, tags]).astype(np.float32)
    flip = np.asarray(FLIP_INDEX)
    second = np.concatenate([heat[flip], tags[flip]])[:, :, ::-1].astype(np.float32)
    if noise:
        second = second + noise * rng.standard_normal(second.shape).astype(np.float32)
    return np.stack([first, second])


def network_like(rng, h, w, n_people, noise=0.03):
    """[2, 2K, h, w] float32 like HRNet-W32 AE outputs with n_people people (a quarter of their
    joints occluded, so refine has work), tags in [-4, 4]."""
    heat = np.stack([noise * smooth(rng, h, w, 8) for _ in range(K)])
    tags = np.stack([0.5 * smooth(rng, h, w, 16) for _ in range(K)])
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n_people):
        cy, cx, tag = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(-4, 4)
        for k in range(K):
            if rng.random() < 0.25:
                continue
            g = np.exp(-((yy - cy - rng.normal(0, 5)) ** 2 + (xx - cx - rng.normal(0, 3)) ** 2) / (2 * 1.5 ** 2))
            heat[k] += rng.uniform(0.2, 1.0) * g
            tags[k] = tags[k] * (1 - g) + (tag + 0.1 * rng.standard_normal()) * g
    return flip_pair(heat, tags, rng, noise=0.02)
