#!/usr/bin/env bash
# Soak (issue 7): CYCLES join/leave cycles of synthetic participants against one release SFU,
# in rounds of ROOMS x 3 participants that join, exchange media for ROUND_SECS and leave. The
# first WARMUP_ROUNDS rounds warm the process up (allocator arenas, caches, first consults);
# then, with nobody connected, the SFU's RSS, open fds, threads, tokio tasks and /metrics
# gauges are sampled (the baseline), again after every round (idle), and at the end.
# Passes when at the end, everyone gone: RSS is within 10 % of the baseline, fds and tokio
# tasks are back at the baseline, rooms/participants/tracks are 0 and the number of /metrics
# series has not grown. Not part of the test command (about 3 minutes).
#
# Needs: cargo build --release -p consult-sfu -p consult-bots. Loopback only; stops by itself.
# Env: CYCLES (1000), ROOMS (10), ROUND_SECS (3), WARMUP_ROUNDS (3), SFU, SYNTH,
#      OUT (CSV of every sample; default a temp file, printed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SFU="${SFU:-$root/target/release/consult-sfu}"
SYNTH="${SYNTH:-$root/target/release/synth}"
CYCLES="${CYCLES:-1000}"
ROOMS="${ROOMS:-10}"
ROUND_SECS="${ROUND_SECS:-3}"
WARMUP_ROUNDS="${WARMUP_ROUNDS:-3}"
# shellcheck source=load-tests/soak-lib.sh
source "$root/load-tests/soak-lib.sh"

for bin in "$SFU" "$SYNTH"; do
  [[ -x "$bin" ]] || { echo "soak: $bin is missing; run: cargo build --release -p consult-sfu -p consult-bots" >&2; exit 2; }
done

work="$(mktemp -d)"
sfu_pid=""
cleanup() {
  [[ -n "$sfu_pid" ]] && kill "$sfu_pid" 2>/dev/null || true
  [[ -n "$sfu_pid" ]] && wait "$sfu_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The participant cap and the saturation limits stay off: the soak measures leaks, and a
# refused join would make a round smaller than planned.
sfu_start "$work" --max-node-participants off --admission-max-lag-ms off --admission-max-cpu off
per_round=$((ROOMS * 3))
rounds=$(((CYCLES + per_round - 1) / per_round))
OUT="${OUT:-$work/soak.csv}"
echo "$SOAK_CSV_HEADER" >"$OUT"
echo "soak: SFU pid $sfu_pid at http://$http; $rounds rounds of $per_round participants ($((rounds * per_round)) join/leave cycles), $WARMUP_ROUNDS of them warm-up"
sfu_sample "$sfu_pid" "$http" start >>"$OUT"

cycles=0 failed_rounds=0
t0=$SECONDS
for r in $(seq "$rounds"); do
  if ! "$SYNTH" --server "http://$http" --rooms "$ROOMS" --per-room 3 --duration "$ROUND_SECS" \
    --expect-media --json "$work/round.json" >"$work/round.log" 2>&1; then
    failed_rounds=$((failed_rounds + 1))
    echo "soak: round $r: synth reported a problem:"; tail -n 5 "$work/round.log"
  fi
  cycles=$((cycles + per_round))
  # Idle: every participant gone (the room tasks have run their leave).
  wait_gauge "$http" consult_participants 0 10 || echo "soak: round $r: participants not back to 0 within 10 s"
  wait_gauge "$http" consult_rooms 0 10 || echo "soak: round $r: rooms not back to 0 within 10 s"
  sleep 1
  if ((r == WARMUP_ROUNDS)); then
    sleep 2
    sfu_sample "$sfu_pid" "$http" baseline >>"$OUT"
  else
    sfu_sample "$sfu_pid" "$http" "round-$r" >>"$OUT"
  fi
  if ((r % 5 == 0)); then
    echo "soak: $cycles cycles after $((SECONDS - t0)) s: $(tail -n1 "$OUT")"
  fi
done
# WebSocket writers close within 2 s of a leave; give stragglers that long and a bit.
sleep 5
sfu_sample "$sfu_pid" "$http" end >>"$OUT"
kill -0 "$sfu_pid" 2>/dev/null || { echo "soak: FAILED: the SFU died"; tail -n 30 "$work/sfu.err"; exit 1; }
echo "soak: $cycles join/leave cycles in $((SECONDS - t0)) s, $failed_rounds rounds with a problem; samples in $OUT"
[[ "$OUT" == "$work/soak.csv" ]] && cat "$OUT"

python3 - "$OUT" "$failed_rounds" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
failed_rounds = int(sys.argv[2])
by = {r["label"]: r for r in rows}
base, end = by["baseline"], by["end"]
after = rows[rows.index(base):]
num = lambda r, k: float(r[k]) if r[k] not in ("", None) else float("nan")
keys = ["rss_kb", "fds", "threads", "tokio_tasks", "rooms", "participants", "tracks", "paused", "series"]
print("| figure | start | after warm-up | max after warm-up | end | end / after warm-up |")
print("| --- | --- | --- | --- | --- | --- |")
for k in keys:
    b, e = num(base, k), num(end, k)
    mx = max(num(r, k) for r in after)
    ratio = f"{e / b:.3f}" if b else "-"
    print(f"| {k} | {by['start'][k]} | {base[k]} | {mx:g} | {end[k]} | {ratio} |")
problems = []
rss_b, rss_e = num(base, "rss_kb"), num(end, "rss_kb")
if abs(rss_e - rss_b) > 0.10 * rss_b:
    problems.append(f"RSS {rss_e:.0f} kB at the end against {rss_b:.0f} kB after warm-up")
for k in ["fds", "tokio_tasks", "series"]:
    if num(end, k) > num(base, k):
        problems.append(f"{k} {end[k]} at the end against {base[k]} after warm-up")
for k in ["rooms", "participants", "tracks", "paused"]:
    if num(end, k) != 0:
        problems.append(f"{k} is {end[k]} with nobody connected")
if failed_rounds:
    problems.append(f"{failed_rounds} rounds where a participant missed media")
if problems:
    sys.exit("soak: FAILED: " + "; ".join(problems))
print("soak: OK")
PY
