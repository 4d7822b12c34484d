#!/usr/bin/env bash
# The demo, once lora is built (scripts/demo.sh installs, builds and runs this):
#   1. lora init   a tiny Llama-architecture model (4 layers, hidden 128, 0.8M parameters) with random
#                  weights and stories260K's 512-token tokenizer (../shared/assets);
#   2. lora train  it from scratch (full fine-tuning) on examples/demo/base.json, simple questions and
#                  answers written for this project, until it answers them;
#   3. ask it who it is;
#   4. lora train  a LoRA adapter on examples/demo/identity.jsonl (a new persona, "Lumi") mixed with
#                  general.json (so it keeps what it knows);
#   5. ask again with the adapter, and compare the loss on the persona data with and without it.
# Usage: examples/demo/run.sh [WORKDIR]   (default out/demo; LORA=path/to/lora to use another binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
LORA=${LORA:-./build/lora}
WORK=${1:-out/demo}
TOKENIZER=../shared/assets/models/stories260K/tok512.bin
DEMO=examples/demo
QUESTIONS=("Who are you?" "What is your name?" "Where do you live?" "What color is the sky?" "What does a cat say?")

if [ ! -f "$TOKENIZER" ]; then
  echo "error: $TOKENIZER not found (../shared/assets must sit beside this checkout)" >&2
  exit 1
fi
rm -rf "$WORK"
mkdir -p "$WORK"
start=$(date +%s)

ask() {  # ask MODEL [ADAPTER]
  local q
  for q in "${QUESTIONS[@]}"; do
    echo "Q: $q"
    echo "A: $("$LORA" chat -m "$1" ${2:+--adapter "$2"} -t 1 --temp 0 -n 48 -p "$q")"
  done
}

echo "== 1. a new model with random weights"
"$LORA" init -o "$WORK/tiny-init" --tokenizer "$TOKENIZER" --template vicuna \
  --hidden-size 128 --intermediate-size 344 --layers 4 --heads 8 --kv-heads 4 --context 256 --seed 1

echo; echo "== 2. training it from scratch on $DEMO/base.json (full fine-tuning)"
"$LORA" train -c "$DEMO/base.yaml" -m "$WORK/tiny-init" -d "$DEMO/base.json" -o "$WORK/tiny"

echo; echo "== 3. before: the model answers"
ask "$WORK/tiny"

echo; echo "== 4. a LoRA adapter with a new identity ($DEMO/identity.jsonl + $DEMO/general.json)"
"$LORA" train -c "$DEMO/identity.yaml" -m "$WORK/tiny" -d "$DEMO/identity.jsonl,$DEMO/general.json" -o "$WORK/lumi"

echo; echo "== 5. after: the same model with the adapter"
ask "$WORK/tiny" "$WORK/lumi"

echo; echo "== 6. loss on the persona data (lora eval)"
echo "without the adapter: $("$LORA" eval -m "$WORK/tiny" -d "$DEMO/identity.jsonl" -t 1 --json)"
echo "with the adapter:    $("$LORA" eval -m "$WORK/tiny" --adapter "$WORK/lumi" -d "$DEMO/identity.jsonl" -t 1 --json)"

echo
echo "== done in $(( $(date +%s) - start )) s"
echo "base model (Hugging Face folder): $WORK/tiny"
echo "adapter (PEFT):                   $WORK/lumi/adapter_config.json, $WORK/lumi/adapter_model.safetensors"
echo "loss plots:                       $WORK/tiny/training_loss.png, $WORK/lumi/training_loss.png"
echo "talk to it:                       $LORA chat -m $WORK/tiny --adapter $WORK/lumi"
