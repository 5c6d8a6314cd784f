"""Why a detector misses: a confusion matrix and a false-positive breakdown.

Both read detections scoring at least ``score_threshold`` (a working point a user would
deploy, stated in the report) and match them to ground truth per image, best score
first, at IoU >= ``iou`` (continuous coordinates, as the ``voc`` metric without its +1).

* Confusion matrix: rows are the ground-truth class (and ``background`` for detections
  that cover no object), columns the predicted class (and ``background`` for objects no
  detection found). A detection takes the best-overlapping object still free, of any
  class; the diagonal are correct detections.
* False positives of a class, after Hoiem et al. (ECCV 2012) and COCO's analyze():
  ``duplicate`` (IoU >= iou with an object of its class already taken by a higher
  score), ``mislocalized`` (0.1 <= IoU < iou with an object of its class), ``other class``
  (IoU >= 0.1 with an object of another class), ``background`` (the rest); and the share
  of background false positives touching the image border (within 2 px), where
  annotators most often leave cut-off objects out.

Difficult objects are left out of both, as the metrics leave them out.
"""
from __future__ import annotations

import numpy as np

from core.boxes import pairwise_iou

FP_KINDS = ("duplicate", "mislocalized", "other class", "background")
BORDER_PIXELS = 2.0


def touches_border(boxes: np.ndarray, width, height) -> np.ndarray:
    """(N,) bool: boxes (N, 4) x1 y1 x2 y2 within BORDER_PIXELS of their image's edge;
    ``width`` / ``height`` scalars or (N,) per box."""
    return ((boxes[:, 0] <= BORDER_PIXELS) | (boxes[:, 1] <= BORDER_PIXELS)
            | (boxes[:, 2] >= np.asarray(width) - BORDER_PIXELS) | (boxes[:, 3] >= np.asarray(height) - BORDER_PIXELS))


def false_positive_kind(best_same: float, best_other: float, iou: float = 0.5) -> str:
    """One of FP_KINDS for a false positive whose best IoU is ``best_same`` with an object
    of its own class and ``best_other`` with an object of another class."""
    if best_same >= iou:
        return "duplicate"
    if best_same >= 0.1:
        return "mislocalized"
    return "other class" if best_other >= 0.1 else "background"


def analyze(dataset, dets, score_threshold: float = 0.3, iou: float = 0.5) -> dict:
    """{"confusion": {"classes": [...,"background"], "matrix": rows x cols counts, ...},
    "false_positives": {class: {kind: count, ..., "true_positives": n, "background_at_border": share}},
    "per_image": [{"image": id, "false_positives": n, "missed": n}]}."""
    classes = list(dataset.classes)
    index = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    matrix = np.zeros((k + 1, k + 1), np.int64)            # last row / column: background
    fp = {c: dict.fromkeys(FP_KINDS, 0) | {"true_positives": 0, "background_at_border": 0} for c in classes}
    keep = dets.scores >= score_threshold
    by_image: dict[str, np.ndarray] = {}
    for row in np.flatnonzero(keep):
        by_image.setdefault(str(dets.image_ids[row]), []).append(row)
    per_image = []
    for rec in dataset.images:
        ok = ~rec.difficult
        gt_boxes, gt_labels = rec.boxes[ok], rec.labels[ok]
        rows = np.array(by_image.get(rec.image_id, []), np.int64)
        rows = rows[np.argsort(-dets.scores[rows], kind="stable")] if len(rows) else rows
        boxes = dets.boxes[rows]
        labels = np.array([index.get(str(lbl), -1) for lbl in dets.labels[rows]], np.int64)
        overlap = pairwise_iou(boxes, gt_boxes) if len(rows) and len(gt_boxes) else np.zeros((len(rows), len(gt_boxes)))
        taken_any = np.zeros(len(gt_boxes), bool)          # confusion: any class
        taken_same = np.zeros(len(gt_boxes), bool)         # false positives: own class
        n_fp = 0
        for d in range(len(rows)):
            c = labels[d]
            if c < 0:
                continue
            ious = overlap[d]
            free = np.where(taken_any, -1.0, ious)
            g = int(free.argmax()) if len(free) else -1
            if g >= 0 and free[g] >= iou:
                taken_any[g] = True
                matrix[gt_labels[g], c] += 1
            else:
                matrix[k, c] += 1
            same = gt_labels == c
            own = np.where(same & ~taken_same, ious, -1.0)
            g2 = int(own.argmax()) if len(own) else -1
            if g2 >= 0 and own[g2] >= iou:
                taken_same[g2] = True
                fp[classes[c]]["true_positives"] += 1
                continue
            n_fp += 1
            best_same = ious[same].max() if same.any() else 0.0
            best_other = ious[~same].max() if (~same).any() else 0.0
            kind = false_positive_kind(best_same, best_other, iou)
            if kind == "background" and touches_border(boxes[d:d + 1], rec.width, rec.height)[0]:
                fp[classes[c]]["background_at_border"] += 1
            fp[classes[c]][kind] += 1
        for g in np.flatnonzero(~taken_any):
            matrix[gt_labels[g], k] += 1
        per_image.append({"image": rec.image_id, "false_positives": n_fp, "missed": int((~taken_same).sum())})
    for c in classes:
        n_bg = fp[c]["background"]
        fp[c]["background_at_border"] = round(fp[c]["background_at_border"] / n_bg, 3) if n_bg else None
    return {"score_threshold": score_threshold, "iou": iou,
            "confusion": {"classes": classes + ["background"], "matrix": matrix.tolist(),
                          "rows": "ground truth", "columns": "detected as"},
            "false_positives": fp, "per_image": per_image}
