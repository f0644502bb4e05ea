#!/usr/bin/env bash
# The one test command: installs what a fresh Debian machine lacks, then runs every test.
# Usage: scripts/test-all.sh        (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v curl >/dev/null || need_apt+=(curl)
command -v nft >/dev/null || need_apt+=(nftables)
# TURN: tests/turn.rs and load-tests/browser/turn.test.mjs start Debian's coturn; the browser
# test makes coturn's TLS certificate with the openssl CLI.
command -v turnserver >/dev/null || need_apt+=(coturn)
command -v openssl >/dev/null || need_apt+=(openssl)
# Cluster: tests/cluster.rs and load-tests/cluster.sh start redis-server.
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v jq >/dev/null || need_apt+=(jq) # load-tests/cluster.sh reads the bots' JSON
# Store: tests/store_backends/ runs the store tests against a PostgreSQL it starts itself
# (initdb and pg_ctl from here; as root, as the package's `postgres` user).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # Debian's chromium install sometimes fails once on a missing archive; the retry works.
  apt-get install -y -q "${need_apt[@]}" || apt-get install -y -q "${need_apt[@]}"
fi

start=$(date +%s)
log "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings

log "build (release)"
cargo build --release --workspace
build_done=$(date +%s)

log "rust tests"
cargo test --release --workspace
log "deploy files (promtool, compose/k8s/Docker cross-checks, --check-config, Prometheus scraping the real server)" && scripts/check-deploy.sh

log "synthetic bots smoke (10 rooms x 3 participants through the real SFU)"
load-tests/smoke.sh

log "hostile datagrams at the media ports while consults run (SFU survives, consults unaffected)"
load-tests/attack.sh

log "admission control: joins over the node's participant cap get server_busy, running consults unaffected"
CAP=15 DURATION=8 PUSH_ROOMS=3 load-tests/admission.sh

log "cluster: 3 nodes, Redis directory, PostgreSQL; balance, racing joins, kill -9 failover, audit kept"
load-tests/cluster.sh

# Browser test files get up to three runs each (rerun_browser_file); every failed
# run is reported and listed at the end.
reruns=()
rerun_browser_file() {
  local dir=$1 file=$2 attempt=1
  until (cd "$dir" && node --test --test-concurrency=1 "$file"); do
    if [ "$attempt" -ge 3 ]; then
      log "$dir/$file failed $attempt times"
      exit 1
    fi
    log "$dir/$file failed (run $attempt of 3); rerunning it (reported, not hidden)"
    reruns+=("$dir/$file run $attempt failed")
    attempt=$((attempt + 1))
  done
}

log "browser tests"
(cd web-client && npm ci --no-audit --no-fund --loglevel=error)
# What `npm test` runs, a file at a time: these drive real Chromium on the shared 2 cores and
# wait for media-driven events (a layer resuming within 10 s, say).
for file in web-client/tests/*.test.mjs; do
  rerun_browser_file web-client "tests/$(basename "$file")"
done

log "Chromium bot fleet smoke (3 bots in one consult: media flowed, no timing judged)"
node load-tests/browser/fleet.mjs --bots 3 --rooms 1 --tabs 3 --ramp 2 --duration 8 --smoke

log "weak-link browser tests (network namespaces + linkem)"
# These measure reaction times and freezes over an emulated link with three Chromium instances
# on a shared 2-core machine, so a bound is sometimes missed by noise (a 2.1 s freeze against
# 2 s, say). Each test file gets up to three runs; every failed run is reported (and listed at
# the end), and a file that fails three times fails the run. Per file, not per suite: with a
# dozen timing tests, rerunning the whole suite on any miss left a flake in one test three
# chances to land in some run.
for file in load-tests/browser/*.test.mjs; do
  rerun_browser_file . "$file"
done
if [ ${#reruns[@]} -gt 0 ]; then
  log "browser tests passed after reruns: ${reruns[*]}"
fi

end=$(date +%s)
log "all tests passed: build+lint $((build_done - start)) s, tests $((end - build_done)) s"
