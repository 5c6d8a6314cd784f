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
