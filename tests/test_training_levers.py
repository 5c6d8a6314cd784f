"""The accuracy levers a recipe can switch on: joint box regression, jittered gt
regions, photometric jitter, flip voting at test time, and --set overrides."""

import numpy as np
import pytest
import torch

from conftest import train_tiny
from core.boxes import pairwise_iou
from networks.augment import color_jitter, jitter_boxes


def test_jittered_gt_boxes_stay_close_to_their_object_and_inside_the_image():
    gt = np.array([[10, 10, 50, 40], [60, 5, 90, 35]], float)
    boxes = jitter_boxes(gt, 50, np.random.default_rng(0), width=100, height=60)
    assert boxes.shape == (100, 4)
    assert (boxes[:, [0, 1]] >= 0).all() and (boxes[:, 2] <= 100).all() and (boxes[:, 3] <= 60).all()
    iou = pairwise_iou(boxes, gt).max(1)
    # shift <= 15% and scale within +-20%: the copies stay foreground (IoU >= 0.5), none is exact
    assert (iou >= 0.5).mean() > 0.95 and iou.max() < 0.99 and iou.std() > 0.03
    assert jitter_boxes(gt, 0, np.random.default_rng(0), 100, 60).shape == (0, 4)


def test_color_jitter_is_seeded_and_zero_strength_is_identity():
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    a = color_jitter(image, 0.4, np.random.default_rng(5))
    b = color_jitter(image, 0.4, np.random.default_rng(5))
    assert a.dtype == np.uint8 and a.shape == image.shape and np.array_equal(a, b)
    assert np.abs(a.astype(int) - image).mean() > 1.0
    assert color_jitter(image, 0.0, np.random.default_rng(5)) is image


def test_hard_example_mining_keeps_the_regions_with_the_highest_loss(tmp_path, shapes_data):
    from core.config import load_config
    from detector.fine_tune import hardest_regions
    from synthetic import tiny_config
    cfg = load_config(str(tiny_config(tmp_path / "c.yaml", shapes_data, mode="warp")))

    def net(crops):      # background logit = the crop's mean: brighter crops are "easier" negatives
        m = crops.mean((1, 2, 3))
        return None, torch.stack([m, -m], 1), None, []
    image = torch.zeros(3, 40, 40)
    image[:, :, 20:] = torch.linspace(-1, 1, 20)              # brighter to the right
    boxes = torch.tensor([[x, 0.0, x + 4, 40.0] for x in (20, 36, 24, 30)])
    hard = hardest_regions(net, image, boxes, torch.zeros(4, dtype=torch.long), cfg, None, keep=2)
    assert sorted(hard.tolist()) == [0, 2]                   # the two darkest regions: highest background loss


def test_a_crop_keeps_mostly_visible_objects_and_leaves_cut_ones_out_of_training():
    from detector.sampling import crop_targets, ignore_regions, label_regions
    from networks.augment import random_crop_window
    window = random_crop_window(200, 100, 0.6, np.random.default_rng(3))
    assert 120 <= window[2] - window[0] <= 200 and 60 <= window[3] - window[1] <= 100
    assert window[0] >= 0 and window[1] >= 0 and window[2] <= 200 and window[3] <= 100
    window = np.array([50.0, 0.0, 150.0, 100.0])
    gt = np.array([[60, 10, 90, 40], [40, 50, 70, 80], [140, 10, 180, 40], [0, 0, 20, 20]], float)
    proposals = np.array([[62, 12, 92, 42], [150, 10, 170, 30], [0, 60, 49, 90], [46, 10, 80, 40]], float)
    props, kept, labels, cut = crop_targets(window, proposals, gt, np.array([0, 1, 0, 1]))
    assert kept.tolist() == [[10, 10, 40, 40], [0, 50, 20, 80]]        # 100% and 2/3 visible, shifted
    assert labels.tolist() == [0, 1]
    assert cut.tolist() == [[90, 10, 100, 40]]                         # a quarter visible: cut
    assert props.tolist() == [[12, 12, 42, 42], [0, 10, 30, 40]]       # outside ones and slivers gone
    regions = ignore_regions(label_regions(np.array([[88.0, 10, 100, 40], [60, 60, 99, 99]]), kept, labels, 0.5, 0.0), cut)
    assert regions.labels[-2] == -1 and regions.labels[-1] == 0        # on the cut object: not background


