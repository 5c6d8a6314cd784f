import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import BCCD, ROOT, make_voc, needs_bccd, write_image
from core.datasets import load_dataset
from core.errors import DatasetError


def test_voc_basic_classes_sorted_and_flags(tmp_path):
    root = make_voc(tmp_path / "voc", {
        "x1": [("dog", [1, 2, 30, 40]), ("cat", [5, 5, 20, 20], 1)],
        "x2": [("cat", [0, 0, 63, 47])],
    })
    ds = load_dataset(str(root), "test")
    assert ds.format == "voc" and ds.classes == ["cat", "dog"]
    rec = ds.images[0]
    assert rec.width == 64 and rec.height == 48
    assert rec.labels.tolist() == [1, 0] and rec.difficult.tolist() == [False, True]
    np.testing.assert_array_equal(rec.boxes[0], [1, 2, 30, 40])
    gt = ds.ground_truth()
    assert gt.image.tolist() == [0, 0, 1] and gt.labels.tolist() == [1, 0, 0]
    # a class list from the config fixes the order
    assert load_dataset(str(root), "test", classes=["dog", "cat"]).images[0].labels.tolist() == [0, 1]


def test_degenerate_box_skipped_and_outside_box_clipped(tmp_path, caplog):
    root = make_voc(tmp_path / "voc", {"x1": [("a", [10, 10, 10, 10]), ("a", [-3, 5, 70, 40]), ("a", [1, 1, 9, 9])]})
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(str(root), "test")
    assert len(ds.images[0].labels) == 2
    np.testing.assert_array_equal(ds.images[0].boxes[0], [0, 5, 64, 40])
    assert len(ds.warnings) == 2
    assert "x1.xml: object 0 (a) has a degenerate box [10, 10, 10, 10]; skipped" in ds.warnings[0]
    assert "x1.xml: object 1 (a)" in ds.warnings[1] and "clipped to [0.0, 5.0, 64.0, 40.0]" in ds.warnings[1]
    assert "degenerate" in caplog.text


def test_missing_image_is_an_error_naming_it(tmp_path):
    root = make_voc(tmp_path / "voc", {"x1": [("a", [1, 1, 9, 9])], "x2": []})
    (root / "JPEGImages" / "x2.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) of the split are missing: .*x2\.jpg"):
        load_dataset(str(root), "test")


def test_unreadable_xml_and_unknown_class(tmp_path):
    root = make_voc(tmp_path / "voc", {"x1": [("a", [1, 1, 9, 9])]})
    with pytest.raises(DatasetError, match=r"x1\.xml: object 0 has class 'a', which is not in the class list"):
        load_dataset(str(root), "test", classes=["b"])
    (root / "Annotations" / "x1.xml").write_text("<annotation><object>")
    with pytest.raises(DatasetError, match=r"x1\.xml: unreadable annotation"):
        load_dataset(str(root), "test")
    with pytest.raises(DatasetError, match=r"train\.txt: no such split \(splits here: test\)"):
        load_dataset(str(root), "train")
    with pytest.raises(DatasetError, match="not a dataset directory"):
        load_dataset(str(tmp_path), "test")


def test_missing_size_read_from_image(tmp_path):
    root = make_voc(tmp_path / "voc", {"x1": [("a", [1, 1, 9, 9])]}, size=(0, 0), write_images=False)
    write_image(root / "JPEGImages" / "x1.jpg", 33, 21)
    rec = load_dataset(str(root), "test").images[0]
    assert (rec.width, rec.height) == (33, 21)


def make_ilsvrc(root, split="val"):
    from conftest import voc_xml
    (root / "Annotations" / "DET" / split).mkdir(parents=True)
    (root / "Data" / "DET" / split).mkdir(parents=True)
    (root / "ImageSets" / "DET").mkdir(parents=True)
    (root / "devkit" / "data").mkdir(parents=True)
    names = ["ILSVRC2013_val_00000001", "ILSVRC2013_val_00000002"]
    objs = [[("n02672831", [1, 1, 20, 20])], [("n01443537", [3, 3, 30, 30]), ("n02672831", [5, 5, 9, 9])]]
    for n, o in zip(names, objs):
        (root / "Annotations" / "DET" / split / f"{n}.xml").write_text(voc_xml(n, 40, 40, o))
        write_image(root / "Data" / "DET" / split / f"{n}.JPEG", 40, 40)
    (root / "ImageSets" / "DET" / f"{split}.txt").write_text(f"{names[0]} 1\n{names[1]} 2\n")
    (root / "devkit" / "data" / "map_det.txt").write_text(
        "n02672831 1 accordion\nn02691156 2 airplane\nn01443537 3 goldfish\n")
    (root / "devkit" / "data" / "ILSVRC2014_det_validation_blacklist.txt").write_text("2 n01443537\n")
    return root


