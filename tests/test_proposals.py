import os

import numpy as np
import pytest
import torch

from core.config import ProposalConfig, SelectiveSearchConfig
from proposals.cache import proposal_source
from proposals.generator import union_proposals
from proposals.multibox import (
    MultiBoxNet,
    kmeans_shapes,
    make_priors,
    match,
    multibox_loss,
    multibox_proposals,
    threshold_matches,
)
from proposals.report import proposal_report
from proposals.selective_search import selective_search


def blobs_image(h=120, w=160):
    rng = np.random.default_rng(0)
    img = rng.integers(100, 130, (h, w, 3), dtype=np.uint8)
    img[20:60, 30:80] = (20, 200, 40)
    img[70:110, 90:150] = (200, 20, 40)
    return img


def test_selective_search_boxes_valid_unique_inside():
    img = blobs_image()
    boxes = selective_search(img, SelectiveSearchConfig(max_side=0, min_size=5, top_n=500))
    assert len(boxes) > 5 and boxes.dtype == np.float32
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 120).all()
    assert ((boxes[:, 2] - boxes[:, 0]) >= 5).all() and ((boxes[:, 3] - boxes[:, 1]) >= 5).all()
    assert len(np.unique(boxes, axis=0)) == len(boxes)
    # the green blob is found
    iou = [(min(b[2], 80) - max(b[0], 30)) * (min(b[3], 60) - max(b[1], 20)) for b in boxes]
    assert max(iou) > 0.8 * 50 * 40
    # down-scaling maps the boxes back to the original size
    small = selective_search(img, SelectiveSearchConfig(max_side=80, min_size=5))
    assert small[:, 2].max() > 100


def test_selective_search_order_does_not_depend_on_the_images_searched_before():
    """OpenCV ranks with C's rand(): unseeded, a cache filled in another order held other
    boxes (raccoon: 179 of 196 images), and a retrain from the same recipe diverged."""
    img, other = blobs_image(), blobs_image(90, 200)
    cfg = SelectiveSearchConfig(max_side=0, min_size=5, top_n=500)
    first = selective_search(img, cfg)
    for _ in range(3):
        selective_search(other, cfg)
    again = selective_search(img, cfg)
    assert len(first) > 5 and np.array_equal(first, again)


def test_kmeans_shapes_find_clusters_and_priors_tile_the_grid():
    rng = np.random.default_rng(0)
    small = np.array([0.1, 0.1, 0.2, 0.3]) + rng.normal(0, 0.002, (50, 4))     # 0.1 x 0.2
    large = np.array([0.2, 0.2, 0.6, 0.5]) + rng.normal(0, 0.002, (50, 4))     # 0.4 x 0.3
    shapes = kmeans_shapes(np.vstack([small, large]), 2)
    np.testing.assert_allclose(shapes, [[0.4, 0.3], [0.1, 0.2]], atol=0.01)     # larger first
    assert kmeans_shapes(np.vstack([small[:2], large[:2]]), 6).shape == (6, 2)  # few boxes: augmented
    priors = make_priors(np.array([[0.5, 0.5], [0.2, 0.1]], np.float32), grid=2)
    assert priors.shape == (8, 4)
    np.testing.assert_allclose(priors[0], [0.0, 0.0, 0.5, 0.5])                 # cell (0, 0), shape 0
    np.testing.assert_allclose(priors[3], [0.65, 0.2, 0.85, 0.3])               # cell (0, 1), shape 1
    np.testing.assert_allclose(priors[7], [0.65, 0.7, 0.85, 0.8])               # cell (1, 1), shape 1


def test_bipartite_matching_hand_case():
    preds = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.1, 0.1, 0.6, 0.6]])
    gt = torch.tensor([[0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]])
    rows, cols = match(preds, torch.zeros(3), gt, alpha=1.0)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0)]      # by location alone
    # a confident third prediction takes object 1: its confidence gain (5) outweighs 0.5*0.04
    rows, cols = match(preds, torch.tensor([0.0, 0.0, 5.0]), gt, alpha=1.0)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(1, 0), (2, 1)]
    # with a large alpha location wins again
    rows, cols = match(preds, torch.tensor([0.0, 0.0, 5.0]), gt, alpha=1000.0)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0)]


