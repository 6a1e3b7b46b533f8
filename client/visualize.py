"""Pose pictures: people's 17 keypoints and the COCO skeleton drawn on the image.

    python -m client.visualize IMAGE [--url localhost:8001] [--model hrnet_pose] [-o out.png]
                                     [--min-score 0.2] [TLS, header and --wait-ready options]

Limbs and joints are coloured by body side (left green, right blue, centre orange); each person's
score is written above them. `client.coco_eval --vis-dir` uses the same drawing, ground truth
beside the prediction. When the served network has random weights it says so: the poses are
then noise (often nobody at all).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tritonclient.utils import InferenceServerException

from backend import cli
from client import connection
from client.connection import connect, open_or_exit, random_weight_models, random_weights_banner
from client.pose import DEFAULT_MODEL, infer_pose

# COCO skeleton, 0-based joint indices (the annotation file's `skeleton` minus one).
SKELETON = np.array([
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)])
# BGR. COCO joints: 0 nose (centre), odd indices left, even indices right.
LEFT, RIGHT, CENTRE = (0, 200, 0), (255, 128, 0), (0, 165, 255)
JOINT_SIDE = np.array([0] + [1 if j % 2 else 2 for j in range(1, 17)])
SIDE_COLOURS = (CENTRE, LEFT, RIGHT)
TITLE_HEIGHT = 28


def limb_colour(a: int, b: int) -> tuple[int, int, int]:
    """Left or right when both joints are on that side, centre otherwise (shoulders, hips, eyes)."""
    side_a, side_b = JOINT_SIDE[a], JOINT_SIDE[b]
    return SIDE_COLOURS[side_a] if side_a == side_b else CENTRE


def draw_poses(image: np.ndarray, keypoints: np.ndarray, scores: np.ndarray | None = None,
               min_score: float = 0.2) -> np.ndarray:
    """A copy of the BGR `image` with people drawn: keypoints [P,17,3] (x, y, score), scores [P].

    Joints scoring below `min_score` are left out, and limbs that miss a joint. For ground truth
    pass the visibility flag as the score (0 = not labelled).
    """
    canvas = image.copy()
    thickness = max(1, round(min(image.shape[:2]) / 250))
    radius = thickness + 2
    for p, person in enumerate(np.asarray(keypoints, np.float32).reshape(-1, 17, 3)):
        shown = person[:, 2] >= min_score
        if not shown.any():
            continue
        xy = np.round(person[:, :2]).astype(np.int32)
        for a, b in SKELETON:
            if shown[a] and shown[b]:
                cv2.line(canvas, tuple(xy[a]), tuple(xy[b]), limb_colour(a, b), thickness,
                         cv2.LINE_AA)
        for j in np.flatnonzero(shown):
            cv2.circle(canvas, tuple(xy[j]), radius, SIDE_COLOURS[JOINT_SIDE[j]], -1, cv2.LINE_AA)
        if scores is not None:
            x, y = xy[shown, 0].min(), xy[shown, 1].min()
            put_label(canvas, f"{float(scores[p]):.2f}", (int(x), max(12, int(y) - 6)))
    return canvas


def put_label(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.5) -> None:
    """White text with a dark outline, readable on any background."""
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)


def side_by_side(panels: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Images of equal height next to each other, each under a title band."""
    columns = []
    for title, image in panels:
        band = np.zeros((TITLE_HEIGHT, image.shape[1], 3), np.uint8)
        put_label(band, title, (6, TITLE_HEIGHT - 9), scale=0.6)
        columns.append(np.concatenate([band, image], axis=0))
    return np.concatenate(columns, axis=1)


def decode_image(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable image")
    return image


def write_png(path: str | Path, image: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def read_image(path: Path) -> tuple[bytes, np.ndarray]:
    """The file's bytes and its decoded BGR image; UserError naming the file otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise cli.UserError(f"{path}: no such file (give a JPEG or PNG image)") from None
    except IsADirectoryError:
        raise cli.UserError(f"{path} is a folder: give one JPEG or PNG image") from None
    except OSError as err:
        raise cli.UserError(f"{path}: cannot read it ({err.strerror})") from None
    try:
        return data, decode_image(data)
    except ValueError:
        raise cli.UserError(f"{path} is not an image OpenCV can decode (give a JPEG or PNG)") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="python -m client.visualize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=cli.exit_codes_help(cli.EXIT_UNAVAILABLE))
    parser.add_argument("image", type=Path, help="JPEG or PNG file")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("-o", "--output", type=Path,
                        help="PNG to write (default: IMAGE_pose.png in the current folder)")
    parser.add_argument("--min-score", type=float, default=0.2,
                        help="joints scoring lower are not drawn")
    connection.add_arguments(parser)
    return parser.parse_args(argv)


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    conn = connection.from_args(args)
    data, image = read_image(args.image)
    client, random_models = open_or_exit(connect, conn, args.model,
                                         lambda c: random_weight_models(c, args.model), "the config")
    try:
        keypoints, scores = infer_pose(client, args.model, data)
    except InferenceServerException as err:
        print(f"error: the server rejected {args.image}: {err}", file=sys.stderr)
        return cli.EXIT_FAILED
    finally:
        client.close()
    output = args.output or Path(f"{args.image.stem}_pose.png")
    write_png(output, draw_poses(image, keypoints, scores, args.min_score))
    drawn = int(((keypoints[:, :, 2] >= args.min_score).any(axis=1)).sum()) if len(scores) else 0
    if random_models:
        print(random_weights_banner(random_models, "The poses drawn are"), file=sys.stderr)
    print(f"{output}: {len(scores)} people found, {drawn} drawn "
          f"(joints scoring >= {args.min_score})"
          + (f"; RANDOM weights ({', '.join(random_models)}): the poses are noise"
             if random_models else ""))
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
