#!/usr/bin/env python
"""Where a detector's AP goes, per class, from a detections file (no network, no torch).

    python bench/score_analysis.py --dataset ../shared/datasets/bccd --split test \\
        --detections bench/results/bccd_test_voc-detections.json

For each class: ground-truth count, AP (`voc`), the recall reached at all (what the
proposals, the score threshold and NMS left), the recall while precision is still
>= 0.5, and the highest score the class ever gets. A class with a low top score is
one the classifier is unsure of; a low final recall points at proposals or NMS.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--detections", required=True, nargs="+", help="one or more detections files")
    args = p.parse_args()

    from detector.datasets import load_dataset
    from detector.errors import run_cli
    from detector.structures import read_detections
    from eval import evaluate

    def run():
        dataset = load_dataset(args.dataset, args.split)
        print("| detections | class | #gt | AP | final recall | recall at precision >= 0.5 | top score |")
        print("|---|---|---|---|---|---|---|")
        for path in args.detections:
            dets = read_detections(path)
            result = evaluate(dataset, dets, "voc")
            for name, (recall, precision) in result.curves.items():
                ok = precision >= 0.5
                scores = dets.scores[dets.labels == name]
                print(f"| {os.path.basename(path)} | {name} | {result.num_positives[name]} | "
                      f"{result.per_class[name]:.3f} | {recall[-1] if len(recall) else 0:.3f} | "
                      f"{recall[ok].max() if ok.any() else 0:.3f} | {scores.max() if len(scores) else 0:.3f} |")
        return 0
    run_cli(run)


if __name__ == "__main__":
    main()
