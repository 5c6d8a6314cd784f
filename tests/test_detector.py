"""The detector end to end on tiny generated data: train, resume, detect, evaluate."""
import json

import numpy as np
import pytest
import torch

from conftest import train_tiny
from detector.sampling import label_regions, sample_regions


def test_foreground_background_labels_and_sampling():
    gt = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], float)
    props = np.array([[0, 0, 10, 12],      # IoU 0.83 with gt0 -> class 1 (label 0 + 1)
                      [20, 20, 40, 50],    # IoU 0.67 with gt1 -> class 2
                      [0, 0, 10, 30],      # IoU 0.33 -> background
                      [5, 5, 25, 25],      # IoU 0.06 / 0.08 -> unused (< 0.1)
                      [60, 60, 70, 70]], float)
    r = label_regions(props, gt, np.array([0, 1]), fg_iou=0.5, bg_low=0.1)
    assert r.labels.tolist() == [1, 2, 1, 2, 0, -1, -1]          # the two gt boxes come first
    rng = np.random.default_rng(0)
    pick = sample_regions(r.labels, num=4, fg_fraction=0.25, rng=rng)
    assert (r.labels[pick] > 0).sum() == 1 and (r.labels[pick] == 0).sum() == 1   # only one bg exists
    pick = sample_regions(np.array([1] * 10 + [0] * 30), num=8, fg_fraction=0.25, rng=rng)
    assert (np.array([1] * 10 + [0] * 30)[pick] > 0).sum() == 2 and len(pick) == 8


def test_easy_background_is_kept_apart_and_drawn_as_its_share():
    gt = np.array([[0, 0, 10, 10]], float)
    props = np.array([[0, 0, 10, 30]] * 20 + [[60, 60, 70, 70]] * 20, float)   # IoU 0.33 (hard) / 0 (easy)
    r = label_regions(props, gt, np.array([0]), fg_iou=0.5, bg_low=0.1, keep_easy=True)
    from detector.sampling import EASY_BG
    assert r.labels.tolist() == [1] + [0] * 20 + [EASY_BG] * 20
    pick = sample_regions(r.labels, num=9, fg_fraction=0.12, rng=np.random.default_rng(0), easy_fraction=0.25)
    assert [(r.labels[pick] == k).sum() for k in (1, 0, EASY_BG)] == [1, 6, 2]
    pick = sample_regions(r.labels, num=9, fg_fraction=0.12, rng=np.random.default_rng(0))
    assert (r.labels[pick] == EASY_BG).sum() == 0                                  # off: never drawn


def test_class_balanced_sampling_gives_a_rare_class_its_share():
    """2 regions of a rare class beside 40 of a common one, 8 foreground per minibatch:
    plain sampling draws the rare class 8 * 2/42 = 0.38 times on average, balanced
    sampling about 2 (both of them, most of the time)."""
    labels = np.array([1] * 2 + [2] * 40 + [0] * 50)
    rng = np.random.default_rng(0)
    plain = [(labels[sample_regions(labels, 16, 0.5, rng)] == 1).sum() for _ in range(300)]
    balanced = [(labels[sample_regions(labels, 16, 0.5, rng, class_balanced=True)] == 1).sum() for _ in range(300)]
    assert 0.25 < np.mean(plain) < 0.55
    assert np.mean(balanced) > 1.8
    pick = sample_regions(labels, 16, 0.5, rng, class_balanced=True)
    assert len(pick) == 16 and len(set(pick.tolist())) == 16 and (labels[pick] > 0).sum() == 8


