#!/usr/bin/env python
"""The peer: torchvision's Faster R-CNN MobileNetV3-Large-FPN trained from random
initialization for a fixed number of CPU minutes, scored by this project's evaluator.

    python bench/peer_fasterrcnn.py ../shared/datasets/bccd --train-split trainval --test-split test \\
        --minutes 100 --out runs/peer_bccd --json bench/results/peer_bccd_test_voc.json

The recipe is torchvision's detection reference as a user would run it on a CPU:
``fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)`` (so batch
norm trains, every layer is trainable), its default transform (shorter side 800), batch
2, horizontal flips, SGD lr 0.02 momentum 0.9 weight decay 1e-4, a 200-iteration linear
warm-up, and the learning rate x0.1 for the last 20% of the time budget. Training stops
when the budget is spent (whole iterations); a checkpoint is written every epoch and at
the end, and ``--resume`` continues an interrupted run with the minutes it had left.
The test split is then detected (score threshold 0.001, up to 100 boxes per image, the
reference's evaluation settings) and scored with metric ``voc``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

WARMUP_ITERS = 200
LR, MOMENTUM, WEIGHT_DECAY, BATCH = 0.02, 0.9, 1e-4, 2
DECAY_AT = 0.8            # share of the budget after which the lr is x0.1


def build_model(num_classes: int):
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn
    return fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=num_classes + 1,
                                             box_score_thresh=0.001, box_detections_per_img=100)


def _sample(rec, flip: bool):
    """(image (3, H, W) float in [0, 1], target) for one training image."""
    import numpy as np
    import torch

    from core.images import read_image
    image = read_image(rec.path)
    keep = ~rec.difficult
    boxes, labels = rec.boxes[keep].copy(), rec.labels[keep] + 1        # 0 is background
    if flip:
        image = np.ascontiguousarray(image[:, ::-1])
        boxes[:, [0, 2]] = rec.width - boxes[:, [2, 0]]
    image = np.require(image, requirements="W")          # a cached image is read-only; torch warns
    tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
    return tensor, {"boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                    "labels": torch.as_tensor(labels, dtype=torch.int64)}


def train(model, dataset, minutes: float, out: str, seed: int, resume: bool, log) -> dict:
    import numpy as np
    import torch

    from networks.engine import load_checkpoint, save_checkpoint
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    state = {"epoch": 0, "iteration": 0, "seconds": 0.0, "history": []}
    ckpt = os.path.join(out, "checkpoint.pt")
    if resume and os.path.exists(ckpt):
        saved = load_checkpoint(ckpt)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        state = json.loads(saved["state"])
        log(f"resuming at epoch {state['epoch']}, {state['seconds'] / 60:.1f} of {minutes} minutes spent")
    budget = minutes * 60
    model.train()
    while state["seconds"] < budget:
        rng = np.random.default_rng([seed, state["epoch"]])
        order = rng.permutation(len(dataset.images))
        t_epoch, losses = time.time(), []
        for start in range(0, len(order) - BATCH + 1, BATCH):
            t = time.time()
            it = state["iteration"]
            lr = LR * min(1.0, (it + 1) / WARMUP_ITERS) * (0.1 if state["seconds"] >= DECAY_AT * budget else 1.0)
            for g in opt.param_groups:
                g["lr"] = lr
            batch = [_sample(dataset.images[i], bool(rng.random() < 0.5)) for i in order[start:start + BATCH]]
            loss_dict = model([b[0] for b in batch], [b[1] for b in batch])
            loss = sum(loss_dict.values())
            if not torch.isfinite(loss):
                raise RuntimeError(f"peer training diverged at iteration {it} ({loss_dict})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            state["iteration"] += 1
            state["seconds"] += time.time() - t
            if state["seconds"] >= budget:
                break
        state["epoch"] += 1
        state["history"].append({"epoch": state["epoch"], "loss": float(np.mean(losses)) if losses else None,
                                 "seconds": round(state["seconds"], 1), "lr": lr})
        log(f"epoch {state['epoch']}: loss {state['history'][-1]['loss']:.4f}, lr {lr:g}, "
            f"{time.time() - t_epoch:.0f} s, {state['seconds'] / 60:.1f}/{minutes} min")
        save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                               "state": json.dumps(state)})
    return state


def detect(model, dataset):
    import numpy as np
    import torch

    from core.images import read_image
    from core.structures import Detections
    model.eval()
    parts, t0 = [], time.time()
    with torch.no_grad():
        for rec in dataset.images:
            image = torch.from_numpy(np.array(read_image(rec.path))).permute(2, 0, 1).float().div_(255)
            out = model([image])[0]
            n = len(out["scores"])
            parts.append(Detections(np.full(n, rec.image_id), np.array(dataset.classes)[out["labels"].numpy() - 1]
                                    if n else np.zeros(0, str), out["scores"].numpy().astype(np.float64),
                                    out["boxes"].numpy().astype(np.float64)))
    return Detections.concatenate(parts), (time.time() - t0) / max(len(dataset.images), 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dataset")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test")
    p.add_argument("--minutes", type=float, required=True, help="training budget (CPU minutes, wall clock)")
    p.add_argument("--out", required=True, help="run directory (checkpoint, detections)")
    p.add_argument("--json", help="write the test result here (mAP, per class, minutes, seconds per image)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()

    import torch

    from core.datasets import load_dataset
    from core.fileio import write_json
    from core.structures import write_detections
    from eval import evaluate
    from eval.report import format_table
    os.makedirs(args.out, exist_ok=True)

    def log(msg):
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)
    train_set = load_dataset(args.dataset, args.train_split)
    test_set = load_dataset(args.dataset, args.test_split, classes=train_set.classes)
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(train_set.images)} training images, "
        f"classes {train_set.classes}")
    model = build_model(len(train_set.classes))
    state = train(model, train_set, args.minutes, args.out, args.seed, args.resume, log)
    dets, seconds = detect(model, test_set)
    write_detections(os.path.join(args.out, "test-detections.json"), dets)
    result = evaluate(test_set, dets, "voc")
    print(format_table({"AP": result}, test_set))
    if args.json:
        out = result.to_json()
        out.update(peer="fasterrcnn_mobilenet_v3_large_fpn, random init", minutes=args.minutes,
                   training_seconds=round(state["seconds"], 1), epochs=state["epoch"],
                   iterations=state["iteration"], seconds_per_image=seconds, seed=args.seed,
                   threads=torch.get_num_threads(),
                   command=" ".join(["python", "bench/peer_fasterrcnn.py"] + sys.argv[1:]))
        write_json(args.json, out)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    from core.errors import run_cli
    run_cli(lambda: main() or 0)
