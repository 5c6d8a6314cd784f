#!/usr/bin/env python
"""Detect objects in images with a trained GoogLeNet detector (or ensemble).

    python detect.py image.jpg [more.jpg ...] [--model DIR] [--json OUT] [--out DIR]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from detector.errors import UserError, run_cli

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "models", "bccd")

EPILOG = """\
Every image gets an annotated copy in --out (boxes, labels, scores) and its detections
printed; --json writes them all in the format evaluate.py --detections reads (the image
id is the file name without extension). An unreadable image is reported by name and
skipped; the others are still processed and the exit code is 1 at the end.
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", default=None,
                   help=f"model or ensemble directory (default: the bundled {os.path.relpath(DEFAULT_MODEL, HERE)})")
    p.add_argument("--json", metavar="OUT", help="write all detections as JSON")
    p.add_argument("--out", default="out", metavar="DIR", help="annotated images go here (default: out)")
    p.add_argument("--no-images", action="store_true", help="do not write annotated images")
    p.add_argument("--threshold", type=float, default=0.3,
                   help="minimum score of the detections printed and drawn (default 0.3); --json keeps "
                        "every detection above the model's test.score_threshold, as mAP needs")
    p.add_argument("--proposals", choices=("ss", "multibox", "combined"),
                   help="proposal method (default: the model's; multibox is the fast path)")
    p.add_argument("--vote", choices=("soft", "hard"), help="ensemble vote (default: the ensemble's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--cache-dir", help="proposal cache (default: ~/.cache/googlenet-detector)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    model_dir = args.model or DEFAULT_MODEL
    if not os.path.isdir(model_dir):
        if args.model:
            raise UserError(f"{model_dir}: no such model directory")
        raise UserError(f"no bundled model at {model_dir}; train one with train.py and pass --model DIR")

    from detector.images import ImageReadError, read_image
    from detector.inference import DetectionRunner
    from detector.structures import Detections, write_detections
    from detector.training import resolve_device
    from detector.visualize import draw_detections
    from ensemble import load_predictor
    import numpy as np

    device = resolve_device(args.device)
    t0 = time.perf_counter()
    predictor = load_predictor(model_dir, device, args.vote)
    runner = DetectionRunner(predictor, args.cache_dir, device, workers=1, proposal_method=args.proposals,
                             progress=False)
    classes = predictor.classes
    failures, all_dets = [], []
    for path in args.images:
        t = time.perf_counter()
        try:
            image = read_image(path, exif_transpose=True)
        except ImageReadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures.append(path)
            continue
        results = runner.detect(image, os.path.abspath(path))
        boxes, scores, labels = next(iter(results.values()))
        image_id = os.path.splitext(os.path.basename(path))[0]
        elapsed = time.perf_counter() - t
        shown = scores >= args.threshold
        if not args.quiet:
            print(f"{path}: {int(shown.sum())} detections with score >= {args.threshold} "
                  f"({len(scores)} above {predictor.cfg.test.score_threshold}; {elapsed:.2f} s)")
            for b, s, l in zip(boxes[shown], scores[shown], labels[shown]):
                print(f"  {classes[l]:<16} {s:.3f}  [{b[0]:.0f}, {b[1]:.0f}, {b[2]:.0f}, {b[3]:.0f}]")
        if not args.no_images:
            out_path = os.path.join(args.out, os.path.basename(path))
            if os.path.splitext(out_path)[1].lower() not in (".jpg", ".jpeg", ".png"):
                out_path = os.path.splitext(out_path)[0] + ".png"
            draw_detections(image, boxes[shown], scores[shown], labels[shown], classes, out_path)
        all_dets.append(Detections(np.full(len(scores), image_id), np.array(classes)[labels] if len(labels)
                                   else np.zeros(0, str), scores.astype(float), boxes.astype(float)))
    if args.json:
        write_detections(args.json, Detections.concatenate(all_dets))
    done = len(args.images) - len(failures)
    print(f"{done} image(s) processed in {time.perf_counter() - t0:.2f} s"
          + (f", annotated images in {args.out}/" if done and not args.no_images else "")
          + (f", detections in {args.json}" if args.json else ""))
    if failures:
        print(f"{len(failures)} image(s) failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
