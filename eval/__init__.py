"""Detection evaluation, exact to the devkits: `ilsvrc`, `voc07`, `voc`, `coco`.

    from core.datasets import load_dataset
    from core.structures import read_detections
    from eval import evaluate
    result = evaluate(load_dataset(root, "val"), read_detections("dets.json"), "ilsvrc")

Imports numpy only (pycocotools for `coco`, matplotlib for plots, when used).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from core.errors import UserError

from .ap import area_ap, precision_recall, voc07_ap
from .matching import IGNORED, TP, match_ilsvrc, match_voc

log = logging.getLogger(__name__)

METRICS = ("ilsvrc", "voc07", "voc", "coco")


@dataclass
class EvalResult:
    metric: str
    mAP: float
    per_class: dict[str, float | None]       # None: the class has no gt to find
    num_images: int
    num_detections: int
    num_positives: dict[str, int] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)   # coco's 12 summary numbers
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        out = {"metric": self.metric, "mAP": self.mAP, "per_class": self.per_class,
               "num_images": self.num_images, "num_detections": self.num_detections}
        if self.stats:
            out["stats"] = self.stats
        return out


def index_detections(dataset, dets, ignore_unknown: bool = False):
    """Map detections' image ids and class names to dataset indices.

    A detection for an image outside the split, or of a class the dataset lacks, is an
    error (a user scoring the wrong file should hear so); with ``ignore_unknown`` those
    detections are dropped with one warning that counts them.
    Returns (kept row indices, image index, class index).
    """
    images, classes = dataset.image_index(), dataset.class_index()
    # dict lookups beat np.unique on a million strings by ~10x
    image = np.fromiter(map(images.get, dets.image_ids.tolist(), repeat(-1)), np.int64, len(dets))
    label = np.fromiter(map(classes.get, dets.labels.tolist(), repeat(-1)), np.int64, len(dets))
    bad_img, bad_cls = image < 0, label < 0
    if bad_img.any() or bad_cls.any():
        parts = []
        if bad_img.any():
            names = sorted(set(dets.image_ids[bad_img].tolist()))
            parts.append(f"{int(bad_img.sum())} detection(s) on {len(names)} image(s) not in split "
                         f"'{dataset.split}' (e.g. {', '.join(map(repr, names[:3]))})")
        if bad_cls.any():
            names = sorted(set(dets.labels[bad_cls].tolist()))
            parts.append(f"{int(bad_cls.sum())} detection(s) of class(es) the dataset does not have "
                         f"({', '.join(map(repr, names[:5]))}; classes are {', '.join(dataset.classes[:10])})")
        if not ignore_unknown:
            raise UserError("; ".join(parts) + " (use --ignore-unknown to drop them)")
        log.warning("dropped %s", "; ".join(parts))
    keep = np.flatnonzero(~(bad_img | bad_cls))
    return keep, image[keep], label[keep]


def evaluate(dataset, dets, metric: str, ignore_unknown: bool = False) -> EvalResult:
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")
    keep, image, label = index_detections(dataset, dets, ignore_unknown)
    scores, boxes = dets.scores[keep], dets.boxes[keep]
    n_cls = len(dataset.classes)
    base = dict(metric=metric, num_images=len(dataset.images), num_detections=len(keep))

    if metric == "coco":
        from .coco import evaluate_coco
        ap, stats, curves = evaluate_coco(dataset, image, label, scores, boxes)
        truth = dataset.ground_truth()
        npos = np.bincount(truth.labels[~truth.difficult], minlength=n_cls)
        return EvalResult(mAP=stats["AP"], per_class=_per_class(dataset, ap, npos),
                          num_positives=_counts(dataset, npos), stats=stats,
                          curves={dataset.classes[k]: v for k, v in curves.items()}, **base)

    status, global_order, gt_counted = _match(dataset, metric, image, label, scores, boxes)
    truth = dataset.ground_truth()
    npos = np.bincount(truth.labels[gt_counted], minlength=n_cls)
    ap_fn = voc07_ap if metric == "voc07" else area_ap
    # Ignored detections add no point to the curve (tp and fp both unchanged).
    ranked = global_order[status[global_order] != IGNORED]
    ranked = ranked[np.argsort(label[ranked], kind="stable")]
    starts = np.searchsorted(label[ranked], np.arange(n_cls + 1))
    ap = np.full(n_cls, np.nan)
    curves = {}
    for c in range(n_cls):
        if npos[c] == 0:
            continue
        is_tp = status[ranked[starts[c]:starts[c + 1]]] == TP
        recall, precision = precision_recall(is_tp, int(npos[c]))
        ap[c] = ap_fn(recall, precision)
        curves[dataset.classes[c]] = (recall, precision)
    valid = npos > 0
    return EvalResult(mAP=float(ap[valid].mean()) if valid.any() else float("nan"),
                      per_class=_per_class(dataset, ap, npos), num_positives=_counts(dataset, npos),
                      curves=curves, **base)


def _match(dataset, metric: str, image, label, scores, boxes):
    """The devkit's matching: (per-detection status TP / FP / IGNORED, the processing
    order, which gt count as positives). ``metric`` is ilsvrc, voc07 or voc."""
    n_cls = len(dataset.classes)
    truth = dataset.ground_truth()
    det_key = image * n_cls + label
    gt_key = truth.image * n_cls + truth.labels
    file_order = np.arange(len(scores))
    if metric == "ilsvrc":
        bl_key = dataset.blacklist[:, 0] * n_cls + dataset.blacklist[:, 1]
        gt_counted = ~np.isin(gt_key, bl_key)
        # eval_detection.m's order: per image by descending score (ties: file order);
        # then all images' lists, concatenated by image, sorted again by score.
        rank = np.empty(len(scores), np.int64)
        rank[np.lexsort((file_order, -scores, image))] = file_order
        status = match_ilsvrc(det_key, boxes, rank, gt_key, truth.boxes, np.isin(det_key, bl_key))
        global_order = np.lexsort((file_order, image, -scores))
    else:
        gt_counted = ~truth.difficult
        rank = np.empty(len(scores), np.int64)
        global_order = np.lexsort((file_order, -scores))   # VOCevaldet: stable sort by -score
        rank[global_order] = file_order
        status = match_voc(det_key, boxes, rank, gt_key, truth.boxes, truth.difficult)
    return status, global_order, gt_counted


def detection_status(dataset, dets, metric: str = "voc") -> np.ndarray:
    """(N,) int8 per detection of ``dets``: 1 true positive, 0 false positive, -1 ignored
    (difficult / blacklisted), as ``evaluate`` counts them; what a rescoring learns from."""
    if metric not in METRICS or metric == "coco":
        raise UserError(f"detection_status needs metric ilsvrc, voc07 or voc, not {metric!r}")
    keep, image, label = index_detections(dataset, dets)
    status, _, _ = _match(dataset, metric, image, label, dets.scores[keep], dets.boxes[keep])
    out = np.full(len(dets), IGNORED, np.int8)
    out[keep] = status
    return out


def _per_class(dataset, ap, npos):
    return {c: (float(ap[k]) if npos[k] > 0 and np.isfinite(ap[k]) else None)
            for k, c in enumerate(dataset.classes)}


def _counts(dataset, npos):
    return {c: int(npos[k]) for k, c in enumerate(dataset.classes)}
