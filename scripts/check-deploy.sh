#!/usr/bin/env bash
# Checks deploy/ offline, without a Docker daemon: promtool on the Prometheus files, the
# compose, Kubernetes, Grafana, Docker and systemd files cross-checked against the server's
# options, ports and paths, --check-config on the example configs (and on broken ones), then
# the real server and Debian's Prometheus scraping it: every metric the alerts and the
# dashboard use must exist, every rule must evaluate, every dashboard query must be valid.
# Usage: scripts/check-deploy.sh   (after `cargo build --release`; scripts/test-all.sh runs it)
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
log() { printf -- '-- %s\n' "$*"; }
fail() {
  printf 'check-deploy: FAIL: %s\n' "$*" >&2
  exit 1
}

# --- tools: promtool and prometheus (Debian's prometheus), PyYAML.
pick_python() {
  for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then
      echo "$p"
      return
    fi
  done
}
PY=$(pick_python)
need=()
{ command -v promtool && command -v prometheus; } >/dev/null || need+=(prometheus)
command -v turnserver >/dev/null || need+=(coturn)
command -v redis-server >/dev/null || need+=(redis-server)
[ -n "$PY" ] || need+=(python3 python3-yaml)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # These packages start their daemons on install where init scripts run; this script starts
  # its own on free ports, so keep the system's stopped (the usual policy-rc.d of images).
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  installed=0
  apt-get update -q >/dev/null &&
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null || installed=$?
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
  [ "$installed" = 0 ] || fail "apt-get install ${need[*]}"
  PY=$(pick_python)
fi
[ -n "$PY" ] || fail "no python3 with PyYAML"

BIN=target/release/consult-sfu
[ -x "$BIN" ] || cargo build --release --package consult-sfu

WORK=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The Python half: parsing and HTTP. One file, subcommands.
cat >"$WORK/check.py" <<'PYEOF'
import json, os, re, socket, sys, time, base64, urllib.request, urllib.parse
import yaml

DEPLOY = "deploy"
errors = []

def check(cond, msg):
    if not cond:
        errors.append(msg)

