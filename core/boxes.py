"""Box math, in one place, for every stage.

Boxes are ``(N, 4)`` arrays ``[xmin, ymin, xmax, ymax]`` in image pixels, as numpy
arrays or torch tensors; every function here accepts either and returns the same kind.

Two area conventions exist and both are needed:

* continuous (``pixel_offset=0``): width = xmax - xmin. torchvision, COCO, the network.
* devkit (``pixel_offset=1``): width = xmax - xmin + 1, because VOC and ILSVRC boxes
  name the first and last *pixel* (inclusive). VOCevaldet and eval_detection.m use it.

This module imports numpy only; torch and torchvision are imported when a tensor is
passed in, so the dataset layer and the evaluator start without them.
"""
from __future__ import annotations

import math
import sys

import numpy as np

# Largest log-scale change that decode() will apply: exp(4.135) = 62.5 = 1000 / 16,
# the clamp torchvision and py-faster-rcnn use to keep a bad prediction finite.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def array_lib(x):
    """numpy or torch, whichever ``x`` belongs to."""
    return sys.modules["torch"] if _is_torch(x) else np


def widths_heights(boxes, pixel_offset: float = 0):
    return (boxes[..., 2] - boxes[..., 0] + pixel_offset,
            boxes[..., 3] - boxes[..., 1] + pixel_offset)


def box_area(boxes, pixel_offset: float = 0):
    w, h = widths_heights(boxes, pixel_offset)
    return w * h


def paired_iou(a, b, pixel_offset: float = 0):
    """IoU of ``a[i]`` with ``b[i]`` for every i (aligned arrays, no matrix).

    Pairs that do not intersect (``iw <= 0`` or ``ih <= 0`` under the convention) get 0,
    exactly the case in which the devkits skip the overlap computation.
    """
    lib = array_lib(a)
    iw = lib.minimum(a[..., 2], b[..., 2]) - lib.maximum(a[..., 0], b[..., 0]) + pixel_offset
    ih = lib.minimum(a[..., 3], b[..., 3]) - lib.maximum(a[..., 1], b[..., 1]) + pixel_offset
    positive = (iw > 0) & (ih > 0)
    inter = lib.where(positive, iw * ih, 0 * iw)
    union = box_area(a, pixel_offset) + box_area(b, pixel_offset) - inter
    return lib.where(positive, inter / lib.where(positive, union, 1 + 0 * union), 0 * inter)


def pairwise_iou(a, b, pixel_offset: float = 0):
    """``(len(a), len(b))`` IoU matrix. Tensors with the continuous convention go to
    torchvision.ops.box_iou; everything else is the same formula in numpy."""
    if _is_torch(a) and pixel_offset == 0:
        from torchvision.ops import box_iou
        return box_iou(a, b)
    return paired_iou(a[:, None, :], b[None, :, :], pixel_offset)


def clip_boxes(boxes, width: float, height: float):
    """Clip to the image ``[0, width] x [0, height]`` (a copy)."""
    if _is_torch(boxes):
        from torchvision.ops import clip_boxes_to_image
        return clip_boxes_to_image(boxes, (int(height), int(width)))
    out = np.array(boxes, dtype=np.float64, copy=True)
    np.clip(out[..., 0::2], 0, width, out=out[..., 0::2])
    np.clip(out[..., 1::2], 0, height, out=out[..., 1::2])
    return out


def is_degenerate(boxes):
    """True where a box has no area: ``xmax <= xmin`` or ``ymax <= ymin``."""
    w, h = widths_heights(boxes, 0)
    return (w <= 0) | (h <= 0)


def remove_small_boxes(boxes, min_size: float):
    """Indices of boxes whose sides are both at least ``min_size``."""
    w, h = widths_heights(boxes)
    keep = (w >= min_size) & (h >= min_size)
    return keep.nonzero()[0] if not _is_torch(boxes) else keep.nonzero().flatten()


# --------------------------------------------------------------------------------------
# R-CNN box coding: the targets bounding-box regression learns (R-CNN appendix C).
#   tx = (gx - px) / pw      ty = (gy - py) / ph
#   tw = log(gw / pw)        th = log(gh / ph)
# with (px, py, pw, ph) the proposal's centre and size, in the continuous convention.
# `weights` divide/multiply the deltas (Fast R-CNN's (10, 10, 5, 5) normalisation).
# --------------------------------------------------------------------------------------
def _centres(boxes):
    w, h = widths_heights(boxes)
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode(proposals, targets, weights=(1.0, 1.0, 1.0, 1.0)):
    """Regression targets ``(tx, ty, tw, th)`` that turn ``proposals`` into ``targets``."""
    lib = array_lib(proposals)
    px, py, pw, ph = _centres(proposals)
    gx, gy, gw, gh = _centres(targets)
    wx, wy, ww, wh = weights
    return lib.stack([wx * (gx - px) / pw, wy * (gy - py) / ph,
                      ww * lib.log(gw / pw), wh * lib.log(gh / ph)], -1)


def decode(proposals, deltas, weights=(1.0, 1.0, 1.0, 1.0)):
    """Apply ``deltas`` (``(..., 4)``, as made by :func:`encode`) to ``proposals``."""
    lib = array_lib(proposals)
    px, py, pw, ph = _centres(proposals)
    wx, wy, ww, wh = weights
    dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
    dw = lib.clip(deltas[..., 2] / ww, None, BBOX_XFORM_CLIP) if lib is np else \
        (deltas[..., 2] / ww).clamp(max=BBOX_XFORM_CLIP)
    dh = lib.clip(deltas[..., 3] / wh, None, BBOX_XFORM_CLIP) if lib is np else \
        (deltas[..., 3] / wh).clamp(max=BBOX_XFORM_CLIP)
    cx, cy = px + dx * pw, py + dy * ph
    w, h = pw * lib.exp(dw), ph * lib.exp(dh)
    return lib.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)


def xyxy_to_xywh(boxes):
    """``[x1, y1, x2, y2]`` -> COCO's ``[x, y, width, height]``."""
    lib = array_lib(boxes)
    return lib.stack([boxes[..., 0], boxes[..., 1],
                      boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]], -1)


def xywh_to_xyxy(boxes):
    lib = array_lib(boxes)
    return lib.stack([boxes[..., 0], boxes[..., 1],
                      boxes[..., 0] + boxes[..., 2], boxes[..., 1] + boxes[..., 3]], -1)