def test_box_loss_reads_the_gt_class_of_foreground_regions_only():
    from detector.fine_tune import box_loss
    targets = torch.tensor([[0.5, 0.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]])
    labels = torch.tensor([2, 0])                     # region 0 is class 1 (label 2), region 1 background
    deltas = torch.zeros(2, 2, 4)
    deltas[0, 1] = targets[0]                         # the class-1 deltas are exact
    assert box_loss(deltas, labels, targets).item() == 0.0
    deltas[0, 0] = 5.0                                # another class's deltas do not count
    assert box_loss(deltas, labels, targets).item() == 0.0
    deltas[0, 1, 0] = 1.5                             # off by 1.0: smooth L1 = 1 - beta/2, over 2 regions
    assert box_loss(deltas, labels, targets).item() == pytest.approx((1 - 1 / 18) / 2)



def test_joint_regressor_with_jitter_trains_and_flip_vote_is_mirror_symmetric(tmp_path, shapes_data):
    from core.images import read_image
    from detector.model import DetectorModel
    from networks.transforms import to_tensor
    from synthetic import tiny_config
    cfg = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)
    r = train_tiny(cfg, tmp_path / "m", tmp_path / "cache", "--max-steps", "3", "--set", "model.bbox_regressor=joint",
               "train.gt_jitter=2", "train.color_jitter=0.3", "train.ohem_pool=48", "train.random_crop=0.6", "test.flip_vote=true",
               "train.easy_bg_fraction=0.25")
    assert r.returncode == 0, r.stderr[-2000:]
    saved = (tmp_path / "m" / "config.yaml").read_text()
    assert "bbox_regressor: joint" in saved and "gt_jitter: 2" in saved and "flip_vote: true" in saved
    assert "ohem_pool: 48" in saved and "easy_bg_fraction: 0.25" in saved
    with np.load(tmp_path / "m" / "heads.npz") as heads:
        assert "bbox_W" not in heads.files                 # no ridge regressors beside the joint layer
    model = DetectorModel.load(str(tmp_path / "m"))
    assert model.net.bbox_pred is not None
    image = to_tensor(read_image(str(shapes_data / "JPEGImages" / "shape_000.jpg")))
    width = image.shape[-1]
    boxes = torch.tensor([[5.0, 6.0, 40.0, 30.0], [50.0, 20.0, 90.0, 70.0]])
    mirrored = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
    a, b = model.score_regions(image, boxes), model.score_regions(image.flip(-1), mirrored)
    assert torch.allclose(a.probs, b.probs, atol=1e-5)
    assert torch.allclose(a.deltas[..., 0], -b.deltas[..., 0], atol=1e-5)
    assert torch.allclose(a.deltas[..., 1:], b.deltas[..., 1:], atol=1e-5)
    assert a.deltas.abs().sum() > 0                    # the joint layer's deltas, not zeros


def test_set_rejects_an_unknown_key_and_a_malformed_item(tmp_path, shapes_data):
    from synthetic import tiny_config
    cfg = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)
    r = train_tiny(cfg, tmp_path / "m", tmp_path / "cache", "--set", "train.epoch=3")
    assert r.returncode == 2 and "unknown key(s) ['epoch'] in 'train'" in r.stderr
    assert "Traceback" not in r.stderr
    r = train_tiny(cfg, tmp_path / "m", tmp_path / "cache", "--set", "train.epochs")
    assert r.returncode == 2 and "expected KEY=VALUE" in r.stderr


def test_fine_features_cut_regions_at_stride_8_and_learn_the_3b_projection(tmp_path, shapes_data):
    from core.config import load_config
    from detector.model import DetectorModel
    from detector.region_classifier import RegionClassifier
    from synthetic import tiny_config
    cfg = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)
    # zero-initialized projection: at the start the regions read nearest-upsampled 4e
    model_cfg = load_config(str(cfg)).model
    model_cfg.fine_features = True
    torch.manual_seed(0)
    net = RegionClassifier(model_cfg, 2).eval()
    image, boxes = torch.randn(3, 96, 128), torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    coarse, _ = net.net.run(image[None], stop="4e")
    fine = torch.nn.functional.interpolate(coarse, scale_factor=2, mode="nearest")
    from torchvision.ops import roi_align
    window = roi_align(fine, [boxes], model_cfg.roi_size, 1 / 8, model_cfg.roi_sampling, aligned=True)
    expected = net.net.pool(net.net.run(window, start="4e")[0])
    assert torch.allclose(net(image, boxes)[0], expected, atol=1e-5)

    r = train_tiny(cfg, tmp_path / "m", tmp_path / "cache", "--max-steps", "3", "--set", "model.fine_features=true")
    assert r.returncode == 0, r.stderr[-2000:]
    model = DetectorModel.load(str(tmp_path / "m"))
    assert model.net.lateral is not None and model.net.lateral.weight.abs().sum() > 0   # it learned


