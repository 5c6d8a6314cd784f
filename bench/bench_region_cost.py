#!/usr/bin/env python
"""What the shared-mode network costs per image, by roi_size and weight layout.

    python bench/bench_region_cost.py --config configs/bccd.yaml --regions 200

Times, on this machine, the recipe's network (random weights: the cost does not depend
on them) on a 640x480 image with N random regions: the trunk up to inception 4e once,
then roi_align, pool4, inception 5a/5b and the heads per region, for roi_size 14 (5a/5b
on 7x7) and 8 (on 4x4), with weights in the default (NCHW) and channels-last layout.
Warm medians of --repeats runs.
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/bccd.yaml", help="recipe whose model section is timed")
    p.add_argument("--regions", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    import torch

    from core.config import load_config
    from detector.region_classifier import RegionClassifier
    from networks.transforms import for_inference
    cfg = load_config(args.config)
    torch.manual_seed(0)
    image = torch.randn(3, 480, 640)
    corner = torch.rand(args.regions, 2) * torch.tensor([560.0, 400.0])
    boxes = torch.cat([corner, corner + 30 + torch.rand(args.regions, 2) * 120], 1)

    def median_seconds(fn):
        fn()                                            # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    print(f"# region cost, {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.config} (width "
          f"{cfg.model.width}, image_scale {cfg.model.image_scale}), 640x480 image, {args.regions} regions")
    print("| roi_size | weights | network s/image | of which trunk |")
    print("|---|---|---|---|")
    for roi_size in (14, 8):
        model_cfg = dataclasses.replace(cfg.model, region_mode="shared", roi_size=roi_size, aux_classifiers=False,
                                        init="random")
        for layout in ("NCHW", "channels-last"):
            net = RegionClassifier(model_cfg, len(cfg.data.classes or [1]))
            net = for_inference(net, "cpu") if layout == "channels-last" else net.eval()
            with torch.inference_mode():
                total = median_seconds(lambda net=net: net.regions(image, boxes))
                scaled = torch.nn.functional.interpolate(image[None], scale_factor=cfg.model.image_scale / 480)
                trunk = median_seconds(lambda net=net, scaled=scaled: net.net.run(scaled, stop="4e"))
            print(f"| {roi_size} | {layout} | {total:.3f} | {trunk:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
