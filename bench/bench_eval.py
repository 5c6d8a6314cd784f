#!/usr/bin/env python
"""Evaluator speed at ILSVRC val scale (synthetic): 1,000,000 detections over 20,000
images and 200 classes, scored with `ilsvrc`, `voc07`, `voc` and `coco`.

`coco` *is* pycocotools' COCOeval (the bench times our thin wrapper around it), so its
row is the pycocotools reference time on the same input.

    python bench/bench_eval.py                      # full scale (coco takes minutes)
    python bench/bench_eval.py --images 2000 --detections 100000
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.datasets import Dataset, ImageRecord  # noqa: E402
from core.structures import Detections, read_detections, write_detections  # noqa: E402
from eval import evaluate  # noqa: E402


def synthetic(n_images: int, n_classes: int, n_dets: int, seed: int = 0):
    """ILSVRC-like: 1-4 objects per 500x375 image; about half the detections are noisy
    copies of gt boxes (right or wrong class), the rest random boxes."""
    rng = np.random.default_rng(seed)
    classes = [f"n{k:08d}" for k in range(n_classes)]
    images, gt_img, gt_box, gt_cls = [], [], [], []
    for i in range(n_images):
        k = rng.integers(1, 5)
        xy = rng.uniform(0, 350, (k, 2))
        wh = rng.uniform(8, 200, (k, 2))
        boxes = np.round(np.hstack([xy, np.minimum(xy + wh, [499, 374])]))
        labels = rng.integers(0, n_classes, k)
        images.append(ImageRecord(f"ILSVRC2013_val_{i + 1:08d}", "", 500, 375, boxes, labels,
                                  np.zeros(k, bool), np.zeros(k, bool)))
        gt_img += [i] * k
        gt_box.append(boxes)
        gt_cls.append(labels)
    gt_img, gt_box, gt_cls = np.array(gt_img), np.vstack(gt_box), np.concatenate(gt_cls)

    n_near = n_dets // 2
    pick = rng.integers(0, len(gt_img), n_near)
    near_box = gt_box[pick] + rng.normal(0, 8, (n_near, 4))
    near_cls = np.where(rng.random(n_near) < 0.8, gt_cls[pick], rng.integers(0, n_classes, n_near))
    n_far = n_dets - n_near
    xy = rng.uniform(0, 400, (n_far, 2))
    far_box = np.hstack([xy, xy + rng.uniform(10, 150, (n_far, 2))])
    ids = np.array([r.image_id for r in images])
    dets = Detections(
        image_ids=np.concatenate([ids[gt_img[pick]], ids[rng.integers(0, n_images, n_far)]]),
        labels=np.array(classes)[np.concatenate([near_cls, rng.integers(0, n_classes, n_far)])],
        scores=np.concatenate([rng.beta(4, 2, n_near), rng.beta(2, 4, n_far)]),
        boxes=np.vstack([near_box, far_box]))
    blacklist = np.column_stack([rng.integers(0, n_images, n_images // 60),
                                 rng.integers(0, n_classes, n_images // 60)])
    return Dataset("synthetic", "val", "ilsvrc", classes, images, blacklist=blacklist), dets


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--classes", type=int, default=200)
    p.add_argument("--detections", type=int, default=1_000_000)
    p.add_argument("--metrics", default="ilsvrc,voc07,voc,coco")
    args = p.parse_args()

    print(f"# evaluator benchmark, {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    t = time.perf_counter()
    dataset, dets = synthetic(args.images, args.classes, args.detections)
    print(f"synthetic data: {args.detections:,} detections, {args.images:,} images, "
          f"{args.classes} classes ({time.perf_counter() - t:.1f} s to make)")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dets.json")
        t = time.perf_counter()
        write_detections(path, dets)
        t_write = time.perf_counter() - t
        t = time.perf_counter()
        dets = read_detections(path)
        t_read = time.perf_counter() - t
    print(f"detections JSON: write {t_write:.2f} s, read {t_read:.2f} s")
    print("| metric | scoring time (s) | mAP |")
    print("|---|---|---|")
    for metric in args.metrics.split(","):
        t = time.perf_counter()
        result = evaluate(dataset, dets, metric)
        elapsed = time.perf_counter() - t
        name = "coco (= pycocotools COCOeval)" if metric == "coco" else metric
        print(f"| {name} | {elapsed:.2f} | {result.mAP:.4f} |", flush=True)


if __name__ == "__main__":
    main()
