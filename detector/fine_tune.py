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

from core import distributed
from core.boxes import encode, pairwise_iou
from core.errors import UserError
from core.fileio import atomic_write, write_json
from core.images import read_image
from networks.augment import color_jitter, jitter_boxes, random_crop_window
from networks.engine import Trainer, save_checkpoint, seed_everything, set_threads
from networks.transforms import resize_tensor, shared_scale, to_tensor, warp_regions

from .heads import BBOX_WEIGHTS, fit_bbox_regressors, fit_svms
from .region_classifier import RegionClassifier
from .sampling import (
    crop_targets,
    drop_background,
    flip_boxes,
    ignore_regions,
    label_regions,
    partially_annotated,
    sample_regions,
)

log = logging.getLogger(__name__)


def _training_targets(rec, source, flip: bool):
    """Image, proposals and gt for one training image (flipped if asked)."""
    image = read_image(rec.path)
    proposals, _ = source.propose(image)
    keep = ~rec.difficult
    gt_boxes, gt_labels = rec.boxes[keep], rec.labels[keep]
    if flip:
        image = np.ascontiguousarray(image[:, ::-1])
        proposals = flip_boxes(proposals, rec.width)
        gt_boxes = flip_boxes(gt_boxes, rec.width)
    return image, proposals, gt_boxes, gt_labels


def region_loss(net, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, cfg, short_side: int | None,
                box_targets: torch.Tensor | None = None, teacher=None):
    """Softmax loss (+ weighted auxiliary losses, + the joint box loss) of one image's
    sampled regions. ``net``: a RegionClassifier, or one wrapped in DistributedDataParallel.
    ``boxes (R, 4)`` in the image's pixels, ``labels (R,)`` 0 = background,
    ``box_targets (R, 4)``: encoded deltas to each region's gt (read for foreground only).
    ``teacher``: a RegionClassifier whose probabilities take ``train.self_distill`` (the
    Polyak average) or ``train.teacher_share`` (a ``train.teacher`` member) of the softmax
    loss (``teacher_probabilities``)."""
    _, logits, deltas, aux = _forward_regions(net, image, boxes, cfg, short_side)
    smoothing = cfg.train.label_smoothing
    loss = nn.functional.cross_entropy(logits, labels, label_smoothing=smoothing)
    if teacher is not None:
        soft = teacher_probabilities(teacher, image, boxes, cfg, short_side)
        share = cfg.train.teacher_share if cfg.train.teacher else cfg.train.self_distill
        loss = (1 - share) * loss + share * nn.functional.cross_entropy(logits, soft)
    for a in aux:
        loss = loss + cfg.train.aux_weight * nn.functional.cross_entropy(a, labels, label_smoothing=smoothing)
    if deltas is not None and box_targets is not None:
        loss = loss + cfg.train.bbox_loss_weight * box_loss(deltas, labels, box_targets)
    accuracy = (logits.argmax(1) == labels).float().mean()
    return loss, accuracy


def _forward_regions(net, image: torch.Tensor, boxes: torch.Tensor, cfg, short_side: int | None):
    """(features, logits, deltas, aux logits) of ``boxes`` in ``image``'s pixels, as training sees them."""
    if cfg.model.region_mode == "warp":
        return net(warp_regions(image, boxes, cfg.model.input_size, cfg.model.context_pad))
    h, w = image.shape[-2:]
    scale = shared_scale(h, w, short_side or cfg.model.image_scale, cfg.model.max_image_side)
    return net(resize_tensor(image, scale), boxes * scale)


@torch.no_grad()
def teacher_probabilities(teacher, image: torch.Tensor, boxes: torch.Tensor, cfg, short_side: int | None) -> torch.Tensor:
    """(R, C + 1) class probabilities of ``boxes`` under ``teacher`` in test mode (batch
    norm's running averages, which this forward leaves untouched), the same view of the
    image the student sees. Self-distillation from the Polyak average: its probabilities
    are smoother than one-hot labels where the labels slip (a cell the annotators left
    out), and they cost one forward without gradient."""
    was_training = teacher.training
    teacher.eval()
    try:
        return torch.softmax(_forward_regions(teacher, image, boxes, cfg, short_side)[1], 1)
    finally:
        teacher.train(was_training)


