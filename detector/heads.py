"""The heads fitted on region features after fine-tuning (R-CNN, sections 2.3 and C).

* Bounding-box regression: per class, ridge regression (scikit-learn RidgeCV, its
  alpha chosen by leave-one-out) from the region feature to the (tx, ty, tw, th) that
  move a proposal onto its gt, on proposals with IoU >= 0.6.
* Optional SVMs: per class, a LinearSVC on features of gt boxes (positives) and
  proposals with IoU < 0.3 (negatives), with hard-negative mining.

Both are stored as plain arrays: ``W (C, D, k)`` and ``b (C, k)``.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
BBOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)   # targets scaled to unit-ish variance (Fast R-CNN)


def fit_bbox_regressors(feats: np.ndarray, classes: np.ndarray, targets: np.ndarray, num_classes: int,
                        alpha: float | None = None):
    """``feats (N, D)``, ``classes (N,)`` in 0..C-1, ``targets (N, 4)`` encoded deltas.
    Returns (W (C, D, 4), b (C, 4), chosen alphas); a class without samples predicts 0."""
    from sklearn.linear_model import Ridge, RidgeCV
    d = feats.shape[1]
    W, b = np.zeros((num_classes, d, 4), np.float32), np.zeros((num_classes, 4), np.float32)
    alphas = []
    for c in range(num_classes):
        sel = classes == c
        if sel.sum() < 5:
            log.warning("bbox regression: class %d has %d samples; left as identity", c, int(sel.sum()))
            alphas.append(None)
            continue
        reg = Ridge(alpha=alpha) if alpha else RidgeCV(alphas=RIDGE_ALPHAS)
        reg.fit(feats[sel], targets[sel])
        W[c], b[c] = reg.coef_.T, reg.intercept_
        alphas.append(float(alpha or reg.alpha_))
    return W, b, alphas


def fit_svms(pos_feats: list[np.ndarray], neg_feats: list[np.ndarray], C: float = 0.001, rounds: int = 2,
             seed: int = 0):
    """One LinearSVC per class with hard-negative mining: train on all positives and a
    first sample of negatives, then add the negatives the SVM scores above -1, repeat.
    ``pos_feats[c]``/``neg_feats[c]``: features of class c's positives/negatives."""
    from sklearn.svm import LinearSVC
    rng = np.random.default_rng(seed)
    num_classes, d = len(pos_feats), pos_feats[0].shape[1] if len(pos_feats) else 0
    W, b = np.zeros((num_classes, d, 1), np.float32), np.zeros((num_classes, 1), np.float32)
    for c in range(num_classes):
        pos, neg = pos_feats[c], neg_feats[c]
        if len(pos) == 0 or len(neg) == 0:
            continue
        active = rng.choice(len(neg), min(len(neg), 5 * len(pos)), replace=False)
        for _ in range(rounds):
            x = np.vstack([pos, neg[active]])
            y = np.r_[np.ones(len(pos)), np.zeros(len(active))]
            svm = LinearSVC(C=C, class_weight="balanced", max_iter=5000, random_state=seed).fit(x, y)
            hard = np.flatnonzero(svm.decision_function(neg) > -1.0)
            new = np.setdiff1d(hard, active)
            if len(new) == 0:
                break
            active = np.union1d(active, new[:20000])
        W[c, :, 0], b[c, 0] = svm.coef_[0], svm.intercept_[0]
    return W, b


def apply_linear(feats, W, b):
    """``feats (R, D)`` torch or numpy -> ``(R, C, k)`` via per-class W, b."""
    lib = type(feats).__module__
    if lib.startswith("torch"):
        import torch
        Wt = torch.as_tensor(W, device=feats.device, dtype=feats.dtype)
        bt = torch.as_tensor(b, device=feats.device, dtype=feats.dtype)
        return torch.einsum("rd,cdk->rck", feats, Wt) + bt
    return np.einsum("rd,cdk->rck", feats, W) + b