def test_roi_context_reads_the_dilated_window_and_zeros_beyond_the_border(tmp_path, shapes_data):
    from core.config import load_config
    from detector.region_classifier import RegionClassifier
    from synthetic import tiny_config
    plain_cfg = load_config(str(tiny_config(tmp_path / "c.yaml", shapes_data))).model
    context_cfg = load_config(str(tmp_path / "c.yaml")).model
    plain_cfg.roi_size = context_cfg.roi_size = 8
    context_cfg.roi_context = 1                  # windows 8/6 of the box
    torch.manual_seed(0)
    plain = RegionClassifier(plain_cfg, 2).eval()
    with_context = RegionClassifier(context_cfg, 2).eval()
    with_context.load_state_dict(plain.state_dict())
    image = torch.randn(3, 96, 128)
    box, dilated = torch.tensor([[30.0, 30.0, 60.0, 54.0]]), torch.tensor([[25.0, 26.0, 65.0, 58.0]])
    assert torch.allclose(with_context(image, box)[0], plain(image, dilated)[0], atol=1e-5)
    assert not torch.allclose(with_context(image, box)[0], plain(image, box)[0], atol=1e-3)
    # a box on the border: its window reaches past the image, where roi_align reads zeros
    corner = torch.tensor([[0.0, 0.0, 30.0, 30.0]])
    assert torch.allclose(with_context(image, corner)[0], plain(image, torch.tensor([[-5.0, -5.0, 35.0, 35.0]]))[0],
                          atol=1e-5)


def test_multi_scale_testing_averages_the_scales_and_one_scale_is_the_default(tmp_path, shapes_data):
    from core.config import load_config
    from detector.model import DetectorModel
    from detector.region_classifier import RegionClassifier
    from synthetic import tiny_config
    cfg = load_config(str(tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)))
    cfg.data.classes = ["box", "disc"]
    torch.manual_seed(0)
    net = RegionClassifier(cfg.model, 2).eval()
    with torch.no_grad():
        net.net.classifier.weight.mul_(1e-3)        # an untrained net's softmax saturates: keep it in range
    model = DetectorModel(cfg, net, {}, str(tmp_path), "cpu")
    image, boxes = torch.randn(3, 60, 80), torch.tensor([[5.0, 6.0, 40.0, 30.0], [30.0, 20.0, 70.0, 55.0]])
    base = model.score_regions(image, boxes)
    small, large = cfg.model.image_scale, cfg.model.image_scale + 32
    cfg.test.scales = [small]
    assert torch.allclose(model.score_regions(image, boxes).probs, base.probs)
    cfg.test.scales = [large]
    at_large = model.score_regions(image, boxes)
    assert not torch.allclose(at_large.probs, base.probs, atol=1e-4)          # another scale, other features
    cfg.test.scales = [small, large]
    both = model.score_regions(image, boxes)
    assert torch.allclose(both.probs, (base.probs + at_large.probs) / 2, atol=1e-6)
    assert torch.allclose(both.probs.sum(1), torch.ones(2))


def test_test_scales_are_checked_and_set_from_the_command_line(tmp_path, shapes_data):
    from core.config import load_config
    from core.errors import UserError
    from synthetic import tiny_config
    path = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)
    assert load_config(str(path), {"test.scales": [560, 640]}).test.scales == [560, 640]
    with pytest.raises(UserError, match=r"test.scales = \[560, 8\]; it must be >= 16"):
        load_config(str(path), {"test.scales": [560, 8]})