def load_teachers(path: str, classes: list, region_mode: str, device) -> tuple[list, np.ndarray]:
    """``train.teacher``: the region classifiers of a model or ensemble directory, in test
    mode, and the chance of drawing each (its ensemble weight). One member, drawn per
    image, teaches that image: the loss is linear in its target, so in expectation the
    student learns the soft vote's probabilities at the cost of one forward per image,
    not one per member. The teacher sees regions the student's way (``region_mode``)."""
    from core.modeldir import is_ensemble, member_dirs, model_config, read_ensemble_spec

    from .model import DetectorModel
    if not os.path.isdir(path):
        raise UserError(f"train.teacher: {path}: no such model directory")
    theirs = model_config(path)
    if list(theirs.data.classes or []) != list(classes):
        raise UserError(f"train.teacher: {path}: its classes {theirs.data.classes} are not the "
                        f"dataset's {list(classes)}")
    if theirs.model.region_mode != region_mode:
        raise UserError(f"train.teacher: {path}: a {theirs.model.region_mode}-mode model cannot score the regions "
                        f"of a {region_mode}-mode student")
    nets = []
    for d in member_dirs(path):
        net = DetectorModel.load(d, device).net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        nets.append(net)
    weights = np.asarray((is_ensemble(path) and read_ensemble_spec(path).get("weights")) or [1.0] * len(nets),
                         np.float64)
    return nets, weights / weights.sum()


@torch.no_grad()
def hardest_regions(net, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, cfg,
                    short_side: int | None, keep: int) -> torch.Tensor:
    """Online hard-example mining (Shrivastava et al. 2016): indices of the ``keep``
    regions of ``boxes (R, 4)`` whose classification loss is highest under the current
    weights. A second forward of the image, without gradient and in training mode (batch
    norm uses this image's statistics; its running averages take one more update). As
    in the paper, this is cheaper than one forward of the whole pool with gradient: the
    backward pass then covers every region head, ~2x the forward, for regions whose
    loss is discarded."""
    _, logits, _, _ = _forward_regions(net, image, boxes, cfg, short_side)
    losses = nn.functional.cross_entropy(logits, labels, reduction="none")
    return torch.topk(losses, min(keep, len(losses))).indices


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
                     max_steps: int | None = None, progress: bool = True, hooks=()) -> None:
    """Fine-tune on ``dataset`` into ``out_dir`` with the training engine
    (networks/engine.py); under torchrun, with DistributedDataParallel (rank 0 writes the
    checkpoints and the model dir). ``source``: proposals (``propose(image_rgb)``)."""
    tc = cfg.train
    set_threads(tc.num_threads)
    # (before the seeding: building the teachers' networks draws random numbers)
    teachers, teacher_odds = load_teachers(tc.teacher, dataset.classes, cfg.model.region_mode, device) if tc.teacher else ([], None)
    if teachers:
        log.info("distilling %s (%d member%s, one drawn per image) into %.0f%% of the softmax loss",
                 tc.teacher, len(teachers), "" if len(teachers) == 1 else "s", 100 * tc.teacher_share)
    seed_everything(tc.seed)
    rng = np.random.default_rng(tc.seed)       # the image order: the same on every rank
    device = torch.device(device)
    net = RegionClassifier(cfg.model, len(dataset.classes)).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)

    recipe = training_recipe(cfg)
    partial, common = partially_annotated([rec.labels[~rec.difficult] for rec in dataset.images],
                                          len(dataset.classes), tc.partial_annotation)
    if partial.any():
        log.info("partial_annotation: %d of %d training images box objects but miss a class that >= %.0f%% of "
                 "them box (%s): their background regions do not train", partial.sum(), len(partial),
                 100 * tc.partial_annotation, ", ".join(dataset.classes[c] for c in common))

    def load_order_state(state):
        if "recipe" in state:
            check_same_recipe(json.loads(state["recipe"]), recipe, os.path.join(out_dir, "checkpoint.pt"))
        rng.bit_generator.state = json.loads(state["np_rng"])

    trainer = Trainer(net, opt, out_dir=out_dir, epochs=tc.epochs, lr=tc.lr, lr_steps=tc.lr_steps,
                      lr_gamma=tc.lr_gamma, warmup_iters=tc.warmup_iters, ema_decay=tc.ema_decay,
                      name="classifier", device=device, progress=progress, max_steps=max_steps,
                      extra_state=lambda: {"np_rng": json.dumps(rng.bit_generator.state),
                                           "recipe": json.dumps(recipe)},
                      load_extra_state=load_order_state, hooks=hooks, channels_last=tc.channels_last)
    if resume and trainer.resume() and trainer.finished and all(        # config.yaml comes last
            os.path.exists(os.path.join(out_dir, f)) for f in ("model.pt", "heads.npz", "config.yaml")):
        log.info("%s is already trained", out_dir)
        return

    def batches(epoch):
        return [(epoch, b) for b in rank_batches(rng.permutation(len(dataset.images)), tc.images_per_batch)]

    def step(model, epoch_and_batch):
        epoch, batch = epoch_and_batch
        # the first epoch's average is still mostly its random start: no teacher yet
        teacher = trainer.averaged if tc.self_distill and epoch >= 1 else None
        stats = {"loss": 0.0, "accuracy": 0.0, "count": 0}
        for k, idx in enumerate(batch):
            if teachers:     # (its own stream: the image's draws stay those of a run without a teacher)
                teacher = teachers[np.random.default_rng([tc.seed, epoch, int(idx), 1]).choice(
                    len(teachers), p=teacher_odds)]
            # gradients are averaged across processes once per step, after the last image
            sync = k == len(batch) - 1 or model is net
            with contextlib.nullcontext() if sync else model.no_sync():
                loss, acc = _image_loss(model, dataset.images[idx], source, cfg,
                                        image_rng(tc.seed, epoch, int(idx)), device, bool(partial[idx]), teacher)
                if not torch.isfinite(loss):
                    return {"loss": float("nan"), "count": 1}
                (loss / len(batch)).backward()
            stats["loss"] += loss.item()
            stats["accuracy"] += acc.item()
            stats["count"] += 1
        return stats

    trainer.fit(batches, step)
    test_net = trainer.averaged.eval()
    for hook in hooks:                  # e.g. validation puts in the best epoch's weights
        if hasattr(hook, "finish"):
            hook.finish(test_net, trainer.history)
    t = time.time()
    heads = fit_heads(test_net, dataset, source, cfg, device, progress)
    seconds = trainer.seconds + time.time() - t
    if distributed.is_main():
        save_model_dir(out_dir, test_net, heads, cfg, dataset, trainer.history, seconds)
    distributed.barrier()


