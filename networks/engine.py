"""The one training engine: seeding, devices, atomic checkpoints, resume, and the loop
itself (``Trainer``), shared by MultiBox and the region classifier."""
from __future__ import annotations

import contextlib
import json
import os
import random

import numpy as np
import torch

from core.errors import UserError
from core.fileio import atomic_write


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here (use --device cpu)")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"--device {name}: choose cpu or cuda")
    return torch.device(name)


def save_checkpoint(path: str, state: dict) -> None:
    """Write atomically: a kill mid-write leaves the previous checkpoint intact."""
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str, map_location="cpu") -> dict:
    import warnings
    try:
        with warnings.catch_warnings():        # torch warns about the pickle protocol of a damaged file
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as exc:            # truncated, not a torch file, pickle garbage: all one message
        raise UserError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a checkpoint of this project (a {type(state).__name__}, not a dict)")
    return state


def rng_state() -> dict:
    """Random state of torch and numpy, as tensors (checkpoints load weights_only)."""
    _, keys, pos, _, _ = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
            "numpy_pos": int(pos)}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))


def latest_checkpoint(out_dir: str, name: str = "checkpoint.pt") -> str | None:
    path = os.path.join(out_dir, name)
    return path if os.path.exists(path) else None


def set_threads(n: int) -> None:
    if n and n > 0:
        torch.set_num_threads(n)


# ---------------------------------------------------------------------- the training loop
LOSS_CEILING = 10.0      # an epoch's loss this many times the first epoch's means divergence
def lr_factor(iteration: int, epoch: int, steps: list[int], gamma: float, warmup_iters: int) -> float:
    """Linear warm-up over the first ``warmup_iters`` iterations, then x``gamma`` at each
    epoch in ``steps`` (step decay, as the GoogLeNet and R-CNN recipes)."""
    warm = min(1.0, (iteration + 1) / warmup_iters) if warmup_iters else 1.0
    return warm * gamma ** sum(epoch >= s for s in steps)


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


