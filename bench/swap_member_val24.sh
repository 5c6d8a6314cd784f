#!/bin/sh
# Scores retrained members in their bundled places: models/bccd with member-SLOT replaced by
# MEMBER_DIR (one pair or several), on the val images that every bundled member held out ("val-24"), both proposal
# paths, as the member-level decisions of docs/ablation.md are made (adopt at +0.003 on the
# mean of both paths over the bundle's fast 0.9090 / paper 0.9082, bench/results/refine/val24.md).
#
#   sh bench/swap_member_val24.sh NAME MEMBER_DIR SLOT [MEMBER_DIR SLOT ...]
#   sh bench/swap_member_val24.sh lrwd_member0 runs/lrwd_member0 0
#   sh bench/swap_member_val24.sh img704_bundle runs/img704_member0 0 runs/img704_member1 1 runs/img704_member2 2
#   (every slot swapped: a whole new bundle on models/bccd's MultiBox, scored the same way)
#   (CACHE_DIR=DIR: a proposal cache that already holds the val split's boxes)
#
# Writes runs/NAME_ens (the swapped ensemble), bench/results/screen/NAME_val_{paper,fast}.{json,txt},
# their detections under bench/results/screen/detections/, and bench/results/screen/NAME_val24.md.
set -e
cd "$(dirname "$0")/.."
usage="usage: sh bench/swap_member_val24.sh NAME MEMBER_DIR SLOT [MEMBER_DIR SLOT ...]"
[ $# -ge 3 ] && [ $(($# % 2)) -eq 1 ] || { echo "$usage" >&2; exit 2; }
swap=$1; shift   # (not "name": score() below sets that)
for k in 0 1 2; do eval "member_$k=models/bccd/member-$k"; done
while [ $# -gt 0 ]; do
  member=$1 slot=$2; shift 2
  [ -e "$member/model.pt" ] || { echo "swap_member_val24.sh: $member has no model.pt (still training?)" >&2; exit 2; }
  case $slot in 0|1|2) ;; *) echo "swap_member_val24.sh: slot '$slot': models/bccd has members 0, 1, 2" >&2; exit 2;; esac
  eval "member_$slot=\$member"   # (slot is a digit here; the path is not re-parsed)
done
PY=${PYTHON:-.venv/bin/python} DATA=../shared/datasets/bccd E=bench/results/screen R=bench/results/screen SPLIT=val
members="$member_0 $member_1 $member_2"
$PY -m ensemble create "runs/${swap}_ens" $members --multibox models/bccd/multibox
. bench/score_both_paths.sh
score "${swap}_val" "runs/${swap}_ens" --cache-dir "${CACHE_DIR:-runs/${swap}_ens_cache}"
$PY bench/rescore_probe.py --dataset $DATA --split val --held-out-by models/bccd --as-detected \
  --detections $E/detections/${swap}_val_fast-detections.json $E/detections/${swap}_val_paper-detections.json \
  > "$R/${swap}_val24.md.tmp"     # (not piped through tee: set -e would not see the probe fail)
mv "$R/${swap}_val24.md.tmp" "$R/${swap}_val24.md" && cat "$R/${swap}_val24.md"
