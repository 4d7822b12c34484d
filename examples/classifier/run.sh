#!/usr/bin/env bash
# A few-shot new class by LoRA (lora.cpp issue 17): a small VGG-style net (config.json here: two conv blocks and a
# 128-wide hidden layer, for 28x28 grayscale) is pretrained on Fashion-MNIST with one class held out, then taught
# that class from 5 of its images plus replayed images of the old classes, with LoRA on every Conv2d and Linear and
# the head in modules_to_save. For comparison the same few-shot data trains the head alone and the whole net.
# Prints held-out-class and old-class test accuracy before and after, with the trainable parameter counts, and ends
# with one JSON line.
#
#   examples/classifier/run.sh            (LORA=path/to/lora, NEW_CLASS=1, WORK=folder to keep the outputs)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
LORA="${LORA:-$here/../../build/lora}"
DATA="${DATA:-/usr/share/datasets/fashion-mnist}"
NEW="${NEW_CLASS:-1}"               # Trouser
SHOTS="${SHOTS:-5}"
FEW_EPOCHS="${FEW_EPOCHS:-20}"
REPLAY="${REPLAY:-50}"              # images per old class replayed in the few-shot set
PRETRAIN_PER_CLASS="${PRETRAIN_PER_CLASS:-6000}"
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
[ -e "$DATA/train-images-idx3-ubyte.gz" ] || { echo "Fashion-MNIST not found in $DATA (apt-get install dataset-fashion-mnist)" >&2; exit 1; }

# Test accuracy on the held-out class and on the nine old ones (Fashion-MNIST's 10000 test images).
accuracies() {  # model [adapter] -> "new old"
  local adapter=()
  [ -n "${2:-}" ] && adapter=(--adapter "$2")
  local new old
  new=$("$LORA" classify eval -m "$1" "${adapter[@]}" -d "$DATA" --split t10k --class-max "$((NEW))=1000000" --max-per-class 0 --json | jq .accuracy)
  old=$("$LORA" classify eval -m "$1" "${adapter[@]}" -d "$DATA" --split t10k --class-max "$NEW=0" --json | jq .accuracy)
  echo "$new $old"
}
trainable() { grep -o '[0-9]* trainable parameters' "$1" | cut -d' ' -f1; }

mkdir -p "$WORK/init" && cp "$here/config.json" "$WORK/init/config.json"
echo "== pretraining on 9 classes (class $NEW held out), $PRETRAIN_PER_CLASS images each"
"$LORA" classify train -m "$WORK/init" --from-scratch --method full -d "$DATA" --class-max "$NEW=0" \
  --max-per-class "$PRETRAIN_PER_CLASS" --epochs 2 --batch-size 64 --lr 1e-3 --seed 1 --logging-steps 100 -o "$WORK/base"
read -r new_before old_before < <(accuracies "$WORK/base")
echo "before: held-out class $new_before, old classes $old_before"

# The few-shot set: the first $SHOTS training images of the new class and $REPLAY of each old class.
few=(-d "$DATA" --max-per-class "$REPLAY" --class-max "$NEW=$SHOTS" --batch-size 32 --seed 2 --logging-steps 0)
declare -A new_after old_after params
for method in lora head full; do
  case $method in
    lora) args=(--method lora --rank 4 --alpha 8 --lr 2e-3 --epochs "$FEW_EPOCHS") ;;
    head) args=(--method head --lr 2e-3 --epochs "$FEW_EPOCHS") ;;
    full) args=(--method full --lr 2e-4 --epochs "$FEW_EPOCHS") ;;
  esac
  echo "== few-shot: $method"
  "$LORA" classify train -m "$WORK/base" "${few[@]}" "${args[@]}" -o "$WORK/$method" | tee "$WORK/$method.log"
  params[$method]=$(trainable "$WORK/$method.log")
  if [ $method = full ]; then read -r n o < <(accuracies "$WORK/full")
  else read -r n o < <(accuracies "$WORK/base" "$WORK/$method"); fi
  new_after[$method]=$n old_after[$method]=$o
done

printf '\n%-6s %12s %18s %18s\n' method trainable "held-out class" "old classes"
printf '%-6s %12s %18s %18s\n' before - "$new_before" "$old_before"
for m in lora head full; do printf '%-6s %12s %18s %18s\n' $m "${params[$m]}" "${new_after[$m]}" "${old_after[$m]}"; done
echo "{\"new_class_accuracy\": ${new_after[lora]}, \"old_classes_accuracy_before\": $old_before, \"old_classes_accuracy_after\": ${old_after[lora]}, \"trainable_params\": ${params[lora]}}"
