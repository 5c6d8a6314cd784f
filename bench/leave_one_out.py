#!/usr/bin/env python
"""The default recipe on data it was not tuned for: ``train.py --dataset D --minutes M``
with no --config, scored on the test split beside the bundled model and the peer.

    python bench/leave_one_out.py                      # raccoon (45 min), then BCCD (100 min)
    python bench/leave_one_out.py --only raccoon
    python bench/leave_one_out.py --only raccoon --seeds 1     # another seed: runs/leave_one_out/raccoon_s1
    python bench/leave_one_out.py --only bccd --variant easy_bg --set train.easy_bg_fraction=0.5

A variant is the default recipe with ``--set`` overrides (a lever tried on it): its runs
go to runs/leave_one_out/<variant>/, its results to bench/results/leave_one_out/<variant>/
and its table to bench/results/leave_one_out/<variant>.md, so it never mixes with the
default's; its overrides are kept in <variant>/variant.json and must stay the same.

Each run trains into runs/leave_one_out/<name> (resumable: rerun after a kill; its wall
minutes are train.py's own count in OUT/budget.json, which survives a kill, and every
invocation's command is logged in bench/results/leave_one_out/<name>_train.json),
is scored on both proposal paths, and the table goes to bench/results/leave_one_out.md with,
when their result files exist, the bundled model
(bench/results/<name>_test_voc.json) and the peer (bench/results/peer_<name>_test_voc.json,
bench/peer_fasterrcnn.py with the same minutes). The budget is wall time: run it alone,
or beside the peer with OMP_NUM_THREADS=1 for both (one core each; two one-thread jobs
barely slow each other on this machine, two two-thread jobs do).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

from ablation import ROOT, run_logged, score_model, write_markdown

sys.path.insert(0, ROOT)

from core.fileio import write_json  # noqa: E402

# name: (dataset, minutes, the goal for the test mAP)
RUNS = {"raccoon": ("../shared/datasets/raccoon", 45, 0.65), "bccd": ("../shared/datasets/bccd", 100, 0.88)}


def run_name(name: str, seed: int) -> str:
    """Seed 0 keeps the dataset's name (the runs before --seeds existed); others add _s<seed>."""
    return name if seed == 0 else f"{name}_s{seed}"


def train(name: str, dataset: str, minutes: float, out: str, results: str, cache_dir: str, seed: int = 0,
          overrides: tuple[str, ...] = ()) -> None:
    """Train (or resume) one run; the ledger records each invocation's command and minutes."""
    ledger = os.path.join(results, f"{name}_train.json")
    spent = _read_result(ledger) or {"invocations": []}
    # model.pt is written once, when training ends (checkpoint.pt stays beside it); resuming a
    # finished --minutes run would fail anyway: its epoch count was fitted to that run's pace
    finished = os.path.exists(os.path.join(out, "model.pt"))
    if not finished:
        cmd = [sys.executable, "train.py", "--dataset", dataset, "--out", out, "--minutes", str(minutes),
               "--cache-dir", cache_dir, "--no-progress"] + (["--resume"] if os.path.isdir(out) else [])
        sets = ([f"train.seed={seed}"] if seed else []) + list(overrides)
        if sets:
            cmd += ["--set", *sets]
        t = time.time()
        # recorded before it runs, so that an invocation killed without a word (the end of a
        # session) stays in the ledger, with minutes null; OUT/budget.json has its minutes
        entry = {"command": " ".join(cmd[1:]), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "minutes": None,
                 "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset")}
        spent["invocations"].append(entry)
        write_json(ledger, spent)
        try:
            run_logged(cmd, os.path.join(results, f"{name}_train.log"))
        finally:
            entry["minutes"] = round((time.time() - t) / 60, 2)
            write_json(ledger, spent)


def wall_minutes(out: str, results: str, name: str) -> float:
    """The run's minutes as train.py counted them (OUT/budget.json, saved every epoch, so
    an invocation killed without a word still counts up to its last epoch); the ledger's
    sum for runs from before budget.json existed."""
    budget = _read_result(os.path.join(out, "budget.json"))
    if budget:
        return budget["spent_seconds"] / 60
    return sum(i["minutes"] or 0 for i in _read_result(os.path.join(results, f"{name}_train.json"))["invocations"])


