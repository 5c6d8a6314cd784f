#!/usr/bin/env python
"""What the NHWC layout (``train.channels_last``, ``proposals.multibox.channels_last``) saves per training step.

    python bench/bench_train_layout.py --config models/bccd/member-0/config.yaml

Times, on this machine, one SGD step of the recipe's two networks (random weights and
data: the cost does not depend on them) in the default NCHW layout and in channels-last,
at 1 and 2 threads: the region classifier on two 640x480 images of 64 regions each at
the recipe's image_scale (train.images_per_batch 2, rois_per_image 64, as a step of
train.py), and MultiBox on a batch of its input_size squares with 8 random boxes each.
The layouts alternate within one process (A B A B), so the ratio holds on a busy
machine too; medians of --repeats steps after one warm-up step. Then GoogLeNet's 3x3 max
pools alone in both layouts (the NCHW CPU kernel is the slow part).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.errors import run_cli  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="models/bccd/member-0/config.yaml", help="recipe whose networks are timed")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    import numpy as np
    import torch

    from core.config import load_config
    from detector.fine_tune import region_loss
    from detector.region_classifier import RegionClassifier
    from proposals.multibox import MultiBoxNet, grid_size, multibox_loss, shapes_per_cell
    cfg = load_config(args.config)
    mb = cfg.proposals.multibox
    classes = len(cfg.data.classes or [1])
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 480, 640, generator=g)
    corner = torch.rand(64, 2, generator=g) * torch.tensor([520.0, 360.0])
    boxes = torch.cat([corner, corner + 20 + torch.rand(64, 2, generator=g) * 100], 1)
    labels = torch.randint(0, classes + 1, (64,), generator=g)
    squares = torch.rand(mb.batch_size, 3, mb.input_size, mb.input_size, generator=g)
    corner = torch.rand(mb.batch_size, 8, 2, generator=g) * 0.8
    gts = [torch.cat([c, c + 0.05 + 0.1 * torch.rand(8, 2, generator=g)], 1) for c in corner]
    grid = grid_size(mb.input_size, mb.stride)
    shapes = np.full((shapes_per_cell(mb.num_boxes, mb.input_size, mb.stride), 2), 0.08)

    def classifier_step(net):
        for _ in range(cfg.train.images_per_batch):
            loss, _ = region_loss(net, image, boxes, labels, cfg, cfg.model.image_scale, torch.zeros(64, 4))
            (loss / cfg.train.images_per_batch).backward()

    def multibox_step(net):
        offsets, logits, class_logits = net(squares)
        multibox_loss(net, offsets, logits, gts, mb.loc_weight, mb.match_on, mb.match_weight,
                      mb.positive_iou)[0].backward()

    def median_seconds(build, step, channels_last):
        torch.manual_seed(0)
        net = build().train()
        if channels_last:
            net.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        times = []
        for i in range(args.repeats + 1):
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            step(net)
            opt.step()
            if i:                                       # the first step warms up
                times.append(time.perf_counter() - t)
        return statistics.median(times)

    networks = {
        f"region classifier (width {cfg.model.width}, {cfg.model.image_scale} px, 2 x 64 regions)":
            (lambda: RegionClassifier(cfg.model, classes), classifier_step),
        f"MultiBox (width {mb.width}, {mb.input_size} px, batch {mb.batch_size})":
            (lambda: MultiBoxNet(shapes, grid, mb.width, mb.batch_norm, mb.stride), multibox_step),
    }
    print(f"# training step by layout, {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} "
          f"cores, torch {torch.__version__}; {args.config}; medians of {args.repeats} steps, layouts alternating")
    print("| network | threads | NCHW s/step | channels-last s/step | NCHW / channels-last |")
    print("|---|---|---|---|---|")
    for name, (build, step) in networks.items():
        for threads in (1, 2):
            torch.set_num_threads(threads)
            nchw, nhwc = [], []
            for _ in range(2):
                nchw.append(median_seconds(build, step, False))
                nhwc.append(median_seconds(build, step, True))
            a, b = statistics.mean(nchw), statistics.mean(nhwc)
            print(f"| {name} | {threads} | {a:.3f} | {b:.3f} | **{a / b:.2f}** |", flush=True)

    # GoogLeNet's 3x3 max pools (ceil mode) alone, at one thread: where the NCHW step loses most
    torch.set_num_threads(1)
    print("\n| max pool 3x3 (ceil mode), 1 thread | NCHW ms | channels-last ms | NCHW / channels-last |")
    print("|---|---|---|---|")
    shapes = {"stem, stride 2, (1, 48, 300, 400)": ((1, 48, 300, 400), 2, 0),
              "inception 3-4 pool branch, stride 1, (1, 120, 75, 100)": ((1, 120, 75, 100), 1, 1),
              "per region 5a/5b pool branch, stride 1, (400, 208, 4, 4)": ((400, 208, 4, 4), 1, 1)}
    for name, (shape, stride, pad) in shapes.items():
        x = torch.rand(*shape, generator=g)
        ms = []
        for layout in (torch.contiguous_format, torch.channels_last):
            xl = x.contiguous(memory_format=layout)
            pool = torch.nn.MaxPool2d(3, stride, pad, ceil_mode=True)
            pool(xl)
            t = time.perf_counter()
            for _ in range(args.repeats * 4):
                pool(xl)
            ms.append(1000 * (time.perf_counter() - t) / (args.repeats * 4))
        print(f"| {name} | {ms[0]:.2f} | {ms[1]:.2f} | **{ms[0] / ms[1]:.1f}** |", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
