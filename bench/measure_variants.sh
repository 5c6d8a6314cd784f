#!/bin/sh
# The README's BCCD variants beside the bundled models/bccd, re-measured (~8 min):
#   out/bccd_mixed  an ensemble across region modes: the previous bundle's models/bccd
#                   (commit fe8948e, restored into runs/bccd_v1 below; today's has
#                   another MultiBox than the warp model) (shared mode) plus the
#                   warp-mode models/bccd_warp (members must share proposals: the warp
#                   model, trained on selective search at max_side 500, scores the
#                   recipe's 400-px proposals here)
#   runs/bccd_plain the recipe without class-balanced sampling, an ensemble of 2
#                   (bench/recipes/bccd_plain_sampling.yaml, trained by bench/train_bundled.sh)
# Outputs: bench/results/bccd_mixed_test_voc{,_fast}.txt, bench/results/bccd_plain_test_voc{,_fast}.txt
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
R=bench/results
DATA=../shared/datasets/bccd
rm -rf out/bccd_mixed out/bccd_warp400
if [ ! -d runs/bccd_v1 ]; then
  mkdir -p runs && git archive fe8948e models/bccd | tar -x -C runs/ && mv runs/models/bccd runs/bccd_v1 && rmdir runs/models
fi
cp -rL models/bccd_warp out/bccd_warp400
sed -i 's/max_side: 500/max_side: 400/' out/bccd_warp400/config.yaml
grep -q 'max_side: 400' out/bccd_warp400/config.yaml || { echo "out/bccd_warp400/config.yaml: no max_side 500 to change" >&2; exit 1; }
$PY -m ensemble create out/bccd_mixed runs/bccd_v1 out/bccd_warp400
$PY evaluate.py --dataset $DATA --split test --model out/bccd_mixed --metric voc --json $R/bccd_mixed_test_voc.json --quiet > $R/bccd_mixed_test_voc.txt
$PY evaluate.py --dataset $DATA --split test --model out/bccd_mixed --metric voc --proposals multibox --quiet > $R/bccd_mixed_test_voc_fast.txt
if [ -e runs/bccd_plain/ensemble.json ]; then
  $PY evaluate.py --dataset $DATA --split test --model runs/bccd_plain --metric voc --json $R/bccd_plain_test_voc.json --quiet > $R/bccd_plain_test_voc.txt
  $PY evaluate.py --dataset $DATA --split test --model runs/bccd_plain --metric voc --proposals multibox --json $R/bccd_plain_test_voc_fast.json --quiet > $R/bccd_plain_test_voc_fast.txt
fi
