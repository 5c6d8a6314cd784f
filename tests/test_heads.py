"""The detector's small pieces on hand-made numbers: box regression, detection
selection (threshold, per-class NMS, cap), ridge regressors and SVMs."""
import numpy as np
import pytest
import torch

from core.boxes import encode
from core.config import TestConfig as DetectionTestConfig
from detector.heads import BBOX_WEIGHTS, apply_linear, fit_bbox_regressors, fit_svms
from detector.model import RegionScores, refine_boxes, regress_boxes, select_detections


def test_regress_boxes_moves_each_proposal_by_its_class_deltas_and_clips():
    proposals = torch.tensor([[10.0, 10.0, 30.0, 30.0], [50.0, 40.0, 90.0, 70.0]])
    targets = torch.tensor([[12.0, 8.0, 34.0, 30.0], [60.0, 40.0, 120.0, 70.0]])
    deltas = torch.zeros(2, 3, 4)
    deltas[:, 1] = encode(proposals, targets, BBOX_WEIGHTS)
    out = regress_boxes(proposals, deltas, height=80, width=100)
    assert out.shape == (2, 3, 4)
    np.testing.assert_allclose(out[0, 1], [12, 8, 34, 30], atol=1e-4)
    np.testing.assert_allclose(out[1, 1], [60, 40, 100, 70], atol=1e-4)      # x2 clipped to the width
    np.testing.assert_allclose(out[:, 0], proposals, atol=1e-4)               # zero deltas: unchanged


def test_select_detections_thresholds_suppresses_per_class_and_caps():
    boxes = torch.tensor([[[0, 0, 10, 10], [0, 0, 10, 10]],
                          [[1, 0, 11, 10], [1, 0, 11, 10]],     # IoU 0.82 with region 0
                          [[50, 50, 60, 60], [50, 50, 60, 60]]], dtype=torch.float32)
    probs = torch.tensor([[0.1, 0.8, 0.1],                   # background first, then 2 classes
                          [0.2, 0.7, 0.1],
                          [0.96, 0.02, 0.02]])
    cfg = DetectionTestConfig(score_threshold=0.05, nms_iou=0.5, max_per_image=10)
    b, s, l = select_detections(boxes, probs, cfg)
    # class 0: region 0 (0.8) suppresses region 1 (0.7); region 2 scores 0.02 < 0.05
    # class 1: region 0 (0.1) suppresses region 1 (0.1, later index)
    assert l.tolist() == [0, 1] and s.tolist() == pytest.approx([0.8, 0.1])
    np.testing.assert_allclose(b, [[0, 0, 10, 10], [0, 0, 10, 10]])
    cfg.nms_iou = 0.9                                         # the overlap no longer suppresses
    _, s, l = select_detections(boxes, probs, cfg)
    assert s.tolist() == pytest.approx([0.8, 0.7, 0.1, 0.1]) and l.tolist() == [0, 0, 1, 1]
    cfg.max_per_image = 2
    _, s, _ = select_detections(boxes, probs, cfg)
    assert s.tolist() == pytest.approx([0.8, 0.7])


def test_box_vote_averages_a_kept_box_with_its_class_neighbours_by_score():
    boxes = torch.tensor([[[0, 0, 10, 10]], [[2, 0, 12, 10]], [[0, 20, 10, 30]]], dtype=torch.float32)
    probs = torch.tensor([[0.4, 0.6], [0.7, 0.3], [0.5, 0.5]])
    cfg = DetectionTestConfig(score_threshold=0.05, nms_iou=0.5, max_per_image=10, box_vote=0.5)
    b, s, _ = select_detections(boxes, probs, cfg)
    # region 1 (IoU 0.67 with region 0) loses NMS but votes: x = (0.6*0 + 0.3*2) / 0.9
    assert s.tolist() == pytest.approx([0.6, 0.5])
    np.testing.assert_allclose(b, [[2 / 3, 0, 10 + 2 / 3, 10], [0, 20, 10, 30]], atol=1e-5)
    cfg.box_vote = 0.7                                        # IoU 0.67 no longer votes
    b, _, _ = select_detections(boxes, probs, cfg)
    np.testing.assert_allclose(b[0], [0, 0, 10, 10])


