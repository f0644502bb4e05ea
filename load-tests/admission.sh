#!/usr/bin/env bash
# Admission control under load (issue 7, "Overload and soak"): starts the release SFU with a
# participant cap per node (--max-node-participants CAP; the lag and CPU limits stay at their
# defaults unless SFU_ARGS changes them), then runs synthetic consults twice for DURATION s:
#   before: FILL_ROOMS x 3 participants, nothing else;
#   during: the same consults again, and once they are all in, more synthetic consults
#           (PUSH_ROOMS x 3 per round, short rounds until the fill run ends) try to join.
# Prints the running consults' loss and forwarding latency (p50/p99) of both runs side by side,
# the participant count at which joins were refused, and the number of server_busy answers
# (the SFU's consult_joins_refused_total and what the pushing bots were told). Fails unless
# the fill consults got all their media both times, their loss during the push stays under
# 1 %, at least one join was refused with server_busy, and no pushed participant got in.
#
# Needs: cargo build --release -p consult-sfu -p consult-bots. Loopback only; stops by itself.
# Env: CAP (30), FILL_ROOMS (CAP/3), PUSH_ROOMS (5), DURATION (20), RAMP (fill joins/s, 30),
#      SFU, SYNTH (binaries),
#      SFU_ARGS (extra server flags, e.g. "--admission-max-cpu 0.3"), JSON_OUT (a summary file),
#      LOG_DIR (keep every run's log and JSON there).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SFU="${SFU:-$root/target/release/consult-sfu}"
SYNTH="${SYNTH:-$root/target/release/synth}"
CAP="${CAP:-30}"
FILL_ROOMS="${FILL_ROOMS:-$((CAP / 3))}"
PUSH_ROOMS="${PUSH_ROOMS:-5}"
DURATION="${DURATION:-20}"
RAMP="${RAMP:-30}"

for bin in "$SFU" "$SYNTH"; do
  [[ -x "$bin" ]] || { echo "admission: $bin is missing; run: cargo build --release -p consult-sfu -p consult-bots" >&2; exit 2; }
done