def _image_loss(model, rec, source, cfg, rng: np.random.Generator, device, no_background: bool = False,
                teacher=None):
    """Loss and region accuracy of one training image: flip, sample, scale, forward.
    ``no_background``: a partially annotated image (``partially_annotated``), foreground only;
    ``teacher``: see ``region_loss``."""
    tc = cfg.train
    flip = tc.flip and rng.random() < 0.5
    image, proposals, gt_boxes, gt_labels = _training_targets(rec, source, flip)
    cut_gt = np.zeros((0, 4))
    # (a partially annotated image is not cropped: a crop that loses its boxes would train as background)
    if tc.random_crop and rng.random() < 0.5 and not no_background:
        window = random_crop_window(image.shape[1], image.shape[0], tc.random_crop, rng)
        x0, y0, x1, y1 = window.astype(int)
        image = np.ascontiguousarray(image[y0:y1, x0:x1])
        proposals, gt_boxes, gt_labels, cut_gt = crop_targets(window, proposals, gt_boxes, gt_labels)
    height, width = image.shape[:2]
    image = color_jitter(image, tc.color_jitter, rng)
    if tc.gt_jitter:
        extra = jitter_boxes(gt_boxes, tc.gt_jitter, rng, width, height)
        proposals = np.vstack([np.asarray(proposals, np.float64).reshape(-1, 4), extra])
    regions = ignore_regions(label_regions(proposals, gt_boxes, gt_labels, tc.fg_iou, tc.bg_iou_low,
                                           keep_easy=tc.easy_bg_fraction > 0), cut_gt)
    if no_background:
        regions = drop_background(regions)
    pick = sample_regions(regions.labels, max(tc.rois_per_image, tc.ohem_pool), tc.fg_fraction, rng,
                          tc.class_balanced, tc.easy_bg_fraction)
    boxes, labels = regions.boxes[pick], np.maximum(regions.labels[pick], 0)     # EASY_BG is background
    targets = np.zeros((len(pick), 4))
    fg = labels > 0
    if fg.any():
        targets[fg] = encode(boxes[fg], gt_boxes[regions.gt_index[pick][fg]].astype(np.float64), BBOX_WEIGHTS)
    if len(pick) == 0:       # no gt, no usable proposal: the whole image as background
        boxes, labels = np.array([[0, 0, width, height]], np.float64), np.zeros(1, np.int64)
        targets = np.zeros((1, 4))
    short = int(rng.choice(tc.scale_jitter)) if tc.scale_jitter else None
    image = to_tensor(image, device)
    boxes = torch.as_tensor(boxes, dtype=torch.float32, device=device)
    labels, targets = torch.as_tensor(labels, device=device), torch.as_tensor(targets, dtype=torch.float32, device=device)
    if tc.ohem_pool > tc.rois_per_image:
        hard = hardest_regions(model, image, boxes, labels, cfg, short, tc.rois_per_image)
        boxes, labels, targets = boxes[hard], labels[hard], targets[hard]
    loss, accuracy = region_loss(model, image, boxes, labels, cfg, short, targets, teacher)
    if no_background:
        # the loss is a mean over the image's regions: its few foreground regions would each
        # weigh rois_per_image / len(boxes) times a region of a fully annotated image
        loss = loss * (len(boxes) / tc.rois_per_image)
    return loss, accuracy


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


