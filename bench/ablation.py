#!/usr/bin/env python
"""One lever at a time: train each row of a plan, score it on test, write one table.

    python bench/ablation.py bench/ablation/bccd.yaml              # every row, in order
    python bench/ablation.py bench/ablation/bccd.yaml --rows joint  # only these

A plan names a recipe, a dataset, and rows. A row either trains the recipe with
``train:`` overrides (``train.py --set``) into runs/ablation/<plan>/<row>, or reuses
a trained ``model:``, or votes with ``members:`` (model dirs, ensembled in
runs/ablation/<plan>/<row>/ensemble.json); either way ``test:`` overrides (``evaluate.py --set``) apply at
test time. Every row is scored on the test split on both proposal paths (paper:
the recipe's method; fast: MultiBox only); outputs go to bench/results/ablation/<plan>/
(<row>_paper.json, <row>_fast.json, the training log) and the table to
bench/results/ablation/<plan>.md. Rerunning resumes: a trained row is not retrained,
a scored row is not rescored (``--rescore`` forces it).

Rows share the plan's MultiBox (``multibox_from``), so they differ only in the lever; a
row about the proposals names its own ``multibox_from``.
Training minutes are the classifier's, from the row's manifest; a row trained while
another CPU-heavy job ran reads slower than it is (the table says when runs overlapped
only if you do: run one plan at a time).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def load_plan(path: str) -> dict:
    import yaml

    from core.errors import UserError
    try:
        with open(path) as f:
            plan = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read the plan ({exc})") from None
    for key in ("recipe", "dataset", "rows"):
        if key not in plan:
            raise UserError(f"{path}: the plan has no '{key}'")
    names = [r.get("name") for r in plan["rows"]]
    if None in names or len(set(names)) != len(names):
        raise UserError(f"{path}: every row needs a unique name")
    plan["name"] = os.path.splitext(os.path.basename(path))[0]
    return plan


def run_logged(cmd: list[str], log: str) -> None:
    """Run ``cmd`` from the repository root, its output appended to ``log``; a failure is one line."""
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        code = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    if code:
        from core.errors import UserError
        raise UserError(f"{' '.join(cmd[:3])}... failed (exit {code}); see {log}")


def train_row(plan: dict, row: dict, run_dir: str, args) -> str:
    if "model" in row:
        return row["model"]
    if "members" in row:
        from ensemble import write_ensemble
        os.makedirs(run_dir, exist_ok=True)
        write_ensemble(run_dir, [os.path.relpath(os.path.join(ROOT, m), os.path.join(ROOT, run_dir))
                                 for m in row["members"]])
        return run_dir
    os.makedirs(run_dir, exist_ok=True)
    mb = os.path.join(run_dir, "multibox")
    multibox_from = row.get("multibox_from", plan.get("multibox_from"))     # a row may bring its own
    if multibox_from and not os.path.exists(mb):
        shutil.copytree(multibox_from, mb)
    if not os.path.exists(os.path.join(run_dir, "model.pt")) or os.path.exists(os.path.join(run_dir, "checkpoint.pt")):
        cmd = [sys.executable, "train.py", "--config", plan["recipe"], "--out", run_dir, "--resume",
               "--cache-dir", args.cache_dir, "--no-progress"]
        if row.get("train"):
            cmd += ["--set", *row["train"]]
        run_logged(cmd, os.path.join(args.results, f"{row['name']}_train.log"))
    return run_dir


def score_model(dataset: str, split: str, model: str, path: str, out: str, cache_dir: str, log: str,
                test_overrides=(), rescore: bool = False) -> dict:
    """evaluate.py's --json result (voc metric) of ``model`` on ``split``, on the paper
    path (the recipe's proposals) or the fast one (MultiBox only); computed once."""
    if rescore or not os.path.exists(out):
        cmd = [sys.executable, "evaluate.py", "--dataset", dataset, "--split", split, "--model", model,
               "--metric", "voc", "--json", out, "--cache-dir", cache_dir, "--quiet"]
        if path == "fast":
            cmd += ["--proposals", "multibox"]
        if test_overrides:
            cmd += ["--set", *test_overrides]
        run_logged(cmd, log)
    with open(out) as f:
        return json.load(f)


def score_row(plan: dict, row: dict, model: str, path: str, args) -> dict:
    return score_model(plan["dataset"], plan.get("test_split", "test"), model, path,
                       os.path.join(args.results, f"{row['name']}_{path}.json"), args.cache_dir,
                       os.path.join(args.results, f"{row['name']}_eval.log"), row.get("test") or (), args.rescore)


def write_markdown(path: str, lines: list[str]) -> None:
    """A results table, written whole or not at all."""
    from core.fileio import atomic_write
    with atomic_write(path) as f:
        f.write("\n".join(lines) + "\n")


def training_minutes(model: str) -> float | None:
    """Classifier minutes from the manifests of ``model``'s members; None when a manifest
    (or the run directory itself, on a fresh clone) is not there."""
    from core.modeldir import classifier_seconds, member_dirs
    model = os.path.join(ROOT, model)
    if not os.path.isdir(model):
        return None
    total = 0.0
    for d in member_dirs(model):
        path = os.path.join(d, "manifest.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            total += classifier_seconds(json.load(f))
    return total / 60


def tabled_minutes(path: str) -> dict[str, float]:
    """Each row's classifier minutes as the table at ``path`` has them: a row scored on
    another machine keeps its minutes when its run directory is not here."""
    minutes = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if len(cells) >= 8 and re.fullmatch(r"\d+(\.\d+)?", cells[-3]):
                    minutes[cells[0]] = float(cells[-3])
    return minutes


def write_table(plan: dict, rows: list, path: str) -> None:
    classes = list(rows[0][2]["per_class"]) if rows else []
    lines = [f"# Ablation `{plan['name']}`: {plan['recipe']} on {plan['dataset']}, test split, voc mAP",
             f"written {time.strftime('%Y-%m-%d %H:%M')} by `python bench/ablation.py bench/ablation/{plan['name']}.yaml`",
             "", "| row | lever | " + " | ".join(classes) + " | mAP paper | mAP fast | classifier min "
             "| network s/img paper | network s/img fast |",
             "|---|---|" + "---|" * (len(classes) + 5)]
    for row, minutes, paper, fast in rows:
        lever = "; ".join((row.get("train") or []) + [f"test: {t}" for t in row.get("test") or []]) or row.get("note", "")
        per = " | ".join(f"{paper['per_class'][c]:.3f}" for c in classes)
        net = [r.get("seconds_per_image", {}).get("network") for r in (paper, fast)]
        lines.append(f"| {row['name']} | {lever} | {per} | **{paper['mAP']:.3f}** | {fast['mAP']:.3f} | "
                     + (f"{minutes:.1f}" if minutes is not None else "") + " | "
                     + " | ".join(f"{n:.3f}" if n is not None else "" for n in net) + " |")
    lines += ["", "Per-class AP on the paper path. Classifier minutes from each row's manifest (MultiBox "
              "shared by all rows, not counted); network seconds per image as evaluate.py timed them."]
    write_markdown(path, lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("plan", help="bench/ablation/*.yaml")
    p.add_argument("--rows", help="comma-separated row names (default: all)")
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/googlenet-detector"),
                   help="proposal cache shared by the rows")
    p.add_argument("--rescore", action="store_true", help="score trained rows again")
    p.add_argument("--train-only", action="store_true", help="train the rows, score none")
    args = p.parse_args()
    plan = load_plan(args.plan)
    args.results = os.path.join(ROOT, "bench", "results", "ablation", plan["name"])
    os.makedirs(args.results, exist_ok=True)
    wanted = set(args.rows.split(",")) if args.rows else None
    table = os.path.join(ROOT, "bench", "results", "ablation", f"{plan['name']}.md")
    tabled = tabled_minutes(table)
    done = []
    for row in plan["rows"]:
        run_dir = os.path.join("runs", "ablation", plan["name"], row["name"])
        if wanted is None or row["name"] in wanted:
            t = time.time()
            model = train_row(plan, row, run_dir, args)
            if args.train_only:
                continue
            paper, fast = (score_row(plan, row, model, path, args) for path in ("paper", "fast"))
            print(f"{row['name']}: mAP paper {paper['mAP']:.4f}, fast {fast['mAP']:.4f} ({time.time() - t:.0f} s)",
                  flush=True)
        else:                                   # already scored rows stay in the table
            model = row.get("model", run_dir)
            files = [os.path.join(args.results, f"{row['name']}_{k}.json") for k in ("paper", "fast")]
            if not all(os.path.exists(f) for f in files):
                continue
            paper, fast = (json.load(open(f)) for f in files)
        minutes = training_minutes(model)
        done.append((row, minutes if minutes is not None else tabled.get(row["name"]), paper, fast))
    if done:
        write_table(plan, done, table)


if __name__ == "__main__":
    from core.errors import run_cli
    run_cli(lambda: main() or 0)
