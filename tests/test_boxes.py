import numpy as np
import pytest
import torch

from core import boxes as B


def test_iou_conventions_hand_computed():
    a = np.array([[0, 0, 9, 9]], float)
    b = np.array([[5, 0, 14, 9]], float)
    # continuous: 10x10 boxes? no: 9x9 each, overlap 4x9=36 -> 36 / (81+81-36)
    assert B.pairwise_iou(a, b)[0, 0] == pytest.approx(36 / 126)
    # devkit +1: 10x10 each, overlap 5x10=50 -> 50 / 150
    assert B.pairwise_iou(a, b, pixel_offset=1)[0, 0] == pytest.approx(1 / 3)
    # touching edges overlap by one pixel in the devkit convention only
    c = np.array([[9, 0, 18, 9]], float)
    assert B.pairwise_iou(a, c)[0, 0] == 0
    assert B.pairwise_iou(a, c, pixel_offset=1)[0, 0] == pytest.approx(10 / 190)


def test_torch_iou_uses_torchvision_and_agrees():
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 100, (7, 4)).reshape(7, 2, 2), axis=1).transpose(0, 2, 1).reshape(7, 4)
    b = np.sort(rng.uniform(0, 100, (5, 4)).reshape(5, 2, 2), axis=1).transpose(0, 2, 1).reshape(5, 4)
    got = B.pairwise_iou(torch.tensor(a), torch.tensor(b))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), B.pairwise_iou(a, b), atol=1e-12)


def test_clip_and_degenerate():
    boxes = np.array([[-5, 3, 50, 70], [10, 10, 10, 20], [0, 0, 5, 4]], float)
    np.testing.assert_array_equal(B.clip_boxes(boxes, 40, 60)[0], [0, 3, 40, 60])
    assert B.is_degenerate(boxes).tolist() == [False, True, False]
    t = B.clip_boxes(torch.tensor(boxes), 40, 60)
    assert t[0].tolist() == [0, 3, 40, 60]


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_encode_decode_round_trip(lib):
    rng = np.random.default_rng(1)
    p = np.array([[10, 20, 60, 90], [0, 0, 5, 5], [100, 50, 300, 120]], float)
    g = p + rng.uniform(-4, 4, p.shape)
    if lib == "torch":
        p, g = torch.tensor(p), torch.tensor(g)
    for weights in [(1, 1, 1, 1), (10, 10, 5, 5)]:
        deltas = B.encode(p, g, weights)
        back = B.decode(p, deltas, weights)
        np.testing.assert_allclose(np.asarray(back), np.asarray(g), atol=1e-9)
    # hand case: a proposal twice as wide, shifted by half its width
    d = B.encode(np.array([[0, 0, 10, 10.]]), np.array([[5, 0, 25, 10.]]))
    np.testing.assert_allclose(d, [[1.0, 0.0, np.log(2), 0.0]])


def test_decode_clamps_huge_scale():
    out = B.decode(np.array([[0, 0, 10, 10.]]), np.array([[0, 0, 50, 50.]]))
    assert np.isfinite(out).all()
    assert out[0, 2] - out[0, 0] == pytest.approx(10 * 1000 / 16)


def test_xywh_round_trip():
    b = np.array([[1, 2, 11, 22.]])
    np.testing.assert_array_equal(B.xyxy_to_xywh(b), [[1, 2, 10, 20]])
    np.testing.assert_array_equal(B.xywh_to_xyxy(B.xyxy_to_xywh(b)), b)