def test_refine_scores_each_region_again_where_its_best_class_moved_it():
    proposals = torch.tensor([[10.0, 10.0, 30.0, 30.0], [90.0, 10.0, 100.0, 20.0]])
    deltas = torch.zeros(2, 2, 4)
    deltas[0, 0] = encode(proposals[:1], torch.tensor([[12.0, 10.0, 32.0, 30.0]]), BBOX_WEIGHTS)[0]
    deltas[1, 1] = encode(proposals[1:], torch.tensor([[200.0, 10.0, 210.0, 20.0]]), BBOX_WEIGHTS)[0]
    first = RegionScores(torch.tensor([[0.2, 0.7, 0.1], [0.5, 0.1, 0.4]]), deltas)
    seen = []

    def score_fn(boxes):          # the second pass: class 0 moves every box 1 px right
        seen.append(boxes.clone())
        d = torch.zeros(len(boxes), 2, 4)
        d[:, 0] = encode(boxes, boxes + torch.tensor([1.0, 0, 1, 0]), BBOX_WEIGHTS)
        return RegionScores(torch.tensor([[0.1, 0.85, 0.05], [0.6, 0.1, 0.3]]), d)

    boxes, probs = refine_boxes(proposals, first, score_fn, passes=1, height=50, width=100)
    assert boxes.shape == (4, 2, 4) and probs.shape == (4, 3)
    # region 0 went where class 0 (its best) moved it; region 1's best class (1) pushed it out of
    # the image, clipped to nothing, so it is scored again where it was
    np.testing.assert_allclose(seen[0], [[12, 10, 32, 30], [90, 10, 100, 20]], atol=1e-4)
    np.testing.assert_allclose(boxes[:2, 0], [[12, 10, 32, 30], [90, 10, 100, 20]], atol=1e-4)   # first pass
    np.testing.assert_allclose(boxes[2:, 0], [[13, 10, 33, 30], [91, 10, 100, 20]], atol=1e-4)   # second
    np.testing.assert_allclose(probs[2:], [[0.1, 0.85, 0.05], [0.6, 0.1, 0.3]])
    boxes, probs = refine_boxes(proposals, first, score_fn, passes=0, height=50, width=100)
    assert len(seen) == 1 and boxes.shape == (2, 2, 4) and torch.equal(probs, first.probs)


def test_soft_nms_decays_an_overlapping_neighbour_instead_of_removing_it():
    # class 0: region 1 overlaps region 0 by IoU 0.82 (9x10 / 11x10); region 2 is apart
    boxes = torch.tensor([[[0, 0, 10, 10]], [[1, 0, 11, 10]], [[50, 50, 60, 60]]], dtype=torch.float32)
    probs = torch.tensor([[0.1, 0.9], [0.2, 0.8], [0.5, 0.5]])
    cfg = DetectionTestConfig(score_threshold=0.05, nms_iou=0.5, max_per_image=10, soft_nms=0.5)
    b, s, l = select_detections(boxes, probs, cfg)
    iou = 90 / 110
    assert s.tolist() == pytest.approx([0.9, 0.5, 0.8 * np.exp(-iou ** 2 / 0.5)], rel=1e-5)
    np.testing.assert_allclose(b, [[0, 0, 10, 10], [50, 50, 60, 60], [1, 0, 11, 10]])
    cfg.score_threshold = 0.3                                 # 0.8 decays to 0.21: now below the threshold
    _, s, _ = select_detections(boxes, probs, cfg)
    assert s.tolist() == pytest.approx([0.9, 0.5])
    cfg.score_threshold, cfg.max_per_image = 0.05, 1          # the cap holds across classes
    _, s, _ = select_detections(boxes, probs, cfg)
    assert s.tolist() == pytest.approx([0.9])


def test_ridge_regressors_recover_a_linear_map_and_leave_a_rare_class_alone():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(400, 6))
    true_w = rng.normal(size=(6, 4))
    classes = np.r_[np.zeros(397, int), np.ones(3, int)]       # class 1: too few samples
    targets = feats @ true_w + 0.5
    W, b, alphas = fit_bbox_regressors(feats, classes, targets, num_classes=2)
    assert W.shape == (2, 6, 4) and b.shape == (2, 4)
    np.testing.assert_allclose(W[0], true_w, atol=0.05)
    np.testing.assert_allclose(b[0], 0.5, atol=0.05)
    assert alphas[1] is None and not W[1].any() and not b[1].any()
    pred = apply_linear(feats[:5], W, b)
    np.testing.assert_allclose(pred[:, 0], targets[:5], atol=0.2)


def test_svms_separate_each_class_from_its_negatives():
    rng = np.random.default_rng(1)
    pos = [rng.normal(loc=(3, 0), size=(40, 2)), rng.normal(loc=(0, 3), size=(40, 2))]
    neg = [rng.normal(loc=(-3, 0), size=(300, 2)), rng.normal(loc=(0, -3), size=(300, 2))]
    W, b = fit_svms(pos, neg, C=1.0, seed=0)
    assert W.shape == (2, 2, 1) and b.shape == (2, 1)
    for c in range(2):
        pos_score, neg_score = (pos[c] @ W[c] + b[c])[:, 0], (neg[c] @ W[c] + b[c])[:, 0]
        assert (pos_score > 0).mean() > 0.95 and (neg_score < 0).mean() > 0.95
