"""COCO keypoint evaluation of the pose server, as mmpose evaluates hrnet_w32_coco_512x512.

    python -m client.coco_eval [--url localhost:8001[,HOST:PORT...]] [--model hrnet_pose]
        [--coco-root DIR | --images DIR --annotations FILE] [--concurrency N] [--limit N]
        [--out results/coco_eval/results.json] [--resume] [--vis-dir DIR]
        [--wait-ready S] [--ssl --root-certificates PEM ...] [--header NAME:VALUE]
    python -m client.coco_eval --oracle [--coco-root DIR | --images DIR --annotations FILE] ...

Without a data argument it evaluates the COCO mini set bundled in the project (4 real val2017
images). Every finished image is appended to OUT's journal (`*.partial.jsonl`) at once, so a crash
or Ctrl-C loses nothing: `--resume` redoes only the images without a result. Writes OUT (COCO
results, the format mmpose writes) and `*.summary.json` (stats, speed, failures).

Several URLs (`--url a:8001,b:8001`, servers of the same model) share the images; an image whose
request fails with UNAVAILABLE or a lost connection is sent again to another of them
(client/endpoints.py), and the summary counts these retries.

--oracle needs no server: it scores the output a perfect network would give (built from the
annotations, client/oracle.py) through this project's post-processing, with the same table plus
the mean keypoint error. That is the post-processing's upper bound, not a network's accuracy.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import cv2
from tqdm import tqdm
from tritonclient.utils import InferenceServerException

from backend import cli
from client import coco, connection
from client.connection import EXIT_UNAVAILABLE, open_or_exit, random_weight_models, random_weights_banner
from client.endpoints import Endpoints
from client.pose import DEFAULT_MODEL, infer_pose
from client.visualize import draw_poses, side_by_side, write_png

EXIT_FAILED_IMAGES = 1
EXIT_INTERRUPTED = 130
DEFAULT_OUT = Path("results/coco_eval/results.json")
DEFAULT_ORACLE_OUT = Path("results/coco_eval/oracle.json")
VIS_MIN_SCORE = 0.2


def companion(out: Path, suffix: str) -> Path:
    """results.json -> results<suffix> beside it (journal, summary)."""
    return out.with_name(out.stem + suffix)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="python -m client.coco_eval", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=cli.exit_codes_help(cli.EXIT_UNAVAILABLE, cli.EXIT_INTERRUPTED, details={
            cli.EXIT_OK: "all images evaluated",
            cli.EXIT_FAILED: "some images failed (listed), or a usage error (one line on stderr)",
            cli.EXIT_INTERRUPTED: "interrupted (rerun with --resume)"}))
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--coco-root", type=Path,
                        help="COCO root: annotations/person_keypoints_val2017.json + val2017/")
    parser.add_argument("--images", type=Path, help="image folder (with --annotations)")
    parser.add_argument("--annotations", type=Path, help="keypoint annotation json (with --images)")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    parser.add_argument("--limit", type=int, help="evaluate only the first N image ids (N >= 1)")
    parser.add_argument("--out", type=Path, help=f"results json to write (default {DEFAULT_OUT}, "
                                                 f"{DEFAULT_ORACLE_OUT} with --oracle)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the images already finished in OUT's journal")
    parser.add_argument("--vis-dir", type=Path,
                        help="save ground truth | prediction pictures of every image here")
    parser.add_argument("--oracle", action="store_true",
                        help="no server: a perfect network's output (from the annotations) through "
                             "this project's post-processing, the upper bound it allows")
    connection.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.oracle and args.resume:
        parser.error("--resume does not apply to --oracle (it takes seconds and keeps no journal)")
    args.out = args.out or (DEFAULT_ORACLE_OUT if args.oracle else DEFAULT_OUT)
    if args.coco_root and (args.images or args.annotations):
        parser.error("give either --coco-root or --images with --annotations")
    if bool(args.images) != bool(args.annotations):
        parser.error("--images and --annotations go together")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit {args.limit}: evaluate at least 1 image (leave --limit out for all)")
    return args


def data_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.images:
        return args.annotations, args.images
    return coco.official_layout(args.coco_root or coco.PROJECT_COCO_ROOT)


def run_requests(endpoints: Endpoints, model: str, dataset: coco.CocoImages, todo: list[int],
                 concurrency: int, journal: coco.ResultsJournal,
                 already_done: int) -> tuple[float, int]:
    """Sends the images with `concurrency` requests in flight, journaling each as it finishes.

    Returns (wall seconds, images answered). Raises InferenceServerException when the server
    goes away, KeyboardInterrupt on Ctrl-C; the journal holds everything finished before.
    """
    def one(image_id: int):
        data = dataset.path(image_id).read_bytes()
        start = time.perf_counter()
        keypoints, scores = endpoints.call(lambda client: infer_pose(client, model, data))
        return time.perf_counter() - start, coco.person_results(image_id, keypoints, scores)

    total = already_done + len(todo)
    answered = failed = 0
    bar = tqdm(total=total, initial=already_done, unit="img", desc="coco_eval",
               dynamic_ncols=True, file=sys.stderr)
    pool = ThreadPoolExecutor(max_workers=concurrency)
    queue = iter(todo)
    running: dict = {}
    start = time.perf_counter()
    try:
        # Submit only as many as may be in flight, so Ctrl-C leaves little to cancel.
        for image_id in queue:
            running[pool.submit(one, image_id)] = image_id
            if len(running) == concurrency:
                break
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                image_id = running.pop(future)
                try:
                    latency, results = future.result()
                except InferenceServerException as err:
                    if endpoints.lost(err):
                        raise
                    journal.record_failure(image_id, str(err))
                    failed += 1
                except (OSError, ValueError) as err:  # unreadable file, malformed response
                    journal.record_failure(image_id, f"{type(err).__name__}: {err}")
                    failed += 1
                else:
                    journal.record(image_id, results, latency)
                    answered += 1
                bar.update(1)
                bar.set_postfix(failed=failed, refresh=False)
                next_id = next(queue, None)
                if next_id is not None:
                    running[pool.submit(one, next_id)] = next_id
    finally:
        for future in running:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    return time.perf_counter() - start, answered


def save_pictures(dataset: coco.CocoImages, done: dict[int, list[dict]], image_ids: list[int],
                  vis_dir: Path) -> None:
    for image_id in tqdm(image_ids, unit="img", desc="pictures", file=sys.stderr):
        image = cv2.imread(str(dataset.path(image_id)), cv2.IMREAD_COLOR)
        truth = coco.ground_truth_keypoints(dataset.annotations[image_id])
        keypoints, scores = coco.results_to_arrays(done[image_id])
        picture = side_by_side([
            (f"ground truth: {len(truth)} people", draw_poses(image, truth, None, min_score=1)),
            (f"prediction: {len(scores)} people",
             draw_poses(image, keypoints, scores, VIS_MIN_SCORE)),
        ])
        write_png(vis_dir / f"{dataset.path(image_id).stem}.png", picture)


def finish(args: argparse.Namespace, dataset: coco.CocoImages, done: dict[int, list[dict]],
           evaluated: list[int], failures: list[dict]) -> int:
    """The pictures (--vis-dir), the failed images on stderr, and the exit code of a run."""
    if args.vis_dir:
        save_pictures(dataset, done, evaluated, args.vis_dir)
        print(f"pictures of {len(evaluated)} images in {args.vis_dir}")
    if failures:
        print(f"\n{len(failures)} image(s) failed:", file=sys.stderr)
        for f in failures:
            print(f"  {f['image_id']} {f['file']}: {f['error']}", file=sys.stderr)
        return EXIT_FAILED_IMAGES
    return 0


def run_oracle(args: argparse.Namespace, dataset: coco.CocoImages, image_ids: list[int]) -> int:
    """--oracle: the client's own results file, evaluation and table, no server."""
    from client import oracle

    run = oracle.run_oracle(dataset, image_ids)
    evaluated = [i for i in image_ids if i in run.done]
    failures = [{"image_id": i, "file": str(dataset.path(i)), "error": run.failed[i]}
                for i in image_ids if i in run.failed]
    results = coco.collect_results(run.done, evaluated)
    coco.write_json(args.out, results)
    stats = coco.evaluate(dataset.annotation_file, results, evaluated)

    print(oracle.LABEL)
    print(f"\nCOCO keypoints, {len(evaluated)} of {len(image_ids)} images of "
          f"{dataset.annotation_file}, {len(results)} people, ORACLE network (not a network's accuracy)")
    print(coco.format_table(stats))
    print(run.describe())
    print(f"wrote {args.out} and {companion(args.out, '.summary.json')}")
    coco.write_json(companion(args.out, ".summary.json"), {
        "oracle": True, "note": oracle.LABEL,
        "annotation_file": str(dataset.annotation_file), "image_dir": str(dataset.image_dir),
        "images": len(image_ids), "evaluated_images": len(evaluated), "people": len(results),
        "stats": stats, "keypoint_error": run.summary(), "failures": failures})
    return finish(args, dataset, run.done, evaluated, failures)


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, argv)


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    conn = connection.from_args(args)
    annotation_file, image_dir = data_paths(args)
    try:
        dataset = coco.load_images(annotation_file, image_dir)
    except (OSError, ValueError, KeyError) as err:
        raise cli.UserError(f"cannot use the COCO data at {annotation_file}, {image_dir}: "
                            f"{err}") from None
    image_ids = dataset.ids if args.limit is None else dataset.ids[:args.limit]
    if args.oracle:
        return run_oracle(args, dataset, image_ids)

    endpoints, random_models = open_or_exit(Endpoints.connect, conn, args.model,
                                            lambda e: random_weight_models(e.client(), args.model), "the config")
    if random_models:
        print(random_weights_banner(random_models), file=sys.stderr)

    journal_path = companion(args.out, ".partial.jsonl")
    earlier = coco.ResultsJournal.read(journal_path) if args.resume else coco.JournalState()
    todo = [i for i in image_ids if i not in earlier.done]
    if args.resume:
        print(f"resuming from {journal_path}: {len(image_ids) - len(todo)} of {len(image_ids)} "
              f"images already done", file=sys.stderr)

    wall_s, answered = 0.0, 0
    with coco.ResultsJournal(journal_path, resume=args.resume) as journal:
        try:
            wall_s, answered = run_requests(endpoints, args.model, dataset, todo, args.concurrency,
                                            journal, len(image_ids) - len(todo))
        except KeyboardInterrupt:
            print(f"\ninterrupted: finished images are kept in {journal_path}; "
                  f"rerun with --resume to continue", file=sys.stderr)
            return EXIT_INTERRUPTED
        except InferenceServerException as err:
            print(f"error: lost the server at {args.url} (model '{args.model}'): {err.message()}\n"
                  f"finished images are kept in {journal_path}; rerun with --resume",
                  file=sys.stderr)
            return EXIT_UNAVAILABLE
        finally:
            endpoints.close()

    state = coco.ResultsJournal.read(journal_path)
    evaluated = [i for i in image_ids if i in state.done]
    failures = [{"image_id": i, "file": str(dataset.path(i)), "error": state.failed[i]}
                for i in image_ids if i not in state.done and i in state.failed]
    results = coco.collect_results(state.done, evaluated)
    coco.write_json(args.out, results)
    stats = coco.evaluate(dataset.annotation_file, results, evaluated)
    latency = coco.latency_summary_ms([state.latency_s[i] for i in evaluated])
    speed = answered / wall_s if wall_s > 0 else 0.0

    print(f"\nCOCO keypoints, {len(evaluated)} of {len(image_ids)} images of "
          f"{dataset.annotation_file}, {len(results)} people, model '{args.model}' at {args.url}")
    print(coco.format_table(stats))
    if random_models:
        print(random_weights_banner(random_models))
    print(f"speed: {speed:.2f} images/s ({answered} images in {wall_s:.1f} s this run, "
          f"concurrency {args.concurrency})")
    if latency:
        print("latency ms (all evaluated images): " + ", ".join(
            f"{k} {v:.1f}" for k, v in latency.items()))
    if len(endpoints.clients) > 1:
        print(f"{len(endpoints.clients)} endpoints, {endpoints.retries} request(s) sent again to "
              f"another endpoint")
    print(f"wrote {args.out} and {companion(args.out, '.summary.json')}")

    coco.write_json(companion(args.out, ".summary.json"), {
        "model": args.model, "url": args.url,
        "annotation_file": str(dataset.annotation_file), "image_dir": str(dataset.image_dir),
        "images": len(image_ids), "evaluated_images": len(evaluated), "people": len(results),
        "stats": stats, "reference": coco.REFERENCE,
        "random_weight_models": random_models, "ap_meaningless": bool(random_models),
        "images_per_s": speed, "images_this_run": answered, "wall_s": wall_s,
        "concurrency": args.concurrency, "latency_ms": latency, "failures": failures,
        "retries": endpoints.retries,
    })

    return finish(args, dataset, state.done, evaluated, failures)


if __name__ == "__main__":
    sys.exit(main())
