#!/bin/sh
# Every README figure about the bundled models, re-measured (idle machine, ~20 min):
#   sh bench/measure_bundled.sh
# Outputs go to bench/results/. Proposals come from the default cache (~/.cache).
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
R=bench/results
for pair in bccd:bccd raccoon:raccoon bccd_warp:bccd; do
  m=${pair%%:*} ds=${pair#*:}
  [ -d models/$m ] || continue
  data=../shared/datasets/$ds
  # test mAP (each member and the ensemble), paper path (the recipe's combined
  # proposals) and fast path (MultiBox only)
  $PY evaluate.py --dataset $data --split test --model models/$m --metric voc --json $R/${m}_test_voc.json --save-detections $R/${m}_test_voc-detections.json --quiet > $R/${m}_test_voc.txt
  $PY evaluate.py --dataset $data --split test --model models/$m --metric voc --proposals multibox --json $R/${m}_test_voc_fast.json --save-detections $R/${m}_test_voc_fast-detections.json --quiet > $R/${m}_test_voc_fast.txt
  [ "$m" = "$ds" ] || continue
  for method in ss multibox combined; do
    $PY -m proposals report --dataset $data --split test --method $method --model models/$m --json $R/proposals_${m}_bundled_test_$method.json > /dev/null 2>&1
  done
done
# speed: per stage, models/bccd (its member 0 alone and the ensemble), cold and warm; ensemble growth; torchrun
$PY bench/benchmark.py --model models/bccd --dataset ../shared/datasets/bccd --split test > $R/benchmark.md
$PY bench/bench_ensemble.py --model models/bccd --dataset ../shared/datasets/bccd --split test --proposals multibox > $R/bench_ensemble.md
{
  echo "# evaluate.py --model models/bccd --proposals multibox on BCCD test (72 images), proposals cached, $(date +%F)"
  s=$(date +%s.%N); $PY evaluate.py --dataset ../shared/datasets/bccd --split test --model models/bccd --proposals multibox --metric voc --quiet > /dev/null; e=$(date +%s.%N)
  echo "1 process: $(echo "$e - $s" | bc) s"
  s=$(date +%s.%N); $PY -m torch.distributed.run --standalone --nproc-per-node 2 evaluate.py --dataset ../shared/datasets/bccd --split test --model models/bccd --proposals multibox --metric voc --quiet > /dev/null; e=$(date +%s.%N)
  echo "torchrun, 2 processes: $(echo "$e - $s" | bc) s"
} > $R/torchrun_evaluate.txt
