"""Failure behaviour: nothing lost, nothing silently wrong (model directories, resume)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, train_tiny


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, shapes_data):
    """Two tiny models of one recipe, other seeds (same shapes, other weights)."""
    from synthetic import tiny_config
    work = tmp_path_factory.mktemp("faults")
    cfg = tiny_config(work / "c.yaml", shapes_data, method="ss", epochs=1)
    for name, seed in (("a", 0), ("b", 1)):
        r = train_tiny(cfg, work / name, work / "cache", "--seed", seed, "--max-steps", "2")
        assert r.returncode == 0, r.stderr[-2000:]
    return work, cfg


def test_a_swapped_model_pt_or_edited_classes_are_refused(two_runs, tmp_path):
    from core.errors import UserError
    from detector.model import DetectorModel
    work, _ = two_runs
    DetectorModel.load(str(work / "a"))                          # intact: loads
    swapped = tmp_path / "swapped"
    shutil.copytree(work / "a", swapped)
    shutil.copy(work / "b" / "model.pt", swapped / "model.pt")  # same shapes, another run
    with pytest.raises(UserError, match=r"swapped/model.pt: not the file this model directory was written with"):
        DetectorModel.load(str(swapped))
    edited = tmp_path / "edited"
    shutil.copytree(work / "a", edited)
    cfg = yaml.safe_load((edited / "config.yaml").read_text())
    cfg["data"]["classes"] = ["disc", "box"]
    (edited / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(UserError, match=r"edited/config.yaml: its classes or network settings"):
        DetectorModel.load(str(edited))


def test_resume_refuses_another_recipe_and_a_failed_retrain_keeps_the_old_model(two_runs, tmp_path):
    work, cfg = two_runs
    run = tmp_path / "a"
    shutil.copytree(work / "a", run)
    before = {f: (run / f).read_bytes() for f in ("config.yaml", "model.pt", "heads.npz", "manifest.json")}
    r = train_tiny(cfg, run, work / "cache", "--resume", "--set", "train.lr=0.05")
    assert r.returncode == 2 and "--resume with another recipe" in r.stderr and "train.lr (0.01 -> 0.05)" in r.stderr
    assert "Traceback" not in r.stderr
    r = train_tiny(cfg, run, work / "cache", "--set", "train.lr=1e12", "train.warmup_iters=0")   # diverges
    assert r.returncode == 2 and "diverged" in r.stderr and "Traceback" not in r.stderr
    assert {f: (run / f).read_bytes() for f in before} == before  # the previous model, untouched


def test_a_checkpoint_older_than_a_new_option_resumes_when_the_option_is_left_at_its_default():
    from core.config import Config
    from core.errors import UserError
    from detector.fine_tune import check_same_recipe, training_recipe
    current = training_recipe(Config())
    older = {k: v for k, v in current.items() if k != "model.roi_context"}     # written before the option existed
    check_same_recipe(older, current, "checkpoint.pt")
    current["model.roi_context"] = 1
    with pytest.raises(UserError, match=r"model.roi_context \(0 -> 1\)"):
        check_same_recipe(older, current, "checkpoint.pt")


def test_a_model_dir_written_before_a_new_network_option_keeps_its_fingerprint():
    import dataclasses
    import hashlib
    import json

    from core.config import Config
    from core.modeldir import LATER_MODEL_KEYS, accepted_signatures, weights_signature
    cfg = Config()
    cfg.data.classes = ["a", "b"]

    def signature(model):
        return hashlib.sha1(json.dumps({"classes": ["a", "b"], "model": model}, sort_keys=True).encode()).hexdigest()[:16]
    everything = dataclasses.asdict(cfg.model)
    before = signature({k: v for k, v in everything.items() if k not in LATER_MODEL_KEYS})
    assert weights_signature(cfg) == before              # what the older code wrote
    # what the code wrote while region_grid was new and not yet in LATER_MODEL_KEYS
    between = signature({k: v for k, v in everything.items() if k in ("region_grid",) or k not in LATER_MODEL_KEYS})
    assert between != before and {before, between} <= accepted_signatures(cfg)
    cfg.model.roi_context = 1
    assert weights_signature(cfg) != before              # the option in use is part of it
    assert before not in accepted_signatures(cfg) and between not in accepted_signatures(cfg)


def test_a_retrained_model_gets_a_fresh_manifest(two_runs, tmp_path):
    work, cfg = two_runs
    run = tmp_path / "a"
    shutil.copytree(work / "a", run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["test"] = {"mAP": 0.99}                              # what a bundling step adds
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "checkpoint.pt").unlink()
    r = train_tiny(cfg, run, work / "cache", "--seed", "3", "--max-steps", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    fresh = json.loads((run / "manifest.json").read_text())
    assert "test" not in fresh and fresh["seed"] == 3 and "fingerprint" in fresh


@pytest.mark.parametrize("name,damage", [
    ("model.pt", b"garbage, not a torch file"), ("model.pt", None), ("heads.npz", None),
    ("heads.npz", "wrong_shape"), ("manifest.json", b"{not json"), ("checkpoint.pt", b"\x80\x04garbage")])
def test_every_model_file_damaged_is_one_line_naming_it(two_runs, tmp_path, run_script, name, damage):
    import numpy as np
    work, cfg = two_runs
    run = tmp_path / "m"
    shutil.copytree(work / "a", run)
    target = run / name
    if damage is None:
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])               # truncated
    elif damage == "wrong_shape":
        np.savez(target, bbox_W=np.zeros((2, 3, 4), np.float32), bbox_b=np.zeros((2, 4), np.float32))
    else:
        target.write_bytes(damage)
    if name == "checkpoint.pt":
        r = train_tiny(cfg, run, work / "cache", "--resume")
    else:
        r = run_script("detect.py", ROOT / "examples" / "bccd_mini" / "JPEGImages" / "BloodImage_00007.jpg",
                       "--model", run, "--no-images")
    assert r.returncode == 2, (r.returncode, r.stderr[-1500:])
    assert "Traceback" not in r.stderr and f"{name}" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_split_files_are_checked(tmp_path):
    from conftest import make_voc
    from core.datasets import load_dataset
    from core.errors import DatasetError
    root = make_voc(tmp_path / "d", {"a": [("cat", [1, 1, 20, 20])], "b": [("cat", [2, 2, 30, 30])]})
    (root / "ImageSets" / "Main" / "test.txt").write_text("a\nb\na\n")
    with pytest.raises(DatasetError, match=r"test.txt: image id 'a' is listed twice"):
        load_dataset(str(root), "test")
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"test.txt: the split lists no images"):
        load_dataset(str(root), "test")
    with pytest.raises(DatasetError, match=r"vall.txt: no such split \(splits here: test\)"):
        load_dataset(str(root), "vall")


def test_an_annotation_size_that_disagrees_with_the_image_is_warned_and_the_image_wins(tmp_path):
    from conftest import make_voc
    from core.datasets import load_dataset
    root = make_voc(tmp_path / "d", {"a": [("cat", [10, 10, 90, 40])]}, size=(64, 48))
    xml = root / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<width>64</width>", "<width>100</width>"))
    ds = load_dataset(str(root), "test")
    rec = ds.images[0]
    assert (rec.width, rec.height) == (64, 48)
    assert rec.boxes.tolist() == [[10, 10, 64, 40]]                 # clipped to the real image
    assert any("<size> says 100x48 but a.jpg is 64x48" in w for w in ds.warnings)


def test_detections_with_inverted_boxes_or_odd_scores(tmp_path, run_script):
    from conftest import make_voc, write_dets
    root = make_voc(tmp_path / "d", {"a": [("cat", [1, 1, 20, 20])]})
    good = ("a", "cat", 0.9, [1, 1, 20, 20])
    inverted = ("a", "cat", 0.8, [20, 1, 1, 20])

    def score(dets, *extra):
        return run_script("evaluate.py", "--dataset", root, "--split", "test", "--detections",
                          write_dets(tmp_path / "d.json", dets), *extra)
    r = score([good, inverted, inverted])
    assert r.returncode == 2 and "2 detection(s) have x2 < x1 or y2 < y1" in r.stderr
    r = score([good, inverted], "--ignore-invalid")
    assert r.returncode == 0 and "dropped 1 detection(s)" in r.stderr
    for bad_score in ("0.9", True, [0.9]):
        r = score([("a", "cat", bad_score, [1, 1, 20, 20])])
        assert r.returncode == 2 and "non-numeric" in r.stderr and "Traceback" not in r.stderr


def test_a_jpeg_cut_short_is_decoded_with_a_warning(tmp_path, caplog):
    import numpy as np
    from PIL import Image

    from core.images import ImageReadError, read_image
    rgb = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "short.jpg").write_bytes(data[:-20])
    with caplog.at_level("WARNING"):
        image = read_image(str(tmp_path / "short.jpg"))
    assert image.shape == (60, 80, 3) and "short.jpg: image file is truncated" in caplog.text
    (tmp_path / "stub.jpg").write_bytes(data[:200])               # nothing to decode: still an error
    with pytest.raises(ImageReadError, match="stub.jpg"):
        read_image(str(tmp_path / "stub.jpg"))


@pytest.mark.parametrize("setting,message", [
    ("train.lr=-0.1", "train.lr = -0.1; it must be > 0"),
    ("train.images_per_batch=0", "train.images_per_batch = 0; it must be >= 1"),
    ("train.epochs=0", "train.epochs = 0; it must be >= 1"),
    ("train.lr_steps=[2, x]", "train.lr_steps[1] must be int"),
    ("data.classes=[box, box]", "data.classes names 'box' more than once"),
    ("train.lr.x=1", "train.lr is a value, not a section"),
])
def test_recipe_values_are_validated(tmp_path, shapes_data, setting, message):
    from synthetic import tiny_config
    cfg = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)
    r = train_tiny(cfg, tmp_path / "o", tmp_path / "cache", "--set", setting)
    assert r.returncode == 2 and f"--set: {message}" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "model.pt").exists()


def test_a_bad_value_in_the_recipe_file_names_the_file_not_set(tmp_path):
    from core.config import load_config
    from core.errors import UserError
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("base: %s\ntrain: {lr: -1}\n" % (ROOT / "configs" / "default.yaml"))
    with pytest.raises(UserError, match=r"^.*bad\.yaml: train\.lr = -1\.0; it must be > 0$"):
        load_config(str(recipe), {"train.epochs": 3})


def test_sigkill_mid_training_then_resume_gives_the_uninterrupted_model(tmp_path, shapes_data):
    import os
    import signal
    import time

    import torch

    from synthetic import tiny_config
    cfg = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=3)
    assert train_tiny(cfg, tmp_path / "whole", tmp_path / "cache").returncode == 0
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(cfg), "--out", str(tmp_path / "cut"),
           "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (tmp_path / "cut" / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)                  # during epoch 2 (or its checkpoint write)
    proc.wait()
    (tmp_path / "cut" / ".checkpoint.pt.leftover.tmp").write_bytes(b"half a checkpoint")   # as a kill mid-write leaves
    assert not (tmp_path / "cut" / "model.pt").exists()  # no half model where none was
    r = train_tiny(cfg, tmp_path / "cut", tmp_path / "cache", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    from networks.engine import load_checkpoint
    assert load_checkpoint(str(tmp_path / "cut" / "checkpoint.pt"))["epoch"] == 3   # whole, and finished
    assert not list((tmp_path / "cut").glob(".*.tmp"))                            # the leftover is gone


def test_a_full_disk_is_one_line(tmp_path, tiny_model, run_script):
    import shutil as sh
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()[:80]})")
    try:
        images = sorted((tiny_model["data"] / "JPEGImages").iterdir())
        big = tmp_path / "big.png"
        from PIL import Image
        Image.open(images[0]).resize((400, 400)).save(big)     # a PNG copy too large for the disk
        r = run_script("detect.py", big, big, "--model", tiny_model["model"], "--out", mnt)
        assert r.returncode == 2 and "no space left on the device" in r.stderr, r.stderr[-1000:]
        assert "Traceback" not in r.stderr
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        sh.rmtree(mnt, ignore_errors=True)


def test_resume_keeps_a_multibox_copied_in_without_its_checkpoint(tmp_path, tiny_model):
    """The ablation rows copy the bundled MultiBox in: --resume must use it, not retrain it."""
    run = tmp_path / "run"
    (run / "multibox").mkdir(parents=True)
    for name in ("multibox.pt", "multibox.json"):
        shutil.copy(tiny_model["model"] / "multibox" / name, run / "multibox" / name)
    before = (run / "multibox" / "multibox.pt").read_bytes()
    r = train_tiny(tiny_model["config"], run, tiny_model["cache"], "--resume", "--max-steps", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "MultiBox already trained" in r.stderr and "multibox epoch" not in r.stderr
    assert (run / "multibox" / "multibox.pt").read_bytes() == before and (run / "model.pt").exists()


def test_a_second_training_into_a_busy_directory_is_refused(tmp_path, shapes_data):
    """Two trainings into one --out would overwrite each other's checkpoints."""
    from core.fileio import lock_directory
    from synthetic import tiny_config
    cfg = tiny_config(tmp_path / "c.yaml", shapes_data, method="ss", epochs=1)
    out = tmp_path / "run"
    out.mkdir()
    held = lock_directory(str(out))                  # as a running train.py holds it
    r = train_tiny(cfg, out, tmp_path / "cache", "--max-steps", "1")
    assert r.returncode == 2 and f"another train.py (pid {os.getpid()}) is writing into it" in r.stderr
    assert "Traceback" not in r.stderr and not (out / "model.pt").exists()
    held.close()                                     # finished: the directory is free again
    r = train_tiny(cfg, out, tmp_path / "cache", "--max-steps", "1")
    assert r.returncode == 0, r.stderr[-2000:]


