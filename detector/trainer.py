"""Fine-tuning the GoogLeNet region classifier on cached proposals, then its heads.

The recipe (R-CNN / Fast R-CNN with the GoogLeNet paper's optimizer): SGD with momentum
0.9, a step-decay schedule after a short linear warm-up, minibatches of
``images_per_batch`` images x ``rois_per_image`` regions at ~25% foreground, horizontal
flips and (shared mode) scale jitter, auxiliary losses weighted 0.3, and Polyak
averaging (an exponential moving average of the weights) for the model used at test
time. A checkpoint is written after every epoch; ``resume`` continues from it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from . import distributed
from .boxes import encode, pairwise_iou
from .errors import UserError
from .fileio import write_json
from .heads import BBOX_WEIGHTS, fit_bbox_regressors, fit_svms
from .augment import color_jitter, jitter_boxes
from .images import read_image
from .region_classifier import RegionClassifier, resize_tensor, shared_scale, to_tensor, warp_regions
from .sampling import flip_boxes, label_regions, sample_regions
from .training import (latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, seed_everything,
                       set_rng_state, set_threads)

log = logging.getLogger(__name__)


def polyak_average_fn(decay: float):
    """The test-time weights' update, for AveragedModel: an exponential moving average
    whose decay ramps up as min(decay, (1 + n) / (10 + n)) over the n updates so far
    (TensorFlow's ExponentialMovingAverage with num_updates, as the Inception recipes
    used it). With a fixed 0.999, a 1,000-step run would keep a third of its random
    initialization in the average; the ramp keeps the average near the recent weights.
    ``decay`` 0 turns averaging off (the last weights are used)."""
    @torch.no_grad()
    def update(averaged: list, current: list, n_averaged) -> None:
        n = float(n_averaged)
        d = min(decay, (1 + n) / (10 + n))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1 - d)
        else:                                   # integer buffers (BN's batch counter)
            for a, c in zip(averaged, current):
                a.copy_(c)
    return update


def lr_factor(iteration: int, epoch: int, tc) -> float:
    warm = min(1.0, (iteration + 1) / tc.warmup_iters) if tc.warmup_iters else 1.0
    return warm * tc.lr_gamma ** sum(epoch >= s for s in tc.lr_steps)


def _training_targets(rec, source, flip: bool):
    """Image, proposals and gt for one training image (flipped if asked)."""
    image = read_image(rec.path)
    proposals, _ = source.get(rec.path, image)
    keep = ~rec.difficult
    gt_boxes, gt_labels = rec.boxes[keep], rec.labels[keep]
    if flip:
        image = np.ascontiguousarray(image[:, ::-1])
        proposals = flip_boxes(proposals, rec.width)
        gt_boxes = flip_boxes(gt_boxes, rec.width)
    return image, proposals, gt_boxes, gt_labels


def region_loss(net, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, cfg, short_side: int | None,
                box_targets: torch.Tensor | None = None):
    """Softmax loss (+ weighted auxiliary losses, + the joint box loss) of one image's
    sampled regions. ``net``: a RegionClassifier, or one wrapped in DistributedDataParallel.
    ``boxes (R, 4)`` in the image's pixels, ``labels (R,)`` 0 = background,
    ``box_targets (R, 4)``: encoded deltas to each region's gt (read for foreground only)."""
    if cfg.model.region_mode == "warp":
        _, logits, deltas, aux = net(warp_regions(image, boxes, cfg.model.input_size, cfg.model.context_pad))
    else:
        h, w = image.shape[-2:]
        scale = shared_scale(h, w, short_side or cfg.model.image_scale, cfg.model.max_image_side)
        _, logits, deltas, aux = net(resize_tensor(image, scale), boxes * scale)
    loss = nn.functional.cross_entropy(logits, labels)
    for a in aux:
        loss = loss + cfg.train.aux_weight * nn.functional.cross_entropy(a, labels)
    if deltas is not None and box_targets is not None:
        loss = loss + cfg.train.bbox_loss_weight * box_loss(deltas, labels, box_targets)
    accuracy = (logits.argmax(1) == labels).float().mean()
    return loss, accuracy


