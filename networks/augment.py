"""Training-time augmentation for a network trained from random initialization.

With a few hundred images and no ImageNet pre-training, the classifier sees each object
a few dozen times; these make each sighting a little different. All draw from the
image's own random stream (``trainer.image_rng``), so a seed fixes the whole run.
"""
from __future__ import annotations

import numpy as np

from core.boxes import clip_boxes, remove_small_boxes

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation each scaled by a factor in [1 - s, 1 + s], in
    a random order (torchvision's ColorJitter without hue: stain colour carries class
    information in blood smears). ``image`` uint8 (H, W, 3) RGB -> the same shape and type."""
    if strength <= 0:
        return image
    x = image.astype(np.float32)
    for op in rng.permutation(3):
        f = np.float32(rng.uniform(1 - strength, 1 + strength))
        if op == 0:                                   # brightness
            x *= f
        elif op == 1:                                 # contrast: towards the mean grey
            mean = np.float32((x @ _LUMA).mean())
            x = (x - mean) * f + mean
        else:                                         # saturation: towards the pixel's grey
            grey = (x @ _LUMA)[..., None]
            x = (x - grey) * f + grey
    return np.clip(x, 0, 255).astype(np.uint8)


def jitter_boxes(gt_boxes: np.ndarray, copies: int, rng: np.random.Generator, width: float, height: float,
                 shift: float = 0.15, scale: float = 0.2) -> np.ndarray:
    """``copies`` randomly moved and resized versions of every gt box (N * copies, 4):
    centre shifted by up to ``shift`` of the box size, each side scaled by a factor in
    [1 - scale, 1 + scale]. Added to the proposals, they give every object foreground
    regions even where the proposals miss it (small platelets) and teach the box
    regressor the offsets it meets at test time."""
    if copies <= 0 or len(gt_boxes) == 0:
        return np.zeros((0, 4), np.float64)
    gt = np.repeat(np.asarray(gt_boxes, np.float64), copies, axis=0)
    wh = gt[:, 2:] - gt[:, :2]
    centre = (gt[:, :2] + gt[:, 2:]) / 2 + rng.uniform(-shift, shift, wh.shape) * wh
    half = wh * rng.uniform(1 - scale, 1 + scale, wh.shape) / 2
    boxes = clip_boxes(np.hstack([centre - half, centre + half]), width, height)
    return boxes[remove_small_boxes(boxes, 2)]


def random_crop_window(width: int, height: int, min_side: float, rng: np.random.Generator) -> np.ndarray:
    """A crop (x0, y0, x1, y1) whose width and height are each a random [min_side, 1] of
    the image's, placed uniformly: objects grow at the network scale and meet new edges."""
    cw, ch = (int(round(rng.uniform(min_side, 1.0) * side)) for side in (width, height))
    x0, y0 = int(rng.integers(0, width - cw + 1)), int(rng.integers(0, height - ch + 1))
    return np.array([x0, y0, x0 + cw, y0 + ch], np.float64)
