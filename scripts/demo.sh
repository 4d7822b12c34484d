#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine, offline: installs the Debian packages, builds, and runs
# the demo of the whole idea (examples/demo/run.sh, a few minutes on 2 cores): a tiny Llama model is
# trained from scratch on questions and answers written for this project, then a LoRA adapter gives it
# a new persona; its answers before and after are printed, with where the adapter and loss plots went.
# Needs only ../shared/assets beside the checkout (for the 512-token tokenizer of stories260K).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
bash scripts/build.sh
bash examples/demo/run.sh "$@"
