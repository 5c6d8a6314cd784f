#!/usr/bin/env python
"""Copy a trained model or ensemble from runs/ into models/, measured.

    python bench/bundle_models.py runs/bccd models/bccd --dataset ../shared/datasets/bccd --split test

Copies what running needs (config, fp16 weights, heads, MultiBox, and with
``test.objectness`` every member's own MultiBox; not the training checkpoints), scores the copy on the test split with `voc` (each member and the
ensemble), and writes OUT/manifest.json: dataset, training split, recipe, training time,
code commit, and the measured test mAP with the command that reproduces it.
``--set test.KEY=VALUE`` changes test-time settings of the copy (every member's
config.yaml), e.g. flip voting, before it is scored; the manifest records them.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RUN_FILES = ("config.yaml", "model.pt", "heads.npz", "manifest.json", "ensemble.json")
MULTIBOX_FILES = ("multibox.pt", "multibox.json")


def copy_model(src: str, dst: str, shared_multibox: bool = False) -> None:
    """What running ``src`` needs, into ``dst``. A member of a bundled ensemble whose
    MultiBox is the ensemble's links to ``../multibox``; otherwise the MultiBox is copied."""
    os.makedirs(dst, exist_ok=True)
    for name in RUN_FILES:
        if os.path.exists(os.path.join(src, name)):
            shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
    mb = os.path.join(src, "multibox")
    if shared_multibox:
        if not os.path.lexists(os.path.join(dst, "multibox")):
            os.symlink(os.path.join("..", "multibox"), os.path.join(dst, "multibox"))
    elif os.path.isdir(mb):
        copy_multibox(mb, os.path.join(dst, "multibox"))


def copy_multibox(src: str, dst: str) -> None:
    os.makedirs(dst, exist_ok=True)
    for name in MULTIBOX_FILES:
        shutil.copy2(os.path.join(src, name), os.path.join(dst, name))


def same_multibox(a: str, b: str) -> bool:
    """Two MultiBox directories holding byte-identical files."""
    return all(os.path.isfile(os.path.join(d, f)) for d in (a, b) for f in MULTIBOX_FILES) and all(
        filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False) for f in MULTIBOX_FILES)


def copy_ensemble(src: str, dst: str, member_multiboxes: bool = False) -> list[str]:
    """An ensemble's members into ``dst/member-K`` wherever they were (a plan's members
    may live beside it, ``../row``), with ``dst/ensemble.json`` naming them; one MultiBox
    in ``dst/multibox`` when all members use the same one: the ensemble's own (``"multibox"``
    in its ensemble.json), or the members' when they are one. With ``member_multiboxes``
    (``test.objectness`` averages every member's own MultiBox) a member's own that is not
    that one is bundled in its directory too. Returns the member names."""
    from core.modeldir import read_ensemble_spec
    from ensemble import write_ensemble
    spec = read_ensemble_spec(src)
    names = [f"member-{k}" for k in range(len(spec["dirs"]))]
    own = [os.path.join(d, "multibox") for d in spec["dirs"]]
    boxes = [spec["multibox_dir"]] if spec.get("multibox_dir") else own
    # the same MultiBox (linked, or copies of one: byte-identical files) is bundled once
    shared = all(os.path.isdir(b) for b in boxes) and all(same_multibox(boxes[0], b) for b in boxes[1:])
    os.makedirs(dst, exist_ok=True)
    if shared:
        copy_multibox(boxes[0], os.path.join(dst, "multibox"))
    keeps_own = []
    for d, mb, name in zip(spec["dirs"], own, names):
        keep = shared and member_multiboxes and os.path.isdir(mb) and not same_multibox(mb, boxes[0])
        copy_model(d, os.path.join(dst, name), shared_multibox=shared and not keep)
        keeps_own.append(keep)
    write_ensemble(dst, names, spec.get("weights"), spec.get("vote", "soft"),
                   "multibox" if any(keeps_own) else None)   # the proposals' MultiBox, named beside the members' own
    return names