def box_loss(deltas: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fast R-CNN's localization loss: smooth L1 between the gt class's predicted deltas
    ``deltas (R, C, 4)`` and ``targets (R, 4)`` over the foreground regions, divided by
    all R sampled regions (so it does not outweigh the classification loss on images
    with little foreground). beta 1/9 as torchvision's roi_heads: targets are scaled by
    BBOX_WEIGHTS, so typical errors are ~0.1-1."""
    fg = torch.nonzero(labels > 0).squeeze(1)
    if len(fg) == 0:
        return deltas.sum() * 0.0
    picked = deltas[fg, labels[fg] - 1]
    return nn.functional.smooth_l1_loss(picked, targets[fg], beta=1 / 9, reduction="sum") / len(labels)


def image_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream of one image in one epoch (flip, scale, sampled regions): the
    same whichever process trains on it, so N processes train the model one would."""
    return np.random.default_rng([seed, epoch, index])


def rank_batches(order: np.ndarray, images_per_batch: int) -> list[np.ndarray]:
    """This process's part of every global minibatch. ``images_per_batch`` is the global
    batch, split across the processes; a last batch too small to give each process an
    image is dropped when there are several (each must take part in every step)."""
    world = distributed.world_size()
    if images_per_batch % world:
        raise UserError(f"train.images_per_batch ({images_per_batch}) is the global batch: it must be a "
                        f"multiple of the number of processes ({world})")
    batches = [order[i:i + images_per_batch] for i in range(0, len(order), images_per_batch)]
    if world > 1:
        batches = [b[distributed.rank()::world] for b in batches if len(b) >= world]
    return batches


def train_classifier(dataset, cfg, source, out_dir: str, device="cpu", resume: bool = False,
                     max_steps: int | None = None, progress: bool = True) -> None:
    """Fine-tune on ``dataset`` into ``out_dir``; under torchrun, with
    DistributedDataParallel (rank 0 writes the checkpoints and the model dir)."""
    from tqdm import tqdm
    tc = cfg.train
    set_threads(tc.num_threads)
    seed_everything(tc.seed)
    rng = np.random.default_rng(tc.seed)       # the image order: the same on every rank
    num_classes = len(dataset.classes)
    device = torch.device(device)
    net = RegionClassifier(cfg.model, num_classes).to(device)
    ema = AveragedModel(net, multi_avg_fn=polyak_average_fn(tc.ema_decay), use_buffers=True)
    model = net
    if distributed.active():
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.SGD(net.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    start_epoch, iteration, history, seconds = 0, 0, [], 0.0
    ckpt = os.path.join(out_dir, "checkpoint.pt")
    if resume and latest_checkpoint(out_dir):
        state = load_checkpoint(ckpt, device)
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        rng.bit_generator.state = json.loads(state["np_rng"])
        start_epoch, iteration = int(state["epoch"]), int(state["iteration"])
        history, seconds = json.loads(state["history"]), float(state["seconds"])
        log.info("resuming %s from epoch %d", out_dir, start_epoch)
        if start_epoch >= tc.epochs and all(os.path.exists(os.path.join(out_dir, f)) for f in ("model.pt", "heads.npz")):
            log.info("%s is already trained", out_dir)
            return

    steps = 0
    progress = progress and distributed.is_main()
    for epoch in range(start_epoch, tc.epochs):
        net.train()
        t0 = time.time()
        batches = rank_batches(rng.permutation(len(dataset.images)), tc.images_per_batch)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not progress, leave=False)
        totals = np.zeros(3)                    # loss, accuracy, images
        for batch in bar:
            for g in opt.param_groups:
                g["lr"] = tc.lr * lr_factor(iteration, epoch, tc)
            opt.zero_grad(set_to_none=True)
            stats = np.zeros(3)
            for k, idx in enumerate(batch):
                # gradients are averaged across processes once per step, after the last image
                sync = k == len(batch) - 1 or model is net
                with contextlib.nullcontext() if sync else model.no_sync():
                    loss, acc = _image_loss(model, dataset.images[idx], source, cfg,
                                            image_rng(tc.seed, epoch, int(idx)), device)
                    if not torch.isfinite(loss):
                        raise UserError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); lower "
                                        f"train.lr and --resume from the last checkpoint")
                    (loss / len(batch)).backward()
                stats += [loss.item(), acc.item(), 1]
            opt.step()
            ema.update_parameters(net)
            iteration, steps = iteration + 1, steps + 1
            totals += stats
            bar.set_postfix(loss=f"{stats[0] / stats[2]:.3f}", acc=f"{stats[1] / stats[2]:.2f}",
                            lr=f"{opt.param_groups[0]['lr']:.4f}",
                            img_s=f"{totals[2] * distributed.world_size() / max(time.time() - t0, 1e-9):.2f}")
            if max_steps and steps >= max_steps:
                break
        seconds += time.time() - t0
        totals = np.sum(distributed.gather(totals), axis=0)
        n = max(totals[2], 1)
        history.append({"epoch": epoch + 1, "loss": totals[0] / n, "accuracy": totals[1] / n,
                        "seconds": round(seconds, 1)})
        log.info("epoch %d/%d: loss %.4f, region accuracy %.3f, %.0f s", epoch + 1, tc.epochs,
                 totals[0] / n, totals[1] / n, time.time() - t0)
        if distributed.is_main():
            save_checkpoint(ckpt, {"model": net.state_dict(), "ema": ema.state_dict(),
                                   "optimizer": opt.state_dict(), "rng": rng_state(),
                                   "np_rng": json.dumps(rng.bit_generator.state), "epoch": epoch + 1,
                                   "iteration": iteration, "history": json.dumps(history), "seconds": seconds})
        if max_steps and steps >= max_steps:
            break

    test_net = ema.module.eval()
    t = time.time()
    heads = fit_heads(test_net, dataset, source, cfg, device, progress)
    seconds += time.time() - t
    if distributed.is_main():
        save_model_dir(out_dir, test_net, heads, cfg, dataset, history, seconds)
    distributed.barrier()


