"""The confusion matrix and the false-positive breakdown on a hand-made case."""
import numpy as np

from conftest import make_voc
from core.datasets import load_dataset
from core.structures import Detections
from eval.analysis import analyze


def test_each_kind_of_false_positive_and_the_confusion_matrix(tmp_path):
    root = make_voc(tmp_path / "d", {"a": [("cat", [10, 10, 30, 30]), ("dog", [40, 10, 60, 30])]}, size=(64, 48))
    ds = load_dataset(str(root), "test", classes=["cat", "dog"])
    rows = [("cat", 0.9, [10, 10, 30, 30]),     # true positive
            ("cat", 0.8, [10, 11, 30, 31]),     # duplicate of the cat
            ("cat", 0.7, [15, 15, 35, 35]),     # IoU 0.39 with the cat: mislocalized
            ("cat", 0.6, [40, 10, 60, 30]),     # on the dog: other class
            ("dog", 0.5, [0, 35, 10, 48]),      # nothing there, at the border: background
            ("dog", 0.1, [40, 10, 60, 30])]     # below the threshold: not counted
    dets = Detections(np.array(["a"] * len(rows)), np.array([r[0] for r in rows]),
                      np.array([r[1] for r in rows]), np.array([r[2] for r in rows], float))
    out = analyze(ds, dets, score_threshold=0.3)
    cat, dog = out["false_positives"]["cat"], out["false_positives"]["dog"]
    assert cat == {"duplicate": 1, "mislocalized": 1, "other class": 1, "background": 0, "true_positives": 1,
                   "background_at_border": None}
    assert dog["background"] == 1 and dog["background_at_border"] == 1.0 and dog["true_positives"] == 0
    # rows: gt cat, gt dog, background; columns: detected cat, dog, background (missed)
    assert out["confusion"]["matrix"] == [[1, 0, 0],      # the cat found as a cat
                                          [1, 0, 0],      # the dog taken by the 'cat' box on it
                                          [2, 1, 0]]      # duplicate + mislocalized cat boxes, the stray dog box
    assert out["per_image"] == [{"image": "a", "false_positives": 4, "missed": 1}]


def test_score_analysis_can_leave_out_images_with_a_class_unannotated(tmp_path):
    """bench/score_analysis.py --without-unannotated: the image where no cat is labelled
    (its cat detection a false positive) is left out, and the cat AP it cost comes back."""
    from conftest import bench_script
    root = make_voc(tmp_path / "d", {"a": [("cat", [10, 10, 30, 30])], "b": [("dog", [40, 10, 60, 30])]},
                    size=(64, 48))
    ds = load_dataset(str(root), "test", classes=["cat", "dog"])
    script = bench_script("score_analysis")
    label, kept = script.without_unannotated(ds, "cat")
    assert [r.image_id for r in kept.images] == ["a"] and label == "without 1 with no cat (b)"
    from eval import evaluate
    dets = Detections(np.array(["b", "a"]), np.array(["cat", "cat"]), np.array([0.9, 0.8]),
                      np.array([[10, 10, 30, 30], [10, 10, 30, 30]], float))
    assert evaluate(ds, dets, "voc").per_class["cat"] == 0.5
    assert evaluate(kept, script.detections_on(dets, kept), "voc").per_class["cat"] == 1.0
