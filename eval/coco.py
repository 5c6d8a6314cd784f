"""The `coco` metric: pycocotools' COCOeval, fed from our dataset and detections."""
from __future__ import annotations

import contextlib
import io

import numpy as np

from core.boxes import xyxy_to_xywh

STAT_NAMES = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]


def _quiet():
    """pycocotools prints progress to stdout; keep our stdout for our table."""
    return contextlib.redirect_stdout(io.StringIO())


def coco_ground_truth(dataset):
    """A pycocotools COCO object for the split, plus our class index -> category id.

    A COCO dataset is evaluated against its own JSON (segment areas decide small/medium/
    large, as in the official numbers); other formats are converted: ``[x1, y1, x2-x1,
    y2-y1]`` boxes, area = box area, and `difficult` objects become ``iscrowd``.
    """
    from pycocotools.coco import COCO
    with _quiet():
        if dataset.coco_json:
            gt = COCO(dataset.coco_json)
            name_to_id = {c["name"]: c["id"] for c in gt.dataset["categories"]}
            return gt, np.array([name_to_id[c] for c in dataset.classes]), \
                np.array([int(r.image_id) for r in dataset.images])
        truth = dataset.ground_truth()
        xywh = xyxy_to_xywh(truth.boxes)
        gt = COCO()
        gt.dataset = {
            "images": [{"id": i, "width": r.width, "height": r.height}
                       for i, r in enumerate(dataset.images)],
            "categories": [{"id": k + 1, "name": c} for k, c in enumerate(dataset.classes)],
            "annotations": [
                {"id": n + 1, "image_id": int(truth.image[n]), "category_id": int(truth.labels[n]) + 1,
                 "bbox": xywh[n].tolist(), "area": float(xywh[n, 2] * xywh[n, 3]),
                 "iscrowd": int(truth.difficult[n])} for n in range(len(truth.labels))],
        }
        gt.createIndex()
    return gt, np.arange(1, len(dataset.classes) + 1), np.arange(len(dataset.images))


def evaluate_coco(dataset, det_image, det_label, scores, boxes):
    """Run COCOeval (bbox). Returns (per-class AP@[.5:.95] or NaN, the 12 summary stats,
    per-class (recall, precision) curves at IoU 0.5:0.95 averaged, area all, 100 dets)."""
    from pycocotools.cocoeval import COCOeval
    gt, category_ids, coco_image_ids = coco_ground_truth(dataset)
    if len(scores) == 0:
        return np.full(len(dataset.classes), np.nan), dict.fromkeys(STAT_NAMES, 0.0), {}
    xywh = xyxy_to_xywh(boxes)
    rows = np.column_stack([coco_image_ids[det_image], xywh, scores, category_ids[det_label]])
    with _quiet():
        dt = gt.loadRes(rows)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = sorted(coco_image_ids.tolist())
        ev.params.catIds = sorted(category_ids.tolist())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision: [T iou thresholds, R recall points, K classes, A areas, M max dets]
    precision = ev.eval["precision"][:, :, :, 0, -1]
    cat_pos = {c: k for k, c in enumerate(ev.params.catIds)}
    per_class, curves = [], {}
    for c in category_ids:
        p = precision[:, :, cat_pos[int(c)]]
        valid = p[p > -1]
        per_class.append(float(valid.mean()) if valid.size else np.nan)
        if valid.size:
            curves[int(c)] = (np.asarray(ev.params.recThrs), np.where(p > -1, p, 0).mean(0))
    class_curves = {k: curves[int(c)] for k, c in enumerate(category_ids) if int(c) in curves}
    return np.array(per_class), dict(zip(STAT_NAMES, map(float, ev.stats))), class_curves