def _image_loss(model, rec, source, cfg, rng: np.random.Generator, device):
    """Loss and region accuracy of one training image: flip, sample, scale, forward."""
    tc = cfg.train
    flip = tc.flip and rng.random() < 0.5
    image, proposals, gt_boxes, gt_labels = _training_targets(rec, source, flip)
    image = color_jitter(image, tc.color_jitter, rng)
    if tc.gt_jitter:
        extra = jitter_boxes(gt_boxes, tc.gt_jitter, rng, rec.width, rec.height)
        proposals = np.vstack([np.asarray(proposals, np.float64).reshape(-1, 4), extra])
    regions = label_regions(proposals, gt_boxes, gt_labels, tc.fg_iou, tc.bg_iou_low)
    pick = sample_regions(regions.labels, tc.rois_per_image, tc.fg_fraction, rng, tc.class_balanced)
    boxes, labels = regions.boxes[pick], regions.labels[pick]
    targets = np.zeros((len(pick), 4))
    fg = labels > 0
    if fg.any():
        targets[fg] = encode(boxes[fg], gt_boxes[regions.gt_index[pick][fg]].astype(np.float64), BBOX_WEIGHTS)
    if len(pick) == 0:       # no gt, no usable proposal: the whole image as background
        boxes, labels = np.array([[0, 0, rec.width, rec.height]], np.float64), np.zeros(1, np.int64)
        targets = np.zeros((1, 4))
    short = int(rng.choice(tc.scale_jitter)) if tc.scale_jitter else None
    return region_loss(model, to_tensor(image, device), torch.as_tensor(boxes, dtype=torch.float32, device=device),
                       torch.as_tensor(labels, device=device), cfg, short,
                       torch.as_tensor(targets, dtype=torch.float32, device=device))


