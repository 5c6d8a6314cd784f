#!/bin/sh
# Does the default recipe lose to the peer, beyond what the test images' own spread moves?
# Each leave-one-out run of today's default (bench/leave_one_out.py --variant easy_bg05)
# and the bundled model against one peer run (bench/peer_fasterrcnn.py ... --seed S --out
# runs/peer_<dataset>_sS, whose test detections are copied to
# bench/results/peer_<dataset>_sS_test-detections.json), paired bootstrap over the images
# (`evaluate.py --compare`, 1000 resamples). Seconds, no network:
#   sh bench/compare_peer.sh 1            # BCCD
#   sh bench/compare_peer.sh 1 raccoon
# The leave-one-out detections can come from elsewhere, e.g. rescored with test.objectness
# by bench/rescore_probe.py --save-rescored (named TAG_<run>_vs_peer_sS.* in the results):
#   LOO_DIR=bench/results/objectness/leave_one_out TAG=objectness sh bench/compare_peer.sh 1
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
S=${1:?usage: sh bench/compare_peer.sh PEER_SEED [bccd|raccoon]}
D=${2:-bccd}
case $D in
  bccd) RUNS="bccd bccd_s1 bccd_s2" ;;
  raccoon) RUNS="raccoon raccoon_s1 raccoon_s2" ;;
  *) echo "compare_peer.sh: unknown dataset '$D' (bccd or raccoon)" >&2; exit 2 ;;
esac
R=bench/results/peer_compare
PEER=bench/results/peer_${D}_s${S}_test-detections.json
[ -e $PEER ] || cp runs/peer_${D}_s$S/test-detections.json $PEER
mkdir -p $R
L=${LOO_DIR:-bench/results/leave_one_out/easy_bg05}
T=${TAG:-default}
for run in $RUNS; do
  $PY evaluate.py --dataset ../shared/datasets/$D --split test --detections $L/${run}_paper-detections.json \
    --compare $PEER --json $R/${T}_${run}_vs_peer_s$S.json > $R/${T}_${run}_vs_peer_s$S.txt
  echo "$T $run: $(grep '^these minus' $R/${T}_${run}_vs_peer_s$S.txt)"
done
$PY evaluate.py --dataset ../shared/datasets/$D --split test --detections bench/results/${D}_test_voc-detections.json \
  --compare $PEER --json $R/models_${D}_vs_peer_s$S.json > $R/models_${D}_vs_peer_s$S.txt
echo "models/$D: $(grep '^these minus' $R/models_${D}_vs_peer_s$S.txt)"
