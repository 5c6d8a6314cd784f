#!/usr/bin/env python
"""Where a detector's AP goes, per class, from detections files (no network, no torch).

    python bench/score_analysis.py --dataset ../shared/datasets/bccd --split test \\
        --detections bench/results/bccd_test_voc-detections.json

Prints, as markdown, eval.report.class_breakdown for each file: ground-truth count, AP
(`voc`), the recall reached at all, the recall while precision is >= 0.5, and the
highest score of the class.
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
    args = p.parse_args()

    from core.datasets import load_dataset
    from core.structures import read_detections
    from eval import evaluate
    from eval.report import class_breakdown
    dataset = load_dataset(args.dataset, args.split)
    print("| detections | class | #gt | AP | final recall | recall at precision >= 0.5 | top score |")
    print("|---|---|---|---|---|---|---|")
    for path in args.detections:
        dets = read_detections(path)
        for row in class_breakdown(evaluate(dataset, dets, "voc"), dets):
            print(f"| {os.path.basename(path)} | {row['class']} | {row['num_gt']} | {row['ap']:.3f} | "
                  f"{row['final_recall']:.3f} | {row['recall_at_precision_0.5']:.3f} | {row['top_score']:.3f} |")
    return 0


if __name__ == "__main__":
    run_cli(main)
