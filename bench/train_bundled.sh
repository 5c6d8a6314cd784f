#!/bin/sh
# Trains the bundled models into runs/ (resumable: rerun after a kill), in this order:
#   runs/bccd     2-member ensemble on BCCD trainval (configs/bccd.yaml)
#   runs/raccoon  one model on raccoon train (configs/raccoon.yaml)
# then models/ is made from them by bench/bundle_models.py. Logs: runs/*.log
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p runs
$PY train.py --config configs/bccd.yaml --out runs/bccd --ensemble 2 --resume --no-progress >> runs/bccd.log 2>&1
$PY train.py --config configs/raccoon.yaml --out runs/raccoon --resume --no-progress >> runs/raccoon.log 2>&1
