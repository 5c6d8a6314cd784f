"""The Python API (pipeline.load_detector) and detect.py as a layer over it."""
import json
import os
import re
import shutil

import numpy as np
import pytest

from conftest import ROOT

EXAMPLE = ROOT / "examples" / "bccd_mini" / "JPEGImages" / "BloodImage_00007.jpg"


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README.md has no ```python block after <!-- api-example -->"
    return block.group(1)


def test_readme_example_runs_and_matches_detect_py_on_path_array_and_pil(tmp_path, run_script):
    from PIL import Image
    scope = {}
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        exec(readme_python_example(), scope)            # the README's own lines, as a user runs them
    finally:
        os.chdir(cwd)
    det, result = scope["det"], scope["result"]
    assert result.class_names == ["Platelets", "RBC", "WBC"] and len(result) > 5
    assert result.boxes.shape == (len(result), 4) and (np.diff(result.scores) <= 0).all()
    array = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    from_array = det.predict(array, proposals="fast")
    from_pil = det.predict(Image.open(EXAMPLE), proposals="fast")
    for other in (from_array, from_pil):
        np.testing.assert_allclose(other.boxes, result.boxes, atol=1e-4)
        np.testing.assert_allclose(other.scores, result.scores, atol=1e-6)
    out = run_script("detect.py", EXAMPLE, "--proposals", "multibox", "--no-images", "--json", tmp_path / "d.json")
    assert out.returncode == 0, out.stderr
    assert "model: the bundled" in out.stdout and "Platelets, RBC, WBC" in out.stdout
    rows = json.loads((tmp_path / "d.json").read_text())
    assert rows == result.to_json_rows()


def test_predict_rejects_what_is_not_an_image(tiny_model):
    from core.errors import UserError
    from pipeline import load_detector
    det = load_detector(str(tiny_model["model"]))
    with pytest.raises(UserError, match="HxWx3 uint8"):
        det.predict(np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match="cannot detect in a list"):
        det.predict([1, 2, 3])
    with pytest.raises(UserError, match="choose from paper, fast"):
        det.predict(np.zeros((8, 8, 3), np.uint8), proposals="slow")


def test_predict_many_keeps_order_and_ids(tiny_model):
    from pipeline import load_detector
    det = load_detector(str(tiny_model["model"]), cache_dir=str(tiny_model["cache"]))
    paths = sorted((tiny_model["data"] / "JPEGImages").iterdir())[:3]
    results = list(det.predict_many(paths, threshold=0.2))
    assert [r.image_id for r in results] == [p.stem for p in paths]
    assert all((r.scores >= 0.2).all() for r in results)


def test_detect_names_outputs_that_cannot_collide(tmp_path, tiny_model, run_script):
    src = tiny_model["data"] / "JPEGImages" / "shape_000.jpg"
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(src, tmp_path / sub / "same.jpg")
    out = run_script("detect.py", tmp_path / "a" / "same.jpg", tmp_path / "b" / "same.jpg", "--model",
                     tiny_model["model"], "--out", tmp_path / "out", "--json", tmp_path / "d.json", "--threshold", "0")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["same-2.jpg", "same.jpg"]
    ids = {row["image"] for row in json.loads((tmp_path / "d.json").read_text())}
    assert ids <= {"same", "same-2"} and len(ids) == 2


def test_detect_refuses_an_unwritable_out_before_the_first_image(tmp_path, tiny_model, run_script):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    out = run_script("detect.py", tiny_model["data"] / "JPEGImages" / "shape_000.jpg", "--model", tiny_model["model"],
                     "--out", blocker / "sub")
    assert out.returncode == 2 and "cannot write annotated images there" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_detect_takes_folders_globs_and_writes_every_format(tmp_path, tiny_model, run_script, run_cli_here):
    import csv
    import xml.etree.ElementTree as ET
    src = sorted((tiny_model["data"] / "JPEGImages").iterdir())[:3]
    (tmp_path / "in" / "deep").mkdir(parents=True)
    shutil.copy(src[0], tmp_path / "in" / "100.jpg")
    shutil.copy(src[1], tmp_path / "in" / "deep" / "200.jpg")
    common = ["--model", tiny_model["model"], "--no-images", "--threshold", "0", "--quiet"]
    flat = run_script("detect.py", tmp_path / "in", *common, "--json", tmp_path / "flat.json")
    assert flat.returncode == 0 and "1 input(s) processed" in flat.stdout, flat.stderr
    deep = run_cli_here("pipeline.cli.detect", tmp_path / "in", "--recursive", *common, "--json", tmp_path / "d.json")
    assert "2 input(s) processed" in deep.stdout, deep.stderr
    rows = json.loads((tmp_path / "d.json").read_text())
    assert {r["image"] for r in rows} == {"100", "200"}
    pattern = run_cli_here("pipeline.cli.detect", str(tmp_path / "in" / "**" / "*.jpg"), "--recursive", *common,
                         "--json", tmp_path / "p.json")
    assert "2 input(s) processed" in pattern.stdout, pattern.stderr
    none = run_cli_here("pipeline.cli.detect", str(tmp_path / "in" / "*.png"), *common)
    assert none.returncode == 2 and "the pattern matches no file" in none.stderr
    for fmt, target in (("csv", "d.csv"), ("coco", "c.json"), ("voc-xml", "xml")):
        r = run_cli_here("pipeline.cli.detect", tmp_path / "in", "--recursive", *common, "--format", fmt, "--json", tmp_path / target)
        assert r.returncode == 0, r.stderr
    with open(tmp_path / "d.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and table[0].keys() == {"image", "label", "score", "x1", "y1", "x2", "y2"}
    coco = json.loads((tmp_path / "c.json").read_text())
    assert {c["image_id"] for c in coco} == {100, 200} and {c["category_id"] for c in coco} <= {1, 2}
    first = rows[0]
    match = [c for c in coco if c["image_id"] == int(first["image"]) and abs(c["score"] - first["score"]) < 1e-6][0]
    assert match["bbox"][2] == pytest.approx(first["box"][2] - first["box"][0], abs=0.02)
    tree = ET.parse(tmp_path / "xml" / "100.xml").getroot()
    assert tree.find("size/width").text == "96" and len(tree.findall("object")) == sum(r["image"] == "100" for r in rows)


def test_detect_on_a_video_writes_one_result_per_frame_and_an_annotated_video(tmp_path, tiny_model, run_script):
    import cv2
    from PIL import Image
    frame = np.asarray(Image.open(sorted((tiny_model["data"] / "JPEGImages").iterdir())[0]).convert("RGB"))
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, frame.shape[1::-1])
    for _ in range(3):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    r = run_script("detect.py", tmp_path / "clip.mp4", "--model", tiny_model["model"], "--out", tmp_path / "out",
                   "--json", tmp_path / "v.json", "--threshold", "0", "--quiet")
    assert r.returncode == 0, r.stderr
    ids = {row["image"] for row in json.loads((tmp_path / "v.json").read_text())}
    assert ids == {"clip-frame000000", "clip-frame000001", "clip-frame000002"}
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
