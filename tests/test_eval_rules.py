"""Hand-computed cases for each devkit rule."""
import numpy as np
import pytest

from core.datasets import Dataset, ImageRecord
from core.structures import Detections
from eval import detection_status, evaluate
from eval.ap import area_ap, voc07_ap


def dataset(images, classes=("a", "b"), blacklist=()):
    recs = []
    for image_id, objects in images.items():
        recs.append(ImageRecord(
            image_id=image_id, path="", width=400, height=400,
            boxes=np.array([o[1] for o in objects], float).reshape(-1, 4),
            labels=np.array([classes.index(o[0]) for o in objects], np.int64),
            difficult=np.array([bool(o[2]) if len(o) > 2 else False for o in objects], bool),
            truncated=np.zeros(len(objects), bool)))
    ids = list(images)
    bl = np.array([(ids.index(i), classes.index(c)) for i, c in blacklist], np.int64).reshape(-1, 2)
    return Dataset(root="mem", split="t", format="voc", classes=list(classes), images=recs, blacklist=bl)


def dets(*rows):
    return Detections(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                      np.array([r[2] for r in rows], float), np.array([r[3] for r in rows], float))


def ap(ds, d, metric, cls="a"):
    return evaluate(ds, d, metric).per_class[cls]


def test_small_object_threshold_only_in_ilsvrc():
    # gt 10x10 px (+1 convention) -> threshold min(0.5, 100/(20*20)) = 0.25
    ds = dataset({"im": [("a", [10, 10, 19, 19])]})
    d = dets(("im", "a", 0.9, [10, 10, 33, 19]))          # IoU = 100/240 = 0.4167
    assert ap(ds, d, "ilsvrc") == pytest.approx(1.0)
    assert ap(ds, d, "voc") == 0.0
    # a large object keeps the 0.5 threshold: the same IoU is a miss in both
    big = dataset({"im": [("a", [0, 0, 99, 99])]})
    assert ap(big, dets(("im", "a", 0.9, [0, 0, 239, 99])), "ilsvrc") == 0.0   # IoU 0.4167


def test_duplicates_area_and_11_point():
    ds = dataset({"im": [("a", [0, 0, 99, 99]), ("a", [200, 200, 299, 299])]})
    d = dets(("im", "a", 0.9, [0, 0, 99, 99]),
             ("im", "a", 0.8, [0, 0, 99, 89]),             # IoU 0.9 with a matched gt: duplicate
             ("im", "a", 0.7, [200, 200, 299, 299]))
    # TP, FP, TP: recall .5 .5 1, precision 1 .5 .667 -> envelope 1, .667, .667
    assert ap(ds, d, "voc") == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert ap(ds, d, "voc07") == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    assert ap(ds, d, "ilsvrc") == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_detection_status_per_detection_in_file_order():
    # the duplicate case above, in a shuffled file order: status follows each row
    ds = dataset({"im": [("a", [0, 0, 99, 99]), ("a", [200, 200, 299, 299], 1)]})
    d = dets(("im", "a", 0.8, [0, 0, 99, 89]),             # IoU 0.9, but ranked below the 0.9 one: duplicate
             ("im", "a", 0.7, [200, 200, 299, 299]),       # the difficult object: ignored
             ("im", "a", 0.9, [0, 0, 99, 99]),             # true positive
             ("im", "b", 0.6, [0, 0, 99, 99]))             # no b object: false positive
    assert detection_status(ds, d).tolist() == [0, -1, 1, 0]
    with pytest.raises(Exception, match="coco"):
        detection_status(ds, d, "coco")


def test_difficult_counts_as_neither():
    ds = dataset({"im": [("a", [0, 0, 99, 99]), ("a", [200, 200, 299, 299], 1)]})
    d = dets(("im", "a", 0.9, [200, 200, 299, 299]),       # hits the difficult object: ignored
             ("im", "a", 0.8, [0, 0, 99, 99]))
    result = evaluate(ds, d, "voc")
    assert result.num_positives["a"] == 1
    assert result.per_class["a"] == pytest.approx(1.0)       # not 0.5: the first det is no FP
    # ILSVRC has no difficult flag: the object is a positive like any other
    assert evaluate(ds, d, "ilsvrc").num_positives["a"] == 2


def test_blacklist_ignores_pairs():
    images = {"im1": [("a", [0, 0, 99, 99])], "im2": [("a", [0, 0, 99, 99])]}
    d = dets(("im1", "a", 0.9, [300, 300, 350, 350]),      # would be a false positive
             ("im2", "a", 0.8, [0, 0, 99, 99]))
    assert ap(dataset(images), d, "ilsvrc") == pytest.approx(0.25)   # FP, TP of 2 gt
    blacklisted = dataset(images, blacklist=[("im1", "a")])
    result = evaluate(blacklisted, d, "ilsvrc")
    assert result.num_positives["a"] == 1
    assert result.per_class["a"] == pytest.approx(1.0)


def test_best_overlap_vs_best_unmatched():
    # A and B overlap; det2 overlaps A best (0.667) and B enough (0.538).
    ds = dataset({"im": [("a", [0, 0, 99, 99]), ("a", [50, 0, 149, 99])]})
    d = dets(("im", "a", 0.9, [0, 0, 99, 99]), ("im", "a", 0.8, [20, 0, 119, 99]))
    assert ap(ds, d, "voc") == pytest.approx(0.5)      # VOC: compares with A, taken -> FP
    assert ap(ds, d, "ilsvrc") == pytest.approx(1.0)   # ILSVRC: takes the free B


