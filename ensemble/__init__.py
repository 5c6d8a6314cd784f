"""Ensembles: independently trained detectors voting on every box (GoogLeNet, ILSVRC 2014).

An ensemble is a directory with ``ensemble.json`` listing model directories (the
layout: core/modeldir.py). Members
must share classes and proposal settings, so that proposals are computed once and every
member scores the same regions: their MultiBox too, or the ensemble names the one they
all use (members trained separately, each with its own). Their class probabilities are then combined — ``soft``:
the (weighted) mean; ``hard``: the (weighted) share of members whose top class it is —
and their box deltas averaged, before one round of NMS.

A single model directory is treated as a one-member ensemble, so every caller has one
interface: ``load_predictor(path)``.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from core.boxes import array_lib
from core.errors import UserError
from core.modeldir import ENSEMBLE_FILE, is_ensemble, member_dirs, member_names, read_ensemble_spec

VOTES = ("soft", "hard")
HARD_VOTE_TIE_BREAK = 1e-3   # hard vote: equal shares are ordered by the mean probability


def write_ensemble(path: str, members: list[str], weights: list[float] | None = None, vote: str = "soft",
                   multibox: str | None = None) -> None:
    """``multibox``: the MultiBox directory (relative to ``path``) every member's proposals
    come from; None: the members' own, which must then be the same."""
    from core.fileio import write_json
    if vote not in VOTES:
        raise UserError(f"vote must be one of {VOTES}, got {vote!r}")
    spec = {"members": members, "weights": weights or [1.0] * len(members), "vote": vote}
    if multibox:
        spec["multibox"] = multibox
    write_json(os.path.join(path, ENSEMBLE_FILE), spec)


def _stack_with_weights(arrays: list, weights):
    """(stacked (M, ...), weights normalized to sum 1 and shaped to broadcast over it)."""
    lib = array_lib(arrays[0])
    w = np.ones(len(arrays)) if weights is None else np.asarray(weights, np.float64)
    if len(w) != len(arrays) or (w < 0).any() or w.sum() <= 0:
        raise UserError(f"ensemble weights must be one per member, non-negative and not all zero: {w.tolist()}")
    stacked = lib.stack(list(arrays))
    shape = (-1,) + (1,) * (stacked.ndim - 1)
    w = w / w.sum()
    if lib is np:
        return stacked, w.reshape(shape).astype(stacked.dtype)
    return stacked, lib.as_tensor(w, dtype=stacked.dtype, device=stacked.device).view(shape)


def combine_probs(probs: list, weights=None, vote: str = "soft"):
    """Combine members' ``(R, C+1)`` probabilities (torch or numpy, same kind out)."""
    if vote not in VOTES:
        raise UserError(f"vote must be one of {VOTES}, got {vote!r}")
    stacked, w = _stack_with_weights(probs, weights)
    mean = (stacked * w).sum(0)
    if vote == "soft":
        return mean
    lib = array_lib(stacked)
    top = stacked.argmax(-1)                                           # (M, R)
    onehot = top[..., None] == lib.arange(stacked.shape[-1], **_dev(stacked))[None, None, :]
    return (onehot * w).sum(0) + HARD_VOTE_TIE_BREAK * mean


def combine_deltas(deltas: list, weights=None):
    """Weighted mean of members' ``(R, C, 4)`` box deltas."""
    stacked, w = _stack_with_weights(deltas, weights)
    return (stacked * w).sum(0)


def _dev(x):
    return {"device": x.device} if hasattr(x, "device") and not isinstance(x, np.ndarray) else {}


class Ensemble:
    """Members (DetectorModel) loaded once; ``combine`` merges their RegionScores."""

    def __init__(self, members, names, weights=None, vote="soft", path="", multibox_dir=None):
        self.members, self.names, self.path = members, names, path
        self.weights = weights or [1.0] * len(members)
        self.vote = vote
        self._multibox_dir = multibox_dir
        check_compatible(members, names, own_multibox=multibox_dir is None)
        self.cfg = members[0].cfg
        self.classes = members[0].classes

    @property
    def multibox_dir(self):
        """The MultiBox whose boxes all members score: the ensemble's, else the members' one."""
        return self._multibox_dir or self.members[0].multibox_dir

    @property
    def objectness_multiboxes(self) -> list[str]:
        """The MultiBoxes whose objectness is averaged (``test.objectness``): each member's
        own where it has one, else the ensemble's; one directory counts once."""
        dirs = [m.multibox_dir if m.multibox_dir and os.path.exists(os.path.join(m.multibox_dir, "multibox.pt"))
                else self.multibox_dir for m in self.members]
        return list(dict.fromkeys(os.path.realpath(d) for d in dirs if d))

    def __len__(self):
        return len(self.members)

    def combine(self, scores: list):
        from detector.model import RegionScores
        if len(scores) == 1:
            return scores[0]
        return RegionScores(combine_probs([s.probs for s in scores], self.weights, self.vote),
                            combine_deltas([s.deltas for s in scores], self.weights))


def _proposal_signature(model, own_multibox: bool = True) -> dict:
    from proposals.cache import content_digest
    p = dataclasses.asdict(model.cfg.proposals)
    p.pop("multibox", None)          # training settings of MultiBox do not change its boxes
    mb = model.multibox_dir
    if own_multibox:
        p["multibox_model"] = content_digest(os.path.realpath(os.path.join(mb, "multibox.pt"))) if mb else ""
    else:
        p.pop("multibox_model", None)   # the ensemble's MultiBox replaces each member's
    return p


def check_compatible(members, names, own_multibox: bool = True) -> None:
    """Members must share classes and proposal settings (and, with ``own_multibox``, the
    MultiBox file itself)."""
    first, first_sig = members[0], _proposal_signature(members[0], own_multibox)
    for model, name in zip(members[1:], names[1:]):
        if model.classes != first.classes:
            raise UserError(f"ensemble member {name} has classes {model.classes}, but {names[0]} has "
                            f"{first.classes}: members must share classes")
        sig = _proposal_signature(model, own_multibox)
        if sig != first_sig:
            diff = sorted(k for k in sig if sig[k] != first_sig.get(k))
            values = "; ".join(f"{k}: {first_sig.get(k)!r} in {names[0]}, {sig[k]!r} in {name}" for k in diff)
            fix = ("train the members on one MultiBox (train.py --ensemble N), or name the one they all use "
                   "(python -m ensemble create ... --multibox DIR)"
                   if diff == ["multibox_model"] else
                   f"set proposals.{diff[0]} alike in the members' config.yaml (a test-time setting: "
                   f"no retraining needed)")
            raise UserError(f"ensemble member {name} has other proposal settings than {names[0]} ({values}): "
                            f"members must score the same proposals; {fix}")


def load_predictor(path: str, device="cpu", vote: str | None = None) -> Ensemble:
    """A model directory or an ensemble directory, as an Ensemble (of one, or more)."""
    from detector.model import DetectorModel
    dirs = member_dirs(path)
    spec = read_ensemble_spec(path) if is_ensemble(path) else {}
    members = [DetectorModel.load(d, device) for d in dirs]
    names = member_names(dirs)
    return Ensemble(members, names, spec.get("weights"), vote or spec.get("vote", "soft"), path,
                    spec.get("multibox_dir"))
