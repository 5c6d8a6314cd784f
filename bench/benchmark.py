#!/usr/bin/env python
"""The README's performance table, measured on this machine.

    python bench/benchmark.py --model models/bccd --dataset ../shared/datasets/bccd --split test

Prints, as markdown: detect seconds per image per stage (warm medians, proposals
computed fresh) for the first member alone and for the whole ensemble, on the fast path
(MultiBox proposals only) and the paper's path (selective search + MultiBox); a cold
`detect.py` process on one image; evaluation throughput (scoring a detections file, and
`evaluate.py --model` end to end); training throughput from the model's manifests (the
epochs were timed while it trained here); and peak memory.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_detect import time_detection  # noqa: E402


def _run(cmd) -> float:
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return time.perf_counter() - t


def _training_rows(model_dir: str, members: list[str]):
    rows = []
    for name in members:
        with open(os.path.join(model_dir, name, "manifest.json") if name else os.path.join(model_dir, "manifest.json")) as f:
            m = json.load(f)
        epochs = m["history"]
        n_images = m.get("num_images")
        per_epoch = epochs[-1]["seconds"] / len(epochs)
        rows.append((f"classifier {name or os.path.basename(model_dir)}", per_epoch,
                     n_images / per_epoch if n_images else None))
    mb = os.path.join(model_dir, members[0] if members[0] else "", "multibox", "multibox.json")
    if os.path.exists(mb):
        with open(mb) as f:
            hist = json.load(f)["history"]
        rows.append(("MultiBox", hist[-1]["seconds"] / len(hist), None))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model or ensemble directory")
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--images", type=int, default=10, help="images timed per row (warm)")
    args = p.parse_args()

    import torch

    from core.datasets import load_dataset
    from core.modeldir import member_dirs
    from ensemble import Ensemble, load_predictor
    dataset = load_dataset(args.dataset, args.split)
    warmup, records = dataset.images[0], dataset.images[1:args.images + 1]
    ensemble = load_predictor(args.model)
    single = Ensemble(ensemble.members[:1], ensemble.names[:1])
    what = f"{len(ensemble)}-member ensemble" if len(ensemble) > 1 else "one model"
    print(f"# benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} cores, "
          f"no GPU used, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"model {args.model}: {len(ensemble)} member(s), {ensemble.cfg.model.region_mode} mode; "
          f"{len(records)} images of {args.dataset} {args.split}, warm medians, proposals computed fresh\n")
    print("| detect, s/image | decode | proposals | network | regression | nms | objectness | end to end |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [("1 model", single)] + ([(f"ensemble of {len(ensemble)}", ensemble)] if len(ensemble) > 1 else [])
    for label, predictor in rows:      # a single model is not timed a second time as an "ensemble of 1"
        for path, method in (("fast path (multibox)", "multibox"), ("paper path (combined)", "combined")):
            t = time_detection(predictor, warmup, records, method)
            print(f"| {label}, {path} | {t['decode']:.3f} | {t['proposals']:.3f} | {t['network']:.3f} | "
                  f"{t['regression']:.3f} | {t['nms']:.3f} | {t['objectness']:.3f} | {t['end to end (warm)']:.3f} |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cold = _run([sys.executable, "detect.py", records[0].path, "--model", args.model, "--cache-dir", tmp,
                     "--out", tmp, "--quiet"])
        print(f"\ncold `detect.py` process, one image, {what}, paper path: {cold:.2f} s")
        dets = os.path.join(tmp, "dets.json")
        full = _run([sys.executable, "evaluate.py", "--dataset", args.dataset, "--split", args.split, "--model",
                     args.model, "--metric", "voc", "--cache-dir", tmp, "--save-detections", dets, "--quiet"])
        score = _run([sys.executable, "evaluate.py", "--dataset", args.dataset, "--split", args.split,
                      "--detections", dets, "--metric", "voc", "--quiet"])
        with open(dets) as f:
            n_dets = len(json.load(f))
    n = len(dataset.images)
    print(f"`evaluate.py --model` ({what}, proposals computed fresh, whole process): {n} images in {full:.1f} s "
          f"= {n / full:.2f} images/s")
    print(f"`evaluate.py --detections` (whole process): {n_dets} detections in {score:.2f} s")

    members = [os.path.relpath(m, args.model) for m in member_dirs(args.model)] if len(ensemble) > 1 else [""]
    print("\n| training | s/epoch | images/s |")
    print("|---|---|---|")
    for name, per_epoch, ips in _training_rows(args.model, members):
        print(f"| {name} | {per_epoch:.0f} | {ips:.2f} |" if ips else f"| {name} | {per_epoch:.0f} | |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak memory: this process ({what} loaded, detection) {peak:.0f} MB; "
          f"largest child (`detect.py` / `evaluate.py`) {child:.0f} MB")


if __name__ == "__main__":
    from core.errors import run_cli
    run_cli(main)          # a bad path or model is one line on stderr and exit code 2