def training_recipe(cfg) -> dict:
    """The settings a checkpoint's weights depend on, flattened (``train.lr``: 0.01, ...):
    all but the test-time ones and the dataset's location."""
    from core.config import config_to_dict
    flat = {}

    def walk(prefix, node):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                walk(key, v)
            else:
                flat[key] = v
    d = config_to_dict(cfg)
    d.pop("test", None)
    d["data"].pop("dataset", None)
    walk("", d)
    return flat


def check_same_recipe(saved: dict, current: dict, checkpoint: str) -> None:
    """``--resume`` continues the run it finds, not another one. A key the checkpoint
    predates counts as its default (a newer version's new option, left off)."""
    from core.config import Config
    default = training_recipe(Config())
    saved, current = {**default, **saved}, {**default, **current}
    differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k)
                    and k not in ("train.epochs", "train.lr_steps", "train.eval_every", "train.early_stop"))
    if differ:
        shown = ", ".join(f"{k} ({saved.get(k)!r} -> {current.get(k)!r})" for k in differ[:5])
        raise UserError(f"{checkpoint}: --resume with another recipe than the checkpoint's: {shown}"
                        f"{' ...' if len(differ) > 5 else ''}; train into a new --out, or drop --resume to start over")


def save_model_dir(out_dir, net: RegionClassifier, heads: dict, cfg, dataset, history, seconds) -> None:
    """Weights (fp16, no auxiliary heads: they are training-only), heads, a fresh
    manifest with the fingerprint that loading checks, and config.yaml last: a run that
    dies half-way leaves either the old model or a model.pt its config does not vouch
    for (refused on load), never a silently mixed directory."""
    from core.config import save_config
    from core.modeldir import fingerprint
    # (contiguous: the usual NCHW layout, also for a network trained in NHWC, train.channels_last)
    state = {k: (v.half() if v.is_floating_point() else v).cpu().contiguous() for k, v in net.state_dict().items()
             if not k.startswith("net.aux.")}
    save_checkpoint(os.path.join(out_dir, "model.pt"), state)
    with atomic_write(os.path.join(out_dir, "heads.npz"), "wb") as f:
        np.savez(f, **heads)
    manifest = {
        "dataset": os.path.abspath(dataset.root), "split": dataset.split, "num_images": len(dataset.images),
        "classes": list(dataset.classes),
        "arch": cfg.model.arch, "region_mode": cfg.model.region_mode, "seed": cfg.train.seed,
        "training_seconds": round(seconds, 1), "code_commit": _git_commit(),
        "trained": time.strftime("%Y-%m-%d %H:%M"), "history": history,
        "fingerprint": fingerprint(out_dir, cfg),
    }
    write_json(os.path.join(out_dir, "manifest.json"), manifest)
    save_config(cfg, os.path.join(out_dir, "config.yaml"))
