#!/usr/bin/env bash
# Hostile input at the media ports while a consult runs (issue 7): the SFU must not crash, and
# the running consults' media must be unaffected. Starts the release SFU (with ICE-TCP) on
# loopback, runs synthetic consults twice for DURATION seconds: first undisturbed (baseline),
# then while load-tests/attack/garbage.py sends ~20,000 hostile datagrams a second at the
# media port and garbage to the ICE-TCP port, and load-tests/attack/hijack.py (root: it sniffs
# loopback and forges source addresses) replays the participants' own RTP from a new address,
# sends RTP with their SSRCs and forged payloads, and garbage claiming to come from their own
# addresses. Fails unless every participant got media in both runs, the SFU survived, loss
# during the attack stays under 1 %, and no participant's media was moved to the attacker's
# address; prints loss and forwarding latency of both runs side by side.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SFU="${SFU:-$root/target/release/consult-sfu}"
SYNTH="${SYNTH:-$root/target/release/synth}"
ROOMS="${ROOMS:-4}"
DURATION="${DURATION:-12}"

work="$(mktemp -d)"
sfu_pid=""
cleanup() {
  [[ -n "$sfu_pid" ]] && kill "$sfu_pid" 2>/dev/null || true
  [[ -n "$sfu_pid" ]] && wait "$sfu_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

CONSULT_ALLOW_OPEN_JOIN=1 CONSULT_DB_PATH="$work/consults.sqlite" \
  "$SFU" --http-addr 127.0.0.1:0 --udp-addr 127.0.0.1:0 --ice-tcp-addr 127.0.0.1:0 \
  --log 'warn,consult_sfu::room=info' \
  >"$work/sfu.out" 2>"$work/sfu.err" &
sfu_pid=$!
http="" udp=""
for _ in $(seq 100); do
  read -r http udp < <(sed -n 's/^CONSULT_READY http=\([^ ]*\) udp=\([^ ]*\).*/\1 \2/p' "$work/sfu.out" | head -n1) || true
  [[ -n "$http" ]] && break
  sleep 0.1
done
[[ -n "$http" ]] || { echo "attack: the SFU did not start"; cat "$work/sfu.err"; exit 1; }
tcp_port="$(ss -ltnp 2>/dev/null | awk -v pid="pid=$sfu_pid," '$0 ~ pid {print $4}' | sed 's/.*://' | grep -v "^${http##*:}$" | head -n1)"
echo "attack: SFU pid $sfu_pid, http $http, udp $udp, ice-tcp ${tcp_port:-?}"

run() {
  "$SYNTH" --server "http://$http" --rooms "$ROOMS" --per-room 3 --duration "$DURATION" \
    --expect-media --sfu-pid "$sfu_pid" --json "$work/$1.json" >"$work/$1.log" 2>&1 || {
    echo "attack: FAILED: synth ($1) exited non-zero"; tail -n 20 "$work/$1.log"; tail -n 20 "$work/sfu.err"; exit 1; }
}

run baseline
python3 "$root/load-tests/attack/garbage.py" 127.0.0.1 "${udp##*:}" "$((DURATION + 2))" ${tcp_port:-} >"$work/garbage.log" 2>&1 &
attacker=$!
python3 "$root/load-tests/attack/hijack.py" "${udp##*:}" "$((DURATION + 2))" >"$work/hijack.log" 2>&1 &
hijacker=$!
run attacked
wait "$attacker" || true
wait "$hijacker" || { echo "attack: FAILED: hijack.py failed"; cat "$work/hijack.log"; exit 1; }
cat "$work/garbage.log" "$work/hijack.log"
grep -q "SSRCs seen" "$work/hijack.log" && ! grep -q " 0 SSRCs seen" "$work/hijack.log" ||
  { echo "attack: FAILED: hijack.py saw no participant's RTP (nothing was tried)"; exit 1; }
hijack_port="$(sed -n 's/^hijack: sending from 127.0.0.1:\([0-9]*\)$/\1/p' "$work/hijack.log")"
moved="$(sed 's/\x1b\[[0-9;]*m//g' "$work/sfu.err" | grep "media follows the client's new address" || true)"
if grep -q "to=127.0.0.1:$hijack_port\b" <<<"$moved"; then
  echo "attack: FAILED: a participant's media was moved to the attacker's address:"
  grep "to=127.0.0.1:$hijack_port" <<<"$moved" | head -5
  exit 1
fi
echo "attack: media moved to a new address $(grep -c . <<<"$moved" || true) times (none to the attacker's 127.0.0.1:$hijack_port)"

if ! kill -0 "$sfu_pid" 2>/dev/null; then
  echo "attack: FAILED: the SFU died"; tail -n 30 "$work/sfu.err"; exit 1
fi
python3 - "$work/baseline.json" "$work/attacked.json" <<'PY'
import json, sys
b, a = (json.load(open(p)) for p in sys.argv[1:3])
def row(name, r):
    lat = r.get("latency_ms", {})
    return f"| {name} | {r.get('loss_pct', float('nan')):.3f} | {lat.get('p50')} / {lat.get('p99')} |"
print("| run | loss % | forwarding latency p50 / p99 ms |\n| --- | --- | --- |")
print(row("baseline", b)); print(row("under attack", a))
loss = a.get("loss_pct", 100.0)
if loss >= 1.0:
    sys.exit(f"attack: FAILED: {loss:.2f} % loss during the attack")
PY
curl -sf "http://$http/metrics" | grep -E "^consult_udp_recv_dropped_total" || true
echo "attack: OK"
