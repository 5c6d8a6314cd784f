"""The vectorized evaluator agrees with literal devkit loops on random, crowded data."""
import numpy as np
import pytest

from core.datasets import Dataset, ImageRecord
from core.structures import Detections
from devkit_reference import ilsvrc_reference, voc_reference
from eval import evaluate

CLASSES = ["a", "b", "c"]


def random_case(seed, n_images=12):
    rng = np.random.default_rng(seed)
    images, dets = {}, []
    for i in range(n_images):
        objs = []
        for _ in range(rng.integers(0, 6)):
            x, y = rng.integers(0, 80, 2)
            w, h = rng.integers(3, 40, 2)
            objs.append((CLASSES[rng.integers(3)], [int(x), int(y), int(x + w), int(y + h)], bool(rng.random() < 0.2)))
        images[f"im{i}"] = objs
        for o in objs:                          # several noisy detections per object
            for _ in range(rng.integers(0, 4)):
                box = np.array(o[1]) + rng.integers(-6, 7, 4)
                box[2:] = np.maximum(box[2:], box[:2] + 1)
                cls = o[0] if rng.random() < 0.85 else CLASSES[rng.integers(3)]
                dets.append((f"im{i}", cls, float(rng.integers(0, 20)) / 20, box.tolist()))  # many ties
        for _ in range(rng.integers(0, 4)):
            x, y = rng.integers(0, 90, 2)
            dets.append((f"im{i}", CLASSES[rng.integers(3)], float(rng.random()), [int(x), int(y), int(x + 15), int(y + 12)]))
    order = rng.permutation(len(dets))
    return images, [dets[k] for k in order]


def build(images, dets, blacklist=()):
    recs = [ImageRecord(i, "", 128, 128, np.array([o[1] for o in objs], float).reshape(-1, 4),
                        np.array([CLASSES.index(o[0]) for o in objs], np.int64),
                        np.array([o[2] for o in objs], bool), np.zeros(len(objs), bool))
            for i, objs in images.items()]
    ids = list(images)
    bl = np.array([(ids.index(i), CLASSES.index(c)) for i, c in blacklist], np.int64).reshape(-1, 2)
    ds = Dataset("mem", "t", "voc", CLASSES, recs, blacklist=bl)
    d = Detections(np.array([x[0] for x in dets]), np.array([x[1] for x in dets]),
                   np.array([x[2] for x in dets]), np.array([x[3] for x in dets], float))
    return ds, d


@pytest.mark.parametrize("seed", range(8))
def test_voc_matches_reference(seed):
    images, dets = random_case(seed)
    ds, d = build(images, dets)
    for metric, use_07 in (("voc", False), ("voc07", True)):
        got = evaluate(ds, d, metric).per_class
        for c in CLASSES:
            ref = voc_reference(images, dets, c, use_07)
            assert got[c] == pytest.approx(ref, abs=1e-12), (metric, c)


@pytest.mark.parametrize("seed", range(8))
def test_ilsvrc_matches_reference(seed):
    images, dets = random_case(100 + seed)
    blacklist = {(f"im{seed}", "a"), (f"im{seed + 1}", "b")}
    ds, d = build(images, dets, blacklist)
    ref = ilsvrc_reference(images, dets, CLASSES, blacklist)
    got = evaluate(ds, d, "ilsvrc").per_class
    for c in CLASSES:
        assert (got[c] is None) == (ref[c] is None)
        if ref[c] is not None:
            assert got[c] == pytest.approx(ref[c], abs=1e-12), c
    assert any(v not in (None, 0.0, 1.0) for v in got.values())   # a non-trivial case
