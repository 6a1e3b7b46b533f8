"""COCO keypoint evaluation: image list, results journal and file, xtcocotools evaluation, report.

Follows mmpose's bottom-up COCO evaluation (docs/pipeline.md, "Evaluation"): every image id of the
annotation file is evaluated (also images without people), each detected person becomes one
result with its bbox from the keypoint extent, no OKS NMS, and xtcocotools' COCOeval with the
COCO sigmas and `use_area` on.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COCO_SIGMAS = np.array(
    [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
     0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089])
NUM_JOINTS = 17
STAT_NAMES = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)",
              "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
# Published COCO val2017 figures of hrnet_w32_coco_512x512 (single scale, flip test).
REFERENCE = {
    "mmpose": {"AP": 0.654, "AP .5": 0.863, "AP .75": 0.720, "AR": 0.710, "AR .5": 0.892},
    "Ascend": {"AP": 0.653, "AR": 0.709},
}

# COCOeval writes -1 for a figure it has nothing to compute from (not a score).
NOT_COMPUTED_NOTE = ("-1.000 = not computed: the evaluated images hold no person with labelled "
                     "keypoints of that\nsize (M: area 32^2 to 96^2 pixels, L: above 96^2); "
                     "evaluate more images for these figures.")

# The bundled mini set (4 real val2017 images) lets the evaluation run on a fresh machine.
PROJECT_COCO_ROOT = Path(__file__).resolve().parents[1] / "data" / "coco_mini"
ANNOTATION_NAME = Path("annotations") / "person_keypoints_val2017.json"
IMAGE_DIR_NAME = Path("val2017")


def official_layout(root: str | os.PathLike) -> tuple[Path, Path]:
    """(annotation file, image folder) of a COCO root in the official layout."""
    root = Path(root)
    return root / ANNOTATION_NAME, root / IMAGE_DIR_NAME


@dataclass(frozen=True)
class CocoImages:
    """The images of a COCO keypoint annotation file and their person annotations."""

    annotation_file: Path
    image_dir: Path
    images: dict[int, dict]                      # image id -> COCO image record
    annotations: dict[int, list[dict]] = field(repr=False)  # image id -> person annotations

    @property
    def ids(self) -> list[int]:
        return sorted(self.images)

    def path(self, image_id: int) -> Path:
        return self.image_dir / self.images[image_id]["file_name"]


def load_images(annotation_file: str | os.PathLike, image_dir: str | os.PathLike) -> CocoImages:
    """Reads the annotation file; fails if it names images the folder does not hold."""
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    with open(annotation_file) as f:
        dataset = json.load(f)
    images = {int(im["id"]): im for im in dataset["images"]}
    annotations: dict[int, list[dict]] = {i: [] for i in images}
    for ann in dataset.get("annotations", []):
        if ann.get("category_id", 1) == 1 and ann["image_id"] in annotations:
            annotations[ann["image_id"]].append(ann)
    missing = [im["file_name"] for im in images.values()
               if not (image_dir / im["file_name"]).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(images)} images of {annotation_file} are not in {image_dir} "
            f"(first: {', '.join(missing[:3])})")
    return CocoImages(annotation_file, image_dir, images, annotations)


def ground_truth_keypoints(annotations: list[dict]) -> np.ndarray:
    """[P,17,3] (x, y, visibility) of the annotations that have keypoints."""
    people = [np.asarray(a["keypoints"], np.float32).reshape(NUM_JOINTS, 3)
              for a in annotations if a.get("num_keypoints", 0) > 0]
    return np.stack(people) if people else np.zeros((0, NUM_JOINTS, 3), np.float32)


def person_results(image_id: int, keypoints: np.ndarray, scores: np.ndarray) -> list[dict]:
    """COCO result entries for one image: keypoints [P,17,3] (x, y, score), scores [P]."""
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, NUM_JOINTS, 3)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(keypoints) != len(scores):
        raise ValueError(f"{len(keypoints)} keypoint sets but {len(scores)} scores")
    lo = keypoints[:, :, :2].min(axis=1)
    hi = keypoints[:, :, :2].max(axis=1)
    boxes = np.concatenate([lo, hi - lo], axis=1)
    return [{"image_id": int(image_id), "category_id": 1,
             "keypoints": kps.reshape(-1).tolist(), "score": float(score),
             "bbox": box.tolist()}
            for kps, score, box in zip(keypoints, scores, boxes)]


def results_to_arrays(results: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of person_results: keypoints [P,17,3] and scores [P]."""
    keypoints = np.array([r["keypoints"] for r in results], np.float32).reshape(-1, NUM_JOINTS, 3)
    return keypoints, np.array([r["score"] for r in results], np.float32)