def test_multibox_few_steps_lower_the_loss():
    torch.manual_seed(0)
    net = MultiBoxNet(np.array([[0.3, 0.3], [0.5, 0.4]], np.float32), grid=2, width=0.125)
    images = torch.randn(2, 3, 64, 64)
    gts = [torch.tensor([[0.12, 0.1, 0.42, 0.38]]), torch.tensor([[0.5, 0.52, 0.98, 0.9], [0.2, 0.5, 0.5, 0.85]])]
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(25):
        offsets, logits, _ = net(images)
        loss, _, _, _ = multibox_loss(net, offsets, logits, gts, alpha=2.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.4 * losses[0]
    # decoded boxes: zero offsets are the priors themselves
    np.testing.assert_allclose(net.boxes(torch.zeros(8, 4)).numpy(), net.priors.numpy())


def test_multibox_class_confidences_learn_the_matched_objects_class():
    torch.manual_seed(0)
    net = MultiBoxNet(np.array([[0.3, 0.3], [0.5, 0.4]], np.float32), grid=2, width=0.125, num_classes=3)
    images = torch.randn(2, 3, 64, 64)
    gts = [torch.tensor([[0.12, 0.1, 0.42, 0.38]]), torch.tensor([[0.5, 0.52, 0.98, 0.9], [0.2, 0.5, 0.5, 0.85]])]
    labels = [torch.tensor([2]), torch.tensor([0, 1])]
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for _ in range(40):
        offsets, logits, class_logits = net(images)
        loss, _, _, cls = multibox_loss(net, offsets, logits, gts, alpha=2.0, positive_iou=0.3,
                                        class_logits=class_logits, labels=labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert class_logits.shape == (2, 8, 3) and cls > 0
    probs = torch.sigmoid(net(images)[2]).detach()
    # image 0's object is class 2: the prior it was matched to is most confident for class 2
    best_prior = int(probs[0, :, 2].argmax())
    assert probs[0, best_prior].argmax() == 2 and probs[0, best_prior, 2] > 0.5
    assert probs[0, :, 0].max() < 0.5 and probs[0, :, 1].max() < 0.5      # no object of class 0 or 1 there


def test_class_aware_multibox_round_trip_and_the_scorer_checks_its_classes(tmp_path):
    from core.config import MultiBoxConfig
    from core.errors import UserError
    from proposals.multibox import export_multibox, load_multibox
    from proposals.objectness import ObjectnessScorer
    torch.manual_seed(0)
    net = MultiBoxNet(np.array([[0.3, 0.3]], np.float32), grid=4, width=0.125, stride=16, num_classes=2)
    torch.nn.init.zeros_(net.head[2].weight)     # every prediction is its prior
    torch.nn.init.uniform_(net.head[2].bias, -2, 2)
    export_multibox(net, MultiBoxConfig(input_size=64, width=0.125, stride=16), str(tmp_path), [], ["cat", "dog"])
    loaded, size = load_multibox(str(tmp_path))
    assert size == 64 and loaded.num_classes == 2 and loaded.classes == ["cat", "dog"]
    with pytest.raises(UserError, match="class confidences are for"):
        ObjectnessScorer([str(tmp_path)], 0.5, classes=["dog", "cat"])
    scorer = ObjectnessScorer([str(tmp_path)], 0.5, classes=["cat", "dog"])
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    (boxes, confidence), = scorer.predict(image)
    assert boxes.shape == (16, 4) and confidence.shape == (16, 2)
    # a box on prior 5: vouched for by the "dog" confidence of the priors overlapping it
    from core.boxes import pairwise_iou
    near = pairwise_iou(boxes, boxes[5:6])[:, 0] >= 0.5
    assert near.sum() >= 1 and not np.allclose(confidence[:, 0], confidence[:, 1])
    assert scorer.score(scorer.predict(image), boxes[5:6], np.array([1]))[0] == pytest.approx(confidence[near, 1].max())
    assert scorer.score(scorer.predict(image), boxes[5:6], np.array([0]))[0] == pytest.approx(confidence[near, 0].max())


def test_threshold_matches_add_close_priors_to_the_bipartite_match():
    priors = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.05, 0.0, 0.55, 0.5], [0.5, 0.5, 1.0, 1.0], [0.6, 0.0, 1.0, 0.3]])
    gt = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    rows, cols = match(priors, torch.zeros(4), gt, alpha=10.0)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (2, 1)]
    more_rows, more_cols = threshold_matches(priors, gt, rows, cols, 0.5)
    # prior 1 overlaps object 0 at IoU 0.45/0.55 = 0.82: a positive for it; prior 3 overlaps nothing
    assert sorted(zip(more_rows.tolist(), more_cols.tolist())) == [(0, 0), (1, 0), (2, 1)]
    same = threshold_matches(priors, gt, rows, cols, 0.0)                       # switched off
    assert np.array_equal(same[0], rows)


