"""Is one set of detections really better than another on this split? A paired bootstrap.

Validation sets are small (raccoon: 24 images, one object each) and their mAP moves by
±0.05 between epochs with no trend; the highest of such a curve is mostly noise. Resampling
the images with replacement, scoring both sets of detections on every resample, and
counting how often the first wins says whether a gap is larger than the images' own
spread (Efron & Tibshirani 1993; Koehn 2004 for the paired test on one test set).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from core.structures import Detections


def _by_image(dets: Detections, image_ids: list[str]) -> list[np.ndarray]:
    rows = {i: [] for i in image_ids}
    for k, i in enumerate(dets.image_ids.tolist()):
        rows.setdefault(i, []).append(k)
    return [np.asarray(rows[i], np.int64) for i in image_ids]


def _resample(dataset, dets: Detections, rows: list[np.ndarray], picks: np.ndarray):
    """The dataset's images at ``picks`` (repeats allowed, each copy its own id) and the
    detections that go with them."""
    images, parts = [], []
    for k, i in enumerate(picks.tolist()):
        rec = dataset.images[i]
        new_id = f"{rec.image_id}#{k}"
        images.append(dataclasses.replace(rec, image_id=new_id))
        r = rows[i]
        parts.append(Detections(np.full(len(r), new_id, object), dets.labels[r], dets.scores[r], dets.boxes[r]))
    return dataclasses.replace(dataset, images=images), Detections.concatenate(parts)


def bootstrap_differences(dataset, dets_a: Detections, dets_b: Detections, metric: str = "voc",
                          resamples: int = 200, seed: int = 0) -> np.ndarray:
    """mAP(``dets_a``) - mAP(``dets_b``) on each of ``resamples`` image resamples of
    ``dataset`` (shape ``(resamples,)``); both are detections on the same images. Its
    2.5 and 97.5 percentiles are a 95% interval for the gap."""
    from . import evaluate
    ids = [r.image_id for r in dataset.images]
    rows_a, rows_b = _by_image(dets_a, ids), _by_image(dets_b, ids)
    rng = np.random.default_rng(seed)
    gaps = np.empty(resamples)
    for k in range(resamples):
        picks = rng.integers(0, len(ids), len(ids))
        a = evaluate(*_resample(dataset, dets_a, rows_a, picks), metric).mAP
        b = evaluate(*_resample(dataset, dets_b, rows_b, picks), metric).mAP
        gaps[k] = a - b
    return gaps


def paired_bootstrap(dataset, dets_a: Detections, dets_b: Detections, metric: str = "voc",
                     resamples: int = 200, seed: int = 0) -> float:
    """The share of ``resamples`` image resamples of ``dataset`` on which ``dets_a`` scores a
    higher mAP than ``dets_b`` (ties count half). Both are detections on the same images."""
    return win_share(bootstrap_differences(dataset, dets_a, dets_b, metric, resamples, seed))


def win_share(gaps: np.ndarray) -> float:
    """The share of resamples won by the first set (a gap > 0), ties counting half."""
    return float(np.mean(gaps > 0) + 0.5 * np.mean(gaps == 0))
