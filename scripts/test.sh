#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 machine: installs the Debian packages, builds, runs the
# input-validation tests again under AddressSanitizer + UndefinedBehaviorSanitizer, the fuzz harnesses' regression
# corpus and a short fuzzing run, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh

if [ ! -d ../shared/assets ]; then
  echo "error: ../shared/assets (the shared test assets) must sit beside this checkout" >&2
  exit 1
fi

# A real llama.cpp (prebuilt, from the npm registry) for the interoperability tests; with
# LORA_REQUIRE_PEER=1 they fail instead of skipping when it is missing.
LLAMACPP_PEER_DIR="$(bash ../shared/tools/llamacpp-peer/setup.sh)"
export LLAMACPP_PEER_DIR LORA_REQUIRE_PEER=1

# The official openai client for the lora serve end-to-end test (tests/serve_client, versions pinned by its
# package-lock.json).
npm ci --prefix tests/serve_client --no-audit --no-fund --loglevel=error

# 1. Sanitizers: everything that parses files or user input, where a bad byte must become an error
#    and never a crash or an out-of-bounds read.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLORA_SANITIZE=ON -DLORA_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$(nproc)" --target lora_tests lora_cli
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
  ./build-asan/tests/lora_tests --gtest_brief=1 \
  --gtest_filter='BadInput*:*Gguf*:*Safetensors*:*Llama2c*:*HfFolder*:Tokenizer*Malformed*:Matmul*:Kernels*:DType*:DataReader*:ChatTemplate*:Encode*:Dataset*:TrainCli.BadInput*:TrainCli.ConfigFile*:BnbFolder*:QuantReference*:GgmlQuant*:AdapterBadInput*:CliAdapterBadInput*:PeftLayout*:ServeBadInput*:ServeRequest*:StopText*:ServeHttp*:ServeEngine*:VisionBadInput*:VisionIdx*:VisionImage*:VisionAdapterIo*:FuzzRegression*:RunFolder*'

# 2. The libFuzzer harnesses (clang): the committed regression corpus and a few seconds of fuzzing each.
bash scripts/fuzz.sh --ci

# 3. Release build and the whole suite.
bash scripts/build.sh
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 900