class Trainer:
    """The one training loop, for MultiBox and the region classifier alike: epochs of
    SGD steps with a step-decay schedule after a warm-up, optional gradient clipping and
    Polyak averaging, an atomic checkpoint after every epoch (weights, average,
    optimizer, random states, history, seconds), ``resume``, ``max_steps`` (tests), and
    DistributedDataParallel under torchrun (rank 0 writes). What differs between the
    networks stays with their callers:

    * ``batches(epoch)`` -> this process's minibatches of one epoch;
    * ``step(model, batch)`` computes the loss and calls ``backward`` itself (so it can
      accumulate over images), returning summable stats with a ``count`` (e.g.
      ``{"loss": sum, "accuracy": sum, "count": images}``); history keeps their means;
    * ``extra_state()`` / ``load_extra_state(d)``: random streams of their own (strings
      or tensors), saved in the checkpoint;
    * ``hooks``: ``hook(trainer, record)`` after each epoch, before its checkpoint
      (validation, curves); a hook may add to ``record`` or set ``trainer.stop``. A hook's
      ``state_files`` (paths) go into the snapshot below with the checkpoint;
    * ``channels_last``: the network trains in the NHWC layout (oneDNN's own on the CPU:
      network steps 1.1-1.3x faster, bench/bench_train_layout.py; other sums, so not bit
      for bit the NCHW run) and stays in it for what the caller runs next (the classifier's
      ridge heads: CPU max pooling is several times slower in NCHW, bench/bench_train_layout.py);
      the exports write the usual one.

    At the first learning-rate step the checkpoint is also kept in ``out_dir/epochN/``: a
    longer schedule with the same seed and recipe runs the same epochs up to there, so it
    can continue from a copy of that folder (``--resume`` into it) instead of starting over.
    """

    def __init__(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer, *, out_dir: str, epochs: int,
                 lr: float, lr_steps: list[int], lr_gamma: float = 0.1, warmup_iters: int = 0,
                 ema_decay: float = 0.0, clip_grad: float | None = None, name: str = "training",
                 device="cpu", progress: bool = True, max_steps: int | None = None,
                 extra_state=None, load_extra_state=None, hooks=(), channels_last: bool = False):
        from core import distributed
        self.net, self.optimizer, self.out_dir, self.epochs = net, optimizer, out_dir, epochs
        if channels_last:      # in place: the optimizer keeps the same parameters (before the average copies them)
            net.to(memory_format=torch.channels_last)
        self.lr, self.lr_steps, self.lr_gamma, self.warmup_iters = lr, list(lr_steps), lr_gamma, warmup_iters
        self.clip_grad, self.name, self.max_steps = clip_grad, name, max_steps
        self.progress = progress and distributed.is_main()
        self.extra_state, self.load_extra_state, self.hooks = extra_state, load_extra_state, list(hooks)
        self.ema = None
        if ema_decay:
            from torch.optim.swa_utils import AveragedModel
            self.ema = AveragedModel(net, multi_avg_fn=polyak_average_fn(ema_decay), use_buffers=True)
        self.model = net
        if distributed.active():
            from torch.nn.parallel import DistributedDataParallel
            device = torch.device(device)
            self.model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        self.device = device
        self.epoch, self.iteration, self.history, self.seconds = 0, 0, [], 0.0
        self.stop = False                      # a hook sets it to end training early
        self.checkpoint = os.path.join(out_dir, "checkpoint.pt")
        if distributed.is_main():              # half-written files of a killed run are older than this one
            import glob
            for tmp in glob.glob(os.path.join(out_dir, ".*.tmp")):
                with contextlib.suppress(OSError):
                    os.remove(tmp)

    @property
    def averaged(self) -> torch.nn.Module:
        """The weights used at test time: the Polyak average, or the last weights."""
        return self.ema.module if self.ema is not None else self.net

    @property
    def finished(self) -> bool:
        return self.epoch >= self.epochs or self.stop

    def resume(self) -> bool:
        """Continue from ``out_dir/checkpoint.pt`` if there is one (True if so)."""
        if not latest_checkpoint(self.out_dir):
            return False
        state = load_checkpoint(self.checkpoint, self.device)
        try:
            self.net.load_state_dict(state["model"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise UserError(f"{self.checkpoint}: does not fit this recipe ({str(exc)[:200]}); "
                            f"train into a new --out or delete the checkpoint") from None
        set_rng_state(state["rng"])
        if self.load_extra_state:
            self.load_extra_state(state)
        self.epoch = int(state["epoch"])
        self.stop = bool(state.get("stopped", False))
        self.iteration = int(state.get("iteration", 0))
        self.history = json.loads(state["history"])
        self.seconds = float(state.get("seconds", self.history[-1]["seconds"] if self.history else 0.0))
        for hook in self.hooks:               # e.g. validation: the best epoch so far
            if hasattr(hook, "restore"):
                hook.restore(self.history)
        import logging
        logging.getLogger(__name__).info("resuming %s in %s from epoch %d", self.name, self.out_dir, self.epoch)
        return True

    def _save(self) -> None:
        state = {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "rng": rng_state(),
                 "epoch": self.epoch, "iteration": self.iteration, "history": json.dumps(self.history),
                 "seconds": self.seconds, "stopped": self.stop}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.extra_state:
            state.update(self.extra_state())
        save_checkpoint(self.checkpoint, state)

    def _keep_snapshot(self) -> None:
        """Copy the checkpoint (and the hooks' state, e.g. validation's best weights) into
        ``out_dir/epochN``, N the epochs done: the last epoch before the first LR step."""
        import shutil
        snapshot = os.path.join(self.out_dir, f"epoch{self.epoch}")
        os.makedirs(snapshot, exist_ok=True)
        for path in [self.checkpoint] + [p for h in self.hooks for p in getattr(h, "state_files", ())]:
            if os.path.exists(path):
                with open(path, "rb") as src, atomic_write(os.path.join(snapshot, os.path.basename(path)), "wb") as dst:
                    shutil.copyfileobj(src, dst)
        import logging
        logging.getLogger(__name__).info("%s: epoch %d, the last before the first LR step, kept in %s (a longer "
                                         "schedule can --resume from a copy of it)", self.name, self.epoch, snapshot)

    def fit(self, batches, step) -> list[dict]:
        """Train the remaining epochs; returns the history (one record per epoch)."""
        import logging
        import time

        from tqdm import tqdm

        from core import distributed
        log = logging.getLogger(__name__)
        steps = 0
        while not self.finished:
            epoch = self.epoch
            self.net.train()
            t0 = time.time()
            totals: dict[str, float] = {}
            lr = None
            bar = tqdm(batches(epoch), desc=f"{self.name} {epoch + 1}/{self.epochs}", disable=not self.progress,
                       leave=False)
            for batch in bar:
                lr = self.lr * lr_factor(self.iteration, epoch, self.lr_steps, self.lr_gamma, self.warmup_iters)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                self.optimizer.zero_grad(set_to_none=True)
                stats = step(self.model, batch)
                if not np.isfinite(stats["loss"]):
                    raise UserError(f"{self.name} diverged at epoch {epoch + 1} (loss {stats['loss']}); lower the "
                                    f"learning rate and --resume from the last checkpoint")
                if self.clip_grad:
                    torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip_grad)
                self.optimizer.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.net)
                self.iteration, steps = self.iteration + 1, steps + 1
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
                count = max(stats.get("count", 1), 1)
                bar.set_postfix({k: f"{v / count:.3f}" for k, v in stats.items() if k != "count"} |
                                {"lr": f"{lr:.4g}"})
                if self.max_steps and steps >= self.max_steps:
                    break
            self.seconds += time.time() - t0
            keys = sorted(totals)
            summed = np.sum(distributed.gather(np.array([totals[k] for k in keys])), axis=0) if keys else []
            totals = dict(zip(keys, summed))
            n = max(totals.pop("count", 1), 1)
            self.epoch += 1
            record = {"epoch": self.epoch, **{k: float(v) / n for k, v in totals.items()},
                      "lr": lr, "seconds": round(self.seconds, 1)}
            self.history.append(record)
            log.info("%s epoch %d/%d: %s, %.0f s", self.name, self.epoch, self.epochs,
                     ", ".join(f"{k} {float(v) / n:.4f}" for k, v in totals.items()), time.time() - t0)
            first = self.history[0].get("loss")
            if first and record.get("loss") is not None and record["loss"] > LOSS_CEILING * first:
                raise UserError(f"{self.name} diverged in epoch {self.epoch}: loss {record['loss']:.3g} is over "
                                f"{LOSS_CEILING:g}x the first epoch's {first:.3g}; lower the learning rate (the last "
                                f"good checkpoint is {self.checkpoint})")
            bad = [name for name, p in self.net.named_parameters() if not torch.isfinite(p).all()]
            if bad:        # a loss can stay finite while batch norm's weights have blown up
                raise UserError(f"{self.name} diverged in epoch {self.epoch}: {bad[0]} is no longer finite; lower "
                                f"the learning rate (the last good checkpoint is {self.checkpoint})")
            for hook in self.hooks:            # they may add to the record (validation mAP) or stop
                hook(self, record)
            if distributed.is_main():
                self._save()
                if self.lr_steps and self.epoch == min(self.lr_steps) and not self.finished:
                    self._keep_snapshot()
            if self.stop or (self.max_steps and steps >= self.max_steps):
                break
        return self.history
