#!/usr/bin/env bash
# Browser soak (issue 7): one 3-participant consult of headless Chromium bots with the real
# web client (load-tests/browser/fleet.mjs) for DURATION seconds against one release SFU,
# sampling the SFU's RSS, open fds, threads, tokio tasks and /metrics gauges every INTERVAL s.
# Passes when the RSS of the last sample in the consult is within 10 % of the first sample
# after WARMUP s, the consult ran (fleet's --smoke check: every bot decoded video and audio
# from the others), and once the bots have left, fds and tokio tasks are back at their values
# from before the consult and rooms/participants/tracks are 0.
#
#   load-tests/soak-browser.sh [DURATION_SECS (1200)] [INTERVAL_SECS (30)]
#
# Not part of the test command: 20 minutes of three Chromium tabs (about a core). Run it on a
# quiet machine. Needs cargo build --release -p consult-sfu and npm ci in web-client/.
# Env: WARMUP (120 s, or a quarter of DURATION if that is shorter), SFU, OUT (CSV of every
# sample; default a temp file, printed). Loopback only; stops by itself.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SFU="${SFU:-$root/target/release/consult-sfu}"
DURATION="${1:-1200}"
INTERVAL="${2:-30}"
WARMUP="${WARMUP:-$(( DURATION / 4 < 120 ? DURATION / 4 : 120 ))}"
# shellcheck source=load-tests/soak-lib.sh
source "$root/load-tests/soak-lib.sh"

[[ -x "$SFU" ]] || { echo "soak-browser: $SFU is missing; run: cargo build --release -p consult-sfu" >&2; exit 2; }

work="$(mktemp -d)"
sfu_pid="" fleet_pid=""
cleanup() {
  for p in "$fleet_pid" "$sfu_pid"; do
    [[ -n "$p" ]] && kill "$p" 2>/dev/null || true
    [[ -n "$p" ]] && wait "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

sfu_start "$work" --web-root "$root/web-client"
OUT="${OUT:-$work/soak-browser.csv}"
echo "$SOAK_CSV_HEADER" >"$OUT"
echo "soak-browser: SFU pid $sfu_pid at http://$http; one consult of 3 Chromium bots for $DURATION s, a sample every $INTERVAL s, warm-up $WARMUP s"
sleep 1
sfu_sample "$sfu_pid" "$http" before >>"$OUT"

mkdir -p "$work/fleet"
node "$root/load-tests/browser/fleet.mjs" --bots 3 --rooms 1 --tabs 3 --ramp 1 \
  --duration "$DURATION" --server "http://$http" --sfu-pid "$sfu_pid" --out "$work/fleet" --smoke \
  >"$work/fleet.log" 2>&1 &
fleet_pid=$!

# Samples from when all three are in, so the first ones are the consult's own.
wait_gauge "$http" consult_participants 3 120 || { echo "soak-browser: FAILED: 3 participants never joined"; tail -n 30 "$work/fleet.log"; exit 1; }
t0=$SECONDS
warm_label=""
while kill -0 "$fleet_pid" 2>/dev/null; do
  elapsed=$((SECONDS - t0))
  label="t$elapsed"
  if [[ -z "$warm_label" && $elapsed -ge $WARMUP ]]; then
    label="warm-t$elapsed"
    warm_label="$label"
  fi
  # Only samples taken while the consult is complete count as "in the consult".
  if [[ "$(curl -sf --max-time 5 "http://$http/metrics" | awk '$1 == "consult_participants" { print $2 }')" == 3 ]]; then
    sfu_sample "$sfu_pid" "$http" "$label" >>"$OUT"
    echo "soak-browser: $(tail -n1 "$OUT")"
  fi
  for _ in $(seq "$INTERVAL"); do
    kill -0 "$fleet_pid" 2>/dev/null || break
    sleep 1
  done
done
fleet_status=0
wait "$fleet_pid" || fleet_status=$?
fleet_pid=""
wait_gauge "$http" consult_participants 0 15 || true
wait_gauge "$http" consult_rooms 0 15 || true
sleep 5
sfu_sample "$sfu_pid" "$http" after >>"$OUT"
tail -n 15 "$work/fleet.log"
[[ "$OUT" == "$work/soak-browser.csv" ]] && cat "$OUT"

python3 - "$OUT" "$fleet_status" "$warm_label" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
fleet_status, warm_label = int(sys.argv[2]), sys.argv[3]
num = lambda r, k: float(r[k]) if r[k] not in ("", None) else float("nan")
by = {r["label"]: r for r in rows}
before, after = by["before"], by["after"]
inside = [r for r in rows if r["label"] not in ("before", "after")]
problems = []
if not warm_label or warm_label not in by:
    sys.exit("soak-browser: FAILED: no sample after the warm-up (too short a run?)")
warm, last = by[warm_label], inside[-1]
print("| figure | before the consult | after warm-up | max in the consult | last in the consult | after the bots left |")
print("| --- | --- | --- | --- | --- | --- |")
for k in ["rss_kb", "fds", "threads", "tokio_tasks", "rooms", "participants", "tracks", "series"]:
    mx = max(num(r, k) for r in inside)
    print(f"| {k} | {before[k]} | {warm[k]} | {mx:g} | {last[k]} | {after[k]} |")
rss_w, rss_l = num(warm, "rss_kb"), num(last, "rss_kb")
print(f"RSS last / after warm-up: {rss_l / rss_w:.3f}")
if abs(rss_l - rss_w) > 0.10 * rss_w:
    problems.append(f"RSS {rss_l:.0f} kB at the end of the consult against {rss_w:.0f} kB after warm-up")
for k in ["fds", "tokio_tasks"]:
    if num(after, k) > num(before, k):
        problems.append(f"{k} {after[k]} after the consult against {before[k]} before it")
for k in ["rooms", "participants", "tracks"]:
    if num(after, k) != 0:
        problems.append(f"{k} is {after[k]} after the bots left")
if num(last, "series") > num(warm, "series"):
    problems.append(f"/metrics series grew from {warm['series']} to {last['series']} during the consult")
if fleet_status != 0:
    problems.append(f"fleet.mjs exited {fleet_status} (media did not flow between all three)")
if problems:
    sys.exit("soak-browser: FAILED: " + "; ".join(problems))
print("soak-browser: OK")
PY