def test_region_grid_keeps_the_cell_averages_side_by_side_and_trains_end_to_end(tmp_path, shapes_data):
    from core.config import load_config
    from detector.model import DetectorModel
    from detector.region_classifier import RegionClassifier
    from synthetic import tiny_config
    cfg = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)
    model_cfg = load_config(str(cfg)).model
    model_cfg.roi_size, model_cfg.region_grid = 8, 2
    torch.manual_seed(0)
    net = RegionClassifier(model_cfg, 2).eval()
    assert net.feature_dim == 4 * net.net.feature_dim and net.net.classifier.in_features == net.feature_dim
    image, boxes = torch.randn(3, 96, 128), torch.tensor([[8.0, 8.0, 40.0, 40.0], [50.0, 20.0, 120.0, 90.0]])
    feats, logits, _, _ = net(image, boxes)
    # the 4x4 5b map of each region, averaged over each 2x2 quarter: cell (0, 0) first
    window = roi_align_window(net, image, boxes, model_cfg)
    y = net.net.run(window, start="4e")[0]
    assert y.shape[-2:] == (4, 4)
    c = net.net.feature_dim
    assert torch.allclose(feats[:, :c], y[:, :, :2, :2].mean((2, 3)), atol=1e-5)          # top left
    assert torch.allclose(feats[:, 3 * c:], y[:, :, 2:, 2:].mean((2, 3)), atol=1e-5)      # bottom right
    # the four quarters average to the paper's global feature
    assert torch.allclose(feats.view(2, 4, c).mean(1), net.net.pool(y), atol=1e-5)
    assert logits.shape == (2, 3)

    r = train_tiny(cfg, tmp_path / "m", tmp_path / "cache", "--max-steps", "3",
                   "--set", "model.region_grid=2", "model.roi_size=8")
    assert r.returncode == 0, r.stderr[-2000:]
    model = DetectorModel.load(str(tmp_path / "m"))
    assert model.net.grid == 2 and model.heads["bbox_W"].shape[1] == model.net.feature_dim


def roi_align_window(net, image, boxes, model_cfg):
    """The roi_size window shared mode cuts from 4e for each box (no fine features)."""
    from torchvision.ops import roi_align
    fmap, _ = net.net.run(image[None], stop="4e")
    return roi_align(fmap, [boxes], model_cfg.roi_size, 1 / 16, model_cfg.roi_sampling, aligned=True)


def test_partially_annotated_images_lose_their_background_but_keep_their_foreground():
    from detector.sampling import EASY_BG, drop_background, label_regions, partially_annotated, sample_regions
    # class 1 is boxed in 4 of 5 images (80%), class 2 in 2, class 0 in 1
    labels = [np.array([0, 1, 1]), np.array([1, 2]), np.array([2]), np.array([], np.int64), np.array([1, 1])]
    labels.append(np.array([1]))
    flags, common = partially_annotated(labels, 3, 0.6)
    assert common == [1]                                  # 4 of 6 images box it: 67%
    # image 2 boxes something but no class 1; image 3 boxes nothing: a negative image, not partial
    assert flags.tolist() == [False, False, True, False, False, False]
    assert not partially_annotated(labels, 3, 0.0)[0].any()        # 0: off
    assert partially_annotated(labels, 3, 0.9)[1] == []            # no class that common: nothing flagged

    gt, gt_labels = np.array([[10.0, 10, 50, 50]]), np.array([1])
    proposals = np.array([[12.0, 12, 50, 50], [30, 30, 70, 70], [200, 200, 240, 240]])   # fg, hard bg, easy bg
    regions = label_regions(proposals, gt, gt_labels, 0.5, 0.1, keep_easy=True)
    assert regions.labels.tolist() == [2, 2, 0, EASY_BG]
    kept = drop_background(regions)
    assert kept.labels.tolist() == [2, 2, -1, -1]
    pick = sample_regions(kept.labels, 8, 0.25, np.random.default_rng(0), easy_fraction=0.5)
    assert len(pick) == 2 and (kept.labels[pick] == 2).all()       # foreground only


def refused_in_warp_mode_and_learns(cfg, tmp_path, key: str, layer: str):
    """A shared-mode option ``model.KEY``: refused with the warp mode, and three steps of train.py
    move its zero-initialized layer ``net.LAYER`` (saved and loaded with the model)."""
    from core.config import load_config
    from core.errors import UserError
    from detector.model import DetectorModel
    with pytest.raises(UserError, match=f"model.{key} needs model.region_mode: shared"):
        load_config(str(cfg), {f"model.{key}": True, "model.region_mode": "warp"})
    r = train_tiny(cfg, tmp_path / "m", tmp_path / "cache", "--max-steps", "3", "--set", f"model.{key}=true")
    assert r.returncode == 0, r.stderr[-2000:]
    learned = getattr(DetectorModel.load(str(tmp_path / "m")).net, layer)
    assert learned is not None and learned.weight.abs().sum() > 0


