# Shared by soak.sh and soak-browser.sh (source it): one sample of the SFU's resources.
#
# sfu_sample PID HTTP_ADDR LABEL  prints one CSV line:
#   label,unix_s,rss_kb,fds,threads,tokio_tasks,rooms,participants,tracks,paused,series,ws_refused
# rss from /proc/PID/status (VmRSS), fds = entries of /proc/PID/fd, threads from status,
# tokio_tasks and the gauges from /metrics; series = lines of /metrics that are samples (a
# label set that keeps growing would show here).
SOAK_CSV_HEADER="label,unix_s,rss_kb,fds,threads,tokio_tasks,rooms,participants,tracks,paused,series,joins_refused"

sfu_sample() {
  local pid="$1" http="$2" label="$3" metrics rss threads fds
  rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")"
  threads="$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status")"
  fds="$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
  metrics="$(curl -sf --max-time 5 "http://$http/metrics" || true)"
  m() { awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? "" : v) }' <<<"$metrics"; }
  local series refused
  series="$(grep -vc '^#' <<<"$metrics" || true)"
  refused="$(awk '/^consult_joins_refused_total/ { s += $2 } END { print s + 0 }' <<<"$metrics")"
  echo "$label,$(date +%s),$rss,$fds,$threads,$(m consult_tokio_tasks),$(m consult_rooms),$(m consult_participants),$(m consult_tracks),$(m consult_paused_subscriptions),$series,$refused"
}

# sfu_start WORK [extra server flags...]: starts the release SFU ($SFU) with open join on free
# loopback ports; sets sfu_pid and http. The caller's trap must kill $sfu_pid.
sfu_start() {
  local work="$1"
  shift
  CONSULT_ALLOW_OPEN_JOIN=1 CONSULT_DB_PATH="$work/consults.sqlite" \
    "$SFU" --http-addr 127.0.0.1:0 --udp-addr 127.0.0.1:0 --log warn "$@" \
    >"$work/sfu.out" 2>"$work/sfu.err" &
  sfu_pid=$!
  http=""
  for _ in $(seq 100); do
    http="$(sed -n 's/^CONSULT_READY http=\([^ ]*\) .*/\1/p' "$work/sfu.out" | head -n1)"
    [[ -n "$http" ]] && return 0
    kill -0 "$sfu_pid" 2>/dev/null || { cat "$work/sfu.err" >&2; return 1; }
    sleep 0.1
  done
  echo "the SFU printed no CONSULT_READY line" >&2
  return 1
}

# wait_gauge HTTP NAME VALUE SECONDS: until /metrics NAME equals VALUE (true) or time runs out.
wait_gauge() {
  local http="$1" name="$2" want="$3" deadline=$((SECONDS + $4)) v
  while ((SECONDS < deadline)); do
    v="$(curl -sf --max-time 5 "http://$http/metrics" | awk -v n="$name" '$1 == n { print $2 }')"
    [[ "$v" == "$want" ]] && return 0
    sleep 0.2
  done
  return 1
}
