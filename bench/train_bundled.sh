#!/bin/sh
# Trains the bundled models into runs/ (resumable: rerun after a kill), in this order:
#   runs/bccd       one model on BCCD trainval (configs/bccd.yaml, seed 0)
#   runs/raccoon    one model on raccoon train (configs/raccoon.yaml)
#   runs/bccd_warp  BCCD in R-CNN's warp mode (bench/recipes/bccd_warp.yaml), for the
#                   README's warp-vs-shared rows; it reuses runs/bccd's MultiBox
# then models/ is made from them by bench/bundle_models.py. Logs: runs/*.log
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p runs
$PY train.py --config configs/bccd.yaml --out runs/bccd --resume --no-progress >> runs/bccd.log 2>&1
$PY train.py --config configs/raccoon.yaml --out runs/raccoon --resume --no-progress >> runs/raccoon.log 2>&1
mkdir -p runs/bccd_warp
[ -e runs/bccd_warp/multibox ] || cp -r runs/bccd/multibox runs/bccd_warp/multibox
$PY train.py --config bench/recipes/bccd_warp.yaml --out runs/bccd_warp --resume --no-progress >> runs/bccd_warp.log 2>&1
# not bundled: the recipe without class-balanced sampling, 2 seeds (README, *Bundled models*)
mkdir -p runs/bccd_plain
[ -e runs/bccd_plain/multibox ] || cp -r runs/bccd/multibox runs/bccd_plain/multibox
$PY train.py --config bench/recipes/bccd_plain_sampling.yaml --out runs/bccd_plain --ensemble 2 --resume --no-progress >> runs/bccd_plain.log 2>&1
