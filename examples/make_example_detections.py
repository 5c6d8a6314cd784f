#!/usr/bin/env python
"""Write examples/bccd_mini/example_detections.json: the mini split's ground truth with
seeded noise (jittered boxes, missed objects, false positives). It exists only to show
evaluate.py at work before a model does; it is not the output of any detector.

    python examples/make_example_detections.py
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from core.datasets import load_dataset  # noqa: E402
from core.structures import Detections, write_detections  # noqa: E402


def main():
    ds = load_dataset(os.path.join(HERE, "bccd_mini"), "test")
    rng = np.random.default_rng(2014)
    ids, labels, scores, boxes = [], [], [], []
    for rec in ds.images:
        for box, label in zip(rec.boxes, rec.labels):
            if rng.random() < 0.9:                       # found, a little off
                ids.append(rec.image_id), labels.append(ds.classes[label])
                scores.append(rng.uniform(0.4, 1.0)), boxes.append(box + rng.normal(0, 5, 4))
        for _ in range(4):                               # false positives
            x, y = rng.uniform(0, rec.width - 100), rng.uniform(0, rec.height - 100)
            ids.append(rec.image_id), labels.append(ds.classes[rng.integers(len(ds.classes))])
            scores.append(rng.uniform(0.0, 0.6)), boxes.append([x, y, x + rng.uniform(30, 100), y + rng.uniform(30, 100)])
    write_detections(os.path.join(HERE, "bccd_mini", "example_detections.json"),
                     Detections(np.array(ids), np.array(labels), np.array(scores), np.array(boxes)))


if __name__ == "__main__":
    main()
