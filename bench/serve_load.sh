#!/usr/bin/env bash
# lora serve under load, for BENCHMARKS.md: a smollm2-135m-shaped model (random weights, stories260K's
# 512-token vocabulary, f32) with 16 LoRA adapters (each `lora train`ed one step from its own seed), served
# with 16 slots; 16 concurrent clients over the base, 1, 4 and 16 distinct adapters, and one client alone.
# Loopback only; every run is bounded in requests and seconds. Run it under the CPU lock:
#
#   flock /tmp/lora-cpu.lock bash bench/serve_load.sh [WORK_DIR] [TARGETS] [RANK]
#
# TARGETS (default q_proj,v_proj, PEFT's default) and RANK (default 8) shape the adapters.
set -euo pipefail
cd "$(dirname "$0")/.."
LORA=./build/lora
WORK=${1:-/tmp/lora-serve-bench}
TARGETS=${2:-q_proj,v_proj}
RANK=${3:-8}
TOKENIZER=../shared/assets/models/stories260K/tok512.bin
mkdir -p "$WORK"

[ -f "$WORK/model/config.json" ] || $LORA init -o "$WORK/model" --tokenizer "$TOKENIZER" --shape smollm2-135m >/dev/null
adapters=()
for i in $(seq 1 16); do
  dir="$WORK/adapters-$TARGETS-r$RANK/a$i"
  [ -f "$dir/adapter_model.safetensors" ] ||
    $LORA train -m "$WORK/model" -d examples/demo/identity.jsonl -o "$dir" --rank "$RANK" --target "$TARGETS" \
      --max-steps 1 --seed "$i" --max-seq-len 64 --batch-size 2 --lr 1e-3 >/dev/null 2>&1
  adapters+=(--adapter "a$i=$dir")
done

$LORA serve -m "$WORK/model" "${adapters[@]}" --parallel 16 --ctx 256 --port 0 2>"$WORK/serve.log" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  grep -q "listening on" "$WORK/serve.log" && break
  sleep 0.1
done
url=$(grep -o "http://[0-9.]*:[0-9]*" "$WORK/serve.log" | head -1)

load() {  # label, then serve_load.mjs options
  local label=$1
  shift
  printf '%-34s %s\n' "$label" "$(node bench/serve_load.mjs --url "$url" --max-tokens 64 --max-seconds 120 "$@")"
}
all16=$(seq -s, -f "a%g" 1 16)
echo "adapters: $TARGETS, r $RANK; 64 generated tokens per request (ignore_eos), temperature 0.8"
load "1 client, base (one at a time)" --clients 1 --requests 8 --models model
load "16 clients, base" --clients 16 --requests 4 --models model
load "16 clients, 1 adapter" --clients 16 --requests 4 --models a1
load "16 clients, 4 adapters" --clients 16 --requests 4 --models a1,a2,a3,a4
load "16 clients, 16 adapters" --clients 16 --requests 4 --models "$all16"
