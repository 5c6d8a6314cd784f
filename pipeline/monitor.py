"""What a person watches while a model trains: training hooks for networks.engine.Trainer.

* ``HistoryWriter``: after every epoch, ``OUT/history.csv`` (one row per epoch: the
  loss terms, learning rate, seconds, images/s, validation mAP when measured) and
  ``OUT/curves.png`` redrawn (loss and validation mAP against the epoch).
* ``Validation``: every ``train.eval_every`` epochs, the Polyak-averaged network detects
  the recipe's validation split (``data.val_split``; never the test split) and is scored
  with the devkit's ``voc`` rule; the best epoch's weights are kept in ``OUT/best.pt``
  and used for the model when training ends, and training stops early after
  ``train.early_stop`` evaluations without improvement. Its seconds are counted apart.
"""
from __future__ import annotations

import copy
import csv
import logging
import os
import time

from core.fileio import atomic_write

log = logging.getLogger(__name__)
BOOTSTRAP_RESAMPLES = 200
SELECTION_CONFIDENCE = 0.95    # an earlier epoch replaces the final weights only this surely (eval/bootstrap.py)
RISING = 0.02          # validation mAP gained over the last two evaluations that means "not converged"
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "loc", "conf", "lr", "seconds", "images_per_s", "val_mAP",
                   "val_seconds")


