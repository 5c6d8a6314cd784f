"""train.py --dataset DIR with no recipe: the default adapted to the data, validation on
a held-out part, a time budget, and curves a person can read."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import ROOT


def test_default_recipe_adapts_holds_out_validation_and_keeps_the_budget(tmp_path):
    from synthetic import make_shapes
    data = make_shapes(tmp_path / "data", 24, splits={"train": [f"shape_{i:03d}" for i in range(24)],
                                                      "test": [f"shape_{i:03d}" for i in range(4)]})
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--dataset", str(data), "--out", str(out),
                        "--minutes", "0.75", "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--workers", "1",
                        "--set", "model.width=0.125", "proposals.multibox.width=0.125", "train.rois_per_image=16",
                        "proposals.selective_search.top_n=200"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stderr
    assert "derived from the data: classes ['box', 'disc']" in log
    assert "4 of the 24 training images held out for validation" in log
    assert "budget: multibox gets" in log and "budget: classifier gets" in log
    assert "trained in" in log and "of the 0.75-minute budget" in log
    assert "validation mAP reached" in log
    import json
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["overrides"]["model.width"] == 0.125 and len(manifest["validation_images"]) == 4
    assert manifest["minutes"] == 0.75 and manifest["fingerprint"]
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["classes"] == ["box", "disc"] and cfg["model"]["image_scale"] == 128
    assert cfg["model"]["width"] == 0.125                      # --set wins over the derived values
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and {"epoch", "loss", "lr", "seconds", "val_mAP"} <= set(rows[0])
    assert any(row["val_mAP"] for row in rows)
    assert (out / "curves.png").stat().st_size > 1000 and (out / "multibox" / "history.csv").exists()
    budget = json.loads((out / "budget.json").read_text())          # what a --resume continues from
    import re
    logged = float(re.search(r"trained in ([0-9.]+) minutes of the", log).group(1))
    assert budget["minutes"] == 0.75 and abs(budget["spent_seconds"] / 60 - logged) <= 0.1     # logged to 0.1
    assert budget["stages"]["classifier"]["epochs"] == cfg["train"]["epochs"]
    assert budget["stages"]["multibox"]["lr_steps"] == cfg["proposals"]["multibox"]["lr_steps"]
    # config.yaml records the schedule the budget fitted (steps move only while still ahead),
    # so training from it again repeats the run at fixed epochs: the same weights, bit for
    # bit (bench/train_bundled.sh retrains the bundled models this way), also with proposals
    # computed again (selective search is seeded per image)
    again = tmp_path / "again"
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(out / "config.yaml"), "--out", str(again),
                        "--cache-dir", str(tmp_path / "cache_again"), "--no-progress", "--workers", "2"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "budget" not in r.stderr
    for weights in ("model.pt", "multibox/multibox.pt"):
        a = torch.load(out / weights, weights_only=True)
        b = torch.load(again / weights, weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), weights
        # trained in NHWC (configs/default.yaml's channels_last), written in the usual layout
        assert all(v.is_contiguous() for v in a.values()) and any(v.dim() == 4 for v in a.values()), weights
    assert json.loads((again / "manifest.json").read_text())["validation_images"] == manifest["validation_images"]


def test_a_val_split_validates_on_a_subsample_and_the_rest_of_it_trains(tmp_path):
    from core.config import Config
    from core.datasets import load_dataset
    from pipeline import train as train_module
    from synthetic import make_shapes
    ids = [f"shape_{i:03d}" for i in range(12)]
    data = make_shapes(tmp_path / "data", 12, splits={"train": ids[:6], "val": ids[6:11], "test": ids[11:]})
    cfg = Config()
    cfg.data.dataset, cfg.train.eval_every, cfg.train.validation_images = str(data), 2, 3
    train, held = train_module.hold_out_validation(cfg, load_dataset(str(data), "train"))
    held_ids, train_ids = [r.image_id for r in held.images], [r.image_id for r in train.images]
    assert len(held_ids) == 3 and set(held_ids) <= set(ids[6:11])
    assert len(train_ids) == 8 and set(train_ids) == set(ids[:11]) - set(held_ids)      # 6 + the other 2 of val
    assert train.split == "train + 2 of val"
    # train.validation_seed: members of other seeds hold out the same images (None: train.seed's)
    chosen = {}
    for seed in range(6):
        cfg.train.seed = seed
        chosen[seed] = [r.image_id for r in train_module.hold_out_validation(cfg, load_dataset(str(data), "train"))[1].images]
        cfg.train.validation_seed = 0
        assert [r.image_id for r in train_module.hold_out_validation(cfg, load_dataset(str(data), "train"))[1].images] \
            == chosen[0]
        cfg.train.validation_seed = None
    assert len({tuple(sorted(c)) for c in chosen.values()}) > 1        # the seeds alone do choose differently
    from core.config import load_config
    from core.errors import UserError
    for key in ("train.seed", "train.validation_seed"):                # one line, not numpy's traceback
        with pytest.raises(UserError, match=f"{key} = -1; it must be >= 0"):
            load_config(str(ROOT / "configs" / "default.yaml"), {key: -1})
    cfg.train.seed = 0
    cfg.train.eval_every = 0                                  # no validation: the training split as it is
    assert train_module.hold_out_validation(cfg, load_dataset(str(data), "train"))[1] is None


def test_unconverged_warning_only_when_the_last_evaluation_is_the_best(tmp_path, caplog):
    import logging

    from core.config import Config
    from pipeline.monitor import Validation
    hook = Validation(Config(), None, None, "cpu", str(tmp_path), every=2)
    with caplog.at_level(logging.WARNING):
        hook.finish(None, [{"val_mAP": m} for m in (0.30, 0.45, 0.36, 0.40)])   # raccoon-like noise
        assert "still rising" not in caplog.text
        hook.finish(None, [{"val_mAP": m} for m in (0.30, 0.35, 0.40)])
        assert "still rising at the end (0.300 -> 0.400" in caplog.text


def test_an_earlier_best_epoch_replaces_the_final_weights_only_beyond_the_noise(tmp_path):
    import numpy as np

    from core.config import Config
    from core.datasets import Dataset, ImageRecord
    from core.structures import Detections
    from pipeline.monitor import Validation
    records = [ImageRecord(f"im{i}", "", 100, 100, np.array([[10.0, 10, 50, 50]]), np.zeros(1, np.int64),
                           np.zeros(1, bool), np.zeros(1, bool)) for i in range(24)]
    val = Dataset("mem", "val", "voc", ["raccoon"], records)

    def found(n):                                   # the first n images found, the rest missed
        boxes = [[10.0, 10, 50, 50]] * n + [[60.0, 60, 99, 99]] * (24 - n)
        return Detections(np.array([f"im{i}" for i in range(24)]), np.array(["raccoon"] * 24),
                          np.full(24, 0.9), np.array(boxes))

    import torch

    from networks.engine import save_checkpoint
    hook = Validation(Config(), val, None, "cpu", str(tmp_path), every=2)
    save_checkpoint(hook.best_path, {"model": {"weight": torch.full((1, 1), 6.0), "bias": torch.zeros(1)}})

    def final_net():                                # the final (epoch 17) weights: 17
        net = torch.nn.Linear(1, 1)
        net.load_state_dict({"weight": torch.full((1, 1), 17.0), "bias": torch.zeros(1)})
        return net

    hook.best_epoch, hook.best_map, hook.best_dets = 6, 0.50, found(12)
    hook.last_epoch, hook.last_map, hook.last_dets = 17, 0.46, found(11)
    assert not hook.best_is_real()                                                      # one image apart: noise
    net = final_net()
    hook.finish(net)
    assert net.weight.item() == 17 and (hook.best_epoch, hook.best_map) == (17, 0.46)   # the final weights stay
    hook.best_epoch, hook.best_map, hook.best_dets = 6, 0.95, found(23)
    assert hook.best_is_real()                                                          # 23 against 11: real
    net = final_net()
    hook.finish(net)
    assert net.weight.item() == 6 and hook.best_epoch == 6                              # epoch 6's weights
    hook.last_epoch = 6
    assert hook.best_is_real()                                                          # the final epoch is the best

    # resumed after epoch 6: its detections are gone, so finish detects again with best.pt's weights
    # and chooses as the unbroken run above did
    for best_found, kept in ((12, 17), (23, 6)):
        seen = []
        hook.validate = lambda net, n=best_found, seen=seen: (seen.append(net.weight.item()) or (found(n), n / 24))
        hook.best_epoch, hook.best_map, hook.best_dets = 6, best_found / 24, None
        hook.last_epoch, hook.last_map, hook.last_dets = 17, 0.46, found(11)
        net = final_net()
        hook.finish(net)
        assert seen == [6] and net.weight.item() == kept


def test_a_resumed_validation_counts_the_evaluations_since_its_best(tmp_path):
    from core.config import Config
    from pipeline.monitor import Validation
    history = [{"epoch": 2, "val_mAP": 0.50}, {"epoch": 3}, {"epoch": 4, "val_mAP": 0.61},
               {"epoch": 6, "val_mAP": 0.60}, {"epoch": 8, "val_mAP": 0.61}]
    hook = Validation(Config(), None, None, "cpu", str(tmp_path), every=2, patience=3)
    hook.restore(history)
    assert (hook.best_map, hook.best_epoch, hook.bad) == (0.61, 4, 2)   # a tie is no improvement

    class Trainer:                                  # one more evaluation without improvement stops it
        epochs, stop, averaged = 20, False, None
    hook.validate = lambda net: (None, 0.55)
    record = {"epoch": 10}
    hook(Trainer, record)
    assert Trainer.stop and hook.bad == 3 and record["val_mAP"] == 0.55


def test_a_resumed_budget_has_only_what_is_left_and_the_fitted_schedules(tmp_path):
    from core.config import TrainConfig
    from pipeline.train import Budget
    first = Budget(10, started=0.0, out_dir=str(tmp_path))
    first.spent = lambda: 120.0                                      # the classifier starts at 2 of 10 minutes
    assert first.stage_hook("classifier", 0.5, TrainConfig()).seconds == 240.0   # half of the 8 left
    first.spent = lambda: 240.0                                      # killed at 4 minutes
    first.record("classifier", 13, [9, 12])
    import time
    resumed = Budget(10, started=time.time(), out_dir=str(tmp_path), resume=True)
    assert 359 < resumed.left() <= 360                               # 6 minutes left, not 10
    train_cfg = TrainConfig(epochs=8, lr_steps=[6, 7])               # the recipe's own schedule
    hook = resumed.stage_hook("classifier", 0.5, train_cfg)
    # the fitted schedule, and only what is left of the stage's own 4 minutes (not half of the 6)
    assert (train_cfg.epochs, train_cfg.lr_steps) == (13, [9, 12]) and 119 < hook.seconds <= 120
    # a budget.json from before stages kept their end: a share of what is left, as then
    (tmp_path / "budget.json").write_text('{"minutes": 10, "spent_seconds": 240, '
                                          '"stages": {"multibox": {"epochs": 5, "lr_steps": [4]}}}')
    old = Budget(10, started=time.time(), out_dir=str(tmp_path), resume=True)
    assert 179 < old.stage_hook("multibox", 0.5, TrainConfig()).seconds <= 180
    fresh = Budget(10, started=time.time(), out_dir=str(tmp_path))   # no --resume: a new budget
    assert fresh.left() > 599 and fresh.stages == {}


def test_ensemble_members_get_equal_minutes_of_a_budget(tmp_path):
    """Two members: each CLASSIFIER_SHARE / 2 of what the first found left (the second used
    to get a share of what the first left over: 8 of 17 minutes on raccoon)."""
    from core.config import TrainConfig
    from pipeline.train import CLASSIFIER_SHARE, Budget, member_share
    budget = Budget(100, started=0.0, out_dir=str(tmp_path))
    budget.spent = lambda: 30 * 60.0                                  # MultiBox and proposals took 30 minutes
    first = budget.stage_hook("member-0", member_share(0, 2), TrainConfig()).seconds
    budget.spent = lambda: 30 * 60.0 + first                          # the first used all of its minutes
    second = budget.stage_hook("member-1", member_share(1, 2), TrainConfig()).seconds
    assert abs(first - second) < 1e-6 and abs(first - 70 * 60 * CLASSIFIER_SHARE / 2) < 1e-6
    assert member_share(0, 1) == CLASSIFIER_SHARE                     # one model: the classifier's share


def test_a_class_without_objects_is_named(tmp_path):
    from synthetic import make_shapes
    data = make_shapes(tmp_path / "data", 4)
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--dataset", str(data), "--out", str(tmp_path / "o"),
                        "--no-progress", "--set", "data.classes=[box, disc, star]"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "star" in r.stderr and "Traceback" not in r.stderr


def test_tensorboard_writes_events_or_names_the_missing_extra(tmp_path, shapes_data):
    import importlib.util

    from synthetic import tiny_config
    cfg = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(cfg), "--out", str(tmp_path / "o"),
                        "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--workers", "1", "--max-steps", "1",
                        "--tensorboard"], capture_output=True, text=True, timeout=600)
    if importlib.util.find_spec("tensorboard") is None:
        assert r.returncode == 2 and "pip install -e '.[tensorboard]'" in r.stderr and "Traceback" not in r.stderr
    else:
        assert r.returncode == 0, r.stderr[-2000:]
        assert list((tmp_path / "o" / "tensorboard").glob("events.out.tfevents.*"))


def test_multibox_input_follows_the_smallest_class_not_the_commonest():
    import numpy as np

    from pipeline.autoconfig import multibox_input_size, smallest_class_side
    # BCCD-like: 10 small objects (class 0, 0.06 of the image) among 90 larger ones (class 1, 0.16)
    rel = np.array([0.06] * 10 + [0.16] * 90)
    labels = np.array([0] * 10 + [1] * 90)
    assert smallest_class_side(rel, labels, 3) == 0.06         # class 2 has no object: ignored
    assert multibox_input_size(0.06) == 608                    # 36 / 0.06 = 600 -> the next multiple of 32
    assert multibox_input_size(0.5) == 320 and multibox_input_size(0.01) == 640   # clipped to 320-640


def test_sparse_images_get_box_voting_and_augmentation_crowds_neither():
    import numpy as np

    from core.config import load_config
    from core.datasets import Dataset, ImageRecord
    from pipeline.autoconfig import DEFAULT_RECIPE, derive_config

    def dataset(objects_per_image):
        boxes = np.array([[10 + 100 * (k % 6), 10 + 200 * (k // 6), 90 + 100 * (k % 6), 90 + 200 * (k // 6)]
                          for k in range(objects_per_image)], float)        # 80 x 80: not small
        records = [ImageRecord(f"im{i}", f"im{i}.jpg", 640, 480, boxes, np.zeros(len(boxes), np.int64),
                               np.zeros(len(boxes), bool), np.zeros(len(boxes), bool)) for i in range(5)]
        return Dataset("root", "train", "voc", ["cell"], records)

    sparse, crowded = load_config(os.path.join(ROOT, DEFAULT_RECIPE)), load_config(os.path.join(ROOT, DEFAULT_RECIPE))
    notes = derive_config(sparse, dataset(1))
    derive_config(crowded, dataset(12))
    assert sparse.test.box_vote == 0.5 and crowded.test.box_vote == 0.0
    assert (sparse.train.color_jitter, sparse.train.random_crop) == (0.3, 0.6)
    assert (crowded.train.color_jitter, crowded.train.random_crop) == (0.0, 0.0)
    assert "objects per image: median 1 -> box_vote 0.5, color_jitter 0.3, random_crop 0.6" in notes[-1]
    # 640 x 480 images train at their own 480 (above the default's 416), the aspect ratio kept
    assert sparse.model.image_scale == crowded.model.image_scale == 480 and crowded.model.max_image_side == 640
    assert sparse.train.scale_jitter == [416, 448, 480, 512, 544] and crowded.train.scale_jitter == [448, 480, 512]
    assert not sparse.model.fine_features and not crowded.model.fine_features


def test_image_scale_is_the_median_side_within_the_default_and_600_never_upsampling_much():
    import numpy as np

    from core.config import load_config
    from core.datasets import Dataset, ImageRecord
    from pipeline.autoconfig import DEFAULT_RECIPE, derive_config

    def scale(width, height, side=None):
        side = side or 0.4 * max(width, height)                  # objects large enough not to matter
        box = np.repeat([[1, 1, 1 + side, 1 + side]], 4, axis=0)   # 4 per image: crowded, scales +-1/15
        records = [ImageRecord(f"im{i}", f"im{i}.jpg", width, height, box, np.zeros(4, np.int64),
                               np.zeros(4, bool), np.zeros(4, bool)) for i in range(3)]
        cfg = load_config(os.path.join(ROOT, DEFAULT_RECIPE))
        derive_config(cfg, Dataset("root", "train", "voc", ["x"], records))
        return cfg.model.image_scale, cfg.model.max_image_side, cfg.model.fine_features, cfg.train.scale_jitter

    assert scale(500, 360)[:3] == (416, 608, False)       # raccoon: up to the default's 416
    assert scale(1600, 1200)[:3] == (600, 800, False)     # large photos: at most 600
    assert scale(96, 80)[:2] == (128, 160)                # tiny images: at most 1.5x, at least 128
    # small objects (BCCD's platelets: 38 px on a 640 x 480 image) enlarge the image until they
    # span 48 px, and are cut from the stride-8 map while under 64: configs/bccd_600.yaml's recipe
    assert scale(640, 480, side=38.4) == (600, 800, True, [560, 600, 640])
    assert scale(640, 480, side=39.7) == (600, 800, True, [560, 600, 640])   # 580 px wanted: up, not 576
    assert scale(640, 480, side=60)[:3] == (480, 640, True)       # 60 px: scale kept, stride 8
    assert scale(640, 480, side=70)[:3] == (480, 640, False)
    assert scale(500, 360, side=10)[:2] == (544, 768)               # at most 1.5x the median image


def test_nms_threshold_follows_how_much_objects_of_a_class_overlap():
    import numpy as np

    from core.datasets import Dataset, ImageRecord
    from pipeline.autoconfig import nms_threshold, same_class_overlap
    # two pairs: same class overlapping at IoU 1/3 (20x30 boxes shifted by 15), and a
    # different-class pair at IoU 1 which NMS (per class) never compares
    boxes = np.array([[0, 0, 30, 20], [15, 0, 45, 20], [100, 100, 130, 120], [100, 100, 130, 120]], float)
    labels = np.array([0, 0, 0, 1])
    record = ImageRecord("a", "a.jpg", 200, 200, boxes, labels, np.zeros(4, bool), np.zeros(4, bool))
    overlap = same_class_overlap(Dataset("root", "train", "voc", ["x", "y"], [record]))
    np.testing.assert_allclose(overlap, [1 / 3, 1 / 3, 0, 0])
    assert nms_threshold(overlap) == 0.4                 # half the objects overlap > 0.3, none > 0.4
    assert nms_threshold(np.zeros(100)) == 0.3 and nms_threshold(np.full(10, 0.9)) == 0.5
    assert nms_threshold(np.r_[np.full(2, 0.35), np.zeros(98)]) == 0.3   # 2% may be lost


def test_leave_one_out_variants_keep_their_overrides_apart(tmp_path, monkeypatch):
    from conftest import bench_script
    from core.errors import UserError
    loo = bench_script("leave_one_out")
    assert loo.results_dir(None) == "leave_one_out"
    assert loo.results_dir("bg0") == os.path.join("leave_one_out", "bg0")
    with pytest.raises(UserError, match="go together"):
        loo.check_variant(None, ("train.bg_iou_low=0",), str(tmp_path))
    with pytest.raises(UserError, match="plain name"):
        loo.check_variant("../x", ("train.bg_iou_low=0",), str(tmp_path))
    loo.check_variant("bg0", ("train.bg_iou_low=0",), str(tmp_path))      # the first call records them
    loo.check_variant("bg0", ("train.bg_iou_low=0",), str(tmp_path))      # the same again: fine
    with pytest.raises(UserError, match="was started with --set train.bg_iou_low=0;"):
        loo.check_variant("bg0", ("train.bg_iou_low=0.05",), str(tmp_path))
    # the training command carries the seed and the overrides in one --set, and the ledger records it
    commands = []
    monkeypatch.setattr(loo, "run_logged", lambda cmd, log: commands.append(cmd))
    loo.train("bccd_s1", "data", 100, str(tmp_path / "run"), str(tmp_path), "cache", 1, ("train.bg_iou_low=0",))
    assert commands[0][-3:] == ["--set", "train.seed=1", "train.bg_iou_low=0"]
    with open(tmp_path / "bccd_s1_train.json") as f:
        assert json.load(f)["invocations"][0]["command"].endswith("--set train.seed=1 train.bg_iou_low=0")


def test_leave_one_out_leaves_a_seed_still_training_out_of_the_table(tmp_path, monkeypatch, capsys):
    """Two seeds started side by side: the one that finishes first must not try to score the
    other (no model.pt yet), and its own seed trains before any scoring."""
    from conftest import bench_script
    loo = bench_script("leave_one_out")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loo, "ROOT", str(tmp_path))
    monkeypatch.setattr(loo, "RUNS", {"bccd": ("data", 100, 0.88)})
    events = []

    def fake_train(cmd, log):          # "trains": writes the run's model.pt
        out = cmd[cmd.index("--out") + 1]
        os.makedirs(out, exist_ok=True)
        open(os.path.join(out, "model.pt"), "w").close()
        with open(os.path.join(out, "manifest.json"), "w") as f:
            f.write('{"code_commit": "abc1234"}')
        events.append(("train", out))

    def fake_score(dataset, split, model, path, out, *args):
        events.append(("score", model))
        return {"mAP": 0.5}
    monkeypatch.setattr(loo, "run_logged", fake_train)
    monkeypatch.setattr(loo, "score_model", fake_score)
    results = tmp_path / "bench" / "results" / "leave_one_out" / "v"
    results.mkdir(parents=True)
    (results / "bccd_s1_train.json").write_text('{"invocations": []}')     # seed 1: started elsewhere
    monkeypatch.setattr(sys, "argv", ["leave_one_out.py", "--only", "bccd", "--seeds", "2", "--variant", "v",
                                      "--set", "train.easy_bg_fraction=0.5"])
    loo.main()
    s2 = os.path.join("runs", "leave_one_out", "v", "bccd_s2")
    assert events == [("train", s2), ("score", s2), ("score", s2)]         # trained first; seed 1 not scored
    assert "bccd_s1: still training" in capsys.readouterr().out
    table = (tmp_path / "bench" / "results" / "leave_one_out" / "v.md").read_text()
    assert "| bccd | 2 | abc1234 | 100 |" in table and "| bccd | 1 |" not in table    # with the commit it trained at


def test_leave_one_out_rebuilds_its_table_when_the_runs_are_gone(tmp_path, monkeypatch, capsys):
    """runs/ does not outlive a machine: a scored run whose directory is gone keeps its row,
    from <run>_row.json and its saved scores; one without them is left out, said so."""
    import shutil

    from conftest import bench_script
    loo = bench_script("leave_one_out")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loo, "ROOT", str(tmp_path))
    monkeypatch.setattr(loo, "RUNS", {"bccd": ("data", 100, 0.88)})

    def fake_train(cmd, log):
        out = cmd[cmd.index("--out") + 1]
        os.makedirs(out, exist_ok=True)
        open(os.path.join(out, "model.pt"), "w").close()
        with open(os.path.join(out, "manifest.json"), "w") as f:
            f.write('{"code_commit": "abc1234"}')
        with open(os.path.join(out, "budget.json"), "w") as f:
            f.write('{"spent_seconds": 5700}')

    def fake_score(dataset, split, model, path, out, *args):
        result = {"mAP": 0.61 if path == "paper" else 0.6}
        with open(out, "w") as f:
            json.dump(result, f)
        return result
    monkeypatch.setattr(loo, "run_logged", fake_train)
    monkeypatch.setattr(loo, "score_model", fake_score)
    argv = ["leave_one_out.py", "--only", "bccd", "--seeds", "1", "--variant", "v", "--set", "train.seed=1"]
    monkeypatch.setattr(sys, "argv", argv)
    loo.main()
    results = tmp_path / "bench" / "results" / "leave_one_out" / "v"
    assert json.loads((results / "bccd_s1_row.json").read_text()) == {"wall_minutes": 95.0, "code_commit": "abc1234"}
    shutil.rmtree(tmp_path / "runs")                                         # a new machine
    monkeypatch.setattr(loo, "run_logged", lambda cmd, log: None)           # seed 3 starts, does not finish
    monkeypatch.setattr(sys, "argv", ["leave_one_out.py", "--only", "bccd", "--seeds", "3", "--variant", "v",
                                      "--set", "train.seed=1"])
    loo.main()
    out = capsys.readouterr().out
    assert "bccd_s1: runs/leave_one_out/v/bccd_s1 is gone; its row comes from" in out
    assert "bccd_s3: still training" in out
    table = (tmp_path / "bench" / "results" / "leave_one_out" / "v.md").read_text()
    assert "| bccd | 1 | abc1234 | 100 | 95.0 | yes | **0.610** | 0.600 |" in table and "| bccd | 3 |" not in table
