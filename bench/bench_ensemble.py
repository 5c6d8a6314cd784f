#!/usr/bin/env python
"""How detection time grows with the number of ensemble members.

Builds ensembles of 1..N copies of one model directory (each copy a full member with its
own network pass) and times warm detection per stage. Proposals and image decoding are
shared, so only the network stage should grow, by one member's network time per member.

    python bench/bench_ensemble.py --model runs/bccd --dataset ../shared/datasets/bccd --split test
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_detect import time_detection  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model directory (of an ensemble: its first member)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--max-members", type=int, default=3)
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--proposals", choices=("ss", "multibox", "combined"))
    args = p.parse_args()

    import torch

    from core.datasets import load_dataset
    from core.modeldir import member_dirs
    from detector.model import DetectorModel
    from ensemble import Ensemble
    model_dir = member_dirs(args.model)[0]
    dataset = load_dataset(args.dataset, args.split)
    warmup, records = dataset.images[0], dataset.images[1:args.images + 1]
    model = DetectorModel.load(model_dir)
    print(f"# ensemble growth, {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}; {len(records)} images of {args.dataset} {args.split}")
    print("| members | proposals s | network s | end to end s |")
    print("|---|---|---|---|")
    for n in range(1, args.max_members + 1):
        members = [model] + [DetectorModel.load(model_dir) for _ in range(n - 1)]
        t = time_detection(Ensemble(members, [f"m{k}" for k in range(n)]), warmup, records, args.proposals)
        print(f"| {n} | {t['proposals']:.3f} | {t['network']:.3f} | {t['end to end (warm)']:.3f} |", flush=True)


if __name__ == "__main__":
    from core.errors import run_cli
    run_cli(main)          # a bad path or model is one line on stderr and exit code 2
