#!/bin/sh
# Does more data help the default recipe? Two BCCD runs trained on trainval (292 images,
# no validation, final weights) instead of train + 27 val images (232, 60 validating), the
# rest as the leave-one-out runs: 600 px set explicitly (the code they were trained with,
# 9ad116a, derived 576 from trainval's platelets; it derives 600 now, rounding up), seeds 3
# and 4, 100 minutes each, one thread each, side by side (~100 min):
#   SET=train.easy_bg_fraction=0.0 sh bench/trainval_members.sh train
#       each with an empty proposal cache, CACHE<seed> (the runs in the README: CACHE=/work/cache_tv);
#       they were trained before the default drew half the background from regions overlapping no
#       object, hence the SET to retrain them as they were
# then, on an idle machine, each alone (own MultiBox, as trained) and voting with the
# leave-one-out runs (runs/leave_one_out/bccd*, no flip), both paths (~10 min):
#   sh bench/trainval_members.sh score
# Runs go to runs/loo_variants/bccd_trainval_s{3,4}, scores to bench/results/trainval_members/.
# The background-sampling trainval members (the default's lever since 2026-11-27), seeds 5, 6:
#   TAG=trainval_easy_bg SEEDS="5 6" SET=train.easy_bg_fraction=0.5 sh bench/trainval_members.sh train
#   sh bench/trainval_members.sh score_easy_bg
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=../shared/datasets/bccd
L=runs/leave_one_out
V=runs/loo_variants
E=runs/trainval_members
R=bench/results/trainval_members
TAG=${TAG:-trainval}
case "$1" in
train)    # SEEDS (default "3 4"), TAG (default trainval: runs/loo_variants/bccd_TAG_sSEED) and SET
          # (more --set values) make other members, e.g. the background-sampling ones:
          #   TAG=trainval_easy_bg SEEDS="5 6" SET=train.easy_bg_fraction=0.5 sh bench/trainval_members.sh train
          # A killed run resumes when the same command is given again.
  for s in ${SEEDS:-3 4}; do
    [ -e $V/bccd_${TAG}_s$s/model.pt ] && continue                        # finished
    resume=""; [ -e $V/bccd_${TAG}_s$s/budget.json ] && resume=--resume
    OMP_NUM_THREADS=1 $PY train.py --dataset $DATA --out $V/bccd_${TAG}_s$s --minutes 100 $resume \
      --cache-dir ${CACHE:-runs/cache_${TAG}_s}$s --no-progress --set data.train_split=trainval train.eval_every=0 \
      train.seed=$s model.image_scale=600 model.max_image_side=800 "train.scale_jitter=[560,600,640]" $SET \
      >> runs/${TAG}_s$s.log 2>&1 &
  done
  wait ;;
score)
  mkdir -p $E/detections $R
  . bench/score_both_paths.sh
  score trainval_s3 $V/bccd_trainval_s3
  score trainval_s4 $V/bccd_trainval_s4
  $PY -m ensemble create $E/trainval_34 $V/bccd_trainval_s3 $V/bccd_trainval_s4 --multibox $V/bccd_trainval_s3/multibox > /dev/null
  score trainval_34_noflip $E/trainval_34 --set test.flip_vote=false
  $PY -m ensemble create $E/loo_012_trainval_34 $L/bccd $L/bccd_s1 $L/bccd_s2 $V/bccd_trainval_s3 $V/bccd_trainval_s4 \
    --multibox $L/bccd/multibox > /dev/null
  score loo_012_trainval_34_noflip $E/loo_012_trainval_34 --set test.flip_vote=false
  $PY -m ensemble create $E/loo_0_trainval_34 $L/bccd $V/bccd_trainval_s3 $V/bccd_trainval_s4 \
    --multibox $L/bccd/multibox > /dev/null
  score loo_0_trainval_34_noflip $E/loo_0_trainval_34 --set test.flip_vote=false ;;
score_easy_bg)   # the background-sampling trainval runs (TAG=trainval_easy_bg SEEDS="5 6" ... train), alone
                 # (own MultiBox, flip) and voting on models/bccd's MultiBox (easy_bg05 seed 0's), no flip.
                 # The bundle candidate, chosen before scoring: models/bccd's member-0 (whose MultiBox it
                 # is) and the two; the five is the larger alternative.
  B=runs/leave_one_out/easy_bg05
  mkdir -p $E/detections $R
  . bench/score_both_paths.sh
  score trainval_easy_bg_s5 $V/bccd_trainval_easy_bg_s5
  score trainval_easy_bg_s6 $V/bccd_trainval_easy_bg_s6
  $PY -m ensemble create $E/easy_bg_0_trainval_56 $B/bccd $V/bccd_trainval_easy_bg_s5 $V/bccd_trainval_easy_bg_s6 \
    --multibox $B/bccd/multibox > /dev/null
  score easy_bg_0_trainval_56_noflip $E/easy_bg_0_trainval_56 --set test.flip_vote=false
  $PY -m ensemble create $E/easy_bg_012_trainval_56 $B/bccd $B/bccd_s1 $B/bccd_s2 $V/bccd_trainval_easy_bg_s5 \
    $V/bccd_trainval_easy_bg_s6 --multibox $B/bccd/multibox > /dev/null
  score easy_bg_012_trainval_56_noflip $E/easy_bg_012_trainval_56 --set test.flip_vote=false ;;
*)
  echo "usage: sh bench/trainval_members.sh train|score|score_easy_bg" >&2; exit 2 ;;
esac
