#!/bin/sh
# Retrains the bundled models into runs/ (resumable: rerun after a kill), in this order, or
# only the parts named (`sh bench/train_bundled.sh raccoon`; parts: bccd raccoon bccd_warp
# bccd_plain; bccd_warp and bccd_plain need runs/bccd's MultiBox):
#   runs/bccd, runs/raccoon  every member of models/bccd and models/raccoon trained again
#                   from the config.yaml it carries, two at a time at one thread each (the
#                   thread count they were trained at), then ensembled on member-0's
#                   MultiBox as the bundle is (`python -m ensemble create ... --multibox`);
#                   each member keeps its own MultiBox, whose objectness the bundles'
#                   test.objectness (in the members' config.yaml) averages.
#                   The members were `--minutes` runs of the default recipe, each with its
#                   own MultiBox, seeds 0, 1, 2 (JOBS=3 trains all three at once):
#                     train.py --dataset ../shared/datasets/bccd --minutes 100 --set train.seed=S
#                     train.py --dataset ../shared/datasets/raccoon --minutes 45 --set train.seed=S
#                   (BCCD's through `bench/leave_one_out.py --variant easy_bg05 --set
#                   train.easy_bg_fraction=0.5`, before the default had it). A --minutes run
#                   fits its epochs to the pace it measures, so run again it is a new draw;
#                   but its config.yaml records the epochs and learning-rate steps it
#                   fitted, and trained from that at the same thread count with the same
#                   proposals the run repeats bit for bit (tests/test_own_data.py;
#                   `python bench/same_weights.py models/raccoon runs/raccoon` checks).
#                   Both bundles' members were trained after selective search was seeded
#                   per image (cd5c1a5; models/bccd's are this script's own retrain of the
#                   earlier bundle's, models/raccoon's the runs/raccoon_rep runs, both
#                   2026-11-28), so they repeat exactly (README, *Bundled models*)
#   runs/bccd_warp  BCCD in R-CNN's warp mode (bench/recipes/bccd_warp.yaml), for the
#                   README's warp-vs-shared rows; it reuses runs/bccd's MultiBox
# then models/ is made from them by bench/bundle_models.py. Logs: runs/*.log
#   python bench/bundle_models.py runs/bccd models/bccd --dataset ../shared/datasets/bccd \
#     --recipe "configs/default.yaml adapted to the data (train.easy_bg_fraction 0.5), seeds 0 / 1 / 2, on member-0's MultiBox" --set test.flip_vote=false test.objectness=0.25
#   python bench/bundle_models.py runs/raccoon models/raccoon --dataset ../shared/datasets/raccoon \
#     --recipe "configs/default.yaml adapted to the data (train.py --dataset ../shared/datasets/raccoon --minutes 45), seeds 0 / 1 / 2, on member-0's MultiBox"
# (models/bccd's members are the retrain of the leave-one-out runs runs/leave_one_out/easy_bg05/bccd,
# bccd_s1 and bccd_s2 from their config.yaml; flip voting is off in its bundle: it doubles the network time, and
# the previous bundle's three voted to 0.890 / 0.890 without it, 0.887 / 0.889 with it.)
# models/bccd_warp was trained at commit fe8948e, on that day's 416-px MultiBox
# (bench/recipes/bccd_screening.yaml's); retrained here it gets the default run's 608-px one.
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PARTS=${*:-bccd raccoon bccd_warp bccd_plain}
for part in $PARTS; do
  case $part in bccd|raccoon|bccd_warp|bccd_plain) ;;
    *) echo "train_bundled.sh: unknown part '$part' (bccd, raccoon, bccd_warp, bccd_plain)" >&2; exit 2;; esac
done
mkdir -p runs

JOBS=${JOBS:-2}   # members trained at once, one thread each (3 on 2 cores: slower each, the same weights)
retrain_members() {   # NAME: models/NAME/member-K -> runs/NAME/member-K, JOBS at a time, then the ensemble
  pids=""; running=0
  for cfg in models/$1/member-*/config.yaml; do
    member=$(basename "$(dirname "$cfg")")
    out=runs/$1/$member
    [ -e $out/model.pt ] && continue                                     # finished
    resume=""; [ -d $out ] && resume="--resume"
    # its own proposal cache: MultiBox boxes computed at another thread count (an evaluation
    # run's) can differ in the last bits, and the classifier's training would then differ
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $PY train.py --config $cfg --out $out $resume --no-progress \
      --cache-dir runs/$1/cache >> runs/$1-$member.log 2>&1 &
    pids="$pids $!"; running=$((running + 1))
    if [ $running = "$JOBS" ]; then for pid in $pids; do wait $pid; done; pids=""; running=0; fi   # (set -e sees a failed job only through wait)
  done
  for pid in $pids; do wait $pid; done
  $PY -m ensemble create runs/$1 $(ls -d runs/$1/member-*) --multibox runs/$1/member-0/multibox >> runs/$1.log 2>&1
}

bccd() { retrain_members bccd; }
raccoon() { retrain_members raccoon; }
bccd_warp() {
  mkdir -p runs/bccd_warp
  [ -e runs/bccd_warp/multibox ] || cp -r runs/bccd/member-0/multibox runs/bccd_warp/multibox
  $PY train.py --config bench/recipes/bccd_warp.yaml --out runs/bccd_warp --resume --no-progress >> runs/bccd_warp.log 2>&1
}

bccd_plain() {   # not bundled: the recipe without class-balanced sampling, 2 seeds (README, *Bundled models*)
  mkdir -p runs/bccd_plain
  [ -e runs/bccd_plain/multibox ] || cp -r runs/bccd/member-0/multibox runs/bccd_plain/multibox
  $PY train.py --config bench/recipes/bccd_plain_sampling.yaml --out runs/bccd_plain --ensemble 2 --resume --no-progress >> runs/bccd_plain.log 2>&1
}

for part in $PARTS; do $part; done
