#!/bin/sh
# The README's BCCD variants of the bundled models, re-measured (~10 min):
#   out/bccd_mixed       an ensemble across region modes: models/bccd's two shared-mode
#                        members plus the warp-mode models/bccd_warp
#   runs/bccd_balanced   one member trained with class-balanced foreground sampling
#                        (bench/recipes/bccd_balanced.yaml, trained by bench/train_bundled.sh)
# Outputs: bench/results/bccd_mixed3_test_voc{,_fast}.txt, bench/results/bccd_balanced_test_voc{,_fast}.txt
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
R=bench/results
DATA=../shared/datasets/bccd
rm -rf out/bccd_mixed
$PY -m ensemble create out/bccd_mixed models/bccd/member-0 models/bccd/member-1 models/bccd_warp
$PY evaluate.py --dataset $DATA --split test --model out/bccd_mixed --metric voc --json $R/bccd_mixed3_test_voc.json --quiet > $R/bccd_mixed3_test_voc.txt
$PY evaluate.py --dataset $DATA --split test --model out/bccd_mixed --metric voc --proposals multibox --quiet > $R/bccd_mixed3_test_voc_fast.txt
if [ -e runs/bccd_balanced/model.pt ]; then
  $PY evaluate.py --dataset $DATA --split test --model runs/bccd_balanced --metric voc --json $R/bccd_balanced_test_voc.json --quiet > $R/bccd_balanced_test_voc.txt
  $PY evaluate.py --dataset $DATA --split test --model runs/bccd_balanced --metric voc --proposals multibox --quiet > $R/bccd_balanced_test_voc_fast.txt
fi
