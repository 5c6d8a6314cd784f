#!/bin/sh
# Screens one lever on BCCD at a short budget, region classifier only (issue #13: "screen
# levers at a fixed shorter budget"): models/bccd's MultiBox is copied in, so all MINUTES
# go to the classifier (the default recipe derived from the data, as its members were
# trained), then the test split is scored on the paper path.
#
#   OMP_NUM_THREADS=1 sh bench/screen_lever.sh NAME MINUTES SEED [KEY=VALUE ...]
#   OMP_NUM_THREADS=1 sh bench/screen_lever.sh base 30 0
#   OMP_NUM_THREADS=1 sh bench/screen_lever.sh grid2 30 0 model.region_grid=2
#   RECIPE=runs/screen/base_b/config.yaml OMP_NUM_THREADS=1 sh bench/screen_lever.sh smooth01 30 0 train.label_smoothing=0.1
#   OMP_NUM_THREADS=1 sh bench/screen_lever.sh base_b2 0 0 train.epochs=28 'train.lr_steps=[21,24]'
#
# Run: runs/screen/NAME (rerun resumes it; a scored row is not scored again); results: bench/results/screen/NAME.json (per-class
# AP), NAME-detections.json, NAME_train.log. Compare two rows with
#   python evaluate.py --dataset ../shared/datasets/bccd --split test \
#     --detections bench/results/screen/A-detections.json --compare bench/results/screen/B-detections.json
# A row is only comparable with rows of the same MINUTES, run the same way (one thread each,
# at most two at a time: the budget is wall time).
# A row that passes can go on as member-0 from runs/screen/NAME/epochN (the epoch before its
# first LR step, which a seed-0 member's longer schedule shares; docs/ablation.md, *Input scale 704*).
set -e
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { echo "usage: sh bench/screen_lever.sh NAME MINUTES SEED [KEY=VALUE ...]" >&2; exit 2; }
name=$1 minutes=$2 seed=$3; shift 3
PY=${PYTHON:-.venv/bin/python}
CACHE=${CACHE_DIR:-runs/screen/cache}
out=runs/screen/$name res=bench/results/screen
mkdir -p "$out" "$res"
[ -e "$out/multibox/multibox.pt" ] || cp -r models/bccd/multibox "$out/multibox"
if [ ! -e "$out/model.pt" ]; then
  resume=""; { [ -e "$out/budget.json" ] || [ -e "$out/checkpoint.pt" ]; } && resume="--resume"   # (MINUTES 0 keeps no budget)
  # RECIPE=runs/screen/base_b/config.yaml: that row's resolved recipe (its epochs and LR steps) instead of a
  # schedule fitted to MINUTES, so that rows run on a faster or slower machine see the same epochs
  # MINUTES 0: no budget, the default recipe's schedule as the KEY=VALUEs set it (train.epochs=28
  # train.lr_steps=[21,24] is base_b's, when its runs/screen/base_b/config.yaml is gone)
  if [ -n "$RECIPE" ]; then budget="--config $RECIPE"
  elif [ "$minutes" = 0 ]; then budget="--dataset ../shared/datasets/bccd"
  else budget="--dataset ../shared/datasets/bccd --minutes $minutes"; fi
  $PY train.py $budget --out "$out" --cache-dir "$CACHE" \
    --no-progress $resume --set train.seed="$seed" "$@" >> "$res/${name}_train.log" 2>&1
fi
# scored once: a rerun of a finished row prints its result instead of detecting the test split again
if [ -e "$res/$name.json" ] && [ -e "$res/$name-detections.json" ]; then
  $PY evaluate.py --dataset ../shared/datasets/bccd --split test --detections "$res/$name-detections.json" --metric voc --quiet
else
  $PY evaluate.py --dataset ../shared/datasets/bccd --split test --model "$out" --metric voc --quiet \
    --cache-dir "$CACHE" --json "$res/$name.json" --save-detections "$res/$name-detections.json"
fi
