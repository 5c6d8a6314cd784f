"""Detect objects in images with a trained GoogLeNet detector (or ensemble).

    python detect.py image.jpg [more.jpg ...] [--model DIR] [--json OUT] [--out DIR]
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time

from core.errors import UserError, run_cli
from pipeline.outputs import FORMATS

EPILOG = """\
Every image gets an annotated copy in --out (boxes, labels, scores) and its detections
printed; --json writes them all in the format evaluate.py --detections reads. The image
id is the file name without extension; when two inputs share one, the later ones get
-2, -3, ... (the same id in the JSON and the picture's name). An unreadable image is
reported by name and skipped; the others are still processed and the exit code is 1 at
the end. A user error (bad model, unwritable --out) is one line and exit code 2.
Proposals are computed fresh unless --cache-dir is given.
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders, quoted globs ('photos/*.jpg') or videos (.mp4, .avi, .mov, .mkv)")
    p.add_argument("--model", default=None, help="model or ensemble directory (default: the bundled BCCD model)")
    p.add_argument("--json", metavar="OUT", help="write all detections to OUT (the format of --format)")
    p.add_argument("--format", choices=FORMATS, default="json",
                   help="json: this project's (evaluate.py reads it); coco: COCO results; csv; voc-xml: one "
                        "VOC annotation per image in the folder OUT (default: json)")
    p.add_argument("--dataset", metavar="JSON", help="a COCO annotation file (instances_*.json) to look image and "
                                                     "category ids up in, for --format coco")
    p.add_argument("--recursive", action="store_true", help="folders and ** patterns: look below too")
    p.add_argument("--out", default="out", metavar="DIR", help="annotated images and videos go here (default: out)")
    p.add_argument("--no-images", action="store_true", help="do not write annotated images")
    p.add_argument("--threshold", type=float, default=0.3,
                   help="minimum score of the detections printed and drawn (default 0.3); --json keeps "
                        "every detection above the model's test.score_threshold, as mAP needs")
    p.add_argument("--proposals", choices=("ss", "multibox", "combined"),
                   help="proposal method (default: the model's; multibox is the fast path)")
    p.add_argument("--vote", choices=("soft", "hard"), help="ensemble vote (default: the ensemble's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--cache-dir", help="keep proposals in this cache (default: none, computed fresh)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    return p.parse_args(argv)


def unique_image_ids(paths: list[str]) -> list[str]:
    """File stems, with -2, -3, ... on the second and later uses of one stem."""
    seen, ids = {}, []
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        ids.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return ids


def check_writable(directory: str) -> None:
    """Fail before the first image, not after it, when --out cannot take files."""
    import tempfile
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"{directory}: cannot write annotated images there ({exc.strerror})") from None


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if not args.no_images:
        check_writable(args.out)
    from core.images import ImageReadError, read_image
    from core.visualize import draw_detections
    from pipeline.api import default_model_dir, load_detector
    from pipeline.outputs import VideoOut, annotate, expand_inputs, is_video, video_frames, write_detection_file

    t0 = time.perf_counter()
    inputs = expand_inputs(args.inputs, args.recursive)
    if args.model and not os.path.isdir(args.model):
        raise UserError(f"{args.model}: no such model directory")
    model_dir = args.model or default_model_dir()
    detector = load_detector(model_dir, args.device, args.vote, args.cache_dir)
    if args.model is None and not args.quiet:
        print(f"model: the bundled {model_dir} ({', '.join(detector.classes)}; pass --model for another)")
    runner = detector.runner(args.proposals or "paper")
    failures, found_all, sizes, done = [], [], {}, 0

    def report(name, found, seconds):
        shown = found.above(args.threshold)
        if not args.quiet:
            print(f"{name}: {len(shown)} detections with score >= {args.threshold} ({len(found)} above "
                  f"{detector.predictor.cfg.test.score_threshold}; {seconds:.2f} s)")
            for b, s, label in zip(shown.boxes, shown.scores, shown.label_names):
                print(f"  {label:<16} {s:.3f}  [{b[0]:.0f}, {b[1]:.0f}, {b[2]:.0f}, {b[3]:.0f}]")
        return shown

    try:
        for path, image_id in zip(inputs, unique_image_ids(inputs)):
            t = time.perf_counter()
            if is_video(path):
                video = None if args.no_images else VideoOut(os.path.join(args.out, image_id + ".mp4"), _fps(path))
                try:
                    for n, frame in video_frames(path):
                        fid = f"{image_id}-frame{n:06d}"
                        found = next(iter(runner.detect(frame, fid).values()))
                        found_all.append(found)
                        sizes[fid] = (frame.shape[1], frame.shape[0])
                        shown = report(f"{path} frame {n}", found, time.perf_counter() - t)
                        t = time.perf_counter()
                        if video:
                            video.write(annotate(frame, shown))
                except UserError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    failures.append(path)
                    continue
                finally:
                    if video:
                        video.close()
                done += 1
                continue
            try:
                image = read_image(path, exif_transpose=True)
            except ImageReadError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failures.append(path)
                continue
            found = next(iter(runner.detect(image, image_id).values()))
            found_all.append(found)
            sizes[image_id] = (image.shape[1], image.shape[0])
            shown = report(path, found, time.perf_counter() - t)
            if not args.no_images:
                ext = os.path.splitext(path)[1].lower()
                out_path = os.path.join(args.out, image_id + (ext if ext in (".jpg", ".jpeg", ".png") else ".png"))
                draw_detections(image, shown.boxes, shown.scores, shown.labels, detector.classes, out_path)
            done += 1
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise UserError(f"no space left on the device writing to {args.out}") from None
        raise
    finally:        # an interrupt or a failure keeps what was detected
        if args.json:
            write_detection_file(args.json, args.format, found_all, sizes, args.dataset)
    print(f"{done} input(s) processed in {time.perf_counter() - t0:.2f} s"
          + (f", annotated copies in {args.out}/" if done and not args.no_images else "")
          + (f", detections in {args.json}" if args.json else ""))
    if failures:
        print(f"{len(failures)} input(s) failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def _fps(path: str) -> float:
    import cv2
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return fps or 25.0


def cli() -> None:
    """The console script's entry point."""
    run_cli(main)
