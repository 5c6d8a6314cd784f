#!/bin/sh
# The README's two BCCD variants of the bundled models, re-measured (~8 min):
#   out/bccd_mixed  an ensemble across region modes: models/bccd's two shared-mode members
#                   plus the warp-mode models/bccd_warp
#   out/bccd400     models/bccd with selective search on a 400-px image (500 in its recipe)
# Outputs: bench/results/bccd_mixed3_test_voc{,_fast}.txt, bench/results/bccd_paper_path_ss400.txt
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
R=bench/results
DATA=../shared/datasets/bccd
rm -rf out/bccd_mixed out/bccd400
$PY -m ensemble create out/bccd_mixed models/bccd/member-0 models/bccd/member-1 models/bccd_warp
$PY evaluate.py --dataset $DATA --split test --model out/bccd_mixed --metric voc --json $R/bccd_mixed3_test_voc.json --quiet > $R/bccd_mixed3_test_voc.txt
$PY evaluate.py --dataset $DATA --split test --model out/bccd_mixed --metric voc --proposals multibox --quiet > $R/bccd_mixed3_test_voc_fast.txt
cp -rL models/bccd out/bccd400
sed -i 's/max_side: 500/max_side: 400/' out/bccd400/member-*/config.yaml
{
  $PY evaluate.py --dataset $DATA --split test --model out/bccd400 --metric voc --quiet
  $PY bench/bench_detect.py --model out/bccd400/member-0 --dataset $DATA --split test --images 8 --proposals combined --no-cold
} > $R/bccd_paper_path_ss400.txt