work="$(mktemp -d)"
sfu_pid="" fill_pid=""
cleanup() {
  for p in "$fill_pid" "$sfu_pid"; do
    [[ -n "$p" ]] && kill "$p" 2>/dev/null || true
    [[ -n "$p" ]] && wait "$p" 2>/dev/null || true
  done
  if [[ -n "${LOG_DIR:-}" ]]; then mkdir -p "$LOG_DIR" && cp "$work"/*.log "$work"/*.json "$work"/sfu.err "$LOG_DIR"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# shellcheck disable=SC2086
CONSULT_ALLOW_OPEN_JOIN=1 CONSULT_DB_PATH="$work/consults.sqlite" \
  "$SFU" --http-addr 127.0.0.1:0 --udp-addr 127.0.0.1:0 --log warn \
  --max-node-participants "$CAP" ${SFU_ARGS:-} >"$work/sfu.out" 2>"$work/sfu.err" &
sfu_pid=$!
http=""
for _ in $(seq 100); do
  http="$(sed -n 's/^CONSULT_READY http=\([^ ]*\) .*/\1/p' "$work/sfu.out" | head -n1)"
  [[ -n "$http" ]] && break
  kill -0 "$sfu_pid" 2>/dev/null || { echo "admission: the SFU exited:"; cat "$work/sfu.err"; exit 1; }
  sleep 0.1
done
[[ -n "$http" ]] || { echo "admission: the SFU printed no CONSULT_READY line" >&2; exit 1; }
echo "admission: SFU pid $sfu_pid at http://$http, cap $CAP participants, fill $FILL_ROOMS rooms x 3, push $PUSH_ROOMS rooms x 3 per round"

metric() { # metric NAME_WITH_LABELS -> value (0 when absent)
  curl -sf "http://$http/metrics" | awk -v m="$1" '$1 == m { v = $2 } END { print (v == "" ? 0 : v) }'
}
refused_total() {
  curl -sf "http://$http/metrics" | awk '/^consult_joins_refused_total/ { s += $2 } END { print s + 0 }'
}

fill() { # fill NAME
  "$SYNTH" --server "http://$http" --rooms "$FILL_ROOMS" --per-room 3 --duration "$DURATION" \
    --ramp-per-sec "$RAMP" --expect-media --sfu-pid "$sfu_pid" --json "$work/$1.json" \
    >"$work/$1.log" 2>&1
}

fill before || { echo "admission: FAILED: the fill run (before) failed"; tail -n 20 "$work/before.log"; exit 1; }
refused_before="$(refused_total)"

# During: the same consults, then the push once they are all in.
fill during &
fill_pid=$!
want=$((FILL_ROOMS * 3))
for _ in $(seq 200); do
  [[ "$(metric consult_participants)" -ge "$want" ]] && break
  sleep 0.1
done
participants_at_push="$(metric consult_participants)"
echo "admission: $participants_at_push participants in; pushing more joins"
rounds=0 max_participants=0
push_end=$((SECONDS + DURATION - 4))
while (( SECONDS < push_end )) && kill -0 "$fill_pid" 2>/dev/null; do
  rounds=$((rounds + 1))
  "$SYNTH" --server "http://$http" --rooms "$PUSH_ROOMS" --per-room 3 --duration 2 \
    --threads 1 >"$work/push-$rounds.log" 2>&1 || true
  p="$(metric consult_participants)"
  (( p > max_participants )) && max_participants=$p
  echo "round $rounds: participants $p, event-loop lag $(metric consult_event_loop_lag_seconds) s, saturated $(metric consult_admission_busy)" >>"$work/push.log"
done
fill_status=0
wait "$fill_pid" || fill_status=$?
fill_pid=""
refused="$(( $(refused_total) - refused_before ))"
told_busy="$(cat "$work"/push-*.log 2>/dev/null | grep -o '"code":"server_busy"' | wc -l)"
hint="$(cat "$work"/push-*.log 2>/dev/null | grep -o '"retry_after_ms":[0-9]*' | sort | uniq -c | tr '\n' ' ')"
by_reason="$(curl -sf "http://$http/metrics" | grep '^consult_joins_refused_total' | tr '\n' ' ')"

if ! kill -0 "$sfu_pid" 2>/dev/null; then
  echo "admission: FAILED: the SFU died"; tail -n 30 "$work/sfu.err"; exit 1
fi
attempted=$((rounds * PUSH_ROOMS * 3))
echo "admission: $rounds push rounds, $attempted joins pushed; the SFU refused $refused of them ($by_reason), admitted $((attempted - refused)); the pushing bots logged server_busy $told_busy times (synth keeps its first 20 errors per run; ${hint:-no hint seen}); most participants seen between rounds: $max_participants"

python3 - "$work/before.json" "$work/during.json" "$fill_status" "$refused" "$told_busy" \
  "$max_participants" "$CAP" "$participants_at_push" "${JSON_OUT:-}" \
  "$work/before.log" "$work/during.log" <<'PY'
import json, re, sys
b, d = (json.load(open(p)) for p in sys.argv[1:3])
fill_status, refused, told, most, cap, at_push = (int(x) for x in sys.argv[3:9])
out = sys.argv[9]
def steady(log):
    # synth's 5 s progress lines, without the first (the joins and DTLS of the fill itself):
    # (median of the interval p50s, worst interval p99).
    iv = []
    for line in open(log):
        m = re.search(r"t=\s*(\d+)s .*latency p50 ([\d.]+) p99 ([\d.]+) ms", line)
        if m and int(m[1]) > 5:
            iv.append((float(m[2]), float(m[3])))
    if not iv:
        return None, None
    p50s = sorted(x for x, _ in iv)
    return p50s[len(p50s) // 2], max(y for _, y in iv)
sb, sd = steady(sys.argv[10]), steady(sys.argv[11])
def row(name, r, s, extra):
    lat = r.get("latency_ms", {})
    return (f"| {name} | {r.get('participants')} | {r.get('loss_pct', float('nan')):.3f} | "
            f"{lat.get('p50')} / {lat.get('p99')} | {s[0] or '-'} / {s[1] or '-'} | {extra} |")
print("| running consults | participants | loss % | latency p50 / p99 ms, whole run | after the first 5 s: median interval p50 / worst interval p99 ms | server_busy answers |")
print("| --- | --- | --- | --- | --- | --- |")
print(row("before (no push)", b, sb, 0))
print(row("during the refused-join push", d, sd, refused))
if out:
    json.dump({"cap": cap, "participants_at_push": at_push, "most_participants_during_push": most,
               "refused": refused, "told_server_busy": told, "steady_before": sb,
               "steady_during": sd, "before": b, "during": d},
              open(out, "w"), indent=1)
problems = []
if fill_status != 0:
    problems.append(f"the fill run during the push exited {fill_status} (a consult missed media)")
if d.get("loss_pct", 100.0) >= 1.0:
    problems.append(f"{d.get('loss_pct'):.2f} % loss during the push")
if refused < 1 or told < 1:
    problems.append(f"no join was refused (SFU {refused}, bots told {told})")
if most > cap:
    problems.append(f"{most} participants seen, over the cap of {cap}")
if problems:
    sys.exit("admission: FAILED: " + "; ".join(problems))
PY
echo "admission: OK"
