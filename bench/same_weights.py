#!/usr/bin/env python
"""Are two trained model directories (or ensembles) the same weights, bit for bit?

    python bench/same_weights.py models/raccoon runs/raccoon

Compares every member's model.pt and heads.npz (an ensemble's members in order, or the
directory itself), the MultiBox the proposals come from and each member's own MultiBox
(test.objectness reads them), tensor by tensor, and prints
per file "identical" or the largest absolute difference. Exit 0 when all are identical, 1 when any differs; a
missing or unreadable file is a one-line error (exit 2). This is how the README checks
that `bench/train_bundled.sh` retrains the bundle itself rather than another draw.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.errors import UserError, run_cli  # noqa: E402
from core.modeldir import is_ensemble, member_dirs, read_ensemble_spec  # noqa: E402

MEMBER_FILES = ("model.pt", "heads.npz")


def load_arrays(path: str) -> dict[str, np.ndarray]:
    """A weights file as name -> float64 array (torch state dicts and npz archives)."""
    if not os.path.exists(path):
        raise UserError(f"{path}: missing")
    try:
        if path.endswith(".npz"):
            with np.load(path) as z:
                return {k: np.asarray(z[k], dtype=np.float64) for k in z.files}
        import torch
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v.detach().double().numpy() if hasattr(v, "detach") else np.asarray(v, dtype=np.float64)
                for k, v in state.items()}
    except Exception as exc:            # a truncated or foreign file: say which
        raise UserError(f"{path}: not a readable weights file ({exc})") from None


def difference(a: dict, b: dict) -> float | None:
    """0.0 when equal bit for bit, the largest absolute difference otherwise; None when
    the two hold different tensors (names or shapes)."""
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return None
    worst = 0.0
    for k in a:
        if not np.array_equal(a[k], b[k], equal_nan=True):
            worst = max(worst, float(np.nanmax(np.abs(a[k] - b[k]))), np.finfo(float).tiny)
    return worst


def weight_files(model: str) -> list[str]:
    """The files whose weights decide a model's detections: each member's classifier and
    box regressors, the MultiBox its proposals come from (an ensemble's own, or the first
    member's, which an ensemble without one shares), then every member's own MultiBox that
    is another file (test.objectness averages them; a link to the shared one counts once)."""
    members = member_dirs(model)
    files = [os.path.join(d, name) for d in members for name in MEMBER_FILES
             if os.path.exists(os.path.join(d, name))]
    multibox = (is_ensemble(model) and read_ensemble_spec(model).get("multibox_dir")) or \
        os.path.join(members[0], "multibox")
    multiboxes = [os.path.join(multibox, "multibox.pt")] + [os.path.join(d, "multibox", "multibox.pt") for d in members]
    seen = set()
    for path in multiboxes:
        if os.path.exists(path) and os.path.realpath(path) not in seen:
            seen.add(os.path.realpath(path))
            files.append(path)
    return files


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first", help="a model directory or ensemble")
    p.add_argument("second", help="the one to compare it with")
    args = p.parse_args(argv)
    firsts, seconds = weight_files(args.first), weight_files(args.second)
    if [os.path.basename(f) for f in firsts] != [os.path.basename(f) for f in seconds]:
        raise UserError(f"{args.first} and {args.second} are not the same kind of model "
                        f"({len(firsts)} and {len(seconds)} weight files)")
    same = True
    for one, other in zip(firsts, seconds):
        diff = difference(load_arrays(one), load_arrays(other))
        same &= diff == 0.0
        verdict = "identical" if diff == 0.0 else "different tensors" if diff is None else f"max |diff| {diff:.3g}"
        print(f"{os.path.relpath(one)} vs {os.path.relpath(other)}: {verdict}")
    return 0 if same else 1


if __name__ == "__main__":
    run_cli(main)
