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
from core.fileio import lock_directory

from .monitor import HistoryWriter, TensorBoardWriter, Validation

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
    except BaseException:
        distributed.shutdown(failed=True)
        raise
    distributed.shutdown()


def _run_training(args, device) -> None:
    from core import distributed
    started = time.time()
    overrides = parse_overrides(getattr(args, "overrides", None))
    if args.dataset:
        overrides["data.dataset"] = args.dataset
    auto = args.config is None
    cfg = load_config(args.config or default_recipe(), overrides)
    if args.seed is not None:
        cfg.train.seed = args.seed
        cfg.proposals.multibox.seed = args.seed
    if not cfg.data.dataset:
        raise UserError(f"{args.config}: data.dataset is empty (set it or pass --dataset)")
    # Relative dataset paths in a recipe are relative to the working directory.
    dataset = load_dataset(cfg.data.dataset, cfg.data.train_split, cfg.data.classes, cfg.data.format,
                           synsets=cfg.data.synsets)
    if auto:
        from .autoconfig import derive_config
        for note in derive_config(cfg, dataset):
            log.info("derived from the data: %s", note)
        if not any(k.startswith("train.eval_every") for k in overrides):
            cfg.train.eval_every = AUTO_EVAL_EVERY
        _apply_overrides_again(cfg, overrides)              # what the user set wins over what was derived
    cfg.data.classes = list(dataset.classes)
    dataset, held_out = hold_out_validation(cfg, dataset)
    os.makedirs(args.out, exist_ok=True)
    _lock = lock_directory(args.out) if distributed.is_main() else None   # held until this function returns
    progress = not args.no_progress
    budget = None
    if getattr(args, "minutes", None):
        budget = Budget(args.minutes, started, args.out, resume=args.resume)
        budget.restore("multibox", cfg.proposals.multibox)     # the schedule a resumed run had fitted
    multibox_dir = os.path.join(args.out, "multibox")
    if os.path.islink(multibox_dir) and not os.path.exists(multibox_dir):
        # e.g. `cp -r` of a bundled member, whose multibox is a link to the ensemble's
        raise UserError(f"{multibox_dir} is a link to {os.readlink(multibox_dir)}, which does not exist: "
                        f"copy the MultiBox itself (cp -rL) or remove the link to train one")
    if _needs_multibox(cfg) and args.stage in ("all", "multibox"):
        exported = os.path.exists(os.path.join(multibox_dir, "multibox.pt"))
        if exported and (not args.resume or not os.path.exists(os.path.join(multibox_dir, "checkpoint.pt"))):
            # (a MultiBox copied in, e.g. a bundled one, has no checkpoint: --resume keeps it)
            log.info("MultiBox already trained in %s (delete it to retrain)", multibox_dir)
        else:
            from proposals.multibox import train_multibox
            t = time.time()
            hooks = [budget.stage_hook("multibox", MULTIBOX_SHARE, cfg.proposals.multibox)] if budget else []
            hooks.append(HistoryWriter(multibox_dir, images_per_epoch=len(dataset.images)))
            if getattr(args, "tensorboard", False):
                hooks.append(TensorBoardWriter(args.out, "multibox"))
            train_multibox(dataset, cfg.proposals.multibox, multibox_dir, device, resume=args.resume,
                           max_steps=args.max_steps, progress=progress, hooks=hooks)
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
        # in this order: the budget fixes the number of epochs, so that validation knows
        # the last one (always validated), then the record it completed is written
        hooks = []
        if budget:   # members share what MultiBox and the proposals left; ~5% kept for the heads
            stage = "classifier" if out == args.out else os.path.basename(out)
            hooks.append(budget.stage_hook(stage, member_share(k, len(members)), member_cfg.train))
        if member_cfg.train.eval_every:
            hooks.append(validation_hook(member_cfg, dataset, source, device, out, held_out))
        hooks.append(HistoryWriter(out, images_per_epoch=len(dataset.images)))
        if getattr(args, "tensorboard", False):
            hooks.append(TensorBoardWriter(out, "classifier"))
        train_classifier(dataset, member_cfg, source, out, device, resume=args.resume,
                         max_steps=args.max_steps, progress=progress, hooks=hooks)
        if distributed.is_main() and os.path.exists(os.path.join(out, "manifest.json")):
            _record_in_manifest(out, overrides, args, held_out)
    if len(members) > 1 and distributed.is_main():
        from ensemble import write_ensemble
        write_ensemble(args.out, [os.path.basename(m) for m in members])
    if budget:
        budget.report()


