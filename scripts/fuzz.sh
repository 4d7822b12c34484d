#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/, clang, ASan + UBSan) into ./build-fuzz and runs them one after the
# other. Any crash, sanitizer report, leak, input slower than 1 s, or allocation over 2 GB stops the script
# with a non-zero exit; libFuzzer writes the input to build-fuzz/artifacts/HARNESS/.
#
#   bash scripts/fuzz.sh [SECONDS]       every harness SECONDS (default 60), on a corpus kept in
#                                        build-fuzz/corpus/ (seeded from ../shared/assets, the tests and
#                                        fuzz/regressions/), so a second campaign goes on from the first
#   bash scripts/fuzz.sh --ci [SECONDS]  CI: the committed regression corpus and the seeds once, then
#                                        SECONDS (default 5) of fuzzing per harness
#   FUZZ_ONLY="fuzz_gguf fuzz_safetensors" restricts either mode to those harnesses.
#
# Each run's libFuzzer output goes to build-fuzz/logs/HARNESS.log (executions, coverage, CPU seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

ci=0
if [ "${1:-}" = "--ci" ]; then ci=1; shift; fi
seconds="${1:-$([ $ci = 1 ] && echo 5 || echo 60)}"

assets=../shared/assets
if [ ! -d "$assets" ]; then
  echo "error: $assets (the shared test assets) must sit beside this checkout" >&2
  exit 1
fi

cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" -DLORA_FUZZ=ON -DLORA_BUILD_TESTS=OFF -DLORA_BUILD_BENCH=OFF \
  -DLORA_MPI=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzzers

rm -rf build-fuzz/seeds
python3 fuzz/make_seeds.py "$assets" tests/data build-fuzz/seeds

harnesses=${FUZZ_ONLY:-$(cd fuzz && ls fuzz_*.cpp | sed 's/\.cpp$//')}
# Leaks are findings; one second per input and 2 GB are the limits the issue sets.
limits=(-timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=2048 -detect_leaks=1)
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
mkdir -p build-fuzz/logs
# nice alone does not yield the cores when the kernel groups processes by session (autogroup: a campaign
# started with setsid or from another terminal gets half the machine whatever its nice value); lower the
# whole group's weight too, where the kernel allows it.
[ $ci = 1 ] || { echo 19 > /proc/self/autogroup; } 2>/dev/null || true

status=0
for h in $harnesses; do
  bin=build-fuzz/fuzz/$h
  regressions=fuzz/regressions/$h
  corpus=build-fuzz/corpus/$h
  [ $ci = 1 ] && corpus=build-fuzz/ci-corpus/$h  # the campaign's corpus is left alone
  artifacts=build-fuzz/artifacts/$h
  mkdir -p "$corpus" "$artifacts" "$regressions"
  dict=()
  [ -f "fuzz/dicts/$h.dict" ] && dict=(-dict="fuzz/dicts/$h.dict")
  log=build-fuzz/logs/$h.log
  start=$(date +%s)
  failed=0
  if [ $ci = 1 ]; then
    # Every committed regression input and every seed once, then a short run from them (no corpus kept).
    if ! "$bin" "${limits[@]}" -runs=0 "$regressions" "build-fuzz/seeds/$h" >"$log" 2>&1 ||
       ! "$bin" "${limits[@]}" "${dict[@]}" -max_total_time="$seconds" -artifact_prefix="$artifacts/" \
         -print_final_stats=1 "$corpus" "$regressions" "build-fuzz/seeds/$h" >>"$log" 2>&1; then
      failed=1
    fi
    rm -rf "$corpus"
  else
    # the CPU seconds the run took (user + system), for FUZZING.md
    TIMEFORMAT='cpu_seconds: %U %S'
    if ! { time nice -n 19 "$bin" "${limits[@]}" "${dict[@]}" -max_total_time="$seconds" -artifact_prefix="$artifacts/" \
           -print_final_stats=1 "$corpus" "$regressions" "build-fuzz/seeds/$h" >"$log" 2>&1; } 2>>"$log.cpu"; then
      failed=1
    fi
  fi
  execs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -ao '[0-9]*$' || true)
  cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -1 | grep -ao '[0-9]*' || true)
  if grep -aqE '^==[0-9]+==ERROR|^SUMMARY|runtime error|fuzz: |Test unit written' "$log" || [ $failed = 1 ]; then
    echo "fuzz: $h FAILED after $(( $(date +%s) - start )) s (log: $log)" >&2
    grep -aE 'ERROR|SUMMARY|runtime error|fuzz: |Test unit written' "$log" | head -5 >&2
    status=1
  else
    cpu=""
    [ $ci = 1 ] || cpu=$(tail -1 "$log.cpu" 2>/dev/null | awk '/cpu_seconds/ {printf ", %.0f CPU s", $2 + $3}')
    echo "fuzz: $h ok: ${execs:-?} executions, coverage ${cov:-?} edges, $(( $(date +%s) - start )) s${cpu}"
  fi
done
exit $status
