#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs the Debian packages, builds, and runs the
# pretrained stories260K model (from ../shared/assets) end to end: model info, greedy generation from
# BOS, a sampled story from a prompt, and perplexity on a short text.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
bash scripts/build.sh

MODEL=../shared/assets/models/stories260K/stories260K.bin
LORA=./build/lora
echo; echo "== lora info $MODEL"
$LORA info "$MODEL"
echo; echo "== greedy continuation from BOS"
$LORA generate -m "$MODEL" --temp 0 -n 120
echo; echo "== sampled story from a prompt (seed 42)"
$LORA generate -m "$MODEL" -p "Once upon a time, there was a little dog" --temp 0.8 --top-p 0.9 --seed 42 -n 150
echo; echo "== perplexity on tests/data/tinystory.txt"
$LORA perplexity -m "$MODEL" -f tests/data/tinystory.txt --ctx 128
