#!/bin/sh
# Trains the bundled models into runs/ (resumable: rerun after a kill), in this order:
#   runs/bccd       2-member ensemble on BCCD trainval (configs/bccd.yaml)
#   runs/raccoon    one model on raccoon train (configs/raccoon.yaml)
#   runs/bccd_warp  BCCD in R-CNN's warp mode (bench/recipes/bccd_warp.yaml), for the
#                   README's warp-vs-shared rows; it reuses runs/bccd's MultiBox
# then models/ is made from them by bench/bundle_models.py. Logs: runs/*.log
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p runs
$PY train.py --config configs/bccd.yaml --out runs/bccd --ensemble 2 --resume --no-progress >> runs/bccd.log 2>&1
$PY train.py --config configs/raccoon.yaml --out runs/raccoon --resume --no-progress >> runs/raccoon.log 2>&1
mkdir -p runs/bccd_warp
[ -e runs/bccd_warp/multibox ] || cp -r runs/bccd/multibox runs/bccd_warp/multibox
$PY train.py --config bench/recipes/bccd_warp.yaml --out runs/bccd_warp --resume --no-progress >> runs/bccd_warp.log 2>&1
# not bundled: the class-balanced sampling experiment (README, *Bundled models*)
mkdir -p runs/bccd_balanced
[ -e runs/bccd_balanced/multibox ] || cp -r runs/bccd/multibox runs/bccd_balanced/multibox
$PY train.py --config bench/recipes/bccd_balanced.yaml --out runs/bccd_balanced --resume --no-progress >> runs/bccd_balanced.log 2>&1
