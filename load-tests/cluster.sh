#!/usr/bin/env bash
# Cluster test (issue 9): three release SFU nodes sharing a Redis directory (and a PostgreSQL
# store when the SFU supports --database-url; otherwise SQLite per node and open join), driven
# by synthetic bots (synth) whose first connections go round-robin over the nodes:
#   (a) balance: ROOMS consults x 3 participants; rooms per node from each node's /metrics
#       (consult_rooms) and from the bots; every room must end whole on one node and every
#       participant must get media from both others (synth --expect-media);
#   (b) racing joins: RACE_ROOMS consults whose 3 participants join at the same moment, each
#       on another node (synth --join-together); every room must end on one node;
#   (c) failover: FAIL_ROOMS consults with synth --rejoin; the node holding the most consults
#       is killed with SIGKILL; every affected bot must get media from both others again within
#       FAILOVER_BOUND s of the kill; with PostgreSQL the audit records present before the kill
#       must all still be there after it, and new `joined` records must appear.
# Prints a markdown summary; exits 1 if a check failed, 2 if something is missing. Everything
# it starts (nodes, Redis, PostgreSQL, bots) is stopped and its temp dir removed, even on
# failure or Ctrl-C. About 60-90 s.
#
# Needs: cargo build --release -p consult-sfu -p consult-bots; redis-server; for PostgreSQL
# /usr/lib/postgresql/15/bin (initdb, pg_ctl; run as user postgres when root); curl, jq.
# Env: ROOMS (30), DURATION (12), RACE_ROOMS (10), RACE_DURATION (8), FAIL_ROOMS (15),
#      FAIL_DURATION (24), KILL_AFTER (9: seconds into the failover run), FAILOVER_BOUND (10),
#      PG (auto | 0: SQLite per node even if PostgreSQL is supported), PG_BIN, SFU, SYNTH,
#      SYNTH_ARGS (extra synth flags for every run), KEEP (1: keep the temp dir).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SFU="${SFU:-$root/target/release/consult-sfu}"
SYNTH="${SYNTH:-$root/target/release/synth}"
ROOMS="${ROOMS:-30}"
DURATION="${DURATION:-12}"
RACE_ROOMS="${RACE_ROOMS:-10}"
RACE_DURATION="${RACE_DURATION:-8}"
FAIL_ROOMS="${FAIL_ROOMS:-15}"
FAIL_DURATION="${FAIL_DURATION:-24}"
KILL_AFTER="${KILL_AFTER:-9}"
FAILOVER_BOUND="${FAILOVER_BOUND:-10}"
PG="${PG:-auto}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
NODES=3

say() { echo "cluster: $*" >&2; }
die() { say "$*"; exit 2; }

for bin in "$SFU" "$SYNTH"; do
  [[ -x "$bin" ]] || die "$bin is missing; run: cargo build --release -p consult-sfu -p consult-bots"
done
for tool in redis-server redis-cli curl jq; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install redis-server curl jq)"
done
help="$("$SFU" --help 2>&1 || true)"
grep -q -- '--redis-url' <<<"$help" || die "$SFU has no --redis-url: it predates cluster support; rebuild it"

# Physical path: redis reports its folder that way (checked below).
work="$(cd "$(mktemp -d)" && pwd -P)"
# PostgreSQL runs as user postgres, which must reach its folder inside this one (traverse
# only: the rest stays private).
chmod 711 "$work"
node_pid=()
node_http=()
redis_pid=""
pg_data=""
synth_pid=""