def _read_result(path: str) -> dict | None:
    """A JSON file this script or another bench script wrote; None when it is not there."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as exc:
        from core.errors import UserError
        raise UserError(f"{path}: not readable JSON ({exc}); delete it to redo that step") from None


def write_table(rows: list, path: str, variant: str | None = None, overrides: tuple[str, ...] = ()) -> None:
    title = f"variant `{variant}`: the default recipe with `--set {' '.join(overrides)}`" if variant else \
        "The default recipe"
    command = "python bench/leave_one_out.py" + (f" --variant {variant} --set {' '.join(overrides)}" if variant else "")
    lines = [f"# {title} on data it was not tuned for (test split, voc mAP)",
             f"written {time.strftime('%Y-%m-%d %H:%M')} by `{command}`", "",
             "| dataset | seed | trained at | budget min | wall min | within +10% | mAP paper | mAP fast | goal | "
             "bundled model (`models/<dataset>`) | peer, same minutes |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r[0] for r in rows):
        tuned = _read_result(os.path.join(ROOT, "bench", "results", f"{name}_test_voc.json"))
        peer = _read_result(os.path.join(ROOT, "bench", "results", f"peer_{name}_test_voc.json"))
        mine = [r for r in rows if r[0] == name]
        for _, seed, minutes, goal, wall, paper, fast, commit in mine:
            lines.append(f"| {name} | {seed} | {commit} | {minutes} | {wall:.1f} | {'yes' if wall <= 1.1 * minutes else 'no'} | "
                         f"**{paper['mAP']:.3f}** | {fast['mAP']:.3f} | >= {goal} | "
                         + (f"{tuned['mAP']:.3f}" if tuned else "not measured") + " | "
                         + (f"{peer['mAP']:.3f}" if peer else "not run") + " |")
        if len(mine) > 1:
            mean = [sum(r[k]["mAP"] for r in mine) / len(mine) for k in (5, 6)]
            lines.append(f"| {name} | mean of {len(mine)} | | | | | **{mean[0]:.3f}** | {mean[1]:.3f} | >= {mine[0][3]} | | |")
    lines += ["", "Trained at: the code commit of the run (OUT/manifest.json), so of the default recipe it "
              "trained with (configs/default.yaml changes over time: its history says when). "
              "Wall minutes: train.py's own count across every invocation of the run, kills and "
              "--resume included (OUT/budget.json: MultiBox, proposals, classifier, heads); the commands are in "
              f"bench/results/{results_dir(variant)}/<name>[_s<seed>]_train.json. Per-class AP: "
              f"bench/results/{results_dir(variant)}/<name>[_s<seed>]_paper.json."]
    write_markdown(path, lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--only", choices=sorted(RUNS), help="run one dataset (default: both, raccoon first)")
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/googlenet-detector"), help="proposal cache")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="train.seed of the runs to train; runs of other seeds already on disk join the table")
    p.add_argument("--variant", metavar="NAME", help="a variant of the default recipe (with --set), kept apart")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="the variant's recipe overrides (train.py --set)")
    args = p.parse_args()
    overrides = tuple(args.overrides)
    results = os.path.join(ROOT, "bench", "results", results_dir(args.variant))
    os.makedirs(results, exist_ok=True)
    if args.variant or overrides:
        check_variant(args.variant, overrides, results)
    table = os.path.join(ROOT, "bench", "results", results_dir(args.variant) + ".md")
    rows = []
    for name, (dataset, minutes, goal) in RUNS.items():
        trained = {int(m.group(1) or 0) for m in map(re.compile(rf"{name}(?:_s(\d+))?_train\.json").fullmatch,
                                                     os.listdir(results)) if m}
        asked = args.seeds if args.only in (None, name) else []
        for seed in asked:              # first: another seed may be training in another process
            train(run_name(name, seed), dataset, minutes, runs_dir(args.variant, name, seed), results,
                  args.cache_dir, seed, overrides)
        for seed in sorted(trained | set(asked)):
            run, out = run_name(name, seed), runs_dir(args.variant, name, seed)
            row = os.path.join(results, f"{run}_row.json")
            if os.path.exists(os.path.join(out, "model.pt")):
                wall = wall_minutes(out, results, run)
                paper, fast = (score_model(dataset, "test", out, path, os.path.join(results, f"{run}_{path}.json"),
                                           args.cache_dir, os.path.join(results, f"{run}_eval.log"))
                               for path in ("paper", "fast"))
                commit = (_read_result(os.path.join(out, "manifest.json")) or {}).get("code_commit", "?")
                write_json(row, {"wall_minutes": round(wall, 2), "code_commit": commit})
            elif os.path.exists(row):
                # runs/ does not outlive a machine; what was measured on it is in bench/results
                saved = _read_result(row)
                wall, commit = saved.get("wall_minutes"), saved.get("code_commit", "?")
                if not isinstance(wall, (int, float)):
                    from core.errors import UserError
                    raise UserError(f"{row}: no wall_minutes number; delete it, or restore it from the table")
                paper, fast = (_read_result(os.path.join(results, f"{run}_{path}.json")) for path in ("paper", "fast"))
                if paper is None or fast is None:
                    print(f"{run}: {out} is gone and its scores are not in {results}; left out of the table", flush=True)
                    continue
                print(f"{run}: {out} is gone; its row comes from {row} and its scores", flush=True)
            else:
                print(f"{run}: still training (no {out}/model.pt); left out of the table", flush=True)
                continue
            print(f"{run}: mAP paper {paper['mAP']:.4f}, fast {fast['mAP']:.4f}, {wall:.1f} wall minutes "
                  f"of a {minutes}-minute budget", flush=True)
            rows.append((name, seed, minutes, goal, wall, paper, fast, commit))
    if rows:
        write_table(rows, table, args.variant, overrides)


def runs_dir(variant: str | None, name: str, seed: int) -> str:
    """runs/leave_one_out[/<variant>]/<name>[_s<seed>]."""
    return os.path.join("runs", results_dir(variant), run_name(name, seed))


def results_dir(variant: str | None) -> str:
    """leave_one_out, or leave_one_out/<variant> (under runs/ and under bench/results/)."""
    return os.path.join("leave_one_out", variant) if variant else "leave_one_out"


def check_variant(variant: str | None, overrides: tuple[str, ...], results: str) -> None:
    """A variant needs overrides and a plain name, and keeps the overrides it was started
    with (its results would otherwise mix two recipes); the first call records them."""
    from core.errors import UserError
    from core.fileio import write_json
    if not variant or not overrides:
        raise UserError("--variant NAME and --set KEY=VALUE go together (the default recipe has neither)")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", variant) or variant in ("default", "leave_one_out"):
        raise UserError(f"--variant {variant}: use a plain name (letters, digits, _ . -), not a path")
    path = os.path.join(results, "variant.json")
    saved = _read_result(path)
    if saved is None:
        write_json(path, {"overrides": list(overrides)})
    elif saved.get("overrides") != list(overrides):
        raise UserError(f"{path}: variant {variant} was started with --set {' '.join(saved.get('overrides', []))}; "
                        "use another --variant name for other overrides")


if __name__ == "__main__":
    from core.errors import run_cli
    run_cli(lambda: main() or 0)