class HistoryWriter:
    """``OUT/<prefix>history.csv`` and ``OUT/<prefix>curves.png``, rewritten every epoch."""

    def __init__(self, out_dir: str, prefix: str = "", images_per_epoch: int = 0, plot: bool = True):
        self.out_dir, self.prefix, self.images_per_epoch, self.plot = out_dir, prefix, images_per_epoch, plot

    def __call__(self, trainer, record: dict) -> None:
        from core import distributed
        if not distributed.is_main():
            return
        history = trainer.history
        previous = 0.0
        rows = []
        for r in history:
            row = dict(r)
            took = r["seconds"] - previous
            previous = r["seconds"]
            if self.images_per_epoch and took > 0:
                row["images_per_s"] = round(self.images_per_epoch / took, 2)
            rows.append(row)
        columns = [c for c in HISTORY_COLUMNS if any(c in r for r in rows)]
        with atomic_write(os.path.join(self.out_dir, f"{self.prefix}history.csv")) as f:
            w = csv.DictWriter(f, columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        if self.plot:
            self._plot(rows)

    def _plot(self, rows) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        epochs = [r["epoch"] for r in rows]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(epochs, [r.get("loss") for r in rows], "o-", color="tab:blue", label="training loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss", color="tab:blue")
        val = [(r["epoch"], r["val_mAP"]) for r in rows if r.get("val_mAP") is not None]
        if val:
            ax2 = ax.twinx()
            ax2.plot(*zip(*val), "s-", color="tab:green", label="validation mAP")
            ax2.set_ylabel("validation mAP (voc)", color="tab:green")
            ax2.set_ylim(0, 1)
        ax.set_title(f"{self.prefix.rstrip('-') or 'classifier'}: {os.path.basename(os.path.normpath(self.out_dir))}")
        fig.tight_layout()
        with atomic_write(os.path.join(self.out_dir, f"{self.prefix}curves.png"), "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)


class TensorBoardWriter:
    """``train.py --tensorboard``: each epoch's record as TensorBoard scalars in OUT/tensorboard
    (``pip install -e '.[tensorboard]'``; ``tensorboard --logdir OUT/tensorboard``)."""

    def __init__(self, out_dir: str, name: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            from core.errors import UserError
            raise UserError("--tensorboard needs the tensorboard package: pip install -e '.[tensorboard]'") from None
        self.writer, self.name = SummaryWriter(os.path.join(out_dir, "tensorboard")), name

    def __call__(self, trainer, record: dict) -> None:
        from core import distributed
        if not distributed.is_main():
            return
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"{self.name}/{key}", value, record["epoch"])
        self.writer.flush()


class Validation:
    """Validation mAP every ``every`` epochs on ``val_set``, the best weights kept."""

    def __init__(self, cfg, val_set, source, device, out_dir: str, every: int, patience: int = 0):
        # Selection needs the epochs' ranking, not the test-time figure: no flip vote (half the
        # time), no MultiBox objectness (the same for every epoch).
        self.cfg = copy.deepcopy(cfg)
        self.cfg.test.flip_vote = False
        self.cfg.test.objectness = 0.0
        self.val_set, self.source, self.device = val_set, source, device
        self.out_dir, self.every, self.patience = out_dir, every, patience
        self.best_path = os.path.join(out_dir, "best.pt")
        self.best_map, self.best_epoch, self.bad = -1.0, 0, 0
        self.best_dets = self.last_dets = None      # for the final check (a resume detects the best again)
        self.last_map, self.last_epoch = -1.0, 0
        self.state_files = [self.best_path]         # what a training snapshot copies beside the checkpoint

    def restore(self, history: list[dict]) -> None:
        """After a resume: the best so far and the evaluations since it, from the history (so
        that ``train.early_stop`` stops a resumed run where an unbroken one would)."""
        for r in history:
            if r.get("val_mAP") is None:
                continue
            if r["val_mAP"] > self.best_map:
                self.best_map, self.best_epoch, self.bad = r["val_mAP"], r["epoch"], 0
            else:
                self.bad += 1

    def __call__(self, trainer, record: dict) -> None:
        if record["epoch"] % self.every and record["epoch"] != trainer.epochs:
            return
        from core import distributed
        from networks.engine import save_checkpoint
        t = time.time()
        dets, val_map = self.validate(copy.deepcopy(trainer.averaged))
        record["val_mAP"] = round(val_map, 4)
        record["val_seconds"] = round(time.time() - t, 1)
        self.last_dets, self.last_map, self.last_epoch = dets, val_map, record["epoch"]
        improved = val_map > self.best_map
        if improved:
            self.best_map, self.best_epoch, self.bad = val_map, record["epoch"], 0
            self.best_dets = dets
            if distributed.is_main():
                save_checkpoint(self.best_path, {"model": trainer.averaged.state_dict(), "epoch": record["epoch"],
                                                 "val_mAP": val_map})
        else:
            self.bad += 1
        log.info("validation mAP %.4f at epoch %d (%s; best %.4f at epoch %d), %.0f s", val_map, record["epoch"],
                 "new best" if improved else f"{self.bad} without improvement", self.best_map, self.best_epoch,
                 time.time() - t)
        if self.patience and self.bad >= self.patience:
            log.info("stopping early: %d evaluations without improvement", self.bad)
            trainer.stop = True

    def validate(self, net) -> tuple:
        """(detections, voc mAP) of ``net`` (a region classifier) on the validation images."""
        from detector.model import DetectorModel
        from ensemble import Ensemble
        from eval import evaluate

        from .runner import DetectionRunner
        model = DetectorModel(self.cfg, net, {}, self.out_dir, self.device)   # ridge heads come later: no regression
        runner = DetectionRunner(Ensemble([model], ["validation"]), self.source, self.device, progress=False)
        dets = next(iter(runner.detect_dataset(self.val_set).values()))
        return dets, float(evaluate(self.val_set, dets, "voc").mAP)

    def finish(self, net, history: list[dict] | None = None) -> None:
        """When training ends: put the best epoch's weights into ``net`` (the test-time
        network), say what validation reached, and warn when it was still rising."""
        maps = [r["val_mAP"] for r in history or [] if r.get("val_mAP") is not None]
        # rising into a new best: an earlier, higher peak makes the last gain noise, not a trend
        if len(maps) >= 3 and maps[-1] - maps[-3] > RISING and maps[-1] >= max(maps):
            log.warning("validation mAP was still rising at the end (%.3f -> %.3f over the last two evaluations): "
                        "the model has not converged; more --minutes (or train.epochs) would likely help",
                        maps[-3], maps[-1])
        if maps:
            log.info("validation mAP reached %.4f (epoch %d)", self.best_map, self.best_epoch)
        if not os.path.exists(self.best_path):
            return
        from networks.engine import load_checkpoint
        best_weights = load_checkpoint(self.best_path)["model"]
        if self.best_dets is None and self.last_dets is not None and self.best_epoch != self.last_epoch:
            # a resume after the best epoch lost its detections: detect again with its saved weights,
            # so that a resumed run chooses between them and the final ones as an unbroken run does
            best_net = copy.deepcopy(net)
            best_net.load_state_dict(best_weights)
            self.best_dets = self.validate(best_net)[0]
        if self.best_is_real():
            net.load_state_dict(best_weights)
            log.info("using the best epoch's weights: epoch %d, validation mAP %.4f", self.best_epoch, self.best_map)
        else:
            self.best_map, self.best_epoch = self.last_map, self.last_epoch    # the final weights stay

    def best_is_real(self) -> bool:
        """Whether an earlier best epoch should replace the final weights: only when it beats
        them on at least SELECTION_CONFIDENCE of bootstrap resamples of the validation images.
        On raccoon's 24 validation images epoch 6 (0.454) was kept over epoch 17 (0.396) and
        scored 0.512 on test against the final weights' 0.614."""
        if self.best_epoch == self.last_epoch or self.best_dets is None or self.last_dets is None:
            return True                     # the final weights are the best, or no evidence against it
        from eval.bootstrap import paired_bootstrap
        share = paired_bootstrap(self.val_set, self.best_dets, self.last_dets, "voc", BOOTSTRAP_RESAMPLES)
        if share >= SELECTION_CONFIDENCE:
            log.info("epoch %d beats the last validated epoch %d on %.0f%% of %d bootstrap resamples of the %d "
                     "validation images", self.best_epoch, self.last_epoch, 100 * share, BOOTSTRAP_RESAMPLES,
                     len(self.val_set.images))
            return True
        log.info("keeping the final weights: epoch %d's validation mAP %.4f beats epoch %d's %.4f on only %.0f%% of "
                 "%d bootstrap resamples of the %d validation images (noise; %.0f%% needed)", self.best_epoch,
                 self.best_map, self.last_epoch, self.last_map, 100 * share, BOOTSTRAP_RESAMPLES,
                 len(self.val_set.images), 100 * SELECTION_CONFIDENCE)
        return False