def test_stride_16_multibox_uses_the_4e_map_and_nms_thins_its_boxes():
    torch.manual_seed(0)
    net = MultiBoxNet(np.array([[0.3, 0.3]], np.float32), grid=4, width=0.125, stride=16).eval()
    torch.nn.init.zeros_(net.head[2].weight)     # every prediction is its prior
    assert net.last_stage == "4e" and "5b" not in net.trunk.stages
    offsets, logits, class_logits = net(torch.randn(1, 3, 64, 64))
    assert offsets.shape == (1, 16, 4) and logits.shape == (1, 16) and class_logits.shape == (1, 16, 0)
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    (boxes, scores), = multibox_proposals(net, 64, [image], top_k=16)
    assert boxes.shape == (16, 4) and (np.diff(scores) <= 0).all()
    np.testing.assert_allclose(np.sort(boxes[:, 0]), np.sort(net.priors[:, 0].clamp(0, 1).numpy() * 64), atol=1e-4)
    (thin, _), = multibox_proposals(net, 64, [image], top_k=16, nms_iou=0.05)
    assert 0 < len(thin) < 16                     # 0.3-wide priors a quarter apart: IoU 0.09


def test_multibox_runs_once_per_image_for_proposals_then_objectness():
    from proposals.multibox import multibox_predictions
    torch.manual_seed(0)
    net = MultiBoxNet(np.array([[0.3, 0.3]], np.float32), grid=4, width=0.125, stride=16).eval()
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    (boxes, scores), = multibox_proposals(net, 64, [image], top_k=5)
    (all_boxes, objectness, per_class), = multibox_predictions(net, 64, [image])
    assert len(calls) == 1 and per_class.shape == (16, 0)
    np.testing.assert_allclose(np.sort(objectness.numpy())[::-1][:5], scores)
    multibox_predictions(net, 64, [image.copy()])          # another array: run again
    assert len(calls) == 2


def test_recall_report_hand_case():
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
    props = [np.array([[0, 0, 10, 10], [20, 20, 30, 36], [50, 50, 60, 60]], np.float32)]   # IoU 1, 10/16
    r = proposal_report("x", gt, props, [0.5], [np.array([0, 1])], ["a", "b"])
    assert r.recall_50 == 1.0 and r.recall_70 == 0.5
    assert r.per_class == {"a": 1.0, "b": 1.0}
    missed = proposal_report("x", gt, [props[0][2:]], [0.5], [np.array([0, 1])], ["a", "b"])
    assert missed.per_class == {"a": 0.0, "b": 0.0} and missed.recall_50 == 0.0
    assert r.abo == pytest.approx((1 + 100 / 160) / 2)
    assert r.boxes_per_image == 3 and r.seconds_per_image == 0.5
    assert r.curve[1] == (0.5, 0.5) and r.curve[2] == (1.0, 0.5)


def test_union_drops_near_duplicates_and_keeps_multibox_first():
    ss = np.array([[0, 0, 10, 10], [50, 50, 80, 80]], np.float32)
    mb = np.array([[0, 0, 10, 10.2], [20, 20, 30, 30]], np.float32)
    out = union_proposals(ss, mb, 0.9)
    np.testing.assert_allclose(out, [[0, 0, 10, 10.2], [20, 20, 30, 30], [50, 50, 80, 80]], rtol=1e-6)