def test_box_geometry_says_where_a_region_lies_and_joins_the_logits(tmp_path, shapes_data):
    from core.config import load_config
    from detector.region_classifier import RegionClassifier, box_geometry
    from synthetic import tiny_config
    boxes = torch.tensor([[0.0, 10.0, 50.0, 60.0], [100.0, 100.0, 200.0, 190.0]])
    g = box_geometry(boxes, 200, 400)
    # left, top, right, bottom border distance in box widths/heights (clipped at 1), log w/W, log h/H
    assert torch.allclose(g[0], torch.tensor([0.0, 0.2, 1.0, 1.0, np.log(50 / 400), np.log(50 / 200)], dtype=torch.float32), atol=1e-6)
    assert torch.allclose(g[1, 3], torch.tensor(10 / 90), atol=1e-6)
    assert torch.allclose(box_geometry(boxes * 1.5, 300, 600), g, atol=1e-6)    # the same at another scale

    cfg = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)
    plain_cfg, geo_cfg = load_config(str(cfg)).model, load_config(str(cfg), {"model.box_geometry": True}).model
    torch.manual_seed(0)
    plain = RegionClassifier(plain_cfg, 2).eval()
    geo = RegionClassifier(geo_cfg, 2).eval()
    missing = geo.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["geometry.bias", "geometry.weight"]
    image, regions = torch.randn(3, 96, 128), torch.tensor([[0.0, 8.0, 40.0, 40.0], [50.0, 20.0, 120.0, 90.0]])
    with torch.no_grad():
        assert torch.allclose(geo(image, regions)[1], plain(image, regions)[1], atol=1e-6)   # zero init: the paper's
        geo.geometry.weight.normal_()
        expected = plain(image, regions)[1] + geo.geometry(box_geometry(regions, 96, 128))
        assert torch.allclose(geo(image, regions)[1], expected, atol=1e-5)
    refused_in_warp_mode_and_learns(cfg, tmp_path, "box_geometry", "geometry")


def test_image_context_adds_one_bias_per_image_to_every_regions_logits(tmp_path, shapes_data):
    from core.config import load_config
    from detector.region_classifier import RegionClassifier
    from synthetic import tiny_config
    cfg = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)
    torch.manual_seed(0)
    plain = RegionClassifier(load_config(str(cfg)).model, 2).eval()
    torch.manual_seed(0)
    ctx = RegionClassifier(load_config(str(cfg), {"model.image_context": True}).model, 2).eval()
    # created last, zero-initialized: the other layers start as without it, and so do the logits
    assert all(torch.equal(v, ctx.state_dict()[k]) for k, v in plain.state_dict().items())
    assert sorted(set(ctx.state_dict()) - set(plain.state_dict())) == ["context.bias", "context.weight"]
    regions = torch.tensor([[0.0, 8.0, 40.0, 40.0], [50.0, 20.0, 120.0, 90.0], [5.0, 50.0, 70.0, 95.0]])
    images = torch.randn(3, 96, 128), torch.randn(3, 96, 128) * 2 + 1
    with torch.no_grad():
        assert torch.allclose(ctx(images[0], regions)[1], plain(images[0], regions)[1], atol=1e-6)
        ctx.context.weight.normal_()
        shifts = [ctx(im, regions)[1] - plain(im, regions)[1] for im in images]
    for shift in shifts:                               # one (C+1) bias shared by all regions of an image
        assert torch.allclose(shift, shift[:1].expand_as(shift), atol=1e-5)
    assert not torch.allclose(shifts[0][0], shifts[1][0], atol=1e-3)     # and it depends on the image
    refused_in_warp_mode_and_learns(cfg, tmp_path, "image_context", "context")