def test_resume_completes_a_run_that_died_before_writing_its_config(two_runs, tmp_path):
    """Weights and heads written, config.yaml (always last) not: --resume finishes the directory."""
    work, cfg = two_runs
    run = tmp_path / "a"
    shutil.copytree(work / "a", run)
    weights = (run / "model.pt").read_bytes()
    (run / "config.yaml").unlink()
    (run / "manifest.json").unlink()
    r = train_tiny(cfg, run, work / "cache", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (run / "config.yaml").exists() and (run / "manifest.json").exists()
    assert (run / "model.pt").read_bytes() == weights                  # the same trained weights


@pytest.mark.parametrize("name", ["bccd", "bccd_warp", "raccoon"])
def test_every_bundled_model_still_matches_its_fingerprint(name):
    # a network option added to ModelConfig must not orphan the bundled weights: it goes into
    # LATER_MODEL_KEYS, or every models/ directory stops loading (as region_grid once did)
    from pathlib import Path

    from core.config import load_config
    from core.modeldir import check_fingerprint
    root = Path(__file__).resolve().parent.parent / "models" / name
    members = sorted(p.parent for p in root.glob("**/model.pt"))
    if not members:
        pytest.skip(f"no bundled models/{name} in this checkout")
    fingerprinted = [m for m in members if json.loads((m / "manifest.json").read_text()).get("fingerprint")]
    if name == "bccd":
        assert fingerprinted == members          # the default bundle is checked for real (bccd_warp predates them)
    for member in members:
        check_fingerprint(str(member), load_config(str(member / "config.yaml")))


def test_a_dangling_multibox_link_in_the_run_directory_is_one_line_naming_it(tmp_path, shapes_data):
    """`cp -r` of a bundled member copies its multibox link, not the MultiBox it points to."""
    from synthetic import tiny_config
    cfg = tiny_config(tmp_path / "c.yaml", shapes_data, method="combined", epochs=1)
    run = tmp_path / "run"
    run.mkdir()
    (run / "multibox").symlink_to("../multibox")
    r = train_tiny(cfg, run, tmp_path / "cache")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"{run / 'multibox'} is a link to ../multibox, which does not exist" in r.stderr
    assert sorted(p.name for p in run.iterdir() if p.name != ".lock") == ["multibox"]     # nothing written


def _fit_line(out_dir, epochs, lr_steps, state_files=()):
    """A one-weight regression trained by the project's Trainer (noisy targets, Polyak
    averaging, a hook with a state file): its final weights and averaged weights."""
    import torch

    from networks.engine import Trainer, seed_everything
    seed_everything(0)
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)

    class Hook:
        def __init__(self):
            self.state_files = list(state_files)

        def __call__(self, trainer, record):      # a hook's own file, rewritten every epoch
            for path in self.state_files:
                with open(path, "w") as f:
                    f.write(str(record["epoch"]))

    trainer = Trainer(net, opt, out_dir=str(out_dir), epochs=epochs, lr=0.1, lr_steps=lr_steps, ema_decay=0.9,
                      progress=False, hooks=[Hook()])
    trainer.resume()

    def batches(epoch):
        x = torch.randn(4, 8, 1)                   # the torch stream: saved and restored with the checkpoint
        return list(zip(x, 3 * x + 1 + 0.1 * torch.randn(4, 8, 1)))

    def step(model, batch):
        x, y = batch
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return {"loss": loss.item(), "count": 1}

    trainer.fit(batches, step)
    return [p.detach().clone() for p in list(net.parameters()) + list(trainer.averaged.parameters())]


