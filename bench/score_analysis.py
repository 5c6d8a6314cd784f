#!/usr/bin/env python
"""Where a detector's AP goes, per class, from detections files (no network, no torch).

    python bench/score_analysis.py --dataset ../shared/datasets/bccd --split test \\
        --detections bench/results/bccd_test_voc-detections.json

Prints, as markdown, eval.report.class_breakdown for each file: ground-truth count, AP
(`voc`), the recall reached at all, the recall while precision is >= 0.5, and the
highest score of the class. ``--without-unannotated CLASS`` scores again without the
images that have no object of CLASS annotated (a diagnostic of missing annotations, e.g.
BCCD test images full of red cells with none labelled; never a benchmark figure).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.errors import run_cli  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--detections", required=True, nargs="+", help="one or more detections files")
    p.add_argument("--without-unannotated", metavar="CLASS",
                   help="also score without the images that have no CLASS object annotated")
    args = p.parse_args()

    from core.datasets import load_dataset
    from core.structures import read_detections
    from eval import evaluate
    from eval.report import class_breakdown
    dataset = load_dataset(args.dataset, args.split)
    subsets = [("all images", dataset)]
    if args.without_unannotated:
        subsets.append(without_unannotated(dataset, args.without_unannotated))
    print("| detections | images | class | #gt | AP | final recall | recall at precision >= 0.5 | top score |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.detections:
        dets = read_detections(path)
        for label, data in subsets:
            kept = detections_on(dets, data)
            for row in class_breakdown(evaluate(data, kept, "voc"), kept):
                print(f"| {os.path.basename(path)} | {label} | {row['class']} | {row['num_gt']} | {row['ap']:.3f} | "
                      f"{row['final_recall']:.3f} | {row['recall_at_precision_0.5']:.3f} | {row['top_score']:.3f} |")
    return 0


def detections_on(dets, dataset):
    """The detections on ``dataset``'s images only."""
    import numpy as np

    from core.structures import Detections
    mask = np.isin(dets.image_ids, [r.image_id for r in dataset.images])
    return Detections(dets.image_ids[mask], dets.labels[mask], dets.scores[mask], dets.boxes[mask])


def without_unannotated(dataset, name: str):
    """(label, the dataset without the images that have no ``name`` object annotated)."""
    import dataclasses

    from core.errors import UserError
    if name not in dataset.classes:
        raise UserError(f"--without-unannotated {name}: not a class of the dataset ({', '.join(dataset.classes)})")
    k = list(dataset.classes).index(name)
    empty = [r.image_id for r in dataset.images if not (r.labels == k).any()]
    label = f"without {len(empty)} with no {name} ({', '.join(empty)})"
    return label, dataclasses.replace(dataset, images=[r for r in dataset.images if r.image_id not in set(empty)])


if __name__ == "__main__":
    run_cli(main)