def test_label_smoothing_moves_the_targets_off_the_label_and_is_checked(tmp_path, shapes_data):
    from core.config import load_config
    from core.errors import UserError
    from detector.fine_tune import _forward_regions, region_loss
    from detector.region_classifier import RegionClassifier
    from synthetic import tiny_config
    cfg_path = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)
    plain, smooth = load_config(str(cfg_path)), load_config(str(cfg_path), {"train.label_smoothing": 0.1})
    plain.train.aux_weight = smooth.train.aux_weight = 0.0
    torch.manual_seed(0)
    net = RegionClassifier(plain.model, 2).eval()
    image = torch.randn(3, 96, 128)
    regions = torch.tensor([[0.0, 8.0, 40.0, 40.0], [50.0, 20.0, 120.0, 90.0], [10.0, 50.0, 60.0, 95.0]])
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        logits = _forward_regions(net, image, regions, plain, None)[1]
        loss_plain, _ = region_loss(net, image, regions, labels, plain, None)
        loss_smooth, _ = region_loss(net, image, regions, labels, smooth, None)
    log_p = torch.log_softmax(logits, 1)
    nll = -log_p[torch.arange(3), labels].mean()
    # targets: 0.9 on the label plus 0.1 spread evenly over all three classes
    expected = 0.9 * nll + 0.1 * (-log_p.mean(1)).mean()
    assert torch.allclose(loss_plain, nll, atol=1e-5) and torch.allclose(loss_smooth, expected, atol=1e-5)
    assert not torch.allclose(loss_plain, loss_smooth, atol=1e-4)
    with pytest.raises(UserError, match="train.label_smoothing"):
        load_config(str(cfg_path), {"train.label_smoothing": 1.5})


def test_self_distillation_blends_the_teachers_probabilities_and_leaves_the_teacher_as_it_was(tmp_path, shapes_data):
    import copy

    from core.config import load_config
    from detector.fine_tune import _forward_regions, region_loss
    from detector.region_classifier import RegionClassifier
    from synthetic import tiny_config
    cfg_path = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)
    cfg = load_config(str(cfg_path), {"train.self_distill": 0.4})
    cfg.train.aux_weight = 0.0
    torch.manual_seed(0)
    student, teacher = RegionClassifier(cfg.model, 2).eval(), RegionClassifier(cfg.model, 2).train()
    before = copy.deepcopy(teacher.state_dict())
    image = torch.randn(3, 96, 128)
    regions = torch.tensor([[0.0, 8.0, 40.0, 40.0], [50.0, 20.0, 120.0, 90.0], [10.0, 50.0, 60.0, 95.0]])
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        loss, _ = region_loss(student, image, regions, labels, cfg, None, teacher=teacher)
        log_p = torch.log_softmax(_forward_regions(student, image, regions, cfg, None)[1], 1)
        soft = torch.softmax(_forward_regions(teacher.eval(), image, regions, cfg, None)[1], 1)
    teacher.train()
    hard = -log_p[torch.arange(3), labels].mean()
    expected = 0.6 * hard + 0.4 * -(soft * log_p).sum(1).mean()
    assert torch.allclose(loss, expected, atol=1e-5) and not torch.allclose(loss, hard, atol=1e-4)
    # the teacher ran in test mode: its batch-norm statistics did not move, and its mode is back
    assert teacher.training and all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())

    # in a real run the teacher joins from the second epoch: the weights then differ from a run without it
    weights = {}
    for name, share in (("plain", 0.0), ("distilled", 0.5)):
        r = train_tiny(cfg_path, tmp_path / name, tmp_path / "cache", "--set", f"train.self_distill={share}",
                       "train.epochs=2")
        assert r.returncode == 0, r.stderr[-2000:]
        weights[name] = torch.load(tmp_path / name / "model.pt", map_location="cpu", weights_only=False)
    tensors = [(k, v) for k, v in weights["plain"].items() if torch.is_tensor(v) and v.is_floating_point()]
    assert tensors and any(not torch.equal(v, weights["distilled"][k]) for k, v in tensors)


