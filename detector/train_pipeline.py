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

from .config import load_config, parse_overrides, save_config
from .datasets import load_dataset
from .errors import UserError

log = logging.getLogger(__name__)


def _needs_multibox(cfg) -> bool:
    return cfg.proposals.method in ("multibox", "combined")


def run_training(args) -> None:
    """Under torchrun every rank runs this; rank 0 alone writes the shared files."""
    from . import distributed
    from .training import resolve_device
    device = distributed.init(resolve_device(args.device))
    try:
        _run_training(args, device)
    finally:
        distributed.shutdown()


def _run_training(args, device) -> None:
    from . import distributed
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
                           max_steps=args.max_steps, progress=progress)
            log.info("MultiBox trained in %.0f s", time.time() - t)
    if args.stage == "multibox":
        return
    if _needs_multibox(cfg) and not os.path.exists(os.path.join(multibox_dir, "multibox.pt")):
        raise UserError(f"{multibox_dir}/multibox.pt is missing: train it first (--stage multibox)")

    from proposals.cache import ProposalSource

    from .trainer import train_classifier
    source = ProposalSource(cfg.proposals, args.cache_dir, multibox_dir if _needs_multibox(cfg) else None,
                            device, args.workers, progress)
    source.prepare([r.path for r in dataset.images])
    members = [args.out] if args.ensemble <= 1 else [
        os.path.join(args.out, f"member-{k}") for k in range(args.ensemble)]
    for k, out in enumerate(members):
        member_cfg = copy.deepcopy(cfg)
        member_cfg.train.seed = cfg.train.seed + k
        os.makedirs(out, exist_ok=True)
        member_cfg.proposals.multibox_model = "multibox" if _needs_multibox(cfg) else ""
        if distributed.is_main():
            if out != args.out and _needs_multibox(cfg):
                _link_multibox(multibox_dir, os.path.join(out, "multibox"))
            save_config(member_cfg, os.path.join(out, "config.yaml"))
        train_classifier(dataset, member_cfg, source, out, device, resume=args.resume,
                         max_steps=args.max_steps, progress=progress)
    if len(members) > 1 and distributed.is_main():
        from ensemble import write_ensemble
        write_ensemble(args.out, [os.path.basename(m) for m in members])


def _link_multibox(src: str, dst: str) -> None:
    """Members share the ensemble's MultiBox: a relative symlink, or a copy where links fail."""
    if os.path.exists(dst):
        return
    try:
        os.symlink(os.path.relpath(src, os.path.dirname(dst)), dst)
    except OSError:
        shutil.copytree(src, dst)
