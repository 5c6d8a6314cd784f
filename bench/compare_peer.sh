#!/bin/sh
# Does the default recipe lose to the peer on BCCD test, beyond what the 72 test images'
# own spread moves? Each leave-one-out run of today's default (bench/leave_one_out.py
# --variant easy_bg05) and the bundled models/bccd against one peer run
# (bench/peer_fasterrcnn.py ... --seed S --out runs/peer_bccd_sS, whose test detections are
# copied to bench/results/peer_bccd_sS_test-detections.json), paired bootstrap over the
# images (`evaluate.py --compare`, 1000 resamples). Seconds, no network:
#   sh bench/compare_peer.sh 1
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
S=${1:?usage: sh bench/compare_peer.sh PEER_SEED}
R=bench/results/peer_compare
PEER=bench/results/peer_bccd_s${S}_test-detections.json
[ -e $PEER ] || cp runs/peer_bccd_s$S/test-detections.json $PEER
mkdir -p $R
L=bench/results/leave_one_out/easy_bg05
for run in bccd bccd_s1 bccd_s2; do
  $PY evaluate.py --dataset ../shared/datasets/bccd --split test --detections $L/${run}_paper-detections.json \
    --compare $PEER --json $R/default_${run}_vs_peer_s$S.json > $R/default_${run}_vs_peer_s$S.txt
  grep "^these minus" $R/default_${run}_vs_peer_s$S.txt
done
$PY evaluate.py --dataset ../shared/datasets/bccd --split test --detections bench/results/bccd_test_voc-detections.json \
  --compare $PEER --json $R/models_bccd_vs_peer_s$S.json > $R/models_bccd_vs_peer_s$S.txt
grep "^these minus" $R/models_bccd_vs_peer_s$S.txt