def test_objectness_is_the_best_confidence_overlapping_enough_and_blends_geometrically():
    from proposals.objectness import fuse_objectness, objectness_of
    predicted = np.array([[0, 0, 10, 10], [0, 0, 10, 12], [40, 40, 60, 60]], np.float32)
    confidence = np.array([0.2, 0.6, 0.9], np.float32)
    boxes = np.array([[0, 0, 10, 10], [40, 40, 60, 70], [100, 100, 110, 110]], np.float32)
    # box 0 overlaps both small predictions (IoU 1 and 0.83): the better confidence; box 1
    # overlaps the last at IoU 0.67; box 2 nothing
    np.testing.assert_allclose(objectness_of(boxes, predicted, confidence, 0.5), [0.6, 0.9, 0.0])
    np.testing.assert_allclose(objectness_of(boxes, predicted, confidence, 0.9), [0.2, 0.0, 0.0])
    assert objectness_of(boxes[:0], predicted, confidence, 0.5).shape == (0,)
    # per-class confidences (P, C): each box is vouched for by its own class's column only
    per_class = np.column_stack([confidence, 1 - confidence])
    np.testing.assert_allclose(objectness_of(boxes, predicted, per_class, 0.5, labels=np.array([1, 0, 1])),
                               [0.8, 0.9, 0.0], rtol=1e-6)        # box 0: class 1's 0.8 and 0.4, not 0.6
    np.testing.assert_allclose(fuse_objectness(np.array([0.81, 0.5]), np.array([0.25, 0.0]), 0.5), [0.45, 0.0])
    np.testing.assert_allclose(fuse_objectness(np.array([0.81]), np.array([0.25]), 0.0), [0.81])


def test_cache_hit_miss_and_invalidation(tmp_path, monkeypatch):
    """Keyed by pixels and parameters: a hit is not recomputed, new parameters or an
    edited image are new entries, the same pixels under another name are one entry."""
    image = blobs_image()
    calls = []
    import proposals.selective_search as ss_mod
    real = ss_mod.selective_search
    monkeypatch.setattr(ss_mod, "selective_search", lambda *a: calls.append(1) or real(*a))
    cfg = ProposalConfig(method="ss", selective_search=SelectiveSearchConfig(max_side=0, min_size=5))
    source = proposal_source(cfg, cache_dir=str(tmp_path / "cache"), workers=1, progress=False)
    boxes, seconds = source.propose(image)
    assert len(calls) == 1 and len(boxes) > 0 and seconds > 0
    again, _ = source.propose(image.copy())                       # hit: not recomputed
    assert len(calls) == 1 and np.array_equal(boxes, again)
    cfg.selective_search.min_size = 20                            # new parameters: new entry
    source2 = proposal_source(cfg, cache_dir=str(tmp_path / "cache"), workers=1, progress=False)
    fewer, _ = source2.propose(image)
    assert len(calls) == 2 and len(fewer) < len(boxes)
    edited = image.copy()
    edited[0, 0] = 255 - edited[0, 0]                             # one pixel changed: recomputed
    source2.propose(edited)
    assert len(calls) == 3
    assert len(list((tmp_path / "cache" / "proposals").iterdir())) == 2


def test_no_cache_computes_in_memory_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cfg = ProposalConfig(method="ss", selective_search=SelectiveSearchConfig(max_side=0, min_size=5))
    source = proposal_source(cfg, use_cache=False)
    boxes, _ = source.propose(blobs_image())
    assert len(boxes) > 0 and not (tmp_path / "xdg").exists()


