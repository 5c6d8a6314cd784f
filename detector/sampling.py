"""Which proposals train the classifier (R-CNN / Fast R-CNN fine-tuning rules).

Ground-truth boxes join the proposals. A region with IoU >= fg_iou against some gt
takes that gt's class; IoU in [bg_low, fg_iou) makes it background; below bg_low it is
not used (too easy a negative), unless ``keep_easy``: then it is labelled EASY_BG and a
minibatch may draw a share of its background from those (``easy_fraction``). Minibatches
are ~fg_fraction foreground.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.boxes import box_area, clip_boxes, pairwise_iou, remove_small_boxes

EASY_BG = -2                # a region under bg_low: background, drawn only as the easy share


@dataclass
class LabeledRegions:
    boxes: np.ndarray       # (R, 4)
    labels: np.ndarray      # (R,) 0 background, k+1 class k, -1 unused, EASY_BG background under bg_low
    gt_index: np.ndarray    # (R,) best-overlapping gt (-1 with no gt)
    max_iou: np.ndarray     # (R,)


def label_regions(proposals: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray,
                  fg_iou: float = 0.5, bg_low: float = 0.1, keep_easy: bool = False) -> LabeledRegions:
    boxes = np.vstack([gt_boxes.reshape(-1, 4), proposals.reshape(-1, 4)]).astype(np.float64)
    if len(gt_boxes) == 0:
        n = len(boxes)
        return LabeledRegions(boxes, np.zeros(n, np.int64), np.full(n, -1), np.zeros(n))
    iou = pairwise_iou(boxes, gt_boxes.astype(np.float64))
    gt_index = iou.argmax(1)
    max_iou = iou[np.arange(len(boxes)), gt_index]
    labels = np.full(len(boxes), EASY_BG if keep_easy else -1, np.int64)
    labels[(max_iou >= bg_low) & (max_iou < fg_iou)] = 0
    fg = max_iou >= fg_iou
    labels[fg] = gt_labels[gt_index[fg]] + 1
    return LabeledRegions(boxes, labels, gt_index, max_iou)


def sample_regions(labels: np.ndarray, num: int, fg_fraction: float, rng: np.random.Generator,
                   class_balanced: bool = False, easy_fraction: float = 0.0) -> np.ndarray:
    """Indices of a minibatch: up to round(num * fg_fraction) foreground, the rest
    background, each drawn without replacement. ``class_balanced`` draws the foreground
    so that every class present gets about the same share (a rare class is otherwise
    outnumbered by the many regions of a common one in the same image). ``easy_fraction``
    of the background comes from the EASY_BG regions (as many as there are)."""
    fg = np.flatnonzero(labels > 0)
    bg = np.flatnonzero(labels == 0)
    easy = np.flatnonzero(labels == EASY_BG)
    n_fg = min(int(round(num * fg_fraction)), len(fg))
    n_easy = min(int(round((num - n_fg) * easy_fraction)), len(easy))
    n_bg = min(num - n_fg - n_easy, len(bg))
    p = None
    if class_balanced and n_fg:
        _, inverse, counts = np.unique(labels[fg], return_inverse=True, return_counts=True)
        p = 1.0 / counts[inverse]
        p /= p.sum()
    pick = [rng.choice(fg, n_fg, replace=False, p=p), rng.choice(bg, n_bg, replace=False)]
    if n_easy:
        pick.append(rng.choice(easy, n_easy, replace=False))
    return np.concatenate(pick).astype(np.int64)


def crop_targets(window: np.ndarray, proposals: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray,
                 min_visible: float = 0.6):
    """Proposals and gt of an image cropped to ``window (x0, y0, x1, y1)``, in the crop's
    pixels: (proposals, gt_boxes, gt_labels, cut_gt). A gt that keeps ``min_visible`` of
    its area stays (clipped); one cut more than that is returned in ``cut_gt`` so that
    the regions on it are left out of training (``ignore_regions``): datasets disagree
    about cut-off objects (BCCD leaves cut cells out, raccoon boxes them), so a crop
    teaches neither way."""
    w, h = window[2] - window[0], window[3] - window[1]
    shift = np.tile(window[:2], 2)
    props = clip_boxes(np.asarray(proposals, np.float64).reshape(-1, 4) - shift, w, h)
    props = props[remove_small_boxes(props, 2)]
    gt = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    clipped = clip_boxes(gt - shift, w, h)
    visible = box_area(clipped) / np.maximum(box_area(gt), 1e-9)
    keep = visible >= min_visible
    cut = (visible > 0) & ~keep
    return props, clipped[keep], np.asarray(gt_labels)[keep], clipped[cut]


def _is_background(labels: np.ndarray) -> np.ndarray:
    """Background regions, hard (0) and easy (EASY_BG)."""
    return (labels == 0) | (labels == EASY_BG)


def ignore_regions(regions: LabeledRegions, cut_gt: np.ndarray, iou: float = 0.3) -> LabeledRegions:
    """Background regions that overlap a cut-off object by ``iou`` leave training (-1)."""
    if len(cut_gt):
        near = pairwise_iou(regions.boxes, cut_gt).max(1) >= iou
        regions.labels[near & _is_background(regions.labels)] = -1
    return regions


def partially_annotated(image_labels: list[np.ndarray], num_classes: int, share: float) -> tuple[np.ndarray, list[int]]:
    """Images taken as partially annotated: (flags (N,), the common classes).

    ``image_labels``: each training image's (non-difficult) gt class indices. A class boxed
    in at least ``share`` of the images is common (BCCD: red cells, 96% of train); an
    image that boxes some objects but no common class has that class unboxed rather than
    absent (BCCD's 12 trainval images full of red cells with none labelled), so its
    background regions should not train. An image with no box at all stays a negative
    image. ``share`` 0: none."""
    if share <= 0 or not image_labels:
        return np.zeros(len(image_labels), bool), []
    present = np.zeros((len(image_labels), num_classes), bool)       # (N, C): image i boxes class c
    for i, lab in enumerate(image_labels):
        present[i, lab] = True
    common = np.flatnonzero(present.mean(0) >= share)
    flags = present.any(1) & ~present[:, common].all(1)
    return flags, common.tolist()


def drop_background(regions: LabeledRegions) -> LabeledRegions:
    """Every background region (hard and easy) leaves training (-1); foreground stays."""
    regions.labels[_is_background(regions.labels)] = -1
    return regions


def flip_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    out = boxes.copy()
    out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return out
