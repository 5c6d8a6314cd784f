import json
import re

import pytest

from conftest import make_voc, write_dets


@pytest.fixture
def tiny(tmp_path):
    root = make_voc(tmp_path / "voc", {"x1": [("a", [0, 0, 30, 30]), ("b", [10, 10, 40, 40])],
                                       "x2": [("a", [5, 5, 25, 25])]})
    dets = write_dets(tmp_path / "dets.json", [("x1", "a", 0.9, [0, 0, 30, 30]), ("x1", "b", 0.8, [10, 10, 40, 40]),
                                                ("x2", "a", 0.7, [40, 30, 60, 45]), ("x2", "a", 0.6, [5, 5, 25, 25])])
    return tmp_path, root, dets


def test_scores_and_writes_json_and_plots(tiny, run_script):
    tmp, root, dets = tiny
    out = run_script("evaluate.py", "--dataset", root, "--split", "test", "--detections", dets,
                     "--metric", "voc", "--json", tmp / "r.json", "--plots", tmp / "plots")
    assert out.returncode == 0, out.stderr
    assert "mAP" in out.stdout
    r = json.loads((tmp / "r.json").read_text())
    # class a: TP, FP, TP of 2 -> 0.5 + 0.5 * 2/3; class b: 1.0
    assert r["per_class"] == {"a": pytest.approx(5 / 6), "b": 1.0}
    assert r["mAP"] == pytest.approx((5 / 6 + 1) / 2)
    assert r["metric"] == "voc" and r["num_images"] == 2 and r["num_detections"] == 4
    assert sorted(p.name for p in (tmp / "plots").iterdir()) == ["pr_a.png", "pr_b.png", "pr_curves.png"]


def test_compare_scores_both_and_bootstraps_the_gap(tiny, run_script):
    tmp, root, dets = tiny
    worse = write_dets(tmp / "worse.json", [("x1", "a", 0.9, [0, 0, 30, 30]), ("x2", "a", 0.6, [5, 5, 25, 25])])
    out = run_script("evaluate.py", "--dataset", root, "--split", "test", "--detections", dets, "--compare", worse,
                     "--resamples", "50", "--json", tmp / "r.json")
    assert out.returncode == 0, out.stderr
    assert "dets" in out.stdout and "worse" in out.stdout and "95% interval" in out.stdout
    c = json.loads((tmp / "r.json").read_text())["compare"]
    # worse: class a 1.0 (two of two, no false positive), class b missed: mAP 0.5
    assert c["mAP"] == pytest.approx(0.5) and c["per_class"] == {"a": 1.0, "b": 0.0}
    assert c["gap"] == pytest.approx((5 / 6 + 1) / 2 - 0.5) and c["resamples"] == 50
    low, high = c["gap_95"]
    assert low <= high and high > 0
    # a resample with x1 in it is won (b found); x2 twice (a quarter of them) is lost (a's false positive ranks first)
    assert 0.6 <= c["win_share"] <= 0.9 and low < 0
    out = run_script("evaluate.py", "--dataset", root, "--split", "test", "--detections", dets, "--compare", worse,
                     "--metric", "coco")
    assert out.returncode == 2 and "--compare" in out.stderr and "Traceback" not in out.stderr
    stray = write_dets(tmp / "stray.json", [("nope", "a", 0.9, [0, 0, 30, 30])])
    out = run_script("evaluate.py", "--dataset", root, "--split", "test", "--detections", dets, "--compare", stray)
    assert out.returncode == 2 and "--compare" in out.stderr and "stray.json" in out.stderr
    assert "not in split" in out.stderr and "Traceback" not in out.stderr


def test_unknown_image_or_class_is_an_error(tiny, run_script):
    tmp, root, _ = tiny
    bad = write_dets(tmp / "bad.json", [("x1", "a", 0.9, [0, 0, 30, 30]), ("nope", "a", 0.5, [0, 0, 1, 1]),
                                         ("x1", "zebra", 0.5, [0, 0, 1, 1])])
    out = run_script("evaluate.py", "--dataset", root, "--split", "test", "--detections", bad, "--metric", "voc")
    assert out.returncode == 2
    assert "1 detection(s) on 1 image(s) not in split 'test'" in out.stderr
    assert "'zebra'" in out.stderr and "Traceback" not in out.stderr
    out = run_script("evaluate.py", "--dataset", root, "--split", "test", "--detections", bad,
                     "--metric", "voc", "--ignore-unknown", "--json", tmp / "r.json")
    assert out.returncode == 0 and "dropped" in out.stderr
    assert json.loads((tmp / "r.json").read_text())["num_detections"] == 1


@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"),
    ('{"a": 1}', "expected a JSON list"),
    ('[{"image": "x1", "label": "a", "score": 0.5}]', "detection 0 lacks ['box']"),
    ('[{"image": "x1", "label": "a", "score": 0.5, "box": [0, 0, 1, 1]}, '
     '{"image": "x1", "label": "a", "score": 0.5, "box": [0, 1]}]', "detection 1 has a box that is not 4 finite numbers"),
])
def test_malformed_detections_named(tiny, run_script, content, message):
    tmp, root, _ = tiny
    (tmp / "m.json").write_text(content)
    out = run_script("evaluate.py", "--dataset", root, "--split", "test", "--detections", tmp / "m.json")
    assert out.returncode == 2
    assert "m.json" in out.stderr and message in out.stderr and "Traceback" not in out.stderr


def test_bad_dataset_path(tiny, run_script):
    tmp, _, dets = tiny
    out = run_script("evaluate.py", "--dataset", tmp / "missing", "--split", "test", "--detections", dets)
    assert out.returncode == 2 and "no such dataset directory" in out.stderr


def test_coco_placeholder_prints_as_a_dash():
    from types import SimpleNamespace

    from eval.report import format_table
    result = SimpleNamespace(metric="coco", per_class={"a": 0.5}, num_positives={"a": 3}, mAP=0.5, num_images=1,
                             num_detections=2, stats={"AP": 0.5, "APs": -1.0, "APm": 0.25})
    dataset = SimpleNamespace(classes=["a"], display_name=lambda c: c)
    lines = format_table({"AP": result}, dataset).splitlines()
    assert [ln.split() for ln in lines if ln.startswith("APs")] == [["APs", "-"]]
    assert [ln.split() for ln in lines if ln.startswith("APm")] == [["APm", "0.2500"]]


def test_help_shows_each_default_once(run_script):
    for script in ("train.py", "detect.py", "evaluate.py"):
        out = run_script(script, "--help")
        assert out.returncode == 0
        options = " ".join(out.stdout.split("options:", 1)[1].split())
        blocks = re.split(r"(?= --[a-z])", options)               # one block per option's help
        assert len(blocks) > 8
        for block in blocks:
            assert len(re.findall(r"default[: ]", block)) <= 1, (script, block)