def test_ilsvrc_goes_in_score_order_not_file_order():
    # L (listed first, lower score) overlaps A 0.818 and B 0.667; H overlaps only A (0.7).
    # In score order H takes A and L the free B: two hits. In file order L would take A
    # and leave H nothing.
    ds = dataset({"im": [("a", [0, 0, 99, 99]), ("a", [30, 0, 129, 99])]})
    d = dets(("im", "a", 0.5, [10, 0, 109, 99]), ("im", "a", 0.9, [0, 0, 99, 69]))
    assert ap(ds, d, "ilsvrc") == pytest.approx(1.0)
    # VOC compares L with its best-overlap A, already taken by H: a duplicate
    assert ap(ds, d, "voc") == pytest.approx(0.5)


def test_ties_follow_file_order():
    ds = dataset({"im": [("a", [0, 0, 99, 99])]})
    fp, tp = ("im", "a", 0.5, [300, 300, 350, 350]), ("im", "a", 0.5, [0, 0, 99, 99])
    assert ap(ds, dets(fp, tp), "voc") == pytest.approx(0.5)
    assert ap(ds, dets(tp, fp), "voc") == pytest.approx(1.0)


def test_class_without_gt_is_not_in_map():
    ds = dataset({"im": [("a", [0, 0, 99, 99])]})
    result = evaluate(ds, dets(("im", "a", 0.9, [0, 0, 99, 99]), ("im", "b", 0.9, [0, 0, 50, 50])), "voc")
    assert result.per_class == {"a": 1.0, "b": None}
    assert result.mAP == 1.0


def test_missed_class_scores_zero():
    ds = dataset({"im": [("a", [0, 0, 99, 99]), ("b", [0, 0, 99, 99])]})
    result = evaluate(ds, dets(("im", "a", 0.9, [0, 0, 99, 99])), "voc")
    assert result.per_class == {"a": 1.0, "b": 0.0}
    assert result.mAP == 0.5


def test_voc07_recall_levels_are_matlab_colon():
    # MATLAB's 0:0.1:1 has 0.3 = 0.30000000000000004 but 0.7 exactly 0.7
    assert voc07_ap(np.array([0.3]), np.array([1.0])) == pytest.approx(3 / 11)
    assert voc07_ap(np.array([0.7]), np.array([1.0])) == pytest.approx(8 / 11)
    assert voc07_ap(np.array([]), np.array([])) == 0.0


def test_area_ap_envelope():
    # precision dips then rises: the envelope takes the later, higher value
    recall = np.array([0.25, 0.25, 0.5, 0.75])
    precision = np.array([1.0, 0.5, 2 / 3, 0.75])
    assert area_ap(recall, precision) == pytest.approx(0.25 * 1 + 0.25 * 0.75 + 0.25 * 0.75)


def test_class_breakdown_hand_case():
    """3 gt of class a: FP 0.9, TP 0.8, FP 0.7, TP 0.6 -> precision 0, .5, .33, .5;
    recall reached 2/3, and 2/3 also while precision >= 0.5; top score 0.9."""
    from eval.report import class_breakdown
    ds = dataset({"im": [("a", [0, 0, 99, 99]), ("a", [200, 0, 299, 99]), ("a", [0, 200, 99, 299]),
                         ("b", [300, 300, 399, 399])]})
    d = dets(("im", "a", 0.9, [120, 120, 180, 180]), ("im", "a", 0.8, [0, 0, 99, 99]),
             ("im", "a", 0.7, [110, 110, 190, 190]), ("im", "a", 0.6, [200, 0, 299, 99]))
    rows = {r["class"]: r for r in class_breakdown(evaluate(ds, d, "voc"), d)}
    assert rows["a"]["num_gt"] == 3
    assert rows["a"]["final_recall"] == pytest.approx(2 / 3)
    assert rows["a"]["recall_at_precision_0.5"] == pytest.approx(2 / 3)
    assert rows["a"]["top_score"] == pytest.approx(0.9)
    assert rows["b"]["final_recall"] == 0.0 and rows["b"]["top_score"] == 0.0


def test_paired_bootstrap_separates_a_real_gap_from_noise():
    from eval.bootstrap import paired_bootstrap
    ds = dataset({f"im{i}": [("a", [10, 10, 50, 50])] for i in range(20)})
    hit = [(f"im{i}", "a", 0.9, [10, 10, 50, 50]) for i in range(20)]
    miss = [(f"im{i}", "a", 0.9, [200, 200, 240, 240]) for i in range(20)]
    good, half = dets(*hit), dets(*(hit[:10] + miss[10:]))
    assert paired_bootstrap(ds, good, half, resamples=50) == 1.0      # better on every resample
    assert paired_bootstrap(ds, half, good, resamples=50) == 0.0
    assert paired_bootstrap(ds, good, good, resamples=50) == 0.5      # ties count half
    # one image missed by each, a different one: neither is better beyond the resampling
    a, b = dets(*(miss[:1] + hit[1:])), dets(*(hit[:1] + miss[1:2] + hit[2:]))
    assert 0.2 < paired_bootstrap(ds, a, b, resamples=100) < 0.8
