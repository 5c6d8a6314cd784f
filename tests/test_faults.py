"""Failure behaviour: nothing lost, nothing silently wrong (model directories, resume)."""
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT


def _train(cfg, out, cache, *extra):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(cfg), "--out", str(out),
                           "--cache-dir", str(cache), "--no-progress", "--workers", "1", *map(str, extra)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, shapes_data):
    """Two tiny models of one recipe, other seeds (same shapes, other weights)."""
    from synthetic import tiny_config
    work = tmp_path_factory.mktemp("faults")
    cfg = tiny_config(work / "c.yaml", shapes_data, method="ss", epochs=1)
    for name, seed in (("a", 0), ("b", 1)):
        r = _train(cfg, work / name, work / "cache", "--seed", seed, "--max-steps", "2")
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
    r = _train(cfg, run, work / "cache", "--resume", "--set", "train.lr=0.05")
    assert r.returncode == 2 and "--resume with another recipe" in r.stderr and "train.lr (0.01 -> 0.05)" in r.stderr
    assert "Traceback" not in r.stderr
    r = _train(cfg, run, work / "cache", "--set", "train.lr=1e12", "train.warmup_iters=0")   # diverges
    assert r.returncode == 2 and "diverged" in r.stderr and "Traceback" not in r.stderr
    assert {f: (run / f).read_bytes() for f in before} == before  # the previous model, untouched


def test_a_retrained_model_gets_a_fresh_manifest(two_runs, tmp_path):
    work, cfg = two_runs
    run = tmp_path / "a"
    shutil.copytree(work / "a", run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["test"] = {"mAP": 0.99}                              # what a bundling step adds
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "checkpoint.pt").unlink()
    r = _train(cfg, run, work / "cache", "--seed", "3", "--max-steps", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    fresh = json.loads((run / "manifest.json").read_text())
    assert "test" not in fresh and fresh["seed"] == 3 and "fingerprint" in fresh
