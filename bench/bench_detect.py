#!/usr/bin/env python
"""Detection speed of a model (or ensemble) on this machine: seconds per image per stage
(warm, median), end to end warm and for a cold `detect.py` process, and peak memory.

    python bench/bench_detect.py --model models/bccd --dataset ../shared/datasets/bccd --split test
    python bench/bench_detect.py --model models/bccd ... --proposals multibox     # the fast path

Proposals are computed, not read from the cache (a fresh cache directory is used), so
the proposal stage is timed as a new image would see it.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def time_detection(predictor, warmup, records, proposals=None):
    """Median seconds per image for each stage and end to end (warm), proposals computed
    fresh (an empty cache), over ``records`` after one ``warmup`` image."""
    from core.images import read_image
    from pipeline.runner import TIMED_STAGES, DetectionRunner, proposals_for
    with tempfile.TemporaryDirectory() as cache:
        source = proposals_for(predictor, proposals, cache_dir=cache, workers=1, progress=False)
        runner = DetectionRunner(predictor, source, progress=False)
        runner.detect(read_image(warmup.path), warmup.image_id)   # loads MultiBox, warms up torch
        per_image, per_stage = [], {s: [] for s in TIMED_STAGES}
        for rec in records:
            before = dict(runner.timings)
            t = time.perf_counter()
            image = read_image(rec.path)
            runner.timings["decode"] += time.perf_counter() - t
            runner.detect(image, rec.image_id)
            per_image.append(time.perf_counter() - t)
            for s in TIMED_STAGES:
                per_stage[s].append(runner.timings.get(s, 0.0) - before.get(s, 0.0))
    medians = {s: float(np.median(v)) for s, v in per_stage.items()}
    medians["end to end (warm)"] = float(np.median(per_image))
    return medians


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--images", type=int, default=20, help="images to time (warm)")
    p.add_argument("--proposals", choices=("ss", "multibox", "combined"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--no-cold", action="store_true")
    args = p.parse_args()

    import torch

    from core.datasets import load_dataset
    from ensemble import load_predictor
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset, args.split)
    warmup, records = dataset.images[0], dataset.images[1:args.images + 1]
    predictor = load_predictor(args.model)
    medians = time_detection(predictor, warmup, records, args.proposals)
    method = args.proposals or predictor.cfg.proposals.method
    print(f"# detect benchmark, {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"model {args.model} ({len(predictor)} member(s), {predictor.cfg.model.region_mode} mode, "
          f"proposals {method}), {len(records)} images of {args.dataset} {args.split}")
    print("| stage | median s/image |")
    print("|---|---|")
    for stage, seconds in medians.items():
        print(f"| {stage} | {seconds:.3f} |")
    if not args.no_cold:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, os.path.join(ROOT, "detect.py"), records[0].path, "--model", args.model,
                   "--cache-dir", tmp, "--out", tmp, "--quiet"] + (["--proposals", args.proposals] if args.proposals else [])
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            print(f"| cold `detect.py` process, 1 image | {time.perf_counter() - t:.2f} |")
    print(f"peak memory (this process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    from core.errors import run_cli
    run_cli(main)          # a bad path or model is one line on stderr and exit code 2
