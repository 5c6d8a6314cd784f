"""Detection-to-ground-truth matching, vectorized, with each devkit's exact rules.

Both rules start from the same join: every (detection, gt) pair of the same image and
class, with its IoU in the devkits' +1-pixel convention. Nothing loops over detections
in Python; the ILSVRC rule, which is sequential within an (image, class) group, loops
over *ranks* instead (round r lets the r-th detection of every group choose at once;
groups own disjoint gt, so the choices never collide).

Each function returns a per-detection status: 1 true positive, 0 false positive, -1
ignored (counted as neither, as the devkits do for `difficult` and blacklisted pairs).
"""
from __future__ import annotations

import numpy as np

from core.boxes import paired_iou

TP, FP, IGNORED = 1, 0, -1


def same_key_pairs(det_key: np.ndarray, gt_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (d, g) with ``det_key[d] == gt_key[g]``; g ascending within a d."""
    order = np.argsort(gt_key, kind="stable")
    sorted_keys = gt_key[order]
    lo = np.searchsorted(sorted_keys, det_key, "left")
    counts = np.searchsorted(sorted_keys, det_key, "right") - lo
    det_idx = np.repeat(np.arange(len(det_key)), counts)
    first_pair = np.cumsum(counts) - counts
    gt_idx = order[np.arange(len(det_idx)) + np.repeat(lo - first_pair, counts)]
    return det_idx, gt_idx


def _first_per(sorted_ids: np.ndarray) -> np.ndarray:
    """Mask of the first element of each run of equal values."""
    return np.r_[True, sorted_ids[1:] != sorted_ids[:-1]] if len(sorted_ids) else np.zeros(0, bool)


def match_voc(det_key, det_boxes, det_rank, gt_key, gt_boxes, gt_difficult,
              min_overlap: float = 0.5) -> np.ndarray:
    """VOCevaldet: each detection looks only at its *best-overlapping* gt of the class
    (matched or not; ties to the first gt). IoU >= 0.5 with it: a true positive if that
    gt is still free, a false positive (duplicate) if a higher-ranked detection took it,
    ignored if it is `difficult`. Below 0.5 (or no overlap): false positive.

    ``det_rank``: position in the devkit's processing order (descending score, ties in
    file order).
    """
    status = np.full(len(det_key), FP, np.int8)
    d, g = same_key_pairs(det_key, gt_key)
    iou = paired_iou(det_boxes[d], gt_boxes[g], pixel_offset=1)
    keep = iou > 0
    d, g, iou = d[keep], g[keep], iou[keep]
    best = np.lexsort((g, -iou, d))
    d, g, iou = d[best], g[best], iou[best]
    first = _first_per(d)
    d, g, iou = d[first], g[first], iou[first]
    hit = iou >= min_overlap
    d, g = d[hit], g[hit]
    difficult = gt_difficult[g]
    status[d[difficult]] = IGNORED
    d, g = d[~difficult], g[~difficult]
    by_gt = np.lexsort((det_rank[d], g))         # the best-ranked detection of each gt wins
    status[d[by_gt][_first_per(g[by_gt])]] = TP
    return status


def ilsvrc_thresholds(gt_boxes: np.ndarray, default: float = 0.5, pixel_tolerance: float = 10):
    """eval_detection.m's per-object IoU threshold: small objects get a looser one,
    ``min(0.5, w*h / ((w+10)*(h+10)))`` with +1-pixel widths."""
    w = gt_boxes[:, 2] - gt_boxes[:, 0] + 1
    h = gt_boxes[:, 3] - gt_boxes[:, 1] + 1
    return np.minimum(default, (w * h) / ((w + pixel_tolerance) * (h + pixel_tolerance)))


def match_ilsvrc(det_key, det_boxes, det_rank, gt_key, gt_boxes, det_blacklisted) -> np.ndarray:
    """eval_detection.m: within an image, detections go in descending score order and
    each takes the *not yet matched* gt of its class with the highest IoU that reaches
    that gt's own threshold; none left: false positive. Blacklisted detections are
    ignored.

    ``det_rank``: position in the devkit's per-image order (descending score, ties in
    file order); only its order within an (image, class) group matters.
    """
    status = np.full(len(det_key), FP, np.int8)
    status[det_blacklisted] = IGNORED
    live = np.flatnonzero(~det_blacklisted)
    d, g = same_key_pairs(det_key[live], gt_key)
    d = live[d]
    iou = paired_iou(det_boxes[d], gt_boxes[g], pixel_offset=1)
    ok = iou >= ilsvrc_thresholds(gt_boxes)[g]
    d, g, iou = d[ok], g[ok], iou[ok]
    if len(d) == 0:
        return status

    # Round of each candidate detection = its rank among candidates in its group.
    cands = np.unique(d)
    by_group = np.lexsort((det_rank[cands], det_key[cands]))
    cands = cands[by_group]
    group_start = np.flatnonzero(_first_per(det_key[cands]))
    run_lengths = np.diff(np.r_[group_start, len(cands)])
    round_of = np.empty(len(det_key), np.int64)
    round_of[cands] = np.arange(len(cands)) - np.repeat(group_start, run_lengths)

    r = round_of[d]
    order = np.lexsort((g, -iou, d, r))          # by round, then det, then best IoU first
    d, g, r = d[order], g[order], r[order]
    bounds = np.searchsorted(r, np.arange(r[-1] + 2))
    taken = np.zeros(len(gt_key), bool)
    for k in range(r[-1] + 1):
        sd, sg = d[bounds[k]:bounds[k + 1]], g[bounds[k]:bounds[k + 1]]
        free = ~taken[sg]
        sd, sg = sd[free], sg[free]
        first = _first_per(sd)
        taken[sg[first]] = True
        status[sd[first]] = TP
    return status
