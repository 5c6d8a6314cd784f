"""What each kind of false positive costs one class's AP (Hoiem et al. 2012's "impact"):
the AP again with every false positive of that kind removed, at all scores. The kinds
are eval/analysis.py's (duplicate, mislocalized, other class, background); background
ones are split further into those in images where none of the class is annotated, those
touching the border, and the rest. Seconds, no network:

    python bench/fp_cost.py --dataset ../shared/datasets/bccd --split test --class RBC \\
        bench/results/bccd_test_voc-detections.json bench/results/peer_bccd_s1_test-detections.json

With ``--draw DIR`` it also draws the images where the first file has the most background
false positives (score >= ``--draw-score``) more than the second: the class's annotated
boxes green, the first file's background false positives red, the second's blue (inset).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.boxes import pairwise_iou  # noqa: E402
from core.datasets import load_dataset  # noqa: E402
from core.errors import UserError, run_cli  # noqa: E402
from core.structures import Detections, read_detections  # noqa: E402
from eval import detection_status, evaluate  # noqa: E402
from eval.analysis import false_positive_kind, touches_border  # noqa: E402


def _without(dets: Detections, drop: np.ndarray) -> Detections:
    keep = np.flatnonzero(~drop)
    return Detections(dets.image_ids[keep], dets.labels[keep], dets.scores[keep], dets.boxes[keep])


def fp_kinds(dataset, dets: Detections, cls: str) -> np.ndarray:
    """(N,) str: each detection's false-positive kind ("" for true positives and other classes)."""
    records = {r.image_id: r for r in dataset.images}
    c = dataset.classes.index(cls)
    status = detection_status(dataset, dets, "voc")
    kind = np.full(len(dets), "", object)
    for i in np.flatnonzero((status == 0) & (dets.labels == cls)):
        rec = records[str(dets.image_ids[i])]
        own, other = rec.boxes[(rec.labels == c) & ~rec.difficult], rec.boxes[(rec.labels != c) & ~rec.difficult]
        best_own = pairwise_iou(dets.boxes[i:i + 1], own).max() if len(own) else 0.0
        best_other = pairwise_iou(dets.boxes[i:i + 1], other).max() if len(other) else 0.0
        kind[i] = false_positive_kind(best_own, best_other)
        if kind[i] != "background":
            continue
        if not len(own):
            kind[i] = "background, image without the class"
        elif touches_border(dets.boxes[i:i + 1], rec.width, rec.height)[0]:
            kind[i] = "background, at the border"
        else:
            kind[i] = "background, inside"
    return kind


def fp_costs(dataset, dets: Detections, cls: str, kind: np.ndarray) -> dict:
    """{"AP": ap, kind: (false positives scoring >= 0.3, AP without that kind's false positives)};
    ``kind``: fp_kinds() of ``dets``."""
    out = {"AP": evaluate(dataset, dets, "voc").per_class[cls]}
    for k in ("duplicate", "mislocalized", "other class", "background, image without the class", "background, at the border",
              "background, inside"):
        mask = kind == k
        out[k] = (int((mask & (dets.scores >= 0.3)).sum()), evaluate(dataset, _without(dets, mask), "voc").per_class[cls])
    background = np.char.startswith(kind.astype(str), "background")
    out["background, all"] = (int((background & (dets.scores >= 0.3)).sum()),
                              evaluate(dataset, _without(dets, background), "voc").per_class[cls])
    return out


def draw_background(dataset, files: list[tuple[Detections, np.ndarray]], cls: str, out_dir: str, images: int,
                    score: float) -> list[tuple[str, int, int]]:
    """PNGs of the ``images`` images where the first of ``files`` ((detections, their
    fp_kinds()) pairs) has the most background false positives of ``cls`` more than the
    second (scoring >= ``score``); returns (path, first's count, second's count) for each."""
    from PIL import Image, ImageDraw
    picked = []
    for dets, kind in files[:2]:
        shown = np.char.startswith(kind.astype(str), "background") & (dets.scores >= score)
        ids = dets.image_ids.astype(str)
        picked.append({r.image_id: dets.boxes[shown & (ids == r.image_id)] for r in dataset.images})
    records = sorted(dataset.images, key=lambda r: (len(picked[1][r.image_id]) - len(picked[0][r.image_id]), r.image_id))
    os.makedirs(out_dir, exist_ok=True)
    c, paths = dataset.classes.index(cls), []
    for rec in records[:images]:
        im = Image.open(rec.path).convert("RGB")
        draw = ImageDraw.Draw(im)
        for box in rec.boxes[rec.labels == c]:
            draw.rectangle([float(v) for v in box], outline=(0, 190, 0), width=2)
        for box in picked[0][rec.image_id]:
            draw.rectangle([float(v) for v in box], outline=(230, 0, 0), width=3)
        for x1, y1, x2, y2 in picked[1][rec.image_id]:
            draw.rectangle([float(x1) + 4, float(y1) + 4, float(x2) - 4, float(y2) - 4], outline=(0, 60, 255), width=2)
        paths.append((os.path.join(out_dir, f"{rec.image_id}.png"), len(picked[0][rec.image_id]),
                      len(picked[1][rec.image_id])))
        im.save(paths[-1][0])
    return paths


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("detections", nargs="+")
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--class", dest="cls", required=True)
    p.add_argument("--draw", metavar="DIR", help="draw the images where the first file has the most background "
                   "false positives more than the second (needs two files)")
    p.add_argument("--draw-images", type=int, default=4, metavar="N")
    p.add_argument("--draw-score", type=float, default=0.5, metavar="S")
    args = p.parse_args()
    if args.draw and len(args.detections) < 2:
        p.error("--draw compares two detections files")
    dataset = load_dataset(args.dataset, args.split)
    if args.cls not in dataset.classes:
        raise UserError(f"--class {args.cls!r} is not a class of {args.dataset} ({', '.join(dataset.classes)})")
    detections = [read_detections(d) for d in args.detections]
    # a detection on an image or of a class the split does not have is a UserError here
    kinds = [fp_kinds(dataset, d, args.cls) for d in detections]
    print(f"{args.cls} AP on {args.split}, and without each kind of false positive "
          "(false positives scoring >= 0.3: AP without them)\n")
    names = [os.path.join(os.path.basename(os.path.dirname(d)), os.path.basename(d)) for d in args.detections]
    print("| false positives | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(args.detections))
    costs = [fp_costs(dataset, d, args.cls, k) for d, k in zip(detections, kinds)]
    print("| none removed (AP) | " + " | ".join(f"{c['AP']:.3f}" for c in costs) + " |")
    for k in list(costs[0])[1:]:
        print(f"| {k} | " + " | ".join(f"{c[k][0]}: {c[k][1]:.3f}" for c in costs) + " |")
    if args.draw:
        try:
            paths = draw_background(dataset, list(zip(detections, kinds)), args.cls, args.draw, args.draw_images,
                                    args.draw_score)
        except OSError as e:
            raise UserError(f"--draw {args.draw}: {e.strerror or e}") from None
        print(f"\ndrew {len(paths)} images to {args.draw} (background false positives scoring >= {args.draw_score}, "
              "first file / second): " + ", ".join(f"{os.path.basename(q)} {a} / {b}" for q, a, b in paths))
    return 0


if __name__ == "__main__":
    run_cli(main)