def set_test_settings(model_dirs: list[str], overrides: dict) -> None:
    """Write ``{"test.key": value}`` into each model dir's config.yaml (test keys only)."""
    from core.config import load_config, override_test_settings, save_config
    for d in model_dirs:
        path = os.path.join(d, "config.yaml")
        cfg = load_config(path)
        override_test_settings(cfg, overrides)
        save_config(cfg, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--recipe", help="the configs/*.yaml it was trained with (recorded)")
    p.add_argument("--set", nargs="+", metavar="test.KEY=VALUE", dest="overrides",
                   help="test-time settings written into the copy's config.yaml, e.g. test.flip_vote=true")
    args = p.parse_args()
    from core.config import parse_overrides
    test_overrides = parse_overrides(args.overrides)

    from core.config import override_test_settings
    from core.modeldir import classifier_seconds, is_ensemble, model_classes, model_config
    model_classes(args.src)             # a missing or broken source fails here, before dst is replaced,
    cfg = model_config(args.src)
    override_test_settings(cfg, test_overrides)     # and so does a --set that is not a valid test setting
    if os.path.exists(args.dst):
        shutil.rmtree(args.dst)
    if is_ensemble(args.src):
        members = copy_ensemble(args.src, args.dst, member_multiboxes=cfg.test.objectness > 0)
    else:
        members = []
        copy_model(args.src, args.dst)
    if test_overrides:
        set_test_settings([os.path.join(args.dst, m) for m in (members or [""])], test_overrides)

    result = os.path.join(ROOT, "bench", "results", f"{os.path.basename(args.dst)}_{args.split}_voc.json")
    cmd = ["evaluate.py", "--dataset", args.dataset, "--split", args.split, "--model", args.dst, "--metric", "voc",
           "--json", os.path.relpath(result, ROOT), "--quiet"]
    t = time.time()
    out = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    print(out.stdout)
    with open(result) as f:
        scores = json.load(f)

    manifests = [json.load(open(os.path.join(args.dst, m, "manifest.json"))) for m in (members or [""])]
    first = manifests[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    multibox_meta = os.path.join(args.dst, "multibox", "multibox.json")
    multibox_seconds = 0.0
    if os.path.exists(multibox_meta):
        with open(multibox_meta) as f:
            multibox_seconds = json.load(f)["history"][-1]["seconds"]
    manifest = {
        "dataset": os.path.relpath(first["dataset"], ROOT), "split": first["split"],
        "classes": first["classes"], "recipe": args.recipe,
        "members": members or None,
        "training_seconds": {"multibox": round(multibox_seconds, 1),
                             **{m or "classifier": classifier_seconds(man) for m, man in zip(members or [""], manifests)}},
        "code_commit_trained": sorted({man["code_commit"] for man in manifests}),
        "code_commit_bundled": commit,
        "test": {"split": args.split, "metric": "voc", "mAP": scores["mAP"], "per_class": scores["per_class"],
                 "members": {k: {"mAP": v["mAP"], "per_class": v["per_class"]}
                             for k, v in scores.get("members", {}).items()},
                 "command": "python " + " ".join(cmd[:-3]), "seconds": round(time.time() - t, 1),
                 "settings_changed_at_bundling": test_overrides or None},
        "bundled": time.strftime("%Y-%m-%d %H:%M"),
    }
    from core.fileio import write_json
    if not members:                     # a single model: its own manifest, completed
        first.update(manifest)
        manifest = first
    write_json(os.path.join(args.dst, "manifest.json"), manifest)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.dst) for f in fs)
    print(f"{args.dst}: {size / 2**20:.1f} MB, test mAP {scores['mAP']:.3f}")


if __name__ == "__main__":
    from core.errors import run_cli
    run_cli(main)          # a bad path or model is one line on stderr and exit code 2
