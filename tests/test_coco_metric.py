import contextlib
import io
import json

import numpy as np
import pytest

from conftest import make_voc, write_image
from core.datasets import load_dataset
from core.structures import Detections
from eval import evaluate


def test_hand_case_on_voc_data(tmp_path):
    ds = load_dataset(str(make_voc(tmp_path / "v", {"x": [("a", [0, 0, 40, 40])]})), "test")
    d = Detections(np.array(["x"]), np.array(["a"]), np.array([0.9]), np.array([[0, 0, 40, 24.8]]))  # IoU 0.62
    r = evaluate(ds, d, "coco")
    assert r.stats["AP50"] == pytest.approx(1.0)
    assert r.stats["AP75"] == pytest.approx(0.0)
    assert r.mAP == pytest.approx(0.3)            # IoU 0.62 clears 0.50, 0.55 and 0.60 of ten
    assert r.per_class["a"] == pytest.approx(0.3)


def test_agrees_with_pycocotools_on_a_coco_file(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    rng = np.random.default_rng(3)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val").mkdir()
    images, anns, results = [], [], []
    for i in range(6):
        write_image(tmp_path / "val" / f"{i}.jpg", 120, 100, seed=i)
        images.append({"id": 10 + i, "file_name": f"{i}.jpg", "width": 120, "height": 100})
        for _ in range(rng.integers(1, 5)):
            x, y, w, h = rng.uniform(0, 60), rng.uniform(0, 50), rng.uniform(5, 60), rng.uniform(5, 50)
            cat = int(rng.choice([1, 2, 5]))
            anns.append({"id": len(anns) + 1, "image_id": 10 + i, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h * 0.7, "iscrowd": 0})
            for _ in range(2):
                j = (np.array([x, y, w, h]) + rng.normal(0, 4, 4)).clip(1)
                results.append({"image_id": 10 + i, "category_id": cat, "bbox": j.tolist(), "score": float(rng.random())})
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps({
        "images": images, "annotations": anns,
        "categories": [{"id": 1, "name": "p"}, {"id": 2, "name": "q"}, {"id": 5, "name": "r"}]}))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "annotations" / "instances_val.json"))
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    ds = load_dataset(str(tmp_path), "val")
    names = {1: "p", 2: "q", 5: "r"}
    d = Detections(np.array([str(r["image_id"]) for r in results]), np.array([names[r["category_id"]] for r in results]),
                   np.array([r["score"] for r in results]),
                   np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (r["bbox"] for r in results)]))
    ours = evaluate(ds, d, "coco")
    np.testing.assert_allclose(list(ours.stats.values()), ev.stats, atol=1e-9)
    assert 0.1 < ours.mAP < 0.95
    # the same results as a COCO results file: read as they are, the same numbers
    from core.structures import read_detections
    (tmp_path / "results.json").write_text(json.dumps(results))
    read = read_detections(str(tmp_path / "results.json"), category_names=ds.category_names)
    again = evaluate(ds, read, "coco")
    np.testing.assert_allclose(list(again.stats.values()), ev.stats, atol=1e-9)
    from core.errors import UserError
    with pytest.raises(UserError, match="need a COCO dataset"):
        read_detections(str(tmp_path / "results.json"))
