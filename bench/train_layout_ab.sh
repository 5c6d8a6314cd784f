#!/bin/sh
# Whole training steps, NCHW against NHWC (train.channels_last), as train.py runs them: the
# bundled member-0's recipe and MultiBox, its proposals from CACHE, STEPS classifier steps
# (images loaded, regions sampled, forward, backward, SGD, Polyak average; no validation),
# the two layouts alternating twice, at THREADS threads. Prints seconds for the STEPS steps
# (train.py's own count, history.csv) and images/s.
#   THREADS=1 STEPS=60 CACHE=runs/lrwd_member0/cache sh bench/train_layout_ab.sh
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-1} STEPS=${STEPS:-60} CACHE=${CACHE:-runs/layout_ab_cache}
W=${WORK:-runs/layout_ab}
echo "# $STEPS classifier steps of models/bccd/member-0's recipe, $THREADS thread(s), $(date -u '+%Y-%m-%d %H:%M')"
echo "| layout | seconds | images/s |"
echo "|---|---|---|"
for cl in false true false true; do
  rm -rf "$W/$cl" && mkdir -p "$W/$cl" && cp -rL models/bccd/member-0/multibox "$W/$cl/"
  OMP_NUM_THREADS=$THREADS $PY train.py --config models/bccd/member-0/config.yaml --out "$W/$cl" --stage classifier \
    --set train.channels_last=$cl train.eval_every=0 --cache-dir "$CACHE" --no-progress --max-steps "$STEPS" \
    > "$W/$cl.log" 2>&1 || { echo "train_layout_ab.sh: train.py failed (channels_last=$cl); see $W/$cl.log" >&2; exit 1; }
  layout=NCHW; [ $cl = true ] && layout=NHWC
  echo "| $layout | $(tail -1 "$W/$cl/history.csv" | cut -d, -f5) | $(tail -1 "$W/$cl/history.csv" | cut -d, -f6) |"
done
