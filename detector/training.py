"""What every trainer here shares: seeding, devices, atomic checkpoints and resume."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .errors import UserError
from .fileio import atomic_write


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
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise UserError(f"{path}: cannot load checkpoint ({exc})") from None


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