def test_ilsvrc_layout_synsets_and_blacklist(tmp_path):
    root = make_ilsvrc(tmp_path / "ILSVRC")
    ds = load_dataset(str(root), "val")
    assert ds.format == "ilsvrc"
    assert ds.classes == ["n02672831", "n02691156", "n01443537"]      # the map's order
    assert ds.display_name("n01443537") == "goldfish"
    assert ds.images[1].labels.tolist() == [2, 0]
    assert ds.blacklist.tolist() == [[1, 2]]                          # image 2, goldfish


def test_coco_json(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val").mkdir()
    write_image(tmp_path / "val" / "a.jpg", 50, 40)
    write_image(tmp_path / "val" / "b.jpg", 50, 40)
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.jpg", "width": 50, "height": 40},
                   {"id": 9, "file_name": "b.jpg", "width": 50, "height": 40}],
        "categories": [{"id": 3, "name": "zebra"}, {"id": 1, "name": "person"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [2, 3, 10, 20], "area": 200, "iscrowd": 0},
                        {"id": 2, "image_id": 9, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 1}]}))
    ds = load_dataset(str(tmp_path), "val")
    assert ds.format == "coco" and ds.classes == ["person", "zebra"]
    assert [r.image_id for r in ds.images] == ["7", "9"]
    np.testing.assert_array_equal(ds.images[0].boxes, [[2, 3, 12, 23]])
    assert ds.images[1].difficult.tolist() == [True]


@needs_bccd
def test_bccd_reports_its_two_degenerate_boxes():
    ds = load_dataset(str(BCCD), "trainval")
    degenerate = [w for w in ds.warnings if "degenerate" in w]
    assert len(degenerate) == 2
    assert "BloodImage_00338.xml: object 12 (RBC)" in degenerate[0]
    assert "BloodImage_00343.xml: object 3 (RBC)" in degenerate[1]
    assert ds.classes == ["Platelets", "RBC", "WBC"] and len(ds) == 292


def test_dataset_layer_imports_without_torch():
    code = ("import sys; import core.datasets, core.boxes, core.structures, core.config, eval, eval.matching; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def to_yolo(voc_root, out, split="test", roboflow=False):
    """A YOLO copy of a VOC split: data.yaml, images/<split>/, labels/<split>/*.txt."""
    import shutil

    from core.datasets import load_dataset
    ds = load_dataset(str(voc_root), split)
    images = out / (f"{split}/images" if roboflow else f"images/{split}")
    labels = out / (f"{split}/labels" if roboflow else f"labels/{split}")
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for rec in ds.images:
        shutil.copy(rec.path, images / os.path.basename(rec.path))
        lines = [f"{k} {(b[0] + b[2]) / 2 / rec.width:.6f} {(b[1] + b[3]) / 2 / rec.height:.6f} "
                 f"{(b[2] - b[0]) / rec.width:.6f} {(b[3] - b[1]) / rec.height:.6f}"
                 for b, k in zip(rec.boxes, rec.labels)]
        (labels / f"{rec.image_id}.txt").write_text("\n".join(lines) + "\n")
    where = f"../{split}/images" if roboflow else f"images/{split}"
    (out / "data.yaml").write_text(f"names: {ds.classes}\n{split}: {where}\n")
    return ds


@pytest.mark.parametrize("roboflow", [False, True])
def test_yolo_layout_reads_back_the_voc_boxes(tmp_path, roboflow):
    from core.datasets import load_dataset
    voc = to_yolo(ROOT / "examples" / "bccd_mini", tmp_path / "yolo", roboflow=roboflow)
    yolo = load_dataset(str(tmp_path / "yolo"), "test")
    assert yolo.format == "yolo" and yolo.classes == voc.classes
    assert [r.image_id for r in yolo.images] == [r.image_id for r in voc.images]
    for a, b in zip(yolo.images, voc.images):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.01)
        assert a.labels.tolist() == b.labels.tolist()
    with pytest.raises(DatasetError, match=r"no split 'val' \(splits here: test\)"):
        load_dataset(str(tmp_path / "yolo"), "val")
    bad = tmp_path / "yolo" / ("test/labels" if roboflow else "labels/test") / f"{voc.images[0].image_id}.txt"
    bad.write_text("7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match=r"line 1: expected 'class cx cy w h' with a class index below 3"):
        load_dataset(str(tmp_path / "yolo"), "test")


def test_evaluate_reads_a_yolo_dataset(tmp_path, run_script):
    to_yolo(ROOT / "examples" / "bccd_mini", tmp_path / "yolo")
    det = ROOT / "examples" / "bccd_mini" / "example_detections.json"
    a = run_script("evaluate.py", "--dataset", tmp_path / "yolo", "--split", "test", "--detections", det)
    b = run_script("evaluate.py", "--dataset", ROOT / "examples" / "bccd_mini", "--split", "test", "--detections", det)
    assert a.returncode == 0, a.stderr
    mAP = [line for line in a.stdout.splitlines() if line.startswith("mAP")]
    assert mAP == [line for line in b.stdout.splitlines() if line.startswith("mAP")]