def test_cache_prepare_in_worker_processes(tmp_path):
    from PIL import Image

    from proposals.cache import image_digest
    paths = []
    for k in range(3):
        paths.append(str(tmp_path / f"{k}.png"))
        Image.fromarray(np.roll(blobs_image(), 7 * k, axis=1)).save(paths[-1])
    cfg = ProposalConfig(method="ss", selective_search=SelectiveSearchConfig(max_side=0, min_size=5))
    source = proposal_source(cfg, cache_dir=str(tmp_path / "cache"), workers=2, progress=False)
    source.prepare(paths)
    keys = [image_digest(np.roll(blobs_image(), 7 * k, axis=1)) for k in range(3)]
    assert all(source.stores["ss"].has(k) for k in keys)


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "nan", "other_key"])
def test_a_damaged_cache_entry_is_reported_deleted_and_recomputed(tmp_path, caplog, damage):
    from proposals.cache import image_digest
    image = blobs_image()
    cfg = ProposalConfig(method="ss", selective_search=SelectiveSearchConfig(max_side=0, min_size=5))
    source = proposal_source(cfg, cache_dir=str(tmp_path / "cache"), workers=1, progress=False)
    boxes, _ = source.propose(image)
    store = source.stores["ss"]
    path = store.path(image_digest(image))
    data = open(path, "rb").read()
    if damage == "truncate":
        open(path, "wb").write(data[: len(data) // 2])
    elif damage == "empty":
        open(path, "wb").write(b"")
    elif damage == "garbage":
        open(path, "wb").write(b"not an archive at all" * 10)
    elif damage == "nan":
        bad = boxes.copy()
        bad[0, 0] = np.nan
        store.put(image_digest(image), bad, np.zeros(len(bad)), 0.1)
    else:                                      # another image's entry under this name
        store.put("0" * 16, boxes[:3], np.zeros(3), 0.1)
        os.replace(store.path("0" * 16), path)
    with caplog.at_level("WARNING"):
        again, _ = source.propose(image)
    # recomputed: the same boxes (OpenCV ranks them with an unseeded random draw, so not
    # necessarily in the same order)
    assert np.array_equal(np.unique(again, axis=0), np.unique(boxes, axis=0))
    boxes = again
    assert f"{path} is unreadable" in caplog.text
    again2, _ = source.propose(image)             # healed: read back without a warning
    assert np.array_equal(again2, boxes) and caplog.text.count("unreadable") == 1


def test_stale_temp_files_are_removed_when_a_store_opens(tmp_path):
    cfg = ProposalConfig(method="ss", selective_search=SelectiveSearchConfig(max_side=0, min_size=5))
    source = proposal_source(cfg, cache_dir=str(tmp_path / "cache"), workers=1, progress=False)
    folder = source.stores["ss"].dir
    old, fresh = os.path.join(folder, ".abc.npz.1.tmp"), os.path.join(folder, ".def.npz.2.tmp")
    for p in (old, fresh):
        open(p, "wb").write(b"partial")
    os.utime(old, (1, 1))
    proposal_source(cfg, cache_dir=str(tmp_path / "cache"), workers=1, progress=False)
    assert not os.path.exists(old) and os.path.exists(fresh)      # a live writer's file is left alone


def test_multibox_method_without_model_is_a_clear_error(tmp_path):
    from core.errors import UserError
    with pytest.raises(UserError, match="needs a trained MultiBox model"):
        proposal_source(ProposalConfig(method="combined"), cache_dir=str(tmp_path))


def test_report_cli_top_k(tmp_path, tiny_model):
    """`python -m proposals report --top-k N` keeps N MultiBox boxes per image; 0 is refused."""
    import json
    import subprocess
    import sys

    from conftest import ROOT

    def report(*extra):
        return subprocess.run([sys.executable, "-m", "proposals", "report", "--dataset", str(tiny_model["data"]),
                               "--split", "test", "--method", "multibox", "--model", str(tiny_model["model"]),
                               "--cache-dir", str(tiny_model["cache"]), *extra],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)
    out = report("--top-k", "7", "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "r.json").read_text())["boxes_per_image"] == 7
    bad = report("--top-k", "0")
    assert bad.returncode != 0 and "--top-k must be at least 1" in bad.stderr


def test_report_cli_reads_an_ensemble(tmp_path, tiny_model):
    """`--model` may be an ensemble: its members' shared proposal settings are used."""
    import json
    import subprocess
    import sys

    from conftest import ROOT
    ens = tmp_path / "ens"
    made = subprocess.run([sys.executable, "-m", "ensemble", "create", str(ens), str(tiny_model["model"]),
                           str(tiny_model["model"])], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    out = subprocess.run([sys.executable, "-m", "proposals", "report", "--dataset", str(tiny_model["data"]),
                          "--split", "test", "--method", "multibox", "--model", str(ens), "--top-k", "5",
                          "--cache-dir", str(tiny_model["cache"]), "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "r.json").read_text())["boxes_per_image"] == 5