def _record_in_manifest(out: str, overrides: dict, args, held_out) -> None:
    """How this model was asked for: the recipe, the --set overrides, the budget, the
    held-out validation images."""
    import json

    from core.fileio import write_json
    path = os.path.join(out, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    manifest.update(recipe=args.config or "configs/default.yaml (adapted to the data)", overrides=overrides,
                    minutes=getattr(args, "minutes", None))
    if held_out is not None:
        manifest["validation_images"] = [r.image_id for r in held_out.images]
    write_json(path, manifest)


# -------------------------------------------------------------- defaults, validation, budget
AUTO_EVAL_EVERY = 2            # --dataset without --config: validation mAP every 2 epochs
MULTIBOX_SHARE = 0.25          # of a --minutes budget (MultiBox converges in fewer steps)
CLASSIFIER_SHARE = 0.95        # of what is left after MultiBox and the proposal cache
MIN_VALIDATION_IMAGES = 20     # a dataset smaller than this trains on all of it
HOLD_OUT_FRACTION = 0.15


def member_share(k: int, n: int) -> float:
    """Member k's (of n) share of the budget left when it starts, such that every member
    gets CLASSIFIER_SHARE / n of what was left when the first started (the members before
    it having used theirs). CLASSIFIER_SHARE / n of what is left each time gave the second
    of two members half the first's minutes (raccoon leave-one-out: 8 of the 17 left)."""
    return CLASSIFIER_SHARE / (n - k * CLASSIFIER_SHARE)


def default_recipe() -> str:
    """configs/default.yaml of the checkout, or the copy a wheel installs under
    <prefix>/share/googlenet-detector/configs."""
    import sys
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for root in (here, os.path.join(sys.prefix, "share", "googlenet-detector"),
                 os.path.join(here, "..", "..", "..", "share", "googlenet-detector")):
        path = os.path.normpath(os.path.join(root, "configs", "default.yaml"))
        if os.path.exists(path):
            return path
    raise UserError("configs/default.yaml not found; pass --config")


def _apply_overrides_again(cfg, overrides: dict) -> None:
    """``cfg`` with the ``--set`` overrides written over it again (after the data's derived values)."""
    from core.config import config_from_dict, config_to_dict, set_dotted
    fresh = config_from_dict(set_dotted(config_to_dict(cfg), overrides), "--set")
    for f in ("data", "proposals", "model", "train", "test"):
        setattr(cfg, f, getattr(fresh, f))


def validation_seed(cfg) -> int:
    """The seed that chooses the validation images: ``train.validation_seed``, else ``train.seed``."""
    return cfg.train.seed if cfg.train.validation_seed is None else cfg.train.validation_seed


def hold_out_validation(cfg, dataset):
    """(training set, validation set or None), with train.eval_every on. The recipe's val
    split when it has one: a seeded choice of at most train.validation_images of it validates
    and the rest of it trains (BCCD: 60 of 87 validate, 27 join the 205 training images).
    Without one, a fixed, seeded 15% of the training images is held out (never the test
    split); a dataset under 20 images trains on all of it, with a warning."""
    import dataclasses

    from core.datasets import split_dataset, split_exists, subsample
    dc = cfg.data
    if not cfg.train.eval_every:
        return dataset, None
    seed = validation_seed(cfg)
    if dc.val_split and dc.val_split != dc.test_split and split_exists(dc.dataset, dc.val_split, dc.format):
        val = load_dataset(dc.dataset, dc.val_split, list(dataset.classes), dc.format, synsets=dc.synsets)
        held = subsample(val, cfg.train.validation_images, seed=seed)
        taken = {r.image_id for r in held.images} | {r.image_id for r in dataset.images}
        rest = [r for r in val.images if r.image_id not in taken]
        if rest:
            log.info("validation on %d of the %d %s images (seed %d); the other %d train beside the %d %s images",
                     len(held.images), len(val.images), dc.val_split, seed, len(rest),
                     len(dataset.images), dc.train_split)
            dataset = dataclasses.replace(dataset, split=f"{dataset.split} + {len(rest)} of {dc.val_split}",
                                          images=dataset.images + rest)
        return dataset, held
    if len(dataset.images) < MIN_VALIDATION_IMAGES:
        log.warning("%d training images: too few to hold out a validation part; training on all of them "
                    "without model selection", len(dataset.images))
        cfg.train.eval_every = 0
        return dataset, None
    train, held = split_dataset(dataset, HOLD_OUT_FRACTION, seed=seed)
    log.info("no validation split: %d of the %d training images held out for validation (seed %d)",
             len(held.images), len(dataset.images), seed)
    return train, held


class Budget:
    """``--minutes``: the whole run within a time budget. Each training stage gets a share
    of what is left when it starts; after every epoch its hook sets the number of epochs
    that fit (from the time the epochs so far took, validation included) and moves the
    learning-rate steps that have not happened yet to the same fractions of the new
    length as in the recipe.

    OUT/budget.json keeps the minutes spent and each stage's fitted schedule, so that a
    ``--resume`` continues the same budget: it has only what is left, and each stage
    starts from the schedule it had been fitted to (a recipe's own count would end a
    resumed stage too early or too late, and the checkpoint's recipe check would see
    another schedule) and keeps the end its first start fixed."""

    FILE = "budget.json"

    def __init__(self, minutes: float, started: float, out_dir: str, resume: bool = False):
        self.minutes, self.started = minutes, started
        self.path = os.path.join(out_dir, self.FILE)
        self.spent_before, self.stages = 0.0, {}
        if resume and os.path.exists(self.path):
            import json
            try:
                with open(self.path) as f:
                    saved = json.load(f)
                self.spent_before, self.stages = float(saved["spent_seconds"]), dict(saved["stages"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise UserError(f"{self.path}: not a readable budget ({exc}); delete it to start the "
                                f"budget over") from None
            log.info("budget: %.1f of the %g minutes spent before this resume", self.spent_before / 60, minutes)

    def spent(self) -> float:
        return self.spent_before + time.time() - self.started

    def left(self) -> float:
        return self.minutes * 60 - self.spent()

    def restore(self, name: str, stage_cfg) -> None:
        """Give a resumed stage the epochs and learning-rate steps it had been fitted to."""
        if "epochs" in self.stages.get(name, {}):
            stage_cfg.epochs, stage_cfg.lr_steps = self.stages[name]["epochs"], list(self.stages[name]["lr_steps"])

    def record(self, name: str, epochs: int, lr_steps: list[int]) -> None:
        self.stages[name] = {**self.stages.get(name, {}), "epochs": epochs, "lr_steps": list(lr_steps)}
        self.save()

    def save(self) -> None:
        from core import distributed
        from core.fileio import write_json
        if distributed.is_main():
            write_json(self.path, {"minutes": self.minutes, "spent_seconds": round(self.spent(), 1),
                                   "stages": self.stages})

    def stage_hook(self, name: str, share: float, stage_cfg) -> "BudgetHook":
        """The stage's share of what is left; a resumed stage keeps the end its first
        start fixed (a fresh share would hand it time on top of what it already spent)."""
        self.restore(name, stage_cfg)
        ends_at = self.stages.get(name, {}).get("ends_at")
        if ends_at is None:
            seconds = max(0.0, self.left() * share)
            self.stages.setdefault(name, {})["ends_at"] = round(self.spent() + seconds, 1)
            self.save()
            log.info("budget: %s gets %.1f of the %.1f minutes left", name, seconds / 60, self.left() / 60)
        else:
            seconds = max(0.0, ends_at - self.spent())
            log.info("budget: %s resumed with %.1f of its minutes left", name, seconds / 60)
        return BudgetHook(self, name, seconds, stage_cfg)

    def report(self) -> None:
        self.save()
        spent = self.spent() / 60
        log.info("trained in %.1f minutes of the %g-minute budget%s", spent, self.minutes,
                 "" if spent <= 1.1 * self.minutes else " (over by more than 10%: the first epochs' time was a poor "
                 "guess; pass fewer --minutes)")


def validation_hook(cfg, train_set, source, device, out_dir: str, held_out) -> Validation:
    """Validation on ``held_out`` (hold_out_validation's choice: part of the val split, or
    of train), at most train.validation_images (a fixed subsample), with a warning when its images are
    also training images (the selection is then optimistic)."""
    from core.datasets import subsample
    dc = cfg.data
    val_set = subsample(held_out, cfg.train.validation_images, seed=validation_seed(cfg))
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


class BudgetHook:
    """After every epoch: the number of epochs that fit in ``seconds`` from the stage's
    start, at the pace of the epochs so far; learning-rate steps still ahead move to the
    recipe's fractions of the new length (steps already taken stay)."""

    def __init__(self, budget: Budget, name: str, seconds: float, stage_cfg):
        self.budget, self.name, self.seconds, self.stage_cfg = budget, name, seconds, stage_cfg
        self.fractions = [s / stage_cfg.epochs for s in stage_cfg.lr_steps]
        self.started, self.first_epoch = time.time(), None

    def __call__(self, trainer, record) -> None:
        if self.first_epoch is None:                 # the epoch this process began with (after a resume)
            self.first_epoch = trainer.epoch - 1
        elapsed = time.time() - self.started
        per_epoch = elapsed / max(1, trainer.epoch - self.first_epoch)
        total = max(trainer.epoch, trainer.epoch + int((self.seconds - elapsed) / per_epoch))
        steps = [s if s <= trainer.epoch else max(trainer.epoch + 1, round(f * total))
                 for s, f in zip(trainer.lr_steps, self.fractions)]
        if (total, steps) != (trainer.epochs, trainer.lr_steps):
            log.info("budget: %s at %.0f s per epoch -> %d epochs, lr steps %s", self.name, per_epoch, total, steps)
        trainer.epochs, trainer.lr_steps = total, steps
        self.stage_cfg.epochs, self.stage_cfg.lr_steps = total, steps    # what the model's config records
        self.budget.record(self.name, total, steps)