def test_a_trained_teacher_is_distilled_one_member_per_image_and_share_zero_trains_as_without_it(
        tmp_path, shapes_data, tiny_model):
    from core.errors import UserError
    from detector.fine_tune import load_teachers
    from ensemble import write_ensemble
    from synthetic import tiny_config
    # an ensemble teacher: members drawn in proportion to their vote weights
    write_ensemble(str(tmp_path), [str(tiny_model["model"])] * 2, weights=[1.0, 3.0])
    nets, odds = load_teachers(str(tmp_path), ["box", "disc"], "shared", "cpu")
    assert len(nets) == 2 and np.allclose(odds, [0.25, 0.75])
    assert not nets[0].training and not any(p.requires_grad for p in nets[0].parameters())
    with pytest.raises(UserError, match="classes"):
        load_teachers(str(tmp_path), ["disc", "box"], "shared", "cpu")
    with pytest.raises(UserError, match="a shared-mode model cannot score the regions of a warp-mode student"):
        load_teachers(str(tmp_path), ["box", "disc"], "warp", "cpu")

    cfg_path = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)
    weights = {}
    for name, extra in (("plain", []), ("share0", [f"train.teacher={tiny_model['model']}", "train.teacher_share=0"]),
                        ("share05", [f"train.teacher={tiny_model['model']}", "train.teacher_share=0.5"])):
        r = train_tiny(cfg_path, tmp_path / name, tmp_path / "cache", "--max-steps", "3", *(["--set", *extra] if extra else []))
        assert r.returncode == 0, r.stderr[-2000:]
        weights[name] = torch.load(tmp_path / name / "model.pt", map_location="cpu", weights_only=False)
    tensors = [(k, v) for k, v in weights["plain"].items() if torch.is_tensor(v) and v.is_floating_point()]
    # the teacher's draws have their own random stream: at share 0 the run is the run without a teacher
    assert tensors and all(torch.equal(v, weights["share0"][k]) for k, v in tensors)
    assert any(not torch.equal(v, weights["share05"][k]) for k, v in tensors)
    r = train_tiny(cfg_path, tmp_path / "bad", tmp_path / "cache", "--set", f"train.teacher={tmp_path / 'nowhere'}")
    assert r.returncode != 0 and "train.teacher" in r.stderr and "Traceback" not in r.stderr


def _fit_conv(out_dir, channels_last: bool, epochs: int = 2, max_steps=None):
    """A small conv + batch-norm net through the Trainer; returns (net weights, averaged
    weights, the layouts the step saw)."""
    from networks.engine import Trainer, seed_everything
    seed_everything(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    trainer = Trainer(net, opt, out_dir=str(out_dir), epochs=epochs, lr=0.05, lr_steps=[], ema_decay=0.9,
                      progress=False, max_steps=max_steps, channels_last=channels_last)
    trainer.resume()
    seen = []

    def batches(epoch):
        g = torch.Generator().manual_seed(epoch)
        return [(torch.randn(4, 3, 12, 12, generator=g), torch.randint(0, 4, (4,), generator=g)) for _ in range(3)]

    def step(model, batch):
        seen.append(model[0].weight.is_contiguous(memory_format=torch.channels_last))
        loss = torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
        loss.backward()
        return {"loss": loss.item(), "count": 1}

    trainer.fit(batches, step)
    return ([p.detach().clone() for p in net.parameters()], [p.detach().clone() for p in trainer.averaged.parameters()],
            seen)


def test_channels_last_trains_in_nhwc_exports_nchw_repeats_and_resumes_exactly(tmp_path):
    """train.channels_last: the steps see NHWC weights (and the averaged ones are NHWC for
    what runs next), the same seed repeats bit for bit, a killed run resumes to the same
    weights, and the result is the NCHW run's up to float sums. (The exports write NCHW:
    tests/test_own_data.py trains with configs/default.yaml, where the option is on.)"""
    nchw, _, seen = _fit_conv(tmp_path / "nchw", False)
    assert seen == [False] * 6
    nhwc, averaged, seen = _fit_conv(tmp_path / "nhwc", True)
    assert seen == [True] * 6
    assert averaged[0].is_contiguous(memory_format=torch.channels_last) and not averaged[0].is_contiguous()
    again, _, _ = _fit_conv(tmp_path / "again", True)
    assert all(torch.equal(a, b) for a, b in zip(nhwc, again))
    _fit_conv(tmp_path / "killed", True, max_steps=3)            # one epoch, checkpointed
    resumed, _, seen = _fit_conv(tmp_path / "killed", True)
    assert seen == [True] * 3 and all(torch.equal(a, b) for a, b in zip(nhwc, resumed))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(nchw, nhwc))
    from conftest import ROOT
    from core.config import load_config
    default = load_config(str(ROOT / "configs" / "default.yaml"))
    assert default.train.channels_last is True and default.proposals.multibox.channels_last is True
    # a config written before the option (every bundled member's) trains as it did: NCHW
    old = load_config(str(ROOT / "models" / "bccd" / "member-0" / "config.yaml"))
    assert old.train.channels_last is False and old.proposals.multibox.channels_last is False