@dataclass
class JournalState:
    """What a journal says about earlier runs; a later record of an image replaces earlier ones."""

    done: dict[int, list[dict]] = field(default_factory=dict)   # image id -> its results
    latency_s: dict[int, float] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)         # image id -> error message


class ResultsJournal:
    """Append-only JSON-lines record of every finished image, flushed line by line.

    A crash or Ctrl-C loses at most the line being written; `read` skips such a torn line, so
    `--resume` redoes only the images without a complete success record.
    """

    def __init__(self, path: str | os.PathLike, resume: bool):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a" if resume else "w")
        # A torn last line from a killed run must not swallow the next record.
        if resume and self._file.tell() > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._file.write("\n")

    def record(self, image_id: int, results: list[dict], latency_s: float) -> None:
        self._write({"image_id": int(image_id), "results": results, "latency_s": latency_s})

    def record_failure(self, image_id: int, message: str) -> None:
        self._write({"image_id": int(image_id), "error": message})

    def _write(self, entry: dict) -> None:
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultsJournal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def read(path: str | os.PathLike) -> JournalState:
        state = JournalState()
        path = Path(path)
        if not path.exists():
            return state
        with open(path) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a crash
                image_id = int(entry["image_id"])
                if "error" in entry:
                    state.failed[image_id] = entry["error"]
                    state.done.pop(image_id, None)
                    state.latency_s.pop(image_id, None)
                else:
                    state.done[image_id] = entry["results"]
                    state.latency_s[image_id] = float(entry["latency_s"])
                    state.failed.pop(image_id, None)
        return state


def collect_results(done: dict[int, list[dict]], image_ids) -> list[dict]:
    """The results of the given images, in image id order (the order mmpose writes)."""
    return [r for i in sorted(image_ids) if i in done for r in done[i]]


def write_json(path: str | os.PathLike, data) -> None:
    """Writes atomically (temp file + rename) so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=4, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def evaluate(annotation_file: str | os.PathLike, results: list[dict],
             image_ids) -> dict[str, float]:
    """The ten COCO keypoint stats of `results` over `image_ids` (xtcocotools, COCO sigmas)."""
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    # xtcocotools narrates every step on stdout; the caller prints its own table.
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotation_file))
        # loadRes adds fields to the entries it is given: hand it copies.
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, "keypoints", COCO_SIGMAS, use_area=True)
        ev.params.useSegm = None
        ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(STAT_NAMES, (float(s) for s in ev.stats)))


def format_table(stats: dict[str, float], reference: dict[str, dict] = REFERENCE) -> str:
    """The ten stats beside the published reference figures (blank where none is published)."""
    refs = list(reference)
    lines = [f"{'metric':<8} {'this run':>8}" + "".join(f" {r:>8}" for r in refs)]
    for name in STAT_NAMES:
        row = f"{name:<8} {stats[name]:>8.3f}"
        for r in refs:
            value = reference[r].get(name)
            row += f" {value:>8.3f}" if value is not None else f" {'':>8}"
        lines.append(row)
    if any(stats[name] == -1 for name in STAT_NAMES):
        lines.append(NOT_COMPUTED_NOTE)
    return "\n".join(lines)


def latency_summary_ms(latency_s) -> dict[str, float]:
    """Mean and p50/p90/p95/p99 request latency in milliseconds."""
    lat = np.asarray(latency_s, np.float64) * 1e3
    if lat.size == 0:
        return {}
    p50, p90, p95, p99 = np.percentile(lat, [50, 90, 95, 99])
    return {"mean": float(lat.mean()), "p50": float(p50), "p90": float(p90),
            "p95": float(p95), "p99": float(p99), "max": float(lat.max())}
