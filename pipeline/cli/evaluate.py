"""Score detections on a dataset split with the ILSVRC, VOC or COCO rules.

    python evaluate.py --dataset DIR --split NAME --detections FILE --metric voc
"""
from __future__ import annotations

import argparse
import logging
import os
import time

from core.errors import UserError, run_cli

ANALYSIS_MAX_DETECTIONS = 200_000   # --json adds the error analysis below this (a Python loop per detection)

EPILOG = """\
metrics:
  ilsvrc  ImageNet DET devkit (eval_detection.m): +1-pixel IoU, per-object threshold
          min(0.5, wh/((w+10)(h+10))), greedy best-unmatched matching, blacklist.
  voc07   VOCevaldet, 11-point interpolated AP at IoU 0.5.
  voc     VOCevaldet, area under the PR curve at IoU 0.5 (VOC2010+).
  coco    pycocotools COCOeval: AP@[.5:.95], AP50, AP75, small/medium/large, AR.

detections file: a JSON list of
  {"image": "<image id>", "label": "<class>", "score": 0.9, "box": [xmin, ymin, xmax, ymax]}
in the annotation's pixel coordinates, or COCO's results format (a list of
  {"image_id": 397133, "category_id": 18, "bbox": [x, y, w, h], "score": 0.9})
against a COCO dataset. A detection for an image outside the split or
of an unknown class is an error; --ignore-unknown drops them with a warning and a count.
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="dataset root (VOC, ILSVRC DET or COCO layout)")
    p.add_argument("--split", help="split name, e.g. test, val, val2017 (with --model, default: the model's "
                                   "data.test_split)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--detections", metavar="FILE", help="detections JSON to score")
    src.add_argument("--model", metavar="DIR", help="run this model (or ensemble) on the split, then score")
    p.add_argument("--metric", choices=("ilsvrc", "voc07", "voc", "coco"), default="voc")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON")
    p.add_argument("--plots", metavar="DIR", help="write precision-recall curves (PNG) here")
    p.add_argument("--report", metavar="DIR", help="write DIR/index.html: per-class AP, PR curves, confusion "
                                                   "matrix, false-positive breakdown, worst images")
    p.add_argument("--report-threshold", type=float, default=0.3, metavar="S",
                   help="score from which detections count in the confusion matrix, the false-positive "
                        "breakdown and the gallery (default 0.3)")
    p.add_argument("--ignore-invalid", action="store_true",
                   help="drop detections whose box has x2 < x1 or y2 < y1 (with a warning) instead of failing")
    p.add_argument("--ignore-unknown", action="store_true",
                   help="drop detections of unknown images/classes instead of failing")
    p.add_argument("--format", default="auto", choices=("auto", "voc", "ilsvrc", "coco"),
                   help="dataset layout (default: detected)")
    p.add_argument("--synsets", metavar="FILE", help="ILSVRC synset map (default: devkit/data/map_det.txt)")
    p.add_argument("--blacklist", metavar="FILE",
                   help="ILSVRC DET blacklist (default: devkit/data/*det_validation_blacklist.txt for val)")
    p.add_argument("--image-root", metavar="DIR", help="COCO image folder (default: <dataset>/<split>)")
    p.add_argument("--quiet", action="store_true", help="no annotation warnings or progress bars")
    p.add_argument("--compare", metavar="FILE",
                   help="another detections JSON on the same split, scored beside these, with the gap's 95%% "
                        "interval from a paired bootstrap over the images (not with --metric coco)")
    p.add_argument("--resamples", type=int, default=1000, metavar="N",
                   help="image resamples for --compare (default 1000)")
    model = p.add_argument_group("with --model")
    model.add_argument("--save-detections", metavar="FILE",
                       help="where the detections go (default: beside --json, else out/<model>-<split>-detections.json)")
    model.add_argument("--proposals", choices=("ss", "multibox", "combined"), help="override the model's method")
    model.add_argument("--vote", choices=("soft", "hard"), help="ensemble vote (default: the ensemble's)")
    model.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="test settings for this run, e.g. --set test.flip_vote=true test.nms_iou=0.4")
    model.add_argument("--device", default="cpu", help="cpu or cuda")
    model.add_argument("--cache-dir", help="proposal cache (default: ~/.cache/googlenet-detector)")
    model.add_argument("--workers", type=int, default=2, help="selective-search processes")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from core import distributed
    logging.basicConfig(level=logging.ERROR if args.quiet or not distributed.is_main() else logging.INFO,
                        format="%(levelname)s: %(message)s")
    from core.datasets import load_dataset
    from core.fileio import write_json
    from core.structures import read_detections
    from eval import evaluate
    from eval.report import format_table, save_pr_plots

    t0 = time.perf_counter()
    classes = None
    if args.model:
        from core.modeldir import model_classes, model_config
        classes = model_classes(args.model)     # the model's class list and order
        args.split = args.split or model_config(args.model).data.test_split
    if not args.split:
        raise UserError("--split is needed with --detections (e.g. --split test)")
    if args.compare and args.metric == "coco":
        raise UserError("--compare: the paired bootstrap takes --metric ilsvrc, voc or voc07, not coco")
    if args.resamples < 1:
        raise UserError(f"--resamples must be at least 1, not {args.resamples}")
    dataset = load_dataset(args.dataset, args.split, classes=classes, fmt=args.format, synsets=args.synsets,
                           blacklist=args.blacklist, image_root=args.image_root)
    timing = None
    if args.model:
        ran, t1 = run_model(args, dataset), time.perf_counter()
        if ran is None:                # a torchrun rank other than 0: its share is done
            return 0
        results, timing, dets_scored = ran
    else:
        dets = dets_scored = read_detections(args.detections, args.ignore_invalid, dataset.category_names)
        t1 = time.perf_counter()
        results = {"AP": evaluate(dataset, dets, args.metric, ignore_unknown=args.ignore_unknown)}
    t2 = time.perf_counter()
    names = list(results)
    result = results["ensemble"] if "ensemble" in results else results[names[0]]
    table = dict(results)
    if args.compare and args.detections:     # two files: each column named by its file
        table = {os.path.splitext(os.path.basename(args.detections))[0][:24]: result}
    comparison = compare(args, dataset, dets_scored, result.mAP) if args.compare else None
    if comparison:
        table[comparison["name"] if comparison["name"] not in table else "compared"] = comparison["result"]
    print(format_table(table, dataset))
    print(f"loaded in {t1 - t0:.2f} s, scored in {t2 - t1:.2f} s" if not args.model else
          f"detected and scored in {t2 - t0:.1f} s")
    if comparison:
        print(comparison["line"])
    analysis = None
    if result.metric != "coco" and (args.report or (args.json and len(dets_scored) <= ANALYSIS_MAX_DETECTIONS)):
        from eval.analysis import analyze
        analysis = analyze(dataset, dets_scored, args.report_threshold)
    if args.json:
        out = result.to_json()
        if analysis:
            out["confusion"], out["false_positives"] = analysis["confusion"], analysis["false_positives"]
        if len(results) > 1:
            out["members"] = {n: r.to_json() for n, r in results.items() if n != "ensemble"}
        if timing:
            out["seconds_per_image"] = timing
        if comparison:
            out["compare"] = dict(comparison["summary"], **comparison["result"].to_json())
        write_json(args.json, out)
        print(f"wrote {args.json}")
    if args.report:
        from eval.html_report import write_report
        t = time.perf_counter()
        page = write_report(args.report, results, dataset, dets_scored, analysis,
                            title=f"{args.model or args.detections} on {args.split}")
        print(f"wrote {page} in {time.perf_counter() - t:.1f} s")
    if args.plots:
        paths = save_pr_plots(result, dataset, args.plots)
        print(f"wrote {len(paths)} plot(s) to {args.plots}")
    return 0


def run_model(args, dataset) -> tuple[dict, dict, object] | None:
    """Detect over the split with a model or ensemble (members reported too), save the
    detections, and score each result: ({name: result}, seconds per image per stage). Under torchrun the ranks share the images and
    rank 0 scores them (the others return None)."""
    from core import distributed
    from core.config import override_test_settings, parse_overrides
    from core.structures import write_detections
    from eval import evaluate
    from networks.engine import resolve_device
    from pipeline.api import load_detector
    from proposals.cache import default_cache_dir
    device = distributed.init(resolve_device(args.device))
    detector = load_detector(args.model, device, args.vote, args.cache_dir or default_cache_dir(), args.workers)
    predictor = detector.predictor
    overrides = parse_overrides(args.overrides)
    for member in predictor.members:
        override_test_settings(member.cfg, overrides)
    runner = detector.runner(args.proposals or "paper", progress=not args.quiet)
    try:
        detections = runner.detect_dataset(dataset, members=len(predictor) > 1)
    except BaseException:
        distributed.shutdown(failed=True)
        raise
    distributed.shutdown()
    if not distributed.is_main():
        return None
    name = os.path.basename(os.path.normpath(args.model))
    path = args.save_detections or (os.path.splitext(args.json)[0] + "-detections.json" if args.json else
                                    os.path.join("out", f"{name}-{args.split}-detections.json"))
    main_name = "ensemble" if "ensemble" in detections else next(iter(detections))
    write_detections(path, detections[main_name])
    timing = runner.timing_report()
    print(f"detections saved to {path}; seconds per image: "
          + ", ".join(f"{k} {v:.3f}" for k, v in timing.items()))
    order = [main_name] + [n for n in detections if n != main_name]
    return {n: evaluate(dataset, detections[n], args.metric) for n in order}, timing, detections[main_name]


def compare(args, dataset, dets, mAP: float) -> dict:
    """Score ``args.compare`` on the same images and bootstrap the mAP gap (``dets``, whose
    mAP is ``mAP``, minus those) over image resamples: a gap whose interval holds 0 is within what the test images'
    own spread moves (eval/bootstrap.py)."""
    import numpy as np

    from core.structures import read_detections
    from eval import evaluate
    from eval.bootstrap import bootstrap_differences, win_share
    other = read_detections(args.compare, args.ignore_invalid, dataset.category_names)
    try:
        result = evaluate(dataset, other, args.metric, ignore_unknown=args.ignore_unknown)
    except UserError as e:         # say which of the two files it is
        raise UserError(f"--compare {args.compare}: {e}") from None
    gaps = bootstrap_differences(dataset, dets, other, args.metric, args.resamples)
    low, high = np.percentile(gaps, [2.5, 97.5])
    summary = {"detections": args.compare, "gap": mAP - result.mAP, "gap_95": [float(low), float(high)],
               "resamples": args.resamples, "win_share": win_share(gaps)}
    line = (f"these minus {args.compare}: mAP {summary['gap']:+.4f}, 95% interval {low:+.4f} .. {high:+.4f} "
            f"over {args.resamples} image resamples (paired bootstrap); these score higher on "
            f"{100 * summary['win_share']:.0f}% of them")
    name = os.path.splitext(os.path.basename(args.compare))[0][:24]
    return {"name": name, "result": result, "summary": summary, "line": line}


def cli() -> None:
    """The console script's entry point."""
    run_cli(main)
