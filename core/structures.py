"""Detections: the one result type every stage produces and the evaluator reads.

On disk it is a JSON list of ``{"image": id, "label": class, "score": s, "box": [x1, y1,
x2, y2]}`` in the annotation's pixel coordinates; in memory, parallel numpy arrays.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .fileio import atomic_write

log = logging.getLogger(__name__)


@dataclass
class Detections:
    image_ids: np.ndarray        # (N,) str
    labels: np.ndarray           # (N,) str, class names
    scores: np.ndarray           # (N,) float64
    boxes: np.ndarray            # (N, 4) float64

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros(0, str), np.zeros(0, str), np.zeros(0), np.zeros((0, 4)))

    @classmethod
    def concatenate(cls, parts: list["Detections"]) -> "Detections":
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.image_ids for p in parts]),
                   np.concatenate([p.labels for p in parts]),
                   np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.boxes for p in parts]))

    def to_json_list(self) -> list[dict]:
        return [{"image": str(i), "label": str(c), "score": round(float(s), 6),
                 "box": [round(float(v), 2) for v in b]}
                for i, c, s, b in zip(self.image_ids, self.labels, self.scores, self.boxes)]


@dataclass
class ImageDetections:
    """One image's detections, best first: what ``Detector.predict`` returns.

    ``boxes (N, 4)`` float32 x1 y1 x2 y2 in the image's pixels, ``scores (N,)`` float32,
    ``labels (N,)`` int64 indices into ``class_names``."""
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    image_id: str = ""

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def label_names(self) -> list[str]:
        return [self.class_names[k] for k in self.labels]

    def above(self, threshold: float) -> "ImageDetections":
        """The detections scoring at least ``threshold``."""
        keep = self.scores >= threshold
        return ImageDetections(self.boxes[keep], self.scores[keep], self.labels[keep], self.class_names,
                               self.image_id)

    def to_detections(self) -> Detections:
        """As the evaluator's flat table (image id repeated per row)."""
        return Detections(np.full(len(self), self.image_id), np.array(self.class_names)[self.labels]
                          if len(self) else np.zeros(0, str), self.scores.astype(np.float64),
                          self.boxes.astype(np.float64))

    def to_json_rows(self) -> list[dict]:
        """Rows of the detections JSON (``evaluate.py --detections`` reads a list of them)."""
        return self.to_detections().to_json_list()


def _bad_entry(path: str, entries: list) -> UserError:
    """Find and describe the first malformed entry (the slow path, only on error)."""
    for k, e in enumerate(entries):
        problem = None
        if not isinstance(e, dict):
            problem = "is not an object"
        elif not {"image", "label", "score", "box"} <= e.keys():
            problem = f"lacks {sorted({'image', 'label', 'score', 'box'} - e.keys())}"
        elif type(e["score"]) not in (int, float) or not math.isfinite(e["score"]):
            problem = f"has a non-numeric or non-finite score {e['score']!r}"
        elif (not isinstance(e["box"], list) or len(e["box"]) != 4
              or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in e["box"])):
            problem = f"has a box that is not 4 finite numbers: {e['box']!r}"
        if problem:
            return UserError(f"{path}: detection {k} {problem}")
    return UserError(f"{path}: malformed detections")


def from_coco_results(path: str, entries: list, category_names: dict) -> list[dict]:
    """COCO's results format (``image_id``, ``category_id``, ``bbox`` x y w h, ``score``)
    as this project's rows, given the dataset's category id -> class name map."""
    if not category_names:
        raise UserError(f"{path}: COCO results (category_id, bbox) need a COCO dataset to name the categories")
    rows = []
    for k, e in enumerate(entries):
        try:
            x, y, w, h = e["bbox"]
            rows.append({"image": str(e["image_id"]), "label": category_names[int(e["category_id"])],
                         "score": e["score"], "box": [x, y, x + w, y + h]})
        except KeyError as exc:
            raise UserError(f"{path}: detection {k}: {'unknown category ' if 'category_id' in e else 'lacks '}"
                            f"{exc}") from None
        except (TypeError, ValueError):
            raise UserError(f"{path}: detection {k} has a bbox that is not 4 numbers: {e.get('bbox')!r}") from None
    return rows


def read_detections(path: str, ignore_invalid: bool = False, category_names: dict | None = None) -> Detections:
    """A detections JSON file, checked: every score a real number (not a string or a
    boolean), every box 4 finite numbers with x2 >= x1 and y2 >= y1. An inverted box is
    an error naming how many there are; ``ignore_invalid`` drops them with a warning.
    COCO's results format is read too, with ``category_names`` (a COCO dataset's)."""
    try:
        with open(path) as f:
            entries = json.load(f)
    except OSError as exc:
        raise UserError(f"{path}: cannot read detections ({exc.strerror})") from None
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(entries, list):
        raise UserError(f"{path}: expected a JSON list of detections, got {type(entries).__name__}")
    if not entries:
        return Detections.empty()
    if isinstance(entries[0], dict) and "category_id" in entries[0]:
        entries = from_coco_results(path, entries, category_names or {})
    try:
        if not all(type(e["score"]) in (int, float) for e in entries):
            raise _bad_entry(path, entries)
        dets = Detections(
            image_ids=np.array([str(e["image"]) for e in entries]),
            labels=np.array([str(e["label"]) for e in entries]),
            scores=np.array([e["score"] for e in entries], np.float64),
            boxes=np.array([e["box"] for e in entries], np.float64))
    except (KeyError, TypeError, ValueError):
        raise _bad_entry(path, entries) from None
    if dets.boxes.shape != (len(entries), 4) or not (
            np.isfinite(dets.scores).all() and np.isfinite(dets.boxes).all()):
        raise _bad_entry(path, entries)
    inverted = (dets.boxes[:, 2] < dets.boxes[:, 0]) | (dets.boxes[:, 3] < dets.boxes[:, 1])
    if inverted.any():
        first = int(np.flatnonzero(inverted)[0])
        if not ignore_invalid:
            raise UserError(f"{path}: {int(inverted.sum())} detection(s) have x2 < x1 or y2 < y1 (the first: "
                            f"detection {first}, box {entries[first]['box']}); fix them or pass --ignore-invalid")
        log.warning("%s: dropped %d detection(s) with x2 < x1 or y2 < y1", path, int(inverted.sum()))
        keep = ~inverted
        dets = Detections(dets.image_ids[keep], dets.labels[keep], dets.scores[keep], dets.boxes[keep])
    return dets


def write_detections(path: str, dets: Detections) -> None:
    with atomic_write(path) as f:
        json.dump(dets.to_json_list(), f)
        f.write("\n")