def done(what):
    if errors:
        for e in errors:
            print(f"check-deploy: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"   ok: {what}")

def readme_options():
    """The option table of deploy/README.md (itself checked against the parser by tests/deploy.rs)."""
    rows = []
    lines = open(f"{DEPLOY}/README.md").read().splitlines()
    i = next(i for i, l in enumerate(lines) if l.startswith("| Option | TOML key | Env var | CLI flag |"))
    for l in lines[i + 2:]:
        if not l.startswith("|"):
            break
        cells = [c.strip().strip("`") for c in l.strip().strip("|").split("|")]
        rows.append({"key": cells[1], "env": cells[2], "flag": cells[3]})
    return rows

def resolve(value, env={}):
    """${VAR:-default} / ${VAR:?msg} as compose resolves them, with only `env` set."""
    def sub(m):
        name = re.split(r":[-?]", m.group(1))[0]
        if name in env:
            return env[name]
        if ":-" in m.group(1):
            return m.group(1).split(":-", 1)[1]
        return "SET-BY-ENV"
    return re.sub(r"\$\{([^}]*)\}", sub, str(value))

def port_of(addr):
    return int(str(addr).rsplit(":", 1)[1])

def static():
    rows = readme_options()
    envs = {r["env"] for r in rows if r["env"] != "—"}
    check(len(envs) >= 10, f"README option table parsed: {len(envs)} env vars")

    # --- compose.yaml
    compose = yaml.safe_load(open(f"{DEPLOY}/compose.yaml"))
    services = compose["services"]
    for s in ["sfu", "coturn", "redis", "prometheus", "grafana"]:
        check(s in services, f"compose: service {s}")
    sfu = services["sfu"]
    env = {k: resolve(v) for k, v in sfu["environment"].items()}
    for k in env:
        check(k in envs, f"compose: sfu env {k} is not an option in deploy/README.md")
    http_port, udp_port = port_of(env["CONSULT_HTTP_ADDR"]), port_of(env["CONSULT_UDP_ADDR"])
    ports = [resolve(p) for p in sfu["ports"]]
    check(any(p.endswith(f":{http_port}:{http_port}/tcp") or p.endswith(f":{http_port}") for p in ports),
          f"compose: sfu publishes its HTTP port {http_port}: {ports}")
    check(f"{udp_port}:{udp_port}/udp" in ports,
          f"compose: sfu publishes UDP {udp_port} on the same host port (it is in ICE candidates): {ports}")
    check("/readyz" in " ".join(sfu["healthcheck"]["test"]) and str(http_port) in " ".join(sfu["healthcheck"]["test"]),
          "compose: sfu healthcheck asks /readyz on the HTTP port")
    build = sfu["build"]
    check(os.path.isfile(os.path.join(DEPLOY, build["context"], build["dockerfile"])), "compose: sfu Dockerfile exists")
    mounts = {}
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            src, dst = resolve(v).split(":")[:2]
            mounts[(name, dst)] = src
            if src.startswith("."):
                check(os.path.exists(os.path.join(DEPLOY, src)), f"compose: {name} mounts {src}, which does not exist")
    check(mounts.get(("sfu", env["CONSULT_CONFIG"])) is not None, "compose: the sfu's CONSULT_CONFIG file is mounted")
    compose_toml = os.path.join(DEPLOY, mounts[("sfu", env["CONSULT_CONFIG"])])
    coturn = services["coturn"]
    conf_src = mounts[("coturn", "/etc/coturn/turnserver.conf")]
    conf = open(os.path.join(DEPLOY, conf_src)).read()
    check(re.search(r"^use-auth-secret$", conf, re.M), "coturn: use-auth-secret")
    check(not re.search(r"^static-auth-secret", conf, re.M), "coturn: no secret in the committed config")
    check(any(str(c).startswith("--static-auth-secret=${") for c in coturn["command"]), "coturn: secret from the environment")
    prom = services["prometheus"]
    prom_dir = mounts[("prometheus", "/etc/prometheus")]
    config_flag = next(c for c in prom["command"] if c.startswith("--config.file="))
    check(os.path.isfile(os.path.join(DEPLOY, prom_dir, os.path.basename(config_flag.split("=", 1)[1]))),
          "compose: prometheus's --config.file is in the mounted folder")
    graf = services["grafana"]

    # --- prometheus.yml: scrapes the sfu service's /metrics on its HTTP port.
    pconf = yaml.safe_load(open(f"{DEPLOY}/prometheus/prometheus.yml"))
    job = next(j for j in pconf["scrape_configs"] if j["job_name"] == "consult-sfu")
    check(job.get("metrics_path", "/metrics") == "/metrics", "prometheus: metrics_path /metrics")
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    check(targets == [f"sfu:{http_port}"], f"prometheus: target sfu:{http_port} (compose service and port): {targets}")
    for rf in pconf["rule_files"]:
        check(os.path.isfile(f"{DEPLOY}/prometheus/{rf}"), f"prometheus: rule file {rf}")

    # --- grafana provisioning: datasource = the prometheus service, dashboards folder mounted.
    ds = yaml.safe_load(open(f"{DEPLOY}/grafana/provisioning/datasources/prometheus.yml"))["datasources"][0]
    check(ds["url"] == "http://prometheus:9090", f"grafana: datasource url {ds['url']}")
    prov = yaml.safe_load(open(f"{DEPLOY}/grafana/provisioning/dashboards/consult.yml"))["providers"][0]
    check(mounts.get(("grafana", prov["options"]["path"])) == "./grafana/dashboards",
          "grafana: the provider's path is where compose mounts deploy/grafana/dashboards")
    check(mounts.get(("grafana", "/etc/grafana/provisioning")) == "./grafana/provisioning", "grafana: provisioning mounted")
    dash = json.load(open(f"{DEPLOY}/grafana/dashboards/consult.json"))
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for want in ["consults", "participants", "bitrate", "layer", "paused", "loss", "cpu"]:
        check(want in titles, f"dashboard: a panel about {want}")
    for p in dash["panels"]:
        check(p["datasource"]["uid"] == ds["uid"], f"dashboard: panel {p['title']} uses datasource {ds['uid']}")
        for t in p["targets"]:
            check(t["datasource"]["uid"] == ds["uid"], f"dashboard: target of {p['title']}")

    # --- Dockerfile: multi-stage, non-root, health check on /healthz, ports exposed.
    df = open(f"{DEPLOY}/Dockerfile").read()
    check(len(re.findall(r"^FROM ", df, re.M)) >= 2, "Dockerfile: multi-stage")
    check(re.search(r"^FROM rust:[^ ]*bookworm AS build", df, re.M), "Dockerfile: rust bookworm builder")
    check(re.search(r"^FROM debian:bookworm-slim", df, re.M), "Dockerfile: debian:bookworm-slim runtime")
    user = re.findall(r"^USER (\S+)", df, re.M)
    check(user and user[-1] not in ("root", "0"), "Dockerfile: runs as a non-root user")
    df_env = dict(re.findall(r"(CONSULT_[A-Z_]+)=(\S+)", df))
    for k in df_env:
        check(k in envs, f"Dockerfile: ENV {k} is not an option")
    check(f"EXPOSE {port_of(df_env['CONSULT_HTTP_ADDR'])}/tcp {port_of(df_env['CONSULT_UDP_ADDR'])}/udp" in df,
          "Dockerfile: EXPOSE matches CONSULT_HTTP_ADDR and CONSULT_UDP_ADDR")
    hc = re.search(r"^HEALTHCHECK .*\n.*", df, re.M)
    check(hc and "/healthz" in hc.group(0) and f"/{port_of(df_env['CONSULT_HTTP_ADDR'])} " in hc.group(0),
          "Dockerfile: HEALTHCHECK asks /healthz on the HTTP port")
    check(port_of(df_env["CONSULT_HTTP_ADDR"]) == http_port, "Dockerfile and compose agree on the HTTP port")
    check("cargo build --release" in df, "Dockerfile: release build")
    check(os.path.isfile(f"{DEPLOY}/Dockerfile.dockerignore"), "Dockerfile.dockerignore")
    check("/opt/consult/web-client" == df_env.get("CONSULT_WEB_ROOT") and "COPY --from=build /src/web-client/" in df,
          "Dockerfile: the web client is copied to CONSULT_WEB_ROOT")

    # --- systemd unit
    unit = open(f"{DEPLOY}/consult-sfu.service").read()
    check(re.search(r"^ExecStartPre=.*--check-config", unit, re.M), "systemd: ExecStartPre --check-config")
    check(re.search(r"^RestartPreventExitStatus=2$", unit, re.M), "systemd: no restart loop on a bad config (exit 2)")

    # --- Kubernetes
    docs = {}
    for f in sorted(os.listdir(f"{DEPLOY}/k8s")):
        for d in yaml.safe_load_all(open(f"{DEPLOY}/k8s/{f}")):
            if d:
                docs[(d["kind"], f)] = d
    kust = next(d for (k, _), d in docs.items() if k == "Kustomization")
    for r in kust["resources"]:
        check(os.path.isfile(f"{DEPLOY}/k8s/{r}"), f"k8s: kustomization resource {r}")
    dep = next(d for (k, _), d in docs.items() if k == "Deployment")
    cm = next(d for (k, _), d in docs.items() if k == "ConfigMap")
    secret = next(d for (k, _), d in docs.items() if k == "Secret")
    svc = next(d for (k, _), d in docs.items() if k == "Service")
    pod = dep["spec"]["template"]["spec"]
    c = next(c for c in pod["containers"] if c["name"] == "sfu")
    cports = {p["name"]: p for p in c["ports"]}
    check(pod.get("hostNetwork") is True or any(p["protocol"] == "UDP" for p in c["ports"]),
          "k8s: host network or a UDP port")
    check(dep["spec"]["strategy"]["type"] == "Recreate" and dep["spec"]["replicas"] == 1,
          "k8s: one replica, Recreate (one SQLite file, one UDP port)")
    def probe_port(probe):
        p = probe["httpGet"]["port"]
        return cports[p]["containerPort"] if isinstance(p, str) else p
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "k8s: readiness /readyz")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "k8s: liveness /healthz")
    check(c["lifecycle"]["preStop"], "k8s: preStop")
    for e in c.get("env", []):
        check(e["name"] in envs, f"k8s: env {e['name']} is not an option")
    toml_text = cm["data"]["consult-sfu.toml"]
    http_k8s = port_of(re.search(r'^http_addr = "([^"]+)"', toml_text, re.M).group(1))
    udp_k8s = port_of(re.search(r'^udp_addr = "([^"]+)"', toml_text, re.M).group(1))
    check(probe_port(c["readinessProbe"]) == http_k8s and probe_port(c["livenessProbe"]) == http_k8s,
          "k8s: probes on the ConfigMap's http_addr port")
    check(cports["media"]["containerPort"] == udp_k8s and cports["media"]["protocol"] == "UDP",
          "k8s: the media port is the ConfigMap's udp_addr port, UDP")
    check(cports["http"]["containerPort"] == http_k8s, "k8s: the http port is the ConfigMap's http_addr port")
    check(c["args"][:1] == ["--config"], "k8s: --config")
    init = pod["initContainers"][0]
    check(c["args"][1] in init["command"][-1], "k8s: the init container writes the file the sfu reads")
    check(svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(), "k8s: Service selects the pod")
    check(all(p["targetPort"] in cports or p["targetPort"] == http_k8s for p in svc["spec"]["ports"]), "k8s: Service targets a container port")
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            check(ref["key"] in secret["stringData"], f"k8s: Secret key {ref['key']}")
    for v in pod["volumes"]:
        if "secret" in v:
            for item in v["secret"]["items"]:
                check(item["key"] in secret["stringData"], f"k8s: Secret key {item['key']}")
    check(dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"] == "/metrics", "k8s: scrape /metrics")
    # The file the init container assembles, and the env, for --check-config.
    work = sys.argv[2]
    open(f"{work}/k8s.toml", "w").write(toml_text + "\n" + secret["stringData"]["operators.toml"])
    open(f"{work}/k8s.env", "w").write("CONSULT_TOKEN_SECRET=" + secret["stringData"]["token-secret"] + "\n")
    open(f"{work}/compose.toml.path", "w").write(compose_toml)
    # coturn and redis as compose starts them, with the mounted files at their repo paths;
    # the shell adds loopback addresses and free ports.
    turn_env = {"TURN_SECRET": open(f"{work}/turn.secret").read().strip()}
    mount_map = {dst: os.path.join(DEPLOY, src) for (svc, dst), src in mounts.items() if svc == "coturn"}
    coturn_args = [mount_map.get(resolve(a, turn_env), resolve(a, turn_env)) for a in coturn["command"]]
    open(f"{work}/coturn.args", "w").write("\n".join(coturn_args) + "\n")
    redis_cmd = services["redis"]["command"]
    check(redis_cmd[0] == "redis-server", "compose: redis runs redis-server")
    open(f"{work}/redis.args", "w").write("\n".join(redis_cmd[1:]) + "\n")
    check(re.search(r"^min-port=(\d+)$", conf, re.M) and re.search(r"^max-port=(\d+)$", conf, re.M),
          "coturn: relay port range")
    open(f"{work}/turn.ports", "w").write(" ".join(re.findall(r"^(?:min|max)-port=(\d+)$", conf, re.M)))
    done("compose, k8s, Dockerfile, systemd, Grafana and Prometheus files agree with the options, ports and paths")

def ws_bad_json(addr):
    """One rejected WebSocket message, so the labelled signaling-error series exists."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    if b" 101 " not in head.split(b"\r\n")[0]:
        sys.exit(f"check-deploy: WebSocket upgrade refused: {head[:80]!r}")
    payload, mask = b"not json", os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    reply = head.split(b"\r\n\r\n", 1)[1]
    deadline = time.time() + 5
    while b"bad_json" not in reply and time.time() < deadline:
        reply += s.recv(4096)
    s.close()
    if b"bad_json" not in reply:
        sys.exit("check-deploy: no bad_json error for a non-JSON message")

def used_metrics():
    names = {}
    for f in [f"{DEPLOY}/prometheus/alerts.yml", f"{DEPLOY}/grafana/dashboards/consult.json"]:
        for n in re.findall(r"(?<![A-Za-z0-9_])((?:consult|process)_[a-z0-9_]+)", open(f).read()):
            names.setdefault(n, f)
    return names

# Used by alerts and panels, not exported yet ("Not implemented yet" in deploy/README.md).
PENDING = set()

def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read().decode()

def metrics(http):
    check(get(f"http://{http}/readyz") == (200, "ready\n"), "/readyz answers 200 ready")
    check(get(f"http://{http}/healthz") == (200, "ok\n"), "/healthz answers 200 ok")
    text = get(f"http://{http}/metrics")[1]
    exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, re.M)) | set(re.findall(r"^# TYPE (\S+)", text, re.M))
    used = used_metrics()
    for n, f in sorted(used.items()):
        if n in PENDING:
            if n in exported:
                errors.append(f"{n} is exported now: remove it from PENDING in scripts/check-deploy.sh and tests/deploy.rs")
            else:
                print(f"   pending: {n} (used by {f}) is not exported yet")
        else:
            check(n in exported, f"{f} uses {n}, which the server's /metrics does not have")
    done(f"/readyz, /healthz, and the {len(used)} metric names the alerts and the dashboard use")

def prometheus_api(prom, path, **params):
    url = f"http://{prom}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        return json.loads(get(url)[1])
    except urllib.error.HTTPError as e:
        return json.loads(e.read().decode())

def prom(prom, http):
    # The scrape works and every rule has been evaluated without error.
    deadline = time.time() + 20
    while True:
        up = prometheus_api(prom, "query", query='up{job="consult-sfu"}')["data"]["result"]
        groups = prometheus_api(prom, "rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        evaluated = rules and all(r.get("health") != "unknown" for r in rules)
        if up and up[0]["value"][1] == "1" and evaluated:
            break
        if time.time() > deadline:
            sys.exit(f"check-deploy: prometheus: up={up}, rules={[(r['name'], r.get('health')) for r in rules]}")
        time.sleep(0.5)
    for r in rules:
        check(r["health"] == "ok", f"prometheus: rule {r['name']}: {r.get('lastError')}")
    alerts = yaml.safe_load(open(f"{DEPLOY}/prometheus/alerts.yml"))
    check(len(rules) == sum(len(g["rules"]) for g in alerts["groups"]), "prometheus loaded every rule of alerts.yml")
    firing = [r["name"] for r in rules if r.get("state") == "firing"]
    check(not firing, f"an idle server fires no alert: {firing}")
    # Every dashboard query is valid PromQL for this Prometheus (and finds the server's data).
    dash = json.load(open(f"{DEPLOY}/grafana/dashboards/consult.json"))
    n = 0
    for p in dash["panels"]:
        for t in p["targets"]:
            q = t["expr"].replace("$instance", ".*")
            r = prometheus_api(prom, "query", query=q)
            check(r["status"] == "success", f"dashboard panel {p['title']!r}: {r.get('error')}: {q}")
            n += 1
    for v in dash["templating"]["list"]:
        q = v["query"]["query"]
        m = re.match(r"label_values\((.*), (\w+)\)$", q)
        r = prometheus_api(prom, "series", **{"match[]": m.group(1)})
        check(r["status"] == "success" and r["data"], f"dashboard variable {v['name']}: no series for {m.group(1)}")
    done(f"prometheus scraped the server, evaluated {len(rules)} rules, answered {n} dashboard queries")

def stun(sock, addr, method, attrs, key=None):
    """One STUN/TURN request (RFC 5389/5766) over UDP: (message type, {attribute: value})."""
    import hmac, hashlib, struct
    txid = os.urandom(12)
    def encode(attrs, extra=0):
        body = b"".join(struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4) for t, v in attrs)
        return struct.pack("!HHI", method, len(body) + extra, 0x2112A442) + txid + body
    msg = encode(attrs)
    if key is not None:  # MESSAGE-INTEGRITY over the message, its length counting the attribute
        mac = hmac.new(key, encode(attrs, 24), hashlib.sha1).digest()
        msg = encode(attrs + [(0x0008, mac)])
    sock.sendto(msg, addr)
    while True:
        data, _ = sock.recvfrom(2048)
        if data[8:20] == txid:
            break
    mtype, length = struct.unpack("!HH", data[:4])
    out, i = {}, 20
    while i < 20 + length:
        t, l = struct.unpack("!HH", data[i:i + 4])
        out[t] = data[i + 4:i + 4 + l]
        i += 4 + l + (-l % 4)
    return mtype, out

def turn(addr, secret, min_port, max_port):
    """An Allocate with time-limited credentials from the shared secret (use-auth-secret, the
    TURN REST scheme the SFU will hand out): refused without or with wrong credentials,
    granted with the right ones, relayed on a port of the configured range."""
    import hmac, hashlib, struct
    host, port = addr.rsplit(":", 1)
    addr = (host, int(port))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    udp = [(0x0019, bytes([17, 0, 0, 0]))]  # REQUESTED-TRANSPORT: UDP
    mtype, attrs = stun(s, addr, 0x0001, [])
    check(mtype == 0x0101, f"coturn: STUN binding answered ({mtype:#x})")
    mtype, attrs = stun(s, addr, 0x0003, udp)
    check(mtype == 0x0113 and attrs.get(0x0009, b"")[2:4] == bytes([4, 1]), "coturn: Allocate without credentials gets 401")
    realm, nonce = attrs[0x0014], attrs[0x0015]
    check(realm == b"consult", f"coturn: realm {realm!r}")
    user = f"{int(time.time()) + 600}:check-deploy"
    def allocate(password):
        key = hashlib.md5(f"{user}:{realm.decode()}:{password}".encode()).digest()
        return stun(s, addr, 0x0003, udp + [(0x0006, user.encode()), (0x0014, realm), (0x0015, nonce)], key)
    mtype, _ = allocate("wrong-password")
    check(mtype == 0x0113, f"coturn: wrong credentials refused ({mtype:#x})")
    password = base64.b64encode(hmac.new(secret.encode(), user.encode(), hashlib.sha1).digest()).decode()
    mtype, attrs = allocate(password)
    check(mtype == 0x0103, f"coturn: Allocate with credentials from the secret succeeds ({mtype:#x}, {attrs.get(0x0009)!r})")
    if 0x0016 in attrs:  # XOR-RELAYED-ADDRESS
        relay_port = struct.unpack("!H", attrs[0x0016][2:4])[0] ^ 0x2112
        check(int(min_port) <= relay_port <= int(max_port), f"coturn: relay port {relay_port} in {min_port}-{max_port}")
    done("coturn (compose's command and turnserver.conf): use-auth-secret credentials work, others are refused")

def redis_ping(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=3)
    s.sendall(b"PING\r\n")
    check(s.recv(64).startswith(b"+PONG"), "redis: PING answered")
    done("redis-server (compose's command) answers")

def healthchecks(http):
    """The image's HEALTHCHECK and compose's healthcheck, run as written against the server
    (its port for 8080): they pass on it, and fail on a closed port."""
    import subprocess
    port = http.rsplit(":", 1)[1]
    df = open(f"{DEPLOY}/Dockerfile").read()
    image_cmd = json.loads(re.search(r"^HEALTHCHECK .*\\\n\s*CMD (\[.*\])$", df, re.M).group(1))
    compose = yaml.safe_load(open(f"{DEPLOY}/compose.yaml"))
    compose_cmd = compose["services"]["sfu"]["healthcheck"]["test"][1:]
    closed = str(int(open(f"{sys.argv[3]}").read()))
    for name, cmd in [("Dockerfile HEALTHCHECK", image_cmd), ("compose healthcheck", compose_cmd)]:
        ok = subprocess.run([a.replace("/8080", f"/{port}") for a in cmd], capture_output=True, timeout=5)
        check(ok.returncode == 0, f"{name} fails on a healthy server: {ok.stderr[-200:]!r}")
        bad = subprocess.run([a.replace("/8080", f"/{closed}") for a in cmd], capture_output=True, timeout=5)
        check(bad.returncode != 0, f"{name} passes on a closed port")
    done("the Dockerfile's and compose's health checks pass on the server, fail without it")

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    print(port)

cmd = sys.argv[1]
try:
    if cmd == "static":
        static()
    elif cmd == "ws-bad-json":
        ws_bad_json(sys.argv[2])
    elif cmd == "metrics":
        metrics(sys.argv[2])
    elif cmd == "prom":
        prom(sys.argv[2], sys.argv[3])
    elif cmd == "free-port":
        free_port()
    elif cmd == "healthchecks":
        healthchecks(sys.argv[2])
    elif cmd == "turn":
        turn(*sys.argv[2:6])
    elif cmd == "redis":
        redis_ping(sys.argv[2])
except (KeyError, StopIteration, TypeError, AttributeError, IndexError) as e:
    # A key or entry the checks expect is missing: report it with what was found so far.
    errors.append(f"{cmd}: expected entry missing ({type(e).__name__}: {e})")
    done(cmd)
PYEOF
py() { "$PY" "$WORK/check.py" "$@"; }

log "promtool: config, rules, rule unit tests"
promtool check config deploy/prometheus/prometheus.yml >/dev/null || fail "promtool check config"
promtool check rules deploy/prometheus/alerts.yml >/dev/null || fail "promtool check rules"
promtool test rules deploy/prometheus/alerts.test.yml >/dev/null || {
  promtool test rules deploy/prometheus/alerts.test.yml || true
  fail "promtool test rules"
}
echo "   ok: promtool check config, check rules, test rules"

log "compose, Kubernetes, Docker, systemd, Grafana cross-checked"
"$PY" -c 'import secrets; print(secrets.token_hex(16))' >"$WORK/turn.secret"
py static "$WORK"

log "--check-config"
# expect_check STATUS PATTERN ARGS...: exit status and a line of the output.
expect_check() {
  local want=$1 pattern=$2
  shift 2
  local status=0
  "$@" >"$WORK/out" 2>&1 || status=$?
  if [ "$status" != "$want" ] || ! grep -q -- "$pattern" "$WORK/out"; then
    cat "$WORK/out" >&2
    fail "$* exited $status (want $want) or did not print \"$pattern\""
  fi
}
expect_check 0 "configuration OK" "$BIN" --config deploy/consult-sfu.toml --check-config
expect_check 0 "consults.public_url = https://consult.example.vn" "$BIN" --config deploy/consult-sfu.toml --check-config
expect_check 0 "configuration OK" "$BIN" --config "$(cat "$WORK/compose.toml.path")" --check-config
k8s_secret=$(sed -n 's/^CONSULT_TOKEN_SECRET=//p' "$WORK/k8s.env")
expect_check 0 "consults.token_secret = (redacted" env CONSULT_TOKEN_SECRET="$k8s_secret" \
  "$BIN" --config "$WORK/k8s.toml" --check-config
if grep -q -e "$k8s_secret" -e "REPLACE-with-openssl-rand-hex-24" "$WORK/out"; then
  fail "--check-config printed a secret"
fi
printf 'http_addr = "127.0.0.1:8080"\nmax_participants = 12\n' >"$WORK/bad1.toml"
expect_check 2 "max_participants must be 2 to 8" "$BIN" --config "$WORK/bad1.toml" --check-config
printf 'udp_port = 40000\n' >"$WORK/bad2.toml"
expect_check 2 "unknown field \`udp_port\`" "$BIN" --config "$WORK/bad2.toml" --check-config
printf '[consults]\ntoken_secret = "short-secret"\n' >"$WORK/bad3.toml"
expect_check 2 "token_secret: must be at least 32 characters" "$BIN" --config "$WORK/bad3.toml" --check-config
grep -q "short-secret" "$WORK/out" && fail "a bad secret was echoed"
expect_check 2 "env CONSULT_UDP_ADDR: udp_addr = \"nonsense\"" env CONSULT_UDP_ADDR=nonsense "$BIN" --check-config
expect_check 2 "log" "$BIN" --log 'consult_sfu=[' --check-config
expect_check 2 "config file: $WORK/missing.toml" "$BIN" --config "$WORK/missing.toml" --check-config
echo "   ok: examples pass (secrets redacted); broken configs exit 2 with the reason"

log "the real server: /readyz, /healthz, /metrics"
"$BIN" --http-addr 127.0.0.1:0 --udp-addr 127.0.0.1:0 --db-path "$WORK/db/consults.sqlite" \
  --log warn >"$WORK/server.out" 2>"$WORK/server.err" &
server_pid=$!
pids+=("$server_pid")
for _ in $(seq 100); do
  grep -q '^CONSULT_READY' "$WORK/server.out" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$WORK/server.err" >&2; fail "the server did not start"; }
  sleep 0.1
done
http=$(sed -n 's/^CONSULT_READY http=\([^ ]*\) .*/\1/p' "$WORK/server.out")
[ -n "$http" ] || fail "no CONSULT_READY line"
py ws-bad-json "$http"
py metrics "$http"
py free-port >"$WORK/closed.port"
py healthchecks "$http" "$WORK/closed.port"

log "Debian's Prometheus scraping it with the alert rules"
prom_port=$(py free-port)
sed -e "s/\"sfu:8080\"/\"$http\"/" -e "s/scrape_interval: 15s/scrape_interval: 1s/" \
  -e "s/evaluation_interval: 15s/evaluation_interval: 1s/" \
  -e "s#- alerts.yml#- $PWD/deploy/prometheus/alerts.yml#" \
  deploy/prometheus/prometheus.yml >"$WORK/prometheus.yml"
grep -q "$http" "$WORK/prometheus.yml" || fail "could not point the scrape at the test server"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$WORK/prom.log" 2>&1 &
prom_pid=$!
pids+=("$prom_pid")
for _ in $(seq 100); do
  if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$prom_port/-/ready', timeout=1)" 2>/dev/null; then
    break
  fi
  kill -0 "$prom_pid" 2>/dev/null || { tail -20 "$WORK/prom.log" >&2; fail "prometheus did not start"; }
  sleep 0.2
done
py prom "127.0.0.1:$prom_port" "$http" || { tail -20 "$WORK/prom.log" >&2; exit 1; }

log "coturn and Redis, started as compose starts them"
mapfile -t coturn_args <"$WORK/coturn.args"
turn_port=$(py free-port)
turnserver "${coturn_args[@]}" --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 \
  --listening-port="$turn_port" --alt-listening-port=0 --no-tls --no-dtls \
  --pidfile="$WORK/turnserver.pid" --db="$WORK/turndb" >"$WORK/coturn.log" 2>&1 &
pids+=("$!")
mapfile -t redis_args <"$WORK/redis.args"
redis_port=$(py free-port)
redis-server "${redis_args[@]}" --port "$redis_port" --bind 127.0.0.1 --dir "$WORK" \
  >"$WORK/redis.log" 2>&1 &
pids+=("$!")
for _ in $(seq 50); do
  grep -q "SQLite DB connection success\|Total General servers" "$WORK/coturn.log" 2>/dev/null &&
    grep -q "Ready to accept connections" "$WORK/redis.log" 2>/dev/null && break
  sleep 0.1
done
if grep -qi "bad configuration\|unknown option\|unrecognized" "$WORK/coturn.log"; then
  cat "$WORK/coturn.log" >&2
  fail "coturn refused part of turnserver.conf"
fi
# shellcheck disable=SC2046 # two numbers: the relay port range
py turn "127.0.0.1:$turn_port" "$(cat "$WORK/turn.secret")" $(cat "$WORK/turn.ports") ||
  { tail -30 "$WORK/coturn.log" >&2; exit 1; }
py redis "127.0.0.1:$redis_port" || { cat "$WORK/redis.log" >&2; exit 1; }

log "SIGTERM: the server stops cleanly"
kill -TERM "$server_pid"
status=0
for _ in $(seq 100); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$server_pid" 2>/dev/null && fail "the server still runs 10 s after SIGTERM"
wait "$server_pid" || status=$?
[ "$status" = 0 ] || { cat "$WORK/server.err" >&2; fail "the server exited $status after SIGTERM"; }
echo "   ok: exit 0"

echo "check-deploy: all passed in $(($(date +%s) - start)) s"
