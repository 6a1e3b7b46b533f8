"""Oracle evaluation: a perfect network's output through this project's post-processing.

For every image: the serving preprocessing (decode; the centre, scale and input size it hands
on), the maps a perfect network would return for the annotated people (hrnet/oracle.py, which
maps them with the reference's own input geometry), hrnet.grouping.group, and the client's own
result entries (client/coco.py); `python -m client.coco_eval --oracle` scores them with the same
xtcocotools evaluation as a server run. The figures are the upper bound the post-processing
allows (centre/scale, flip merge, adjust, refine, inverse transform), not the accuracy of any
network. No server is needed.

Keypoint error: predicted and annotated keypoints both mapped into network-input pixels with the
reference's affine, Euclidean distance, averaged over the annotated (v > 0) keypoints of the
annotated people matched to a prediction. Matching per image: greedy on the mean distance over
the annotation's v > 0 keypoints, closest pair first, each prediction used once. The mean signed
offset (bias) per axis is kept too: when all is right the quantisation errors cancel, and a
half-pixel mistake shows there even where it stays under the error bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from client import coco
from hrnet import oracle, preprocess

LABEL = ("ORACLE: the output a perfect network would give (built from the annotations) through this "
         "project's post-processing.\nThe figures bound what the post-processing allows (centre/scale, "
         "flip merge, adjust, refine, inverse\ntransform); they are NOT the accuracy of a network.")


@dataclass
class OracleRun:
    """Per-image result entries and the keypoint offsets of the matched annotations."""

    done: dict[int, list[dict]] = field(default_factory=dict)    # image id -> result entries
    offsets: list[np.ndarray] = field(default_factory=list)       # [n, 2] predicted - annotated
    people: int = 0             # annotated people with keypoints
    unmatched_people: int = 0   # of those, left without a prediction
    predictions: int = 0
    failed: dict[int, str] = field(default_factory=dict)          # image id -> error message

    @property
    def _all(self) -> np.ndarray:
        return np.concatenate(self.offsets) if self.offsets else np.zeros((0, 2))

    @property
    def keypoints(self) -> int:
        return len(self._all)

    @property
    def mean_error(self) -> float:
        d = np.linalg.norm(self._all, axis=1)
        return float(d.mean()) if d.size else float("nan")

    @property
    def bias(self) -> tuple[float, float]:
        o = self._all
        return tuple(float(v) for v in o.mean(axis=0)) if len(o) else (float("nan"),) * 2

    def summary(self) -> dict:
        d = np.linalg.norm(self._all, axis=1)
        return {"mean_keypoint_error_px": self.mean_error,
                "max_keypoint_error_px": float(d.max()) if d.size else float("nan"),
                "bias_px": list(self.bias), "matched_keypoints": self.keypoints,
                "people": self.people, "unmatched_people": self.unmatched_people,
                "predicted_people": self.predictions}

    def describe(self) -> str:
        """The keypoint error line printed beside the AP table."""
        return (f"mean keypoint error {self.mean_error:.3f} px in network-input pixels (post-processing "
                f"upper bound; {self.keypoints} annotated keypoints of {self.people - self.unmatched_people} "
                f"of {self.people} annotated people matched, {self.predictions} people predicted; "
                f"bias x {self.bias[0]:+.3f} y {self.bias[1]:+.3f} px)")


def match_offsets(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, int]:
    """Offsets [n, 2] (predicted - annotated) of the v > 0 keypoints of the annotations matched
    to a prediction, and the number of annotations left unmatched. truth [P, K, 3] (x, y, v),
    predicted [Q, K, 2+], one frame; greedy on the mean distance, closest pair first."""
    visible = truth[:, :, 2] > 0
    offset = predicted[None, :, :, :2] - truth[:, None, :, :2]                    # [P, Q, K, 2]
    dist = np.where(visible[:, None, :], np.linalg.norm(offset, axis=-1), 0.0)
    cost = dist.sum(-1) / np.maximum(visible.sum(-1), 1)[:, None]
    free_t, free_p, found = set(range(len(truth))), set(range(len(predicted))), []
    for flat in np.argsort(cost, axis=None, kind="stable"):
        t, p = np.unravel_index(flat, cost.shape)
        if t in free_t and p in free_p:
            free_t.discard(t)
            free_p.discard(p)
            found.append(offset[t, p][visible[t]])
    return (np.concatenate(found) if found else np.zeros((0, 2))), len(free_t)


def evaluate_image(dataset: coco.CocoImages, image_id: int, params, run: OracleRun,
                   render=oracle.network_output) -> None:
    """One image through the oracle and grouping; adds its results and offsets to `run`."""
    from hrnet.grouping import group  # numba: compiled on first use, only for oracle runs

    image = preprocess.decode_image(dataset.path(image_id).read_bytes())
    inp, center, scale = preprocess.preprocess(image, flip_test=params.flip_test)
    size, trans = oracle.input_geometry(image.shape[1], image.shape[0])
    if (inp.shape[3], inp.shape[2]) != size:
        raise ValueError(f"image {image_id}: preprocessing gives a {inp.shape[3]}x{inp.shape[2]} "
                         f"input, the reference {size[0]}x{size[1]}")
    truth = oracle.to_input_frame(coco.ground_truth_keypoints(dataset.annotations[image_id]), trans)

    keypoints, scores = group(render(truth, size, flip_test=params.flip_test), center, scale, params)
    run.done[image_id] = coco.person_results(image_id, keypoints, scores)
    offsets, unmatched = match_offsets(truth, oracle.to_input_frame(keypoints, trans))
    run.offsets.append(offsets)
    run.people += len(truth)
    run.unmatched_people += unmatched
    run.predictions += len(keypoints)


def run_oracle(dataset: coco.CocoImages, image_ids, params=None,
               render=oracle.network_output) -> OracleRun:
    """Every image of `image_ids` through the oracle (grouping with `params`, mmpose's default)."""
    from hrnet.grouping import GroupingParams

    run = OracleRun()
    for image_id in image_ids:
        try:
            evaluate_image(dataset, image_id, params or GroupingParams(), run, render)
        except (OSError, ValueError) as err:  # an unreadable image, as in a server run
            run.failed[image_id] = str(err)
    return run
