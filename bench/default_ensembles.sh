#!/bin/sh
# Models trained with the default recipe, voting: the BCCD leave-one-out runs
# (bench/leave_one_out.py: `train.py --dataset ../shared/datasets/bccd --minutes 100`, seeds
# 0, 1, 2; each trained its own MultiBox) as ensembles that all score seed 0's MultiBox
# boxes (`python -m ensemble create ... --multibox`), with and without flip voting, on the
# test split, both paths (~15 min on an idle machine):
#   sh bench/default_ensembles.sh
# Ensembles and detections go to runs/default_ensembles/, scores to bench/results/default_ensembles/.
# With the two scale-cap runs on disk (runs/loo_variants/bccd_scalecap_s0, _s1: the default
# recipe trained by branch scale-cap, docs/leave_one_out.md) it also scores all
# five voting (five_runs_noflip).
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=../shared/datasets/bccd
L=runs/leave_one_out
E=runs/default_ensembles
R=bench/results/default_ensembles
mkdir -p $E/detections $R
. bench/score_both_paths.sh
# seed 1's classifier on seed 0's MultiBox (its own: bench/results/leave_one_out/bccd_s1_*.json)
$PY -m ensemble create $E/s1_on_mb0 $L/bccd_s1 --multibox $L/bccd/multibox > /dev/null
score s1_on_mb0 $E/s1_on_mb0
members="$L/bccd $L/bccd_s1"
[ -d $L/bccd_s2 ] && members="$members $L/bccd_s2"
[ -d $L/bccd_s2 ] && { $PY -m ensemble create $E/s2_on_mb0 $L/bccd_s2 --multibox $L/bccd/multibox > /dev/null
                       score s2_on_mb0 $E/s2_on_mb0; }
$PY -m ensemble create $E/seeds_01 $L/bccd $L/bccd_s1 --multibox $L/bccd/multibox > /dev/null
score seeds_01 $E/seeds_01
score seeds_01_noflip $E/seeds_01 --set test.flip_vote=false
if [ -d $L/bccd_s2 ]; then
  $PY -m ensemble create $E/seeds_012 $members --multibox $L/bccd/multibox > /dev/null
  score seeds_012 $E/seeds_012
  score seeds_012_noflip $E/seeds_012 --set test.flip_vote=false
fi
# multi-scale testing (test.scales) on seed 0 alone: its training saw 560 and 600 (640 is
# capped to 600 by max_image_side 800 on BCCD's 640 x 480 images)
for scales in 560,600 600,680 560,600,680; do
  score s0_scales_$(echo $scales | tr , _) $L/bccd --set "test.scales=[$scales]"
done
# five runs of the default recipe voting: the three above and the two scale-cap runs (their
# test scale is the same, 600 px; only their training scales differ)
V=runs/loo_variants
if [ -d $L/bccd_s2 ] && [ -f $V/bccd_scalecap_s0/model.pt ] && [ -f $V/bccd_scalecap_s1/model.pt ]; then
  $PY -m ensemble create $E/five_runs $members $V/bccd_scalecap_s0 $V/bccd_scalecap_s1 --multibox $L/bccd/multibox > /dev/null
  score five_runs_noflip $E/five_runs --set test.flip_vote=false
fi
