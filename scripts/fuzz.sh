#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ and appends one row per target to fuzz/RESULTS.md.
#
#   scripts/fuzz.sh [TARGET|all] [RUNS]      default: all targets, 10000000 inputs each
#
# Environment:
#   FUZZ_MAX_TIME=SECONDS  also stop each target after this long (libFuzzer -max_total_time);
#                          the row then shows how many inputs actually ran
#   FUZZ_TOOLCHAIN=NAME    the nightly toolchain (default: nightly)
#   FUZZ_NOTE=TEXT         a note for the rows (e.g. why the run was short)
#
# Needs a nightly toolchain (`rustup toolchain install nightly`), a C++ compiler (libfuzzer-sys
# builds libFuzzer) and crates.io. It does not need cargo-fuzz: it builds with the flags
# `cargo fuzz build` uses (SanitizerCoverage for libFuzzer, AddressSanitizer), for the host
# target only so build scripts and proc macros stay uninstrumented. Where cargo-fuzz is
# installed, `cd fuzz && cargo +nightly fuzz run <target>` runs the same targets.
#
# Each target reads its committed seeds (fuzz/seeds/<target>/, read only) and grows a working
# corpus in fuzz/corpus/<target>/ (not committed); a crash input lands in
# fuzz/artifacts/<target>/. The script exits non-zero if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

target_arg=${1:-all}
runs=${2:-10000000}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
max_time=${FUZZ_MAX_TIME:-}
note=${FUZZ_NOTE:-}

targets=(signaling_message invite_token vp8_descriptor h264_keyframe red_primary data_channel
  stun_ufrag rtc_datagram redis_reply)
if [ "$target_arg" != all ]; then
  found=no
  for t in "${targets[@]}"; do [ "$t" = "$target_arg" ] && found=yes; done
  [ $found = yes ] || { echo "unknown target $target_arg; one of: ${targets[*]}" >&2; exit 2; }
  targets=("$target_arg")
fi

host=$(rustc +"$toolchain" -vV | sed -n 's/^host: //p')
rustc_version=$(rustc +"$toolchain" --version)

# cargo-fuzz's defaults (inline 8-bit counters, PC table, compare tracing) plus ASan, overflow
# checks and debug assertions, and `--cfg fuzzing`.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Zsanitizer=address \
-Cdebug-assertions -Coverflow-checks"
build_start=$(date +%s)
cargo +"$toolchain" build --manifest-path fuzz/Cargo.toml --release --target "$host" --bins
echo "build: $(($(date +%s) - build_start)) s"

results=fuzz/RESULTS.md
if [ ! -f "$results" ]; then
  cat >"$results" <<'EOF'
# Fuzzing results

One row per target per run of `scripts/fuzz.sh [target|all] [runs]` (newest last). "inputs" is
what libFuzzer reports as run; "asked" is the `-runs` count and the time cap, if any
(`FUZZ_MAX_TIME`). Crashes must be 0: a crash input is kept in `fuzz/artifacts/<target>/` and
fixed with a regression test. Corpus is the working corpus after the run (files), seeds
excluded.

| date (UTC) | target | inputs | asked | wall time | crashes | corpus | toolchain | note |
| --- | --- | ---: | --- | ---: | ---: | ---: | --- | --- |
EOF
fi

failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  log=$(mktemp)
  args=(-runs="$runs" -max_len=4096 -timeout=30 -print_final_stats=1
    -artifact_prefix="fuzz/artifacts/$t/")
  [ -n "$max_time" ] && args+=(-max_total_time="$max_time")
  echo "== $t: ${args[*]}"
  start=$(date +%s%N)
  status=0
  "fuzz/target/$host/release/$t" "${args[@]}" "fuzz/corpus/$t" "fuzz/seeds/$t" >"$log" 2>&1 ||
    status=$?
  wall=$((($(date +%s%N) - start) / 1000000000))
  tail -n 5 "$log"
  done_runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
  [ -z "$done_runs" ] && done_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" |
    tail -n 1)
  crashes=$(($(find "fuzz/artifacts/$t" -type f | wc -l) - before))
  row_note=$note
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    if grep -q 'run interrupted' "$log"; then
      # A signal from outside (SIGINT/SIGTERM) stopped it: a short run, not a finding.
      row_note="${note:+$note; }interrupted by a signal"
    else
      crashes=1 # libFuzzer failed without leaving an input: still a failure to look at
    fi
  fi
  if [ "$crashes" -ne 0 ]; then
    failed+=("$t")
    cp "$log" "fuzz/artifacts/$t/last-run.log"
    grep -m 20 -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" || true
  fi
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  asked="$runs${max_time:+, ${max_time} s cap}"
  printf '| %s | %s | %s | %s | %d s | %d | %d | %s | %s |\n' \
    "$(date -u '+%Y-%m-%d %H:%M')" "$t" "${done_runs:-?}" "$asked" "$wall" "$crashes" \
    "$corpus" "$rustc_version" "$row_note" >>"$results"
  rm -f "$log"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
