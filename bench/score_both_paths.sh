# Sourced by bench scripts (sh): score NAME MODEL [evaluate.py args...] runs evaluate.py on
# the test split (or $SPLIT) on both proposal paths (paper, fast = MultiBox only) and writes
# $R/NAME_{paper,fast}.{json,txt} and $E/detections/NAME_{paper,fast}-detections.json.
# Needs PY, DATA, E and R set by the caller.
score() {
  name=$1 model=$2; shift 2
  mkdir -p "$E/detections" "$R"
  for path in paper fast; do
    proposals=""; [ $path = fast ] && proposals="--proposals multibox"
    $PY evaluate.py --dataset $DATA --split ${SPLIT:-test} --model $model --metric voc --quiet $proposals "$@" \
      --json $R/${name}_$path.json --save-detections $E/detections/${name}_$path-detections.json > $R/${name}_$path.txt
  done
}