def test_a_longer_schedule_continues_from_the_snapshot_before_the_first_lr_step(tmp_path):
    """A short run (LR step at epoch 3 of 5) keeps epoch 3 in OUT/epoch3; a copy of that
    folder resumed with a longer schedule (step at 6 of 8) ends with exactly the weights of
    that longer schedule trained from scratch (how a passed screen continues as a member)."""
    import torch
    short = tmp_path / "short"
    short.mkdir()
    _fit_line(short, 5, [3, 4], state_files=[str(short / "best.txt")])
    snapshot = short / "epoch3"
    assert sorted(p.name for p in snapshot.iterdir()) == ["best.txt", "checkpoint.pt"]
    assert (snapshot / "best.txt").read_text() == "3" and (short / "best.txt").read_text() == "5"
    from networks.engine import load_checkpoint
    assert load_checkpoint(str(snapshot / "checkpoint.pt"))["epoch"] == 3

    continued = tmp_path / "continued"
    shutil.copytree(snapshot, continued)
    resumed = _fit_line(continued, 8, [6, 7])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    fresh = _fit_line(scratch, 8, [6, 7])
    assert all(torch.equal(a, b) for a, b in zip(resumed, fresh))
    assert not all(torch.equal(a, b) for a, b in zip(_fit_line(tmp_path / "other", 8, [5, 7]), fresh))
    assert (scratch / "epoch6").is_dir() and not (continued / "epoch3").exists()