def test_polyak_average_follows_a_short_run():
    """Weights that move from 0 to 1 over 200 steps: a fixed 0.999 decay would leave the
    average near 0.1 (mostly the initialization); the ramped decay keeps it near the end."""
    from torch.optim.swa_utils import AveragedModel

    from networks.engine import polyak_average_fn
    net = torch.nn.Linear(1, 1, bias=False)
    averaged = {d: AveragedModel(net, multi_avg_fn=polyak_average_fn(d)) for d in (0.999, 0.0)}
    for step in range(1, 201):
        with torch.no_grad():
            net.weight.fill_(step / 200)
        for avg in averaged.values():
            avg.update_parameters(net)
    ramped = averaged[0.999].module.weight.item()
    assert 0.85 < ramped < 0.99                         # an average of recent weights
    assert averaged[0.0].module.weight.item() == 1.0    # decay 0: the last weights


def test_training_writes_a_loadable_model_dir(tiny_model):
    from ensemble import load_predictor
    model = tiny_model["model"]
    for f in ("config.yaml", "model.pt", "heads.npz", "manifest.json", "checkpoint.pt", "multibox/multibox.pt"):
        assert (model / f).exists(), f
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["classes"] == ["box", "disc"] and len(manifest["history"]) == 2
    assert manifest["history"][1]["loss"] < manifest["history"][0]["loss"]
    predictor = load_predictor(str(model))
    assert predictor.classes == ["box", "disc"]
    with np.load(model / "heads.npz") as heads:
        assert heads["bbox_W"].shape == (2, predictor.members[0].net.feature_dim, 4)