@torch.no_grad()
def fit_heads(net: RegionClassifier, dataset, source, cfg, device, progress=True) -> dict:
    """Bounding-box regressors (and SVMs) on the final network's region features."""
    from tqdm import tqdm
    tc = cfg.train
    num_classes = len(dataset.classes)
    reg_feats, reg_cls, reg_targets = [], [], []
    pos = [[] for _ in range(num_classes)]
    neg = [[] for _ in range(num_classes)]
    ridge = tc.bbox_regression and cfg.model.bbox_regressor == "ridge"
    if not (ridge or tc.svm):
        return {}
    for index in tqdm(distributed.shard(range(len(dataset.images))), desc="region features",
                      disable=not progress, leave=False):
        rec, rng = dataset.images[index], image_rng(tc.seed + 1, 0, index)
        image, proposals, gt_boxes, gt_labels = _training_targets(rec, source, flip=False)
        if len(gt_boxes) == 0:
            continue
        iou = pairwise_iou(proposals.astype(np.float64), gt_boxes)
        best = iou.argmax(1)
        best_iou = iou[np.arange(len(proposals)), best]
        close = np.flatnonzero(best_iou >= tc.bbox_iou)
        close = rng.choice(close, min(len(close), 64), replace=False) if len(close) else close
        sel = [gt_boxes, proposals[close]]
        if tc.svm:
            far = np.flatnonzero(best_iou < 0.3)
            sel.append(proposals[rng.choice(far, min(len(far), 128), replace=False)] if len(far) else proposals[:0])
        boxes = np.vstack(sel).astype(np.float32)
        feats, _, _, _ = net.regions(to_tensor(image, device), torch.from_numpy(boxes).to(device),
                                     cfg.test.batch_regions)
        feats = feats.cpu().numpy()
        n_gt, n_close = len(gt_boxes), len(close)
        if ridge and n_close:
            reg_feats.append(feats[n_gt:n_gt + n_close])
            reg_cls.append(gt_labels[best[close]])
            reg_targets.append(encode(proposals[close].astype(np.float64), gt_boxes[best[close]], BBOX_WEIGHTS))
        if tc.svm:
            for c in range(num_classes):
                pos[c].append(feats[:n_gt][gt_labels == c])
                far_feats = feats[n_gt + n_close:]
                far_boxes = boxes[n_gt + n_close:]
                gt_c = gt_boxes[gt_labels == c]
                if len(gt_c):
                    ok = pairwise_iou(far_boxes.astype(np.float64), gt_c).max(1) < 0.3
                    far_feats = far_feats[ok]
                neg[c].append(far_feats)
    if distributed.active():          # every rank's features, in one list
        parts = distributed.gather((reg_feats, reg_cls, reg_targets, pos, neg))
        reg_feats, reg_cls, reg_targets = ([x for p in parts for x in p[i]] for i in range(3))
        pos = [[x for p in parts for x in p[3][c]] for c in range(num_classes)]
        neg = [[x for p in parts for x in p[4][c]] for c in range(num_classes)]
    heads = {}
    if ridge and reg_feats:
        W, b, alphas = fit_bbox_regressors(np.vstack(reg_feats), np.concatenate(reg_cls),
                                           np.vstack(reg_targets), num_classes)
        heads.update(bbox_W=W, bbox_b=b)
        log.info("bbox regression: ridge alphas %s", alphas)
    if tc.svm:
        W, b = fit_svms([np.vstack(p) for p in pos], [np.vstack(n) for n in neg], tc.svm_C, seed=tc.seed)
        heads.update(svm_W=W, svm_b=b)
    return heads


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__)), timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_model_dir(out_dir, net: RegionClassifier, heads: dict, cfg, dataset, history, seconds) -> None:
    """Weights (fp16, no auxiliary heads: they are training-only), heads, manifest."""
    from .fileio import atomic_write
    state = {k: (v.half() if v.is_floating_point() else v).cpu() for k, v in net.state_dict().items()
             if not k.startswith("net.aux.")}
    save_checkpoint(os.path.join(out_dir, "model.pt"), state)
    with atomic_write(os.path.join(out_dir, "heads.npz"), "wb") as f:
        np.savez(f, **heads)
    manifest_path = os.path.join(out_dir, "manifest.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    manifest.update({
        "dataset": os.path.abspath(dataset.root), "split": dataset.split, "num_images": len(dataset.images),
        "classes": list(dataset.classes),
        "arch": cfg.model.arch, "region_mode": cfg.model.region_mode, "seed": cfg.train.seed,
        "training_seconds": round(seconds, 1), "code_commit": _git_commit(),
        "trained": time.strftime("%Y-%m-%d %H:%M"), "history": history,
    })
    write_json(manifest_path, manifest)
