"""torchrun: sharding helpers, and 2-process gloo runs of training and evaluation."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from core import distributed
from detector.fine_tune import rank_batches


def test_shard_and_unshard_round_trip(monkeypatch):
    items = list(range(11))
    monkeypatch.setenv("WORLD_SIZE", "3")
    parts = []
    for r in range(3):
        monkeypatch.setenv("RANK", str(r))
        parts.append(distributed.shard(items))
    assert parts[0] == [0, 3, 6, 9] and parts[2] == [2, 5, 8]
    assert distributed.unshard(parts) == items
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert distributed.shard(items) == items and not distributed.active()


def test_rank_batches_split_every_global_batch(monkeypatch):
    from core.errors import UserError
    order = np.array([5, 1, 4, 0, 3, 2, 6])
    assert [b.tolist() for b in rank_batches(order, 2)] == [[5, 1], [4, 0], [3, 2], [6]]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    # rank 1 takes the second image of each global batch; the last (one image) is dropped
    assert [b.tolist() for b in rank_batches(order, 2)] == [[1], [0], [2]]
    with pytest.raises(UserError, match="multiple of the number of processes"):
        rank_batches(order, 3)


def torchrun(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_two_process_training_and_evaluation(tmp_path, shapes_data, tiny_model, run_script):
    from synthetic import tiny_config
    cfg = tiny_config(tmp_path / "cfg.yaml", shapes_data, method="combined", epochs=1)
    out = torchrun(ROOT / "train.py", "--config", cfg, "--out", tmp_path / "model", "--cache-dir",
                   tmp_path / "cache", "--workers", "1", "--no-progress")
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert len(manifest["history"]) == 1 and np.isfinite(manifest["history"][0]["loss"])
    for f in ("model.pt", "heads.npz", "multibox/multibox.pt", "config.yaml"):
        assert (tmp_path / "model" / f).exists(), f
    assert out.stderr.count("epoch 1/1:") == 1            # rank 0 alone logs

    # evaluation sharded over 2 ranks scores exactly what one process does
    common = ["--dataset", shapes_data, "--split", "test", "--model", tiny_model["model"], "--metric", "voc",
              "--cache-dir", tiny_model["cache"], "--workers", "1", "--quiet"]
    single = run_script("evaluate.py", *common, "--json", tmp_path / "one.json")
    assert single.returncode == 0, single.stderr[-3000:]
    two = torchrun(ROOT / "evaluate.py", *common, "--json", tmp_path / "two.json")
    assert two.returncode == 0, two.stderr[-3000:]
    one, both = (json.loads((tmp_path / n).read_text()) for n in ("one.json", "two.json"))
    assert both["mAP"] == one["mAP"] and both["per_class"] == one["per_class"]
    dets_one = json.loads((tmp_path / "one-detections.json").read_text())
    dets_two = json.loads((tmp_path / "two-detections.json").read_text())
    assert len(dets_one) > 0 and dets_two == dets_one