def test_resume_continues_and_seed_reproduces(tmp_path, shapes_data):
    from synthetic import tiny_config
    cfg1 = tiny_config(tmp_path / "c1.yaml", shapes_data, method="ss", epochs=1)
    r = train_tiny(cfg1, tmp_path / "a", tmp_path / "cache")
    assert r.returncode == 0, r.stderr[-2000:]
    cfg2 = tiny_config(tmp_path / "c2.yaml", shapes_data, method="ss", epochs=2)
    r = train_tiny(cfg2, tmp_path / "a", tmp_path / "cache", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stderr and "epoch 1/2" not in r.stderr and "epoch 2/2" in r.stderr
    history = json.loads((tmp_path / "a" / "manifest.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    # the same seed and recipe give the same weights as the uninterrupted run
    r = train_tiny(cfg2, tmp_path / "b", tmp_path / "cache")
    assert r.returncode == 0, r.stderr[-2000:]
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # resuming a finished run leaves the model as it is
    before = (tmp_path / "a" / "model.pt").stat().st_mtime_ns
    r = train_tiny(cfg2, tmp_path / "a", tmp_path / "cache", "--resume")
    assert r.returncode == 0 and "already trained" in r.stderr
    assert (tmp_path / "a" / "model.pt").stat().st_mtime_ns == before


def test_warp_mode_trains_and_detects(tmp_path, shapes_data, run_script):
    from synthetic import tiny_config
    cfg = tiny_config(tmp_path / "w.yaml", shapes_data, method="ss", mode="warp", epochs=1)
    r = train_tiny(cfg, tmp_path / "w", tmp_path / "cache", "--max-steps", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    out = run_script("detect.py", shapes_data / "JPEGImages" / "shape_000.jpg", "--model", tmp_path / "w",
                     "--cache-dir", tmp_path / "cache", "--out", tmp_path / "o", "--json", tmp_path / "d.json")
    assert out.returncode == 0, out.stderr
    dets = json.loads((tmp_path / "d.json").read_text())
    assert all(d["image"] == "shape_000" and len(d["box"]) == 4 for d in dets)


def make_bad_images(d):
    from PIL import Image
    d.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("L").save(d / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(d / "rgba.png")
    Image.fromarray(rgb).convert("P").save(d / "palette.png")
    Image.fromarray((rng.integers(0, 65535, (60, 80))).astype(np.uint16)).save(d / "sixteen.png")
    Image.fromarray(rgb[:1, :1]).save(d / "tiny.png")
    exif = Image.Exif()
    exif[0x0112] = 6                                         # rotate 90 degrees on display
    Image.fromarray(rgb).save(d / "rotated.jpg", exif=exif)
    Image.fromarray(rgb).save(d / "ok.jpg")
    (d / "truncated.jpg").write_bytes((d / "ok.jpg").read_bytes()[:200])
    (d / "notes.txt").write_text("not an image")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage" * 10)


def test_detect_handles_odd_and_bad_images(tmp_path, tiny_model, run_script):
    d = tmp_path / "imgs"
    make_bad_images(d)
    good = ["gray.png", "rgba.png", "palette.png", "sixteen.png", "tiny.png", "rotated.jpg", "ok.jpg"]
    bad = ["truncated.jpg", "notes.txt", "corrupt.jpg", "missing.jpg"]
    out = run_script("detect.py", *[d / n for n in good + bad], "--model", tiny_model["model"],
                     "--cache-dir", tiny_model["cache"], "--out", tmp_path / "out", "--json", tmp_path / "d.json")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    for name in bad:
        assert name in out.stderr
    assert f"{len(good)} input(s) processed" in out.stdout
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(good)
    from PIL import Image
    assert Image.open(tmp_path / "out" / "rotated.jpg").size == (60, 80)      # upright, as displayed
    assert isinstance(json.loads((tmp_path / "d.json").read_text()), list)


def test_detect_large_image(tmp_path, tiny_model, run_script):
    from PIL import Image
    Image.new("RGB", (8000, 6000), (120, 120, 120)).save(tmp_path / "big.jpg")
    out = run_script("detect.py", tmp_path / "big.jpg", "--model", tiny_model["model"], "--cache-dir",
                     tiny_model["cache"], "--no-images", "--proposals", "multibox")
    assert out.returncode == 0, out.stderr


def test_detect_then_evaluate_round_trip(tmp_path, tiny_model, run_script):
    data = tiny_model["data"]
    images = sorted((data / "JPEGImages").iterdir())
    out = run_script("detect.py", *images, "--model", tiny_model["model"], "--cache-dir", tiny_model["cache"],
                     "--no-images", "--json", tmp_path / "d.json", "--quiet")
    assert out.returncode == 0, out.stderr
    scored = run_script("evaluate.py", "--dataset", data, "--split", "test", "--detections", tmp_path / "d.json",
                        "--metric", "voc", "--json", tmp_path / "a.json")
    assert scored.returncode == 0, scored.stderr
    direct = run_script("evaluate.py", "--dataset", data, "--split", "test", "--model", tiny_model["model"],
                        "--cache-dir", tiny_model["cache"], "--metric", "voc", "--json", tmp_path / "b.json")
    assert direct.returncode == 0, direct.stderr
    a, b = json.loads((tmp_path / "a.json").read_text()), json.loads((tmp_path / "b.json").read_text())
    assert a["mAP"] == pytest.approx(b["mAP"], abs=1e-6) and a["num_detections"] == b["num_detections"] > 0
    assert (tmp_path / "b-detections.json").exists()


def test_detect_without_model_is_a_clear_error(tmp_path, run_script):
    out = run_script("detect.py", tmp_path / "x.jpg", "--model", tmp_path / "nope")
    assert out.returncode == 2 and "no such model directory" in out.stderr
    (tmp_path / "m").mkdir()
    out = run_script("detect.py", tmp_path / "x.jpg", "--model", tmp_path / "m")
    assert out.returncode == 2 and "not a model directory" in out.stderr


def test_bad_config_is_a_clear_error(tmp_path, run_script):
    (tmp_path / "c.yaml").write_text("model: {arch: resnet}\n")
    out = run_script("train.py", "--config", tmp_path / "c.yaml", "--out", tmp_path / "o")
    assert out.returncode == 2 and "model.arch = 'resnet'; choose from googlenet, torchvision" in out.stderr
    (tmp_path / "c.yaml").write_text("train: {epochs: 2, lerning_rate: 0.1}\n")
    out = run_script("train.py", "--config", tmp_path / "c.yaml", "--out", tmp_path / "o")
    assert out.returncode == 2 and "unknown key(s) ['lerning_rate'] in 'train'" in out.stderr
