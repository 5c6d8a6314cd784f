"""MultiBox objectness as a second opinion on a detection's score (``test.objectness``).

The region classifier only ever sees the regions sampled for it; MultiBox sees the whole
image and is trained on every prior, so whatever the annotators leave out (on BCCD red
cells cut by the border, and whole smears with no red cell boxed) is a negative for it
wherever it lies, as for a Faster R-CNN's RPN. A detection's score becomes

    score ** (1 - w) * objectness ** w

where its objectness is the highest confidence among the MultiBox predictions (every
prior, no NMS) that overlap its box by ``test.objectness_iou``, averaged over the
MultiBoxes given (an ensemble's members each bring their own). A MultiBox trained with
class confidences (``proposals.multibox.class_confidences``) vouches with its confidence
for the detection's own class instead. Measured in the README,
*Accuracy: the ablation*; 0 (off) is the paper's classifier-only score.
"""
from __future__ import annotations

import numpy as np

from core.boxes import pairwise_iou


def objectness_of(boxes: np.ndarray, predicted: np.ndarray, confidence: np.ndarray, min_iou: float,
                  labels: np.ndarray | None = None) -> np.ndarray:
    """(N,) for ``boxes`` (N, 4): the best ``confidence`` among the ``predicted`` boxes (P, 4)
    that overlap it by at least ``min_iou``; 0 where none does. ``confidence`` is (P,), or
    (P, C) per class, and then ``labels`` (N,) pick each box's column."""
    if not len(boxes) or not len(predicted):
        return np.zeros(len(boxes), np.float32)
    iou = pairwise_iou(np.asarray(boxes, np.float32), np.asarray(predicted, np.float32))
    vouching = confidence[None, :] if confidence.ndim == 1 else confidence.T[np.asarray(labels)]   # (1 or N, P)
    return np.where(iou >= min_iou, vouching, 0.0).max(axis=1).astype(np.float32)


def fuse_objectness(scores: np.ndarray, objectness: np.ndarray, weight: float) -> np.ndarray:
    """The geometric blend ``scores ** (1 - weight) * objectness ** weight`` (float32)."""
    return (np.power(scores, 1.0 - weight) * np.power(objectness, weight)).astype(np.float32)


class ObjectnessScorer:
    """The MultiBoxes in ``multibox_dirs`` (each loaded once; a directory named twice counts
    once): ``predict(image_rgb)`` runs them on an image, ``score(predictions, boxes, labels)``
    gives any boxes of that image their mean objectness (N,). ``classes``: the detector's,
    which a MultiBox with class confidences must have been trained on, in that order."""

    def __init__(self, multibox_dirs: list[str], min_iou: float, device="cpu", classes: list[str] | None = None):
        from core.errors import UserError

        from .multibox import load_multibox
        self.nets = [load_multibox(d, device) for d in dict.fromkeys(multibox_dirs)]
        self.min_iou, self.device = min_iou, device
        for directory, (net, _) in zip(dict.fromkeys(multibox_dirs), self.nets):
            if net.classes and classes is not None and list(classes) != net.classes:
                raise UserError(f"{directory}: its class confidences are for {net.classes}, the detector's classes "
                                f"are {list(classes)}")

    def predict(self, image_rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per MultiBox, every prior's (boxes (P, 4) in pixels, confidence (P,), or (P, C)
        per class for a MultiBox with class confidences)."""
        from .multibox import multibox_predictions
        out = []
        for net, size in self.nets:
            boxes, objectness, per_class = multibox_predictions(net, size, [image_rgb], self.device)[0]
            out.append((boxes.cpu().numpy(), (per_class if net.num_classes else objectness).cpu().numpy()))
        return out

    def score(self, predictions: list[tuple[np.ndarray, np.ndarray]], boxes: np.ndarray,
              labels: np.ndarray | None = None) -> np.ndarray:
        each = [objectness_of(boxes, predicted, confidence, self.min_iou, labels) for predicted, confidence in predictions]
        return np.mean(each, axis=0).astype(np.float32) if each else np.ones(len(boxes), np.float32)
