#!/usr/bin/env bash
# Smoke test of the media path with synthetic bots: starts the release SFU on free ports, runs
# 10 rooms x 3 synthetic participants for 10 s and fails unless every participant received
# audio and video from both others (synth --expect-media). The server is always stopped.
#
# Needs: cargo build --release -p consult-sfu -p consult-bots
# Env: ROOMS (10), PER_ROOM (3), DURATION (10), SFU, SYNTH (binary paths), SYNTH_ARGS (extra).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SFU="${SFU:-$root/target/release/consult-sfu}"
SYNTH="${SYNTH:-$root/target/release/synth}"
ROOMS="${ROOMS:-10}"
PER_ROOM="${PER_ROOM:-3}"
DURATION="${DURATION:-10}"

for bin in "$SFU" "$SYNTH"; do
  if [[ ! -x "$bin" ]]; then
    echo "smoke: $bin is missing; run: cargo build --release -p consult-sfu -p consult-bots" >&2
    exit 2
  fi
done

work="$(mktemp -d)"
sfu_pid=""
cleanup() {
  if [[ -n "$sfu_pid" ]] && kill -0 "$sfu_pid" 2>/dev/null; then
    kill "$sfu_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$sfu_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$sfu_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Open join: the bots join by room name, not by invite (media only; see signaling/PROTOCOL.md).
CONSULT_ALLOW_OPEN_JOIN=1 CONSULT_DB_PATH="$work/consults.sqlite" \
  "$SFU" --http-addr 127.0.0.1:0 --udp-addr 127.0.0.1:0 --log warn >"$work/sfu.out" 2>"$work/sfu.err" &
sfu_pid=$!

http=""
for _ in $(seq 100); do
  http="$(sed -n 's/^CONSULT_READY http=\([^ ]*\) .*/\1/p' "$work/sfu.out" | head -n1)"
  [[ -n "$http" ]] && break
  if ! kill -0 "$sfu_pid" 2>/dev/null; then
    echo "smoke: the SFU exited before it was ready:" >&2
    cat "$work/sfu.err" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$http" ]]; then
  echo "smoke: the SFU printed no CONSULT_READY line within 10 s" >&2
  exit 1
fi
echo "smoke: SFU pid $sfu_pid at http://$http"

status=0
# shellcheck disable=SC2086
"$SYNTH" --server "http://$http" --rooms "$ROOMS" --per-room "$PER_ROOM" --duration "$DURATION" \
  --expect-media --sfu-pid "$sfu_pid" --json "$work/smoke.json" ${SYNTH_ARGS:-} || status=$?

if ! kill -0 "$sfu_pid" 2>/dev/null; then
  echo "smoke: FAILED: the SFU died during the run" >&2
  tail -n 50 "$work/sfu.err" >&2
  exit 1
fi
if [[ $status -ne 0 ]]; then
  echo "smoke: FAILED: synth exited with $status; SFU log tail:" >&2
  tail -n 30 "$work/sfu.err" >&2
  exit 1
fi
echo "smoke: OK"
