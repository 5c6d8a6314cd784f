#!/usr/bin/env python
"""What the network width costs: a training step and a detection, per width, in one run.

    OMP_NUM_THREADS=1 python bench/bench_width.py --config configs/default.yaml --out bench/results/bench_width.md

Times, on this machine and within one process (so the widths compare even when the
machine is shared: a ratio, not a benchmark), the recipe's shared-mode region
classifier at widths 0.25, 0.5 and 1.0 with random weights (the cost does not depend on
them): one training step on one 640x480 image (forward with the auxiliary heads, the
softmax losses, backward, SGD) with ``train.rois_per_image`` regions, and the inference
network on the same image with 200 regions (channels-last, as detect.py runs it).
Medians of --repeats after one warm-up. Run it alone or beside at most one other
one-thread job: with a third job on 2 cores the widths timed first and last get
different shares of the CPU and the ratios are wrong (seen: 0.25 -> 1.0 x2.3 instead of x5.4). Training-epoch times from different days or
machines do not compare (README, *Performance*: this machine's speed changed from day
to day); this does.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.errors import run_cli  # noqa: E402

WIDTHS = (0.25, 0.5, 1.0)
INFERENCE_REGIONS = 200          # detect.py's fast path: MultiBox top 200


def median_seconds(fn, repeats: int) -> float:
    fn()                                                # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def random_boxes(n: int, generator):
    """A (n, 4) tensor of boxes 30-150 px wide inside a 640x480 image."""
    import torch
    corner = torch.rand(n, 2, generator=generator) * torch.tensor([480.0, 320.0])
    return torch.cat([corner, corner + 30 + torch.rand(n, 2, generator=generator) * 120], 1)


def time_width(cfg, width: float, repeats: int) -> tuple[float, float, int]:
    """(training step s, inference network s, parameters) for ``cfg``'s model at ``width``."""
    import torch

    from detector.fine_tune import region_loss
    from detector.region_classifier import RegionClassifier
    from networks.transforms import for_inference
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model_cfg = dataclasses.replace(cfg.model, region_mode="shared", width=width, init="random")
    width_cfg = dataclasses.replace(cfg, model=model_cfg)
    num_classes = len(cfg.data.classes or [1, 2, 3])
    image = torch.randn(3, 480, 640, generator=g)
    train_boxes = random_boxes(cfg.train.rois_per_image, g)
    labels = torch.randint(0, num_classes + 1, (cfg.train.rois_per_image,), generator=g)

    net = RegionClassifier(model_cfg, num_classes).train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)

    def step():                       # training's own loss (resize, regions, auxiliary heads)
        loss, _ = region_loss(net, image, train_boxes, labels, width_cfg, None)
        opt.zero_grad()
        loss.backward()
        opt.step()

    train_s = median_seconds(step, repeats)
    params = sum(p.numel() for p in net.parameters())
    infer = for_inference(RegionClassifier(dataclasses.replace(model_cfg, aux_classifiers=False), num_classes), "cpu")
    boxes = random_boxes(INFERENCE_REGIONS, g)
    with torch.inference_mode():
        infer_s = median_seconds(lambda: infer.regions(image, boxes), repeats)
    return train_s, infer_s, params


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default="configs/default.yaml", help="recipe whose model and train sections are timed")
    p.add_argument("--repeats", type=int, default=7, help="timed repetitions per measurement")
    p.add_argument("--out", help="also write the table to this markdown file")
    args = p.parse_args()

    import torch

    from core.config import load_config
    cfg = load_config(args.config)
    lines = [f"# Width cost, {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
             f"written by `python bench/bench_width.py --config {args.config}`: {args.config}'s shared-mode "
             f"classifier (image_scale {cfg.model.image_scale}, roi_size {cfg.model.roi_size}) on a 640x480 "
             f"image; training step (detector.fine_tune.region_loss, backward, SGD) with {cfg.train.rois_per_image} regions, inference with "
             f"{INFERENCE_REGIONS}; medians of {args.repeats}", "",
             "| width | parameters | training step s | x width 0.25 | inference network s | x width 0.25 |",
             "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    base = None
    for width in WIDTHS:
        train_s, infer_s, params = time_width(cfg, width, args.repeats)
        base = base or (train_s, infer_s)
        line = (f"| {width:g} | {params / 1e6:.2f} M | {train_s:.3f} | {train_s / base[0]:.2f} | "
                f"{infer_s:.3f} | {infer_s / base[1]:.2f} |")
        print(line, flush=True)
        lines.append(line)
    if args.out:
        from core.fileio import atomic_write
        with atomic_write(args.out) as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
