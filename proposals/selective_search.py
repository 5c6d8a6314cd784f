"""Selective search (Uijlings et al.) through opencv-contrib's ximgproc.

GoogLeNet's detection entry used it with the graph-segmentation scale doubled: coarser
superpixels, about half the boxes, for the same coverage once MultiBox adds its own.
``k_scale`` in the config is that factor (1.0 = opencv's defaults).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

import numpy as np

from core.boxes import remove_small_boxes
from core.errors import UserError

# OpenCV ranks the regions it merged by level x C's rand(), and never seeds it: without a
# seed, the order of an image's boxes (and with top_n, which boxes) depends on how many
# images the process searched before it, so a proposal cache filled in another order (or
# by other worker processes) trains another model. Seeding per image makes the boxes a
# function of the image and the settings. The seed is part of the cache key
# (proposals.cache.source_params), so boxes cached unseeded are never read as seeded ones.
RANK_SEED = 0


@functools.lru_cache(maxsize=1)
def _c_srand():
    """The C library's ``srand`` that OpenCV's ``rand()`` shares, or None where it cannot
    be reached (then the order is the process's, as before)."""
    for name in (None, ctypes.util.find_library("c"), "msvcrt"):
        try:
            return ctypes.CDLL(name).srand
        except (OSError, AttributeError, TypeError):
            continue
    return None


def unique_boxes(boxes: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct box, in the original order."""
    _, first = np.unique(np.round(boxes).astype(np.int64), axis=0, return_index=True)
    return np.sort(first)


def selective_search(image_bgr: np.ndarray, cfg) -> np.ndarray:
    """``(N, 4)`` float32 boxes ``[x1, y1, x2, y2]`` in selective-search order.

    ``cfg``: a SelectiveSearchConfig. Large images are shrunk so the longer side is at
    most ``cfg.max_side`` and the boxes scaled back; boxes with a side under
    ``cfg.min_size`` and exact duplicates are dropped; the first ``cfg.top_n`` are kept.
    """
    import cv2
    cv2.setNumThreads(1)          # parallelism is across images (worker processes)
    height, width = image_bgr.shape[:2]
    scale = min(1.0, cfg.max_side / max(height, width)) if cfg.max_side else 1.0
    small = image_bgr if scale == 1.0 else cv2.resize(
        image_bgr, (max(1, round(width * scale)), max(1, round(height * scale))),
        interpolation=cv2.INTER_AREA)
    if small.ndim == 2:
        small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    if not hasattr(cv2, "ximgproc"):
        raise UserError("selective search needs OpenCV's contrib modules (cv2.ximgproc is missing): "
                        "pip uninstall -y opencv-python && pip install opencv-contrib-python")
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(small)
    base_k = int(round(cfg.base_k * cfg.k_scale))
    inc_k = int(round(cfg.inc_k * cfg.k_scale))
    if cfg.mode == "quality":
        ss.switchToSelectiveSearchQuality(base_k, inc_k, cfg.sigma)
    else:
        ss.switchToSelectiveSearchFast(base_k, inc_k, cfg.sigma)
    srand = _c_srand()
    if srand is not None:
        srand(RANK_SEED)
    rects = ss.process()                                   # (N, 4) x, y, w, h
    if len(rects) == 0:
        return np.zeros((0, 4), np.float32)
    rects = rects.astype(np.float32) / scale
    boxes = np.column_stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3]])
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    boxes = boxes[remove_small_boxes(boxes, cfg.min_size)]
    boxes = boxes[unique_boxes(boxes)]
    return boxes[:cfg.top_n].astype(np.float32)