# Runs a PostgreSQL tool as user postgres when root (PostgreSQL refuses to run as root).
as_pg() {
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Stops processes: SIGTERM to all at once, SIGKILL to what still runs 3 s later.
stop_pids() {
  local pids=() pid
  for pid in "$@"; do [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && pids+=("$pid"); done
  ((${#pids[@]})) || return 0
  for _ in $(seq 30); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_pids "$synth_pid" "${node_pid[@]}" "$redis_pid"
  if [[ -n "$pg_data" ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$pg_data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [[ "${KEEP:-0}" == 1 ]]; then say "kept $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# A loopback TCP port nobody listens on now (the caller checks its server really got it).
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# ---- Redis: the nodes' shared directory ----
mkdir "$work/redis"
redis_port=""
for _ in 1 2 3; do
  p="$(free_port)"
  redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/redis" \
    >"$work/redis/log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 50); do
    # Ours, not another redis that took the port meanwhile: it runs in our folder.
    if [[ "$(redis-cli -p "$p" config get dir 2>/dev/null | tail -n1)" == "$work/redis" ]]; then
      redis_port="$p"
      break
    fi
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n "$redis_port" ]] && break
  stop_pids "$redis_pid"
  redis_pid=""
done
[[ -n "$redis_port" ]] || { cat "$work/redis/log" >&2; die "redis-server did not start"; }
say "redis-server pid $redis_pid on 127.0.0.1:$redis_port"

# ---- PostgreSQL when the SFU can use it, else SQLite per node ----
db_url=""
store="SQLite per node"
if [[ "$PG" != 0 ]] && grep -q -- '--database-url' <<<"$help"; then
  [[ -x "$PG_BIN/initdb" ]] || die "the SFU supports --database-url but $PG_BIN/initdb is missing (PG_BIN=...; or PG=0)"
  pg_dir="$work/pg"
  mkdir "$pg_dir"
  [[ $EUID -eq 0 ]] && chown postgres: "$pg_dir"
  # A unix socket in our own folder only: no TCP port to collide with anything.
  as_pg "$PG_BIN/initdb" -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 --no-sync \
    >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; die "initdb failed"; }
  pg_data="$pg_dir/data"
  as_pg "$PG_BIN/pg_ctl" -D "$pg_data" -l "$pg_dir/log" -w -t 20 \
    -o "-k $pg_dir -c listen_addresses='' -p 5432 -c fsync=off" start >/dev/null ||
    { cat "$pg_dir/log" >&2; die "PostgreSQL did not start"; }
  as_pg "$PG_BIN/createdb" -h "$pg_dir" -p 5432 -U postgres consult
  db_url="postgres://postgres@/consult?host=$pg_dir&port=5432"
  store="PostgreSQL (shared)"
  say "PostgreSQL in $pg_dir (unix socket)"
else
  if [[ "$PG" == 0 ]]; then
    say "PG=0: SQLite per node, open join (no invites, no audit check)"
  else
    say "the SFU has no --database-url yet: SQLite per node, open join (no invites, no audit check)"
  fi
fi
# One value from the shared database ("?" if the query fails: the check then fails).
psql_q() { psql -h "$pg_dir" -p 5432 -U postgres -d consult -tAq -c "$1" 2>>"$work/psql.err" || echo "?"; }

# Invites need the consults in a store every node reads; with SQLite per node the bots join
# by room name instead.
invites=0
[[ -n "$db_url" ]] && invites=1

# ---- three nodes ----
secret="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
for i in $(seq 1 $NODES); do
  env_node=(CONSULT_REDIS_URL="redis://127.0.0.1:$redis_port" CONSULT_NODE_ID="n$i"
    CONSULT_TOKEN_SECRET="$secret")
  if [[ -n "$db_url" ]]; then
    env_node+=(CONSULT_DATABASE_URL="$db_url")
  else
    env_node+=(CONSULT_DB_PATH="$work/n$i.sqlite")
  fi
  [[ $invites == 1 ]] || env_node+=(CONSULT_ALLOW_OPEN_JOIN=1)
  # Admission control off: 3 nodes and ~100 bots share this machine's cores, and a join
  # refused for event-loop lag would fail the test for the machine, not the cluster.
  env "${env_node[@]}" "$SFU" --http-addr 127.0.0.1:0 --udp-addr 127.0.0.1:0 --log warn \
    --admission-max-lag-ms off --admission-max-cpu off \
    >"$work/n$i.out" 2>"$work/n$i.err" &
  node_pid[i]=$!
  http=""
  for _ in $(seq 150); do
    http="$(sed -n 's/^CONSULT_READY http=\([^ ]*\) .*/\1/p' "$work/n$i.out" | head -n1)"
    [[ -n "$http" ]] && break
    if ! kill -0 "${node_pid[i]}" 2>/dev/null; then
      cat "$work/n$i.err" >&2
      die "node n$i exited before it was ready"
    fi
    sleep 0.1
  done
  [[ -n "$http" ]] || die "node n$i printed no CONSULT_READY line within 15 s"
  node_http[i]="$http"
  say "node n$i pid ${node_pid[i]} at http://$http"
done
servers="$(for i in $(seq 1 $NODES); do printf 'http://%s,' "${node_http[i]}"; done)"
servers="${servers%,}"

rooms_gauge() {
  curl -s -m 2 "http://${node_http[$1]}/metrics" 2>/dev/null |
    awk '$1 == "consult_rooms" { print $2; found = 1 } END { if (!found) print "-" }'
}

# ---- consults by invite, through node 1's operator API ----
op_key=""
if [[ $invites == 1 ]]; then
  for _ in $(seq 30); do
    op_key="$(sed -n 's/.*operator\.html#key=\([^ ]*\).*/\1/p' "$work/n1.out" | head -n1)"
    [[ -n "$op_key" ]] && break
    sleep 0.1
  done
  [[ -n "$op_key" ]] || die "node n1 printed no operator link (operator.html#key=...)"
fi
# create_invites COUNT FILE PHASE: one consult a line, `id<TAB>clinic<TAB>specialist<TAB>patient`.
create_invites() {
  local n="$1" file="$2" phase="$3" body line
  : >"$file"
  for i in $(seq 1 "$n"); do
    body="$(jq -nc --arg t "cluster $phase $i" --arg p "Patient $phase $i" \
      '{title:$t, participants:[{name:"Dr Lan",role:"specialist"},{name:$p,role:"patient",lobby:false}]}')"
    line="$(curl -sS -m 5 -X POST -H "Authorization: Bearer $op_key" \
      -H 'Content-Type: application/json' --data "$body" "http://${node_http[1]}/api/v1/consults" |
      jq -r 'select(.invites | length == 3)
             | [.consult.id] + [.invites[] | .link | sub("^.*[?]invite="; "")] | @tsv')" || true
    [[ -n "$line" ]] || die "creating consult $phase $i through n1's API failed"
    echo "$line" >>"$file"
  done
}

failures=()
fail() { failures+=("$1"); say "FAILED: $1"; }

# run_synth NAME ROOMS DURATION [flags...]: synth over all nodes in the background.
run_synth() {
  local name="$1" rooms="$2" duration="$3"
  shift 3
  local src=(--rooms "$rooms")
  if [[ $invites == 1 ]]; then
    create_invites "$rooms" "$work/$name.invites" "$name"
    src=(--invites "$work/$name.invites")
  fi
  # shellcheck disable=SC2086
  "$SYNTH" --server "$servers" "${src[@]}" --per-room 3 --duration "$duration" \
    --expect-media --json "$work/$name.json" "$@" ${SYNTH_ARGS:-} \
    >"$work/$name.out" 2>"$work/$name.err" &
  synth_pid=$!
}
# wait_synth NAME: its exit status (0 when the expect-media check passed).
wait_synth() {
  local status=0
  wait "$synth_pid" || status=$?
  synth_pid=""
  if [[ ! -s "$work/$1.json" ]]; then
    # No report (synth crashed): every check on it then fails instead of stopping the script.
    echo '{}' >"$work/$1.json"
    fail "$1: synth wrote no report (exit $status)"
  fi
  grep -E '^\| (participants joined|rooms per node|rooms not whole|redirects|rejoin:|loss, audio)' \
    "$work/$1.out" | sed "s/^/    $1 /" >&2 || true
  grep -E '^synth: (expect-media|room|participant)' "$work/$1.err" | head -n 8 | sed "s/^/    /" >&2 || true
  return "$status"
}
json() { jq -r "$2" "$work/$1.json"; }
# Rooms per node from a synth report: "n1 10, n2 9, n3 11".
bot_rooms() {
  local out="" url
  for i in $(seq 1 $NODES); do
    url="ws://${node_http[i]}/ws"
    out+="n$i $(jq -r --arg u "$url" '.nodes.rooms_per_node[$u] // 0' "$work/$1.json"), "
  done
  echo "${out%, }"
}

# ---- (a) balance ----
say "(a) balance: $ROOMS consults x 3 for $DURATION s, first connections round-robin over $NODES nodes"
run_synth balance "$ROOMS" "$DURATION"
# Sample the gauges while every room runs (joins take a few seconds under load).
sleep "$(awk -v d="$DURATION" 'BEGIN { print (d > 6 ? d - 3 : d / 2) }')"
gauges=""
gauge_sum=0
for i in $(seq 1 $NODES); do
  g="$(rooms_gauge "$i")"
  gauges+="n$i $g, "
  [[ "$g" =~ ^[0-9]+$ ]] && gauge_sum=$((gauge_sum + g))
done
gauges="${gauges%, }"
balance_ok=1
wait_synth balance || { fail "balance: synth's expect-media check (see above)"; balance_ok=0; }
balance_bots="$(bot_rooms balance)"
balance_split="$(json balance '.nodes.rooms_not_on_one_node')"
[[ "$balance_split" == 0 ]] || fail "balance: $balance_split rooms did not end whole on one node"
[[ "$gauge_sum" == "$ROOMS" ]] || fail "balance: the nodes' consult_rooms gauges add up to $gauge_sum, not $ROOMS"
say "(a) rooms per node: /metrics $gauges; bots $balance_bots; split $balance_split"

# ---- (b) racing joins ----
say "(b) racing joins: $RACE_ROOMS consults, each participant joining at the same moment on another node"
run_synth race "$RACE_ROOMS" "$RACE_DURATION" --join-together
race_ok=1
wait_synth race || { fail "racing joins: synth's expect-media check (see above)"; race_ok=0; }
race_split="$(json race '.nodes.rooms_not_on_one_node')"
race_redirects="$(json race '.nodes.redirects')"
race_bots="$(bot_rooms race)"
[[ "$race_split" == 0 ]] || fail "racing joins: $race_split rooms did not end whole on one node"
say "(b) rooms per node: $race_bots; split $race_split; redirects $race_redirects"

# ---- (c) failover ----
say "(c) failover: $FAIL_ROOMS consults x 3 with --rejoin for $FAIL_DURATION s; SIGKILL at $KILL_AFTER s"
run_synth failover "$FAIL_ROOMS" "$FAIL_DURATION" --rejoin
sleep "$KILL_AFTER"
victim=1
victim_rooms=-1
before_gauges=""
for i in $(seq 1 $NODES); do
  g="$(rooms_gauge "$i")"
  before_gauges+="n$i $g, "
  if [[ "$g" =~ ^[0-9]+$ ]] && ((g > victim_rooms)); then victim=$i; victim_rooms=$g; fi
done
audit_before=""
audit_max=0
if [[ -n "$db_url" ]]; then
  audit_before="$(psql_q "select count(*) from audit")"
  audit_max="$(psql_q "select coalesce(max(id), 0) from audit")"
  [[ "$audit_max" =~ ^[0-9]+$ ]] || audit_max=0
fi
# Reaped at once and quietly (bash would otherwise report the job as "Killed").
{
  kill -9 "${node_pid[victim]}"
  kill_ms="$(date +%s%3N)"
  wait "${node_pid[victim]}" || true
} 2>/dev/null
say "(c) killed n$victim (pid ${node_pid[victim]}, $victim_rooms consults; gauges ${before_gauges%, })"
node_pid[victim]=""
fail_ok=1
wait_synth failover || { fail "failover: synth's expect-media/recovery check (see above)"; fail_ok=0; }
# Bots that lost their node at the kill, and when each got media from both others again.
affected="$(jq --argjson k "$kill_ms" '[.rejoin.bots[]? | .outages[] | select(.lost_at_unix_ms >= $k - 1000)]' "$work/failover.json")"
n_affected="$(jq 'length' <<<"$affected")"
n_unrecovered="$(jq '[.[] | select(.all_peers_unix_ms == null)] | length' <<<"$affected")"
# Seconds from the kill to the last affected bot's media (null: none came back).
since_kill() {
  jq --argjson k "$kill_ms" "[.[].$1 // empty] | if length == 0 then null else (max - \$k) / 10 | round / 100 end" <<<"$affected"
}
recover_s="$(since_kill all_peers_unix_ms)"
first_s="$(since_kill first_media_unix_ms)"
ms_pair() { json failover "def r: if . == null then \"-\" else (. | round | tostring) end; \"\\(.rejoin.$1.max | r) / \\(.rejoin.$1.median | r)\""; }
gap="$(ms_pair gap_ms)"
rejoin_t="$(ms_pair rejoin_ms)"
fail_split="$(json failover '.nodes.rooms_not_on_one_node')"
fail_bots="$(bot_rooms failover)"
if ((n_affected == 0)); then
  fail "failover: no bot lost its node when n$victim was killed"
elif ((n_unrecovered > 0)); then
  fail "failover: $n_unrecovered of $n_affected affected bots never got media from both others again"
elif ! awk -v r="$recover_s" -v b="$FAILOVER_BOUND" 'BEGIN { exit !(r <= b) }'; then
  fail "failover: media back after $recover_s s, over the $FAILOVER_BOUND s bound"
fi
((victim_rooms < 0 || n_affected == victim_rooms * 3)) ||
  say "note: $n_affected bots affected, while n$victim's gauge said $victim_rooms consults (x 3)"
[[ "$fail_split" == 0 ]] || fail "failover: $fail_split rooms did not end whole on one node"
say "(c) media from both others again ${recover_s} s after the kill (first packet ${first_s} s); rooms per node after: $fail_bots"

audit_line="not checked (SQLite per node)"
if [[ -n "$db_url" ]]; then
  sleep 1 # the survivors write the leaves' records
  audit_kept="$(psql_q "select count(*) from audit where id <= $audit_max")"
  audit_joined="$(psql_q "select count(*) from audit where id > $audit_max and action = 'joined'")"
  audit_line="$audit_before records before the kill, $audit_kept of them after; $audit_joined new joined records"
  if [[ "$audit_before" == "?" ]]; then
    fail "audit: psql could not count the audit records ($(grep -m1 -E 'ERROR|FATAL|error' "$work/psql.err" 2>/dev/null))"
  else
    [[ "$audit_kept" == "$audit_before" ]] || fail "audit: $audit_before records before the kill, $audit_kept after"
    [[ "$audit_joined" =~ ^[0-9]+$ ]] && ((audit_joined > 0)) || fail "audit: no new joined record after the failover"
  fi
  say "(c) audit: $audit_line"
fi

ok() { [[ "$1" == 1 ]] && echo "OK" || echo "FAILED"; }
cat <<EOF

## Cluster test: $NODES nodes, Redis directory, $store$([[ $invites == 1 ]] && echo ", consults by invite" || echo ", open join")

| check | result |
| --- | --- |
| (a) balance: rooms per node, /metrics consult_rooms during the run | ${gauges} |
| (a) balance: rooms per node, where the bots ended | ${balance_bots} |
| (a) balance: rooms not whole on one node / every participant got media | ${balance_split} of ${ROOMS} / $(ok $balance_ok) |
| (b) racing joins: rooms not whole on one node / media | ${race_split} of ${RACE_ROOMS} (redirects followed: ${race_redirects}; ${race_bots}) / $(ok $race_ok) |
| (c) failover: node killed (SIGKILL) | n${victim}, holding ${victim_rooms} of ${FAIL_ROOMS} consults; ${n_affected} bots affected |
| (c) failover: kill to media from both others again, every affected bot | ${recover_s} s (bound ${FAILOVER_BOUND} s; first packet ${first_s} s) |
| (c) failover: longest media gap per bot max / median (ms); rejoin max / median (ms) | ${gap}; ${rejoin_t} |
| (c) failover: rooms per node after / recovery check | ${fail_bots} / $(ok $fail_ok) |
| audit trail across the kill | ${audit_line} |
EOF
if ((${#failures[@]})); then
  echo
  for f in "${failures[@]}"; do echo "- FAILED: $f"; done
  say "FAILED (${#failures[@]} checks); node logs: n*.err in $work (KEEP=1 keeps them)"
  for i in $(seq 1 $NODES); do
    [[ -s "$work/n$i.err" ]] && { echo "--- n$i.err (tail)" >&2; tail -n 15 "$work/n$i.err" >&2; }
  done
  exit 1
fi
say "OK"
