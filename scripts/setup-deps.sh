#!/usr/bin/env bash
# Installs the Debian packages lora.cpp needs to build, test and benchmark. Idempotent:
# packages already present are skipped, so a second run costs a few dpkg queries.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  libdnnl-dev            # GEMM (fp32 / bf16, AVX-512 aware)
  liblapacke-dev         # SVD (PiSSA init, SVD merging of adapters)
  nlohmann-json3-dev     # JSON (config.json, tokenizer.json, safetensors headers)
  libcli11-dev           # command-line parsing
  libfmt-dev
  libyaml-cpp-dev        # training config files (-c FILE)
  libcairo2-dev          # the loss-curve PNG
  libcpp-httplib-dev     # lora serve: the HTTP server
  chromium               # lora serve's page, tested in a real (headless) browser
  libpcre2-dev           # Unicode-aware pre-tokenizer regexes
  libsentencepiece-dev   # Llama 2 tokenizer.model
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin   # data-parallel training: mpirun -np N lora train (optional at build time)
  python3 python3-torch python3-numpy   # PyTorch oracle for tests only
  libpng-dev libjpeg-dev zlib1g-dev   # image classifiers: PNG / JPEG input, gzipped IDX
  dataset-fashion-mnist  # the classifier example and tests (IDX files under /usr/share/datasets/fashion-mnist)
  python3-torchvision    # torchvision oracle for the image classifiers (tests only)
  clang libclang-rt-14-dev libomp-dev   # libFuzzer harnesses (scripts/fuzz.sh): -fsanitize=fuzzer, clang's OpenMP
  libopenblas0-pthread   # a real BLAS under PyTorch, so bench/pytorch_*baseline.py is a fair baseline
)

# Node.js and npm run the llama.cpp peer of the interoperability tests (../shared/tools/llamacpp-peer) and the
# lora serve tests' clients (the official openai package, tests/serve_client); a machine that already has them
# on PATH (a Node.js with its own npm) keeps them.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-deps: all packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "setup-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
