"""train.py's work: recipe -> MultiBox -> proposal cache -> region classifier -> model dir.

A model directory holds everything needed to run it:

    OUT/config.yaml          the resolved recipe (classes, sizes, proposal settings)
    OUT/model.pt             region classifier weights (the Polyak-averaged ones, fp16)
    OUT/heads.npz            bounding-box regressors (and SVMs, when trained)
    OUT/manifest.json        dataset, split, training time, code commit, history
    OUT/multibox/            the MultiBox proposal network (when the method uses it)

An ensemble (``--ensemble N``) is OUT/ensemble.json listing OUT/member-K model dirs,
which share one MultiBox network and one proposal cache.
"""
from __future__ import annotations

import copy
import logging
import os
import shutil
import time

from core.config import load_config, parse_overrides
from core.datasets import load_dataset
from core.errors import UserError

from .monitor import HistoryWriter, Validation

log = logging.getLogger(__name__)


def _needs_multibox(cfg) -> bool:
    return cfg.proposals.method in ("multibox", "combined")


def run_training(args) -> None:
    """Under torchrun every rank runs this; rank 0 alone writes the shared files."""
    from core import distributed
    from networks.engine import resolve_device
    device = distributed.init(resolve_device(args.device))
    try:
        _run_training(args, device)
    finally:
        distributed.shutdown()


def _run_training(args, device) -> None:
    from core import distributed
    overrides = parse_overrides(getattr(args, "overrides", None))
    if args.dataset:
        overrides["data.dataset"] = args.dataset
    cfg = load_config(args.config, overrides)
    if args.seed is not None:
        cfg.train.seed = args.seed
        cfg.proposals.multibox.seed = args.seed
    if not cfg.data.dataset:
        raise UserError(f"{args.config}: data.dataset is empty (set it or pass --dataset)")
    # Relative dataset paths in a recipe are relative to the working directory.
    dataset = load_dataset(cfg.data.dataset, cfg.data.train_split, cfg.data.classes, cfg.data.format,
                           synsets=cfg.data.synsets)
    cfg.data.classes = list(dataset.classes)
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress

    multibox_dir = os.path.join(args.out, "multibox")
    if _needs_multibox(cfg) and args.stage in ("all", "multibox"):
        if os.path.exists(os.path.join(multibox_dir, "multibox.pt")) and not args.resume:
            log.info("MultiBox already trained in %s (delete it to retrain)", multibox_dir)
        else:
            from proposals.multibox import train_multibox
            t = time.time()
            train_multibox(dataset, cfg.proposals.multibox, multibox_dir, device, resume=args.resume,
                           max_steps=args.max_steps, progress=progress,
                           hooks=[HistoryWriter(multibox_dir, images_per_epoch=len(dataset.images))])
            log.info("MultiBox trained in %.0f s", time.time() - t)
    if args.stage == "multibox":
        return
    if _needs_multibox(cfg) and not os.path.exists(os.path.join(multibox_dir, "multibox.pt")):
        raise UserError(f"{multibox_dir}/multibox.pt is missing: train it first (--stage multibox)")

    from detector.fine_tune import train_classifier
    from proposals.cache import proposal_source
    source = proposal_source(cfg.proposals, multibox_dir if _needs_multibox(cfg) else None, device,
                             args.cache_dir, workers=args.workers, progress=progress)
    source.prepare([r.path for r in dataset.images])
    members = [args.out] if args.ensemble <= 1 else [
        os.path.join(args.out, f"member-{k}") for k in range(args.ensemble)]
    for k, out in enumerate(members):
        member_cfg = copy.deepcopy(cfg)
        member_cfg.train.seed = cfg.train.seed + k
        os.makedirs(out, exist_ok=True)
        member_cfg.proposals.multibox_model = "multibox" if _needs_multibox(cfg) else ""
        if distributed.is_main() and out != args.out and _needs_multibox(cfg):
            _link_multibox(multibox_dir, os.path.join(out, "multibox"))
        # config.yaml is written with the weights when training ends (detector.fine_tune):
        # a run that fails leaves the previous model directory as it was
        hooks = [HistoryWriter(out, images_per_epoch=len(dataset.images))]
        if member_cfg.train.eval_every:
            hooks.insert(0, validation_hook(member_cfg, dataset, source, device, out))
        train_classifier(dataset, member_cfg, source, out, device, resume=args.resume,
                         max_steps=args.max_steps, progress=progress, hooks=hooks)
    if len(members) > 1 and distributed.is_main():
        from ensemble import write_ensemble
        write_ensemble(args.out, [os.path.basename(m) for m in members])


def validation_hook(cfg, train_set, source, device, out_dir: str) -> Validation:
    """The recipe's validation split, checked: never the test split, and a warning when
    its images are also training images (the selection is then optimistic)."""
    dc = cfg.data
    if not dc.val_split or dc.val_split == dc.test_split:
        raise UserError(f"train.eval_every needs a validation split other than the test split "
                        f"(data.val_split is {dc.val_split!r}, data.test_split {dc.test_split!r})")
    val_set = load_dataset(dc.dataset, dc.val_split, list(train_set.classes), dc.format, synsets=dc.synsets)
    shared = {r.image_id for r in val_set.images} & {r.image_id for r in train_set.images}
    if shared:
        log.warning("%d of the %d validation images (%s) are also training images (%s): the validation mAP "
                    "and the epoch it selects are optimistic", len(shared), len(val_set.images), dc.val_split,
                    dc.train_split)
    source.prepare([r.path for r in val_set.images])
    return Validation(cfg, val_set, source, device, out_dir, cfg.train.eval_every, cfg.train.early_stop)


def _link_multibox(src: str, dst: str) -> None:
    """Members share the ensemble's MultiBox: a relative symlink, or a copy where links fail."""
    if os.path.exists(dst):
        return
    try:
        os.symlink(os.path.relpath(src, os.path.dirname(dst)), dst)
    except OSError:
        shutil.copytree(src, dst)
