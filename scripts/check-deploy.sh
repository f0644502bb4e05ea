#!/usr/bin/env bash
# Checks deploy/ offline, without a Docker daemon: promtool on the Prometheus files, the
# compose, Kubernetes, Grafana, Docker and systemd files cross-checked against the server's
# options, ports and paths, --check-config on the example configs (and on broken ones), then
# the real server and Debian's Prometheus scraping it: every metric the alerts and the
# dashboard use must exist, every rule must evaluate, every dashboard query must be valid.
# Several nodes: compose.cluster.yaml, prometheus.cluster.yml and k8s/cluster/ cross-checked
# the same way, then three nodes run on Debian's Redis and PostgreSQL as that compose file sets
# them up (placement, redirect, shared records, the per-node dashboard, failover, Redis down).
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
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1; }
[ -x "$(pg_bin)/initdb" ] || need+=(postgresql)
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
  # Disowned ones (the cluster nodes) are not waited for: until they are gone.
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  done
  if [ -n "${pg_dir:-}" ]; then
    pg_as "$(pg_bin)/pg_ctl" -D "$pg_dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  fi
  rm -rf "$WORK"
}
# PostgreSQL's tools refuse root: as its own user then.
pg_as() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
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
        if p["type"] == "row":  # a heading, no query
            continue
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
        if os.path.isdir(f"{DEPLOY}/k8s/{f}"):  # k8s/cluster: checked by cluster_static()
            continue
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

def url_parts(url):
    """redis://:PW@host:port/db or postgres://user:PW@host:port/db -> dict (compose ${...} kept)."""
    m = re.match(r"^(\w+)://([^:@/]*):([^@]*)@([^:/]+):(\d+)/(\w+)$", url)
    check(m, f"URL not in the expected form scheme://user:password@host:port/db: {url}")
    if not m:
        return {}
    return dict(zip(["scheme", "user", "password", "host", "port", "db"], m.groups()))

def cluster_static():
    """compose.cluster.yaml, prometheus.cluster.yml, k8s/cluster/ and the per-node dashboard
    panels, cross-checked like the single-node files; writes each node's resolved settings
    for --check-config and the live cluster run."""
    work = sys.argv[2]
    rows = readme_options()
    envs = {r["env"] for r in rows if r["env"] != "—"}
    for e in ["CONSULT_REDIS_URL", "CONSULT_NODE_ID", "CONSULT_ADVERTISE_URL", "CONSULT_DATABASE_URL"]:
        check(e in envs, f"deploy/README.md's option table has {e}")
    # Values for the variables deploy/compose/cluster.env.example asks for (never real ones).
    sample = {"CONSULT_TOKEN_SECRET": open(f"{work}/turn.secret").read().strip() * 2,
              "REDIS_PASSWORD": "0123456789abcdef0123", "POSTGRES_PASSWORD": "fedcba9876543210fedc",
              "GRAFANA_ADMIN_PASSWORD": "x", "CONSULT_PUBLIC_IP": "192.0.2.10"}

    # --- compose.cluster.yaml
    text = open(f"{DEPLOY}/compose.cluster.yaml").read()
    compose = yaml.safe_load(text)
    services = compose["services"]
    for s in ["redis", "postgres", "prometheus", "grafana"]:
        check(s in services, f"compose.cluster: service {s}")
    nodes = {n: svc for n, svc in services.items() if svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile"}
    check(len(nodes) >= 2, f"compose.cluster: two or more SFU nodes: {list(nodes)}")
    for name, svc in services.items():
        check(svc.get("restart") in ("unless-stopped", "always", "on-failure"), f"compose.cluster: {name} has a restart policy")
    for s, probe in [("redis", "ping"), ("postgres", "pg_isready")]:
        check(probe in " ".join(services[s]["healthcheck"]["test"]), f"compose.cluster: {s} healthcheck runs {probe}")
    redis_cmd = services["redis"]["command"]
    check(redis_cmd[0] == "redis-server" and "--requirepass" in redis_cmd, "compose.cluster: redis-server with a password")
    redis_pw = redis_cmd[redis_cmd.index("--requirepass") + 1]
    pg_env = services["postgres"]["environment"]
    open(f"{work}/cluster-pg", "w").write(f"{pg_env['POSTGRES_USER']} {pg_env['POSTGRES_DB']}\n")
    ids, urls, udp_ports, host_ports, secrets, http_ports = {}, {}, {}, {}, set(), {}
    for name, svc in nodes.items():
        env = svc["environment"]
        for k in env:
            check(k in envs, f"compose.cluster: {name} env {k} is not an option in deploy/README.md")
        for k in ["CONSULT_NODE_ID", "CONSULT_ADVERTISE_URL", "CONSULT_UDP_ADDR", "CONSULT_REDIS_URL",
                  "CONSULT_DATABASE_URL", "CONSULT_TOKEN_SECRET", "CONSULT_PUBLIC_IP", "CONSULT_HTTP_ADDR"]:
            check(k in env, f"compose.cluster: {name} sets {k}")
        ids[name] = env["CONSULT_NODE_ID"]
        urls[name] = resolve(env["CONSULT_ADVERTISE_URL"])
        check(re.match(r"^https?://[^/]+$", urls[name]), f"compose.cluster: {name} advertise_url {urls[name]}")
        secrets.add(env["CONSULT_TOKEN_SECRET"])
        http_port, udp_port = port_of(env["CONSULT_HTTP_ADDR"]), port_of(env["CONSULT_UDP_ADDR"])
        http_ports[name] = http_port
        udp_ports[name] = udp_port
        ports = [resolve(p) for p in svc["ports"]]
        check(f"{udp_port}:{udp_port}/udp" in ports,
              f"compose.cluster: {name} publishes UDP {udp_port} on the same host port (it is in ICE candidates): {ports}")
        http_pub = [p for p in ports if re.search(rf":(\d+):{http_port}(/tcp)?$", p)]
        check(len(http_pub) == 1, f"compose.cluster: {name} publishes its HTTP port {http_port}: {ports}")
        if http_pub:
            host_port = int(re.search(rf":(\d+):{http_port}(/tcp)?$", http_pub[0]).group(1))
            host_ports[name] = host_port
            # The default advertise_url is this node as reached on this host.
            check(urls[name].endswith(f":{host_port}"), f"compose.cluster: {name}'s default advertise_url {urls[name]} is its host port {host_port}")
        hc = " ".join(svc["healthcheck"]["test"])
        check("/readyz" in hc and f"/{http_port}" in hc, f"compose.cluster: {name} healthcheck asks /readyz on its HTTP port")
        for dep in ["redis", "postgres"]:
            check(svc["depends_on"][dep]["condition"] == "service_healthy", f"compose.cluster: {name} waits for {dep} healthy")
        r = url_parts(env["CONSULT_REDIS_URL"])
        check(r.get("scheme") == "redis" and r.get("host") == "redis" and r.get("port") == "6379" and r.get("password") == redis_pw,
              f"compose.cluster: {name}'s CONSULT_REDIS_URL is the redis service with its password: {env['CONSULT_REDIS_URL']}")
        d = url_parts(env["CONSULT_DATABASE_URL"])
        check(d.get("scheme") == "postgres" and d.get("host") == "postgres" and d.get("port") == "5432"
              and d.get("user") == pg_env["POSTGRES_USER"] and d.get("db") == pg_env["POSTGRES_DB"]
              and d.get("password") == pg_env["POSTGRES_PASSWORD"],
              f"compose.cluster: {name}'s CONSULT_DATABASE_URL is the postgres service's user, password and database")
        src, dst = resolve(svc["volumes"][0]).split(":")[:2]
        check(dst == env["CONSULT_CONFIG"] and os.path.isfile(os.path.join(DEPLOY, src)),
              f"compose.cluster: {name} mounts an existing config file at CONSULT_CONFIG")
        # The node as compose starts it, for --check-config (mounted file at its repo path).
        node_env = {k: resolve(v, sample) for k, v in env.items()}
        node_env["CONSULT_CONFIG"] = os.path.join(DEPLOY, src)
        open(f"{work}/cluster-{name}.env", "w").write("".join(f"{k}={v}\n" for k, v in node_env.items()))
    for what, values in [("node ids", ids), ("advertise URLs", urls), ("UDP ports", udp_ports), ("host HTTP ports", host_ports)]:
        check(len(set(values.values())) == len(values), f"compose.cluster: {what} differ per node: {values}")
    check(len(secrets) == 1, f"compose.cluster: every node has the same CONSULT_TOKEN_SECRET: {secrets}")
    open(f"{work}/cluster-nodes", "w").write("".join(f"{n}\n" for n in nodes))
    open(f"{work}/cluster-node-ids", "w").write("".join(f"{ids[n]}\n" for n in nodes))
    open(f"{work}/cluster-redis.args", "w").write("\n".join(resolve(a, sample) for a in redis_cmd[1:]) + "\n")
    open(f"{work}/cluster-redis.password", "w").write(resolve(redis_pw, sample))
    # Every required variable is in the env example, and the example has nothing unused.
    required = set(re.findall(r"\$\{(\w+):\?", text))
    optional = set(re.findall(r"\$\{(\w+):-", text))
    example = dict(re.findall(r"^(\w+)=(.*)$", open(f"{DEPLOY}/compose/cluster.env.example").read(), re.M))
    check(required <= set(example), f"compose/cluster.env.example lacks {sorted(required - set(example))}")
    check(set(example) <= required | optional, f"compose/cluster.env.example sets unused {sorted(set(example) - required - optional)}")
    for k in ["CONSULT_TOKEN_SECRET", "REDIS_PASSWORD", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"]:
        check(example.get(k) == "", f"compose/cluster.env.example: {k} left empty (no secret in git)")
    mounts = {}
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            src, dst = resolve(v).split(":")[:2]
            mounts[(name, dst)] = src
    prom = services["prometheus"]
    prom_dir = mounts[("prometheus", "/etc/prometheus")]
    config_file = next(c for c in prom["command"] if c.startswith("--config.file=")).split("=", 1)[1]
    check(os.path.dirname(config_file) == "/etc/prometheus", "compose.cluster: prometheus's config is in the mounted folder")
    pconf_path = os.path.join(DEPLOY, prom_dir, os.path.basename(config_file))
    check(os.path.isfile(pconf_path), f"compose.cluster: {pconf_path} exists")
    check(mounts.get(("grafana", "/etc/grafana/provisioning")) == "./grafana/provisioning"
          and mounts.get(("grafana", "/var/lib/grafana/dashboards")) == "./grafana/dashboards",
          "compose.cluster: grafana gets the same provisioning and dashboards as compose.yaml")

    # --- prometheus.cluster.yml: one target per node, labelled with its node id.
    pconf = yaml.safe_load(open(pconf_path))
    job = next(j for j in pconf["scrape_configs"] if j["job_name"] == "consult-sfu")
    check(job.get("metrics_path", "/metrics") == "/metrics", "prometheus.cluster: metrics_path /metrics")
    want = {f"{n}:{http_ports[n]}": ids[n] for n in nodes}
    got = {t: sc.get("labels", {}).get("node") for sc in job["static_configs"] for t in sc["targets"]}
    check(got == want, f"prometheus.cluster: targets and node labels {got} are compose.cluster's nodes {want}")
    for rf in pconf["rule_files"]:
        check(os.path.isfile(os.path.join(os.path.dirname(pconf_path), rf)), f"prometheus.cluster: rule file {rf}")

    # --- k8s/cluster
    kdir = f"{DEPLOY}/k8s/cluster"
    docs = []
    for f in sorted(os.listdir(kdir)):
        for d in yaml.safe_load_all(open(f"{kdir}/{f}")):
            if d:
                docs.append((f, d))
    def kind(k):
        return [d for _, d in docs if d["kind"] == k]
    kust = kind("Kustomization")[0]
    for r in kust["resources"]:
        check(os.path.isfile(f"{kdir}/{r}"), f"k8s/cluster: kustomization resource {r}")
    check("secret.example.yaml" not in kust["resources"], "k8s/cluster: the example Secret is not applied")
    in_kust = [d for f, d in docs if f in kust["resources"]]
    for f, d in docs:
        check(f in kust["resources"] or f == "secret.example.yaml" or d["kind"] == "Kustomization",
              f"k8s/cluster: {f} is not in kustomization.yaml")
    names = [(d["kind"], d["metadata"]["name"]) for d in in_kust]
    check(len(names) == len(set(names)), f"k8s/cluster: duplicate objects {names}")
    secret = kind("Secret")[0]
    cm = kind("ConfigMap")[0]
    services_k = {d["metadata"]["name"]: d for d in kind("Service")}
    sts = next(d for d in kind("StatefulSet") if d["metadata"]["name"] == "consult-sfu")
    workloads = kind("StatefulSet") + kind("Deployment")
    def pod_labels(w):
        return w["spec"]["template"]["metadata"]["labels"]
    def selects(svc, w):
        sel = svc["spec"].get("selector", {})
        return sel and sel.items() <= pod_labels(w).items()
    for w in workloads:
        check(w["spec"]["selector"]["matchLabels"].items() <= pod_labels(w).items(), f"k8s/cluster: {w['metadata']['name']} selects its pods")
        pod = w["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            defined = []
            for e in c.get("env", []):
                for ref in re.findall(r"\$\((\w+)\)", e.get("value", "")):
                    check(ref in defined, f"k8s/cluster: {c['name']} env {e['name']} uses $({ref}) before it is defined")
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    check(ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"],
                          f"k8s/cluster: {c['name']} env {e['name']}: Secret key {ref}")
                defined.append(e["name"])
            for a in c.get("args", []):
                for ref in re.findall(r"\$\((\w+)\)", a):
                    check(ref in defined, f"k8s/cluster: {c['name']} args use $({ref}), not in its env")
        for v in pod.get("volumes", []):
            if "secret" in v:
                for item in v["secret"]["items"]:
                    check(item["key"] in secret["stringData"], f"k8s/cluster: Secret key {item['key']}")
            if "configMap" in v:
                check(v["configMap"]["name"] == cm["metadata"]["name"], f"k8s/cluster: ConfigMap {v['configMap']['name']}")
    pod = sts["spec"]["template"]["spec"]
    c = next(c for c in pod["containers"] if c["name"] == "sfu")
    env = {e["name"]: e for e in c["env"]}
    for k in env:
        check(k in envs or not k.startswith("CONSULT_"), f"k8s/cluster: env {k} is not an option")
    check(pod.get("hostNetwork") is True and pod.get("dnsPolicy") == "ClusterFirstWithHostNet",
          "k8s/cluster: host network (each node's own media address) with cluster DNS")
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    check(anti["topologyKey"] == "kubernetes.io/hostname" and anti["labelSelector"]["matchLabels"].items() <= pod_labels(sts).items(),
          "k8s/cluster: one SFU per Kubernetes node (they share its ports)")
    check(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", "k8s/cluster: POD_NAME from the pod's name")
    check(env["CONSULT_NODE_ID"]["value"] == "$(POD_NAME)", "k8s/cluster: node id = pod name")
    check("$(POD_NAME)" in env["CONSULT_ADVERTISE_URL"]["value"], "k8s/cluster: advertise_url per pod")
    check(env["CONSULT_PUBLIC_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP", "k8s/cluster: public_ip = the node's IP")
    toml_text = cm["data"]["consult-sfu.toml"]
    http_k8s = port_of(re.search(r'^http_addr = "([^"]+)"', toml_text, re.M).group(1))
    udp_k8s = port_of(re.search(r'^udp_addr = "([^"]+)"', toml_text, re.M).group(1))
    drain = int(re.search(r"^drain_timeout = (\d+)", toml_text, re.M).group(1))
    public_url = re.search(r'^public_url = "([^"]+)"', toml_text, re.M).group(1)
    cports = {p["name"]: p for p in c["ports"]}
    check(cports["http"]["containerPort"] == http_k8s and cports["media"]["containerPort"] == udp_k8s
          and cports["media"]["protocol"] == "UDP", "k8s/cluster: container ports are the ConfigMap's http_addr and udp_addr")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
          and c["readinessProbe"]["httpGet"]["port"] == "http" and c["livenessProbe"]["httpGet"]["port"] == "http",
          "k8s/cluster: readiness /readyz, liveness /healthz on the http port")
    check(c["lifecycle"]["preStop"] and pod["terminationGracePeriodSeconds"] > drain,
          "k8s/cluster: preStop drain, terminationGracePeriodSeconds above drain_timeout")
    check(sts["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
          and sts["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(http_k8s), "k8s/cluster: scrape /metrics")
    check(c["args"][:1] == ["--config"] and c["args"][1] in pod["initContainers"][0]["command"][-1],
          "k8s/cluster: --config is the file the init container writes")
    gov = services_k.get(sts["spec"]["serviceName"])
    check(gov and gov["spec"].get("clusterIP") == "None" and selects(gov, sts), "k8s/cluster: the StatefulSet's headless Service")
    # Redis and PostgreSQL URLs name their Services, ports and credentials.
    redis_dep = next(d for d in kind("Deployment") if "redis" in d["metadata"]["name"])
    rc = redis_dep["spec"]["template"]["spec"]["containers"][0]
    r = url_parts(env["CONSULT_REDIS_URL"]["value"])
    rsvc = services_k.get(r.get("host"))
    check(rsvc and selects(rsvc, redis_dep) and any(p["port"] == int(r["port"]) for p in rsvc["spec"]["ports"]),
          f"k8s/cluster: CONSULT_REDIS_URL's host and port are the Redis Service: {r}")
    check("--requirepass" in rc["args"] and rc["args"][rc["args"].index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
          and {e["name"]: e for e in rc["env"]}["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
          and r.get("password") == "$(REDIS_PASSWORD)", "k8s/cluster: Redis and the nodes use the same Secret key as password")
    pg = next(d for d in kind("StatefulSet") if "postgres" in d["metadata"]["name"])
    pgc = pg["spec"]["template"]["spec"]["containers"][0]
    pgenv = {e["name"]: e for e in pgc["env"]}
    d = url_parts(env["CONSULT_DATABASE_URL"]["value"])
    psvc = services_k.get(d.get("host"))
    check(psvc and selects(psvc, pg) and any(p["port"] == int(d["port"]) for p in psvc["spec"]["ports"]),
          f"k8s/cluster: CONSULT_DATABASE_URL's host and port are the PostgreSQL Service: {d}")
    check(d.get("user") == pgenv["POSTGRES_USER"]["value"] and d.get("db") == pgenv["POSTGRES_DB"]["value"]
          and pgenv["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
          and d.get("password") == "$(POSTGRES_PASSWORD)", "k8s/cluster: the database URL's user, database and password are PostgreSQL's")
    for svc in services_k.values():
        for p in svc["spec"]["ports"]:
            w = next((w for w in workloads if selects(svc, w)), None)
            if w is None and "statefulset.kubernetes.io/pod-name" in svc["spec"]["selector"]:
                w = sts
            check(w is not None, f"k8s/cluster: Service {svc['metadata']['name']} selects no workload")
            if w is not None:
                names_ = [cp["name"] for cc in w["spec"]["template"]["spec"]["containers"] for cp in cc.get("ports", [])]
                check(p["targetPort"] in names_, f"k8s/cluster: Service {svc['metadata']['name']} targets a container port")
    # Every pod has its own Service and Ingress host = its advertise_url; the entry host =
    # public_url goes to every node.
    ingress = kind("Ingress")[0]
    hosts = {}
    for rule in ingress["spec"]["rules"]:
        hosts[rule["host"]] = rule["http"]["paths"][0]["backend"]["service"]["name"]
    tls_hosts = [h for t in ingress["spec"].get("tls", []) for h in t["hosts"]]
    entry_host = re.match(r"https://([^/:]+)$", public_url).group(1)
    check(entry_host in hosts and selects(services_k[hosts[entry_host]], sts), f"k8s/cluster: Ingress {entry_host} (public_url) to all nodes")
    name = sts["metadata"]["name"]
    for i in range(sts["spec"]["replicas"]):
        pod_name = f"{name}-{i}"
        adv = env["CONSULT_ADVERTISE_URL"]["value"].replace("$(POD_NAME)", pod_name)
        host = re.match(r"https://([^/:]+)$", adv)
        check(host, f"k8s/cluster: {pod_name}'s advertise_url is https://host: {adv}")
        host = host.group(1) if host else ""
        svc = services_k.get(hosts.get(host))
        check(svc and svc["spec"]["selector"] == {"statefulset.kubernetes.io/pod-name": pod_name},
              f"k8s/cluster: Ingress host {host} goes to {pod_name} alone")
        check(any(h == host or (h.startswith("*.") and host.endswith(h[1:]) and host.count(".") == h.count(".")) for h in tls_hosts),
              f"k8s/cluster: the Ingress certificate covers {host}")
    pdb = kind("PodDisruptionBudget")[0]
    check(pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels(sts).items(), "k8s/cluster: the PodDisruptionBudget selects the nodes")
    # One node's config as Kubernetes assembles it, for --check-config.
    open(f"{work}/k8s-cluster.toml", "w").write(toml_text + "\n" + secret["stringData"]["operators.toml"])
    values = {"POD_NAME": f"{name}-1"}
    for e in c["env"]:
        if "value" in e:
            values[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], e["value"])
        elif "secretKeyRef" in e["valueFrom"]:
            values[e["name"]] = secret["stringData"][e["valueFrom"]["secretKeyRef"]["key"]]
        elif e["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP":
            values[e["name"]] = "192.0.2.11"
    open(f"{work}/k8s-cluster.env", "w").write("".join(f"{k}={v}\n" for k, v in values.items() if k.startswith("CONSULT_")))

    # --- The dashboard shows each node: the node variable, and per-node panels.
    dash = json.load(open(f"{DEPLOY}/grafana/dashboards/consult.json"))
    var = dash["templating"]["list"][0]
    check(var["name"] == "instance" and var["includeAll"] and var["multi"], "dashboard: a multi-value node variable")
    per_node = {p["title"]: p for p in dash["panels"] if "per node" in p["title"].lower()}
    for want, metric in [("participants", "consult_participants"), ("consults", "consult_rooms"),
                         ("bitrate", "consult_rtp_bytes_out_total"), ("cpu", "process_cpu_seconds_total"),
                         ("redirects", "consult_cluster_redirects_total")]:
        p = next((p for t, p in per_node.items() if want in t.lower()), None)
        check(p and all(metric in t["expr"] and "by (instance)" in t["expr"] for t in p["targets"][:1]),
              f"dashboard: a '{want} per node' panel on {metric} by instance")
    table = next((p for p in dash["panels"] if p["type"] == "table"), None)
    check(table and all("by (instance)" in t["expr"] and t.get("instant") for t in table["targets"]),
          "dashboard: the nodes table (one row per node)")
    open(f"{work}/per-node-panels", "w").write(json.dumps(sorted(per_node) + ([table["title"]] if table else [])))
    done(f"compose.cluster ({len(nodes)} nodes), prometheus.cluster, k8s/cluster ({sts['spec']['replicas']} pods) and the per-node panels agree")

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
        for t in p.get("targets", []):
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

class WS:
    """A minimal WebSocket client (RFC 6455): JSON text messages in and out."""
    def __init__(self, addr, timeout=5):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"upgrade refused: {head[:80]!r}")
        self.buf = head.split(b"\r\n\r\n", 1)[1]

    def send(self, obj):
        payload, mask = json.dumps(obj).encode(), os.urandom(4)
        n = len(payload)
        head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def recv(self):
        """The next text message as JSON; None when the server closes."""
        while True:
            self._need(2)
            op, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
            i = 2
            if n == 126:
                self._need(4); n = int.from_bytes(self.buf[2:4], "big"); i = 4
            elif n == 127:
                self._need(10); n = int.from_bytes(self.buf[2:10], "big"); i = 10
            self._need(i + n)
            payload, self.buf = self.buf[i:i + n], self.buf[i + n:]
            if op == 8:
                return None
            if op == 1:
                return json.loads(payload)

    def close(self):
        self.s.close()

def join(addr, room, role, invite=None):
    """Opens /ws on addr and joins room (open join) or with an invite: the first answer."""
    ws = WS(addr)
    if invite:
        ws.send({"v": 1, "type": "join", "invite": invite})
    else:
        ws.send({"v": 1, "type": "join", "room": room, "name": f"check-deploy {role}", "role": role})
    while True:
        m = ws.recv()
        if m is None or m.get("type") in ("joined", "redirect", "error", "lobby", "closed"):
            return ws, m

def metric_value(addr, series):
    text = get(f"http://{addr}/metrics")[1]
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None

def port_closed(addr, deadline):
    host, port = addr.rsplit(":", 1)
    while time.time() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            time.sleep(0.05)
        except OSError:
            return True
    return False

def api(addr, key, method, path, body=None):
    req = urllib.request.Request(f"http://{addr}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()

def join_following(addr, room, role, deadline, invite=None):
    """Joins room at addr, following redirects as the web client does (to live nodes), and
    retrying while the answer is not `joined` (a redirect to a dead node, server_busy) until
    deadline: (socket, last answer, node that answered joined or None)."""
    at = addr
    while True:
        try:
            ws, m = join(at, room, role, invite)
        except OSError:
            ws, m = None, None
        if m and m.get("type") == "joined":
            return ws, m, at
        if ws:
            ws.close()
        if m and m.get("type") == "redirect" and re.match(r"^ws://[^/]+/ws$", m["url"]):
            at = m["url"][len("ws://"):-len("/ws")]
            continue
        if time.time() > deadline:
            return None, m, None
        at = addr  # back to the address it came in by, as the web client does
        time.sleep(0.05)

def cluster_live(prom, redis_pid, redis_addr, work, *nodes):
    """The nodes of compose.cluster.yaml on one Redis: a consult is placed on one node and a
    join on another is redirected there; Prometheus with prometheus.cluster.yml scrapes every
    node and the dashboard's per-node panels show one series per node; a node stopped with
    SIGTERM leaves the directory at once, one killed (-9) within the 3 s TTL, and its consult
    starts again on another node; without Redis joins get server_busy, counted as
    reason="directory", and the running consult goes on."""
    pids = dict(n.split("=") for n in nodes)  # http address = pid
    live = list(pids)
    room = "check-deploy-cluster"
    # 1. Placement and redirect.
    ws1, m, owner = join_following(live[0], room, "clinic", time.time() + 5)
    check(owner, f"cluster: the clinic joins (following a redirect if any): {m}")
    if not owner:
        done("cluster")
    others = [n for n in live if n != owner]
    ws2, m = join(others[0], room, "specialist")
    check(m and m.get("type") == "redirect" and m.get("url") == f"ws://{owner}/ws",
          f"cluster: a join on another node is redirected to ws://{owner}/ws: {m}")
    ws2.close()
    ws2, m = join(owner, room, "specialist")
    check(m and m.get("type") == "joined" and len(m.get("participants", [])) == 1,
          f"cluster: the redirected join reaches the clinic's consult: {m}")
    check(metric_value(others[0], "consult_cluster_redirects_total") == 1.0,
          "cluster: consult_cluster_redirects_total counts the redirect")
    done(f"{len(live)} nodes on Redis: the consult placed on one, a join on another redirected to ws://{owner}/ws")

    # The operator's view of the directory (docs/API.md): every node, its signaling URL.
    key = open(f"{work}/operator.key").read().strip()
    status, body = api(live[-1], key, "GET", "/api/v1/admin/cluster")
    listed = {n["node_id"]: n["url"] for n in body.get("nodes", [])} if status == 200 else body
    ids = open(f"{work}/cluster-node-ids").read().split()
    check(status == 200 and sorted(listed) == sorted(ids) and sorted(listed.values()) == sorted(f"ws://{n}/ws" for n in live)
          and all(n["accepting"] for n in body["nodes"]), f"cluster: GET /api/v1/admin/cluster lists every node: {status} {body}")

    # Shared records (PostgreSQL): a consult made through one node's API; its invites are
    # accepted on the other nodes (joined there, or redirected to the consult's node), and its
    # audit trail reads the same on the last one.
    status, body = api(live[0], key, "POST", "/api/v1/consults",
                       {"title": "check-deploy", "participants": [{"name": "Dr Check", "role": "specialist"}]})
    check(status == 201, f"cluster: POST /api/v1/consults on {live[0]}: {status} {body}")
    if status == 201:
        cid = body["consult"]["id"]
        holders, sockets = set(), []
        for invite, node in zip(body["invites"], live[1:] + live[:1]):
            token = urllib.parse.parse_qs(urllib.parse.urlparse(invite["link"]).query)["invite"][0]
            ws, m, at = join_following(node, None, None, time.time() + 5, invite=token)
            check(at and m.get("room") == cid, f"cluster: {invite['role']}'s invite made on {live[0]} joins from {node}: {m}")
            holders.add(at)
            sockets.append(ws)
        check(len(holders) == 1, f"cluster: both invites end on the consult's node: {holders}")
        for ws in sockets:
            if ws:
                ws.send({"v": 1, "type": "leave"})
                ws.close()
        status, trail = api(live[-1], key, "GET", f"/api/v1/consults/{cid}/audit")
        check(status == 200 and "created" in json.dumps(trail), f"cluster: the audit trail on {live[-1]}: {status} {trail}")
    done(f"{len(live)} nodes on PostgreSQL: a consult made on one node, its invites joined from the others, its audit trail read on another")

    # 2. Prometheus with prometheus.cluster.yml and the dashboard, per node.
    deadline = time.time() + 20
    while True:
        up = prometheus_api(prom, "query", query='up{job="consult-sfu"} == 1')["data"]["result"]
        red = prometheus_api(prom, "query", query='consult_cluster_redirects_total{job="consult-sfu"} > 0')["data"]["result"]
        groups = prometheus_api(prom, "rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if len(up) == len(live) and red and rules and all(r.get("health") != "unknown" for r in rules):
            break
        if time.time() > deadline:
            sys.exit(f"check-deploy: cluster prometheus: up={up}, redirects={red}, rules={[(r['name'], r.get('health')) for r in rules]}")
        time.sleep(0.5)
    check({r["metric"].get("node") for r in up} == set(open(f"{work}/cluster-node-ids").read().split()),
          f"cluster prometheus: the node label is each node's id: {[r['metric'] for r in up]}")
    check(others[0] in {r["metric"]["instance"] for r in red}, f"cluster prometheus: the redirect is counted on {others[0]}: {red}")
    for r in rules:
        check(r["health"] == "ok", f"cluster prometheus: rule {r['name']}: {r.get('lastError')}")
    firing = [r["name"] for r in rules if r.get("state") == "firing"]
    check(not firing, f"a healthy cluster fires no alert: {firing}")
    time.sleep(2.5)  # rate() needs two samples of every series in its window
    dash = json.load(open(f"{DEPLOY}/grafana/dashboards/consult.json"))
    var = dash["templating"]["list"][0]
    series = re.match(r"label_values\((.*), (\w+)\)$", var["query"]["query"])
    r = prometheus_api(prom, "series", **{"match[]": series.group(1)})
    values = {s[series.group(2)] for s in r["data"]}
    check(values == set(live), f"dashboard: the node variable lists every node: {values}")
    per_node = json.load(open(f"{work}/per-node-panels"))
    n = 0
    for p in dash["panels"]:
        for i, t in enumerate(p.get("targets", [])):
            # As Grafana fills in a multi-value variable: regex-escaped, in a PromQL string.
            q = t["expr"].replace("$instance", "|".join(re.escape(v).replace("\\", "\\\\") for v in sorted(values)))
            r = prometheus_api(prom, "query", query=q)
            check(r["status"] == "success", f"dashboard panel {p['title']!r}: {r.get('error')}: {q}")
            if r["status"] == "success" and p["title"] in per_node and (i == 0 or p["type"] == "table"):
                got = sorted(s["metric"].get("instance") for s in r["data"]["result"])
                check(got == sorted(values), f"dashboard panel {p['title']!r} shows each node: {got}: {q}")
            n += 1
    done(f"prometheus.cluster scraped {len(live)} nodes, {len(rules)} rules evaluated, {n} dashboard queries; per-node panels show each node")

    # 3. The consult's node stops (SIGTERM): it leaves the directory at once and the consult
    # starts again on another node. Then that one is killed (-9): the directory forgets it
    # when its heartbeat expires (3 s), and the consult starts on the last one.
    timings = []
    for sig, bound in [(15, 1.0), (9, 4.0)]:
        os.kill(int(pids[owner]), sig)
        check(port_closed(owner, time.time() + 10), f"cluster: node {owner} stopped after signal {sig}")
        live.remove(owner)
        ws1.close(); ws2.close()
        t0 = time.time()
        ws1, m, owner = join_following(live[0], room, "clinic", t0 + bound + 3)
        elapsed = time.time() - t0
        check(owner in live, f"cluster: after signal {sig} the consult starts on a live node: {m}")
        check(elapsed < bound, f"cluster: after signal {sig} the consult starts again within {bound} s ({elapsed:.2f} s)")
        timings.append(f"{'SIGTERM' if sig == 15 else 'SIGKILL'} {elapsed:.2f} s")
        if not owner:
            done("cluster")
        ws2 = ws1
    done(f"a node stopped: its consult started again on another node after {', '.join(timings)}")

    # 4. Redis down: joins refused with server_busy (retry hint), counted as reason="directory";
    # the running consult goes on.
    os.kill(int(redis_pid), 15)
    check(port_closed(redis_addr, time.time() + 10), "cluster: redis stopped")
    ws4, m = join(owner, room + "-2", "clinic")
    check(m and m.get("type") == "error" and m.get("code") == "server_busy" and m.get("retry_after_ms"),
          f"cluster: without Redis a join gets server_busy with retry_after_ms: {m}")
    ws4.close()
    check((metric_value(owner, 'consult_joins_refused_total{reason="directory"}') or 0) >= 1,
          'cluster: consult_joins_refused_total{reason="directory"} counts it')
    check(get(f"http://{owner}/healthz")[0] == 200 and metric_value(owner, "consult_participants") == 1.0,
          "cluster: the node and its running consult stay without Redis")
    status, body = api(owner, key, "GET", "/api/v1/admin/cluster")
    check(status == 503 and "directory_unavailable" in str(body), f"cluster: admin/cluster without Redis: {status} {body}")
    ws1.close()
    done(f"Redis down: server_busy (retry_after_ms {m.get('retry_after_ms') if m else None}), reason=\"directory\" counted, the running consult goes on")

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

def prom_cluster_config(out, *nodes):
    """prometheus.cluster.yml for the live run: its nodes' entries (labels kept) on the test
    servers, 1 s intervals, the rule files at their repository paths."""
    conf = yaml.safe_load(open(f"{DEPLOY}/prometheus/prometheus.cluster.yml"))
    conf["global"].update(scrape_interval="1s", evaluation_interval="1s")
    conf["rule_files"] = [os.path.abspath(f"{DEPLOY}/prometheus/{r}") for r in conf["rule_files"]]
    job = next(j for j in conf["scrape_configs"] if j["job_name"] == "consult-sfu")
    check(len(job["static_configs"]) == len(nodes), "prometheus.cluster: one entry per node")
    for sc, addr in zip(job["static_configs"], nodes):
        sc["targets"] = [addr]
    open(out, "w").write(yaml.safe_dump(conf))
    done(f"prometheus.cluster.yml pointed at the {len(nodes)} test nodes")

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
    elif cmd == "cluster-static":
        cluster_static()
    elif cmd == "cluster-live":
        cluster_live(*sys.argv[2:])
    elif cmd == "prom-cluster-config":
        prom_cluster_config(*sys.argv[2:])
except (KeyError, StopIteration, TypeError, AttributeError, IndexError) as e:
    # A key or entry the checks expect is missing: report it with what was found so far.
    errors.append(f"{cmd}: expected entry missing ({type(e).__name__}: {e})")
    done(cmd)
PYEOF
py() { "$PY" "$WORK/check.py" "$@"; }

log "promtool: config, rules, rule unit tests"
promtool check config deploy/prometheus/prometheus.yml >/dev/null || fail "promtool check config"
promtool check config deploy/prometheus/prometheus.cluster.yml >/dev/null || fail "promtool check config (cluster)"
promtool check rules deploy/prometheus/alerts.yml >/dev/null || fail "promtool check rules"
promtool test rules deploy/prometheus/alerts.test.yml >/dev/null || {
  promtool test rules deploy/prometheus/alerts.test.yml || true
  fail "promtool test rules"
}
echo "   ok: promtool check config (one node, cluster), check rules, test rules"

log "compose, Kubernetes, Docker, systemd, Grafana cross-checked"
"$PY" -c 'import secrets; print(secrets.token_hex(16))' >"$WORK/turn.secret"
py static "$WORK"
py cluster-static "$WORK"
# kustomize as kubectl runs it (offline), when kubectl is there: both directories build.
if command -v kubectl >/dev/null; then
  for k in deploy/k8s deploy/k8s/cluster; do
    kubectl kustomize "$k" >"$WORK/kustomize.out" 2>&1 || { cat "$WORK/kustomize.out" >&2; fail "kubectl kustomize $k"; }
  done
  echo "   ok: kubectl kustomize builds deploy/k8s and deploy/k8s/cluster"
else
  echo "   skipped: kubectl kustomize (no kubectl)"
fi

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
# Each node of compose.cluster.yaml and a pod of k8s/cluster, with their settings resolved.
while read -r node; do
  mapfile -t node_env <"$WORK/cluster-$node.env"
  expect_check 0 "configuration OK" env "${node_env[@]}" "$BIN" --check-config
  grep -q "^ *node_id = " "$WORK/out" && grep -q "redis_url = redis://:\*\*\*@redis:6379/0" "$WORK/out" ||
    { cat "$WORK/out" >&2; fail "compose.cluster $node: node_id and redis_url (redacted) not in the summary"; }
  if grep -q -e "0123456789abcdef0123" -e "fedcba9876543210fedc" "$WORK/out"; then
    fail "--check-config printed the Redis or PostgreSQL password"
  fi
done <"$WORK/cluster-nodes"
mapfile -t k8s_cluster_env <"$WORK/k8s-cluster.env"
expect_check 0 "configuration OK" env "${k8s_cluster_env[@]}" "$BIN" --config "$WORK/k8s-cluster.toml" --check-config
grep -q "advertise_url = https://consult-sfu-1.consult.example.vn" "$WORK/out" ||
  { cat "$WORK/out" >&2; fail "k8s/cluster: the pod's advertise_url is not in the summary"; }
if grep -q -e "REPLACE0with0openssl0rand0hex0024" "$WORK/out"; then
  fail "--check-config printed the Redis or PostgreSQL password"
fi
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

log "a cluster: compose.cluster.yaml's nodes on Redis and PostgreSQL, prometheus.cluster.yml, failover"
mapfile -t cluster_redis_args <"$WORK/cluster-redis.args"
cluster_redis_port=$(py free-port)
redis-server "${cluster_redis_args[@]}" --port "$cluster_redis_port" --bind 127.0.0.1 --dir "$WORK" \
  >"$WORK/cluster-redis.log" 2>&1 &
cluster_redis_pid=$!
pids+=("$cluster_redis_pid")
for _ in $(seq 50); do
  grep -q "Ready to accept connections" "$WORK/cluster-redis.log" 2>/dev/null && break
  sleep 0.1
done
redis_url="redis://:$(cat "$WORK/cluster-redis.password")@127.0.0.1:$cluster_redis_port/0"
# Debian's PostgreSQL as the postgres service of compose.cluster.yaml: its user and database,
# password authentication over TCP (its own folder: the postgres user cannot enter $WORK).
read -r pg_user pg_db <"$WORK/cluster-pg"
pg_dir=$(mktemp -d /tmp/consult-check-pg.XXXXXX)
pg_port=$(py free-port)
pg_password=$("$PY" -c 'import secrets; print(secrets.token_hex(12))')
printf '%s\n' "$pg_password" >"$pg_dir/pw"
[ "$(id -u)" != 0 ] || chown -R postgres: "$pg_dir"
pg_as "$(pg_bin)/initdb" -D "$pg_dir/data" -U "$pg_user" --pwfile="$pg_dir/pw" -A scram-sha-256 -E UTF8 \
  --locale=C --no-sync --no-instructions >"$WORK/pg-init.log" 2>&1 || { cat "$WORK/pg-init.log" >&2; fail "initdb"; }
printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\nfsync = off\n" \
  "$pg_port" "$pg_dir" >>"$pg_dir/data/postgresql.conf"
pg_as "$(pg_bin)/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 30 start >/dev/null ||
  { cat "$pg_dir/server.log" >&2; fail "PostgreSQL did not start"; }
PGPASSWORD="$pg_password" "$(pg_bin)/createdb" -h 127.0.0.1 -p "$pg_port" -U "$pg_user" "$pg_db" ||
  fail "createdb $pg_db"
database_url="postgres://$pg_user:$pg_password@127.0.0.1:$pg_port/$pg_db"
# The operators of the shared TOML file (the same on every node): one, for the API check.
operator_key=$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
printf '[[operators]]\nclinic = "check-deploy"\nkey = "%s"\n' "$operator_key" >"$WORK/cluster-operators.toml"
mapfile -t node_ids <"$WORK/cluster-node-ids"
token_secret=$(sed -n 's/^CONSULT_TOKEN_SECRET=//p' "$WORK/cluster-$(head -n1 "$WORK/cluster-nodes").env")
cluster_http=()
cluster_nodes=()
for i in "${!node_ids[@]}"; do
  port=$(py free-port)
  mkdir -p "$WORK/node$i"
  # The shared settings from the environment, as in compose.cluster.yaml; all started at
  # once on a fresh database (they make the schema together); open join for the room checks.
  CONSULT_REDIS_URL="$redis_url" CONSULT_TOKEN_SECRET="$token_secret" CONSULT_DATABASE_URL="$database_url" \
    CONSULT_CONFIG="$WORK/cluster-operators.toml" \
    "$BIN" --http-addr "127.0.0.1:$port" --udp-addr 127.0.0.1:0 \
    --node-id "${node_ids[$i]}" --advertise-url "http://127.0.0.1:$port" --allow-open-join 1 \
    --log warn >"$WORK/node$i.out" 2>"$WORK/node$i.err" &
  pids+=("$!")
  disown "$!"  # the check kills one with -9 on purpose: no "Killed" notice from bash
  cluster_http+=("127.0.0.1:$port")
  cluster_nodes+=("127.0.0.1:$port=$!")
done
for i in "${!node_ids[@]}"; do
  for _ in $(seq 100); do
    grep -q '^CONSULT_READY' "$WORK/node$i.out" && break
    sleep 0.1
  done
  grep -q '^CONSULT_READY' "$WORK/node$i.out" || { cat "$WORK/node$i.err" >&2; fail "cluster node $i did not start"; }
done
prom2_port=$(py free-port)
py prom-cluster-config "$WORK/prometheus.cluster.yml" "${cluster_http[@]}"
prometheus --config.file="$WORK/prometheus.cluster.yml" --storage.tsdb.path="$WORK/tsdb-cluster" \
  --web.listen-address="127.0.0.1:$prom2_port" >"$WORK/prom-cluster.log" 2>&1 &
prom2_pid=$!
pids+=("$prom2_pid")
for _ in $(seq 100); do
  if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$prom2_port/-/ready', timeout=1)" 2>/dev/null; then
    break
  fi
  kill -0 "$prom2_pid" 2>/dev/null || { tail -20 "$WORK/prom-cluster.log" >&2; fail "prometheus (cluster) did not start"; }
  sleep 0.2
done
# A node that cannot reach Redis or PostgreSQL at start stops with the reason, exit 1 (what
# the restart policies and depends_on in compose.cluster.yaml are for).
closed=$(cat "$WORK/closed.port")
expect_check 1 "cannot reach redis at 127.0.0.1:$closed" env CONSULT_REDIS_URL="redis://:pw@127.0.0.1:$closed/0" \
  "$BIN" --http-addr 127.0.0.1:0 --udp-addr 127.0.0.1:0 --db-path "$WORK/node0/no-redis.sqlite" --log warn
expect_check 1 "cannot connect to the consult database" \
  env CONSULT_DATABASE_URL="postgres://consult:pw@127.0.0.1:$closed/consult?connect_timeout=2" \
  "$BIN" --http-addr 127.0.0.1:0 --udp-addr 127.0.0.1:0 --log warn
grep -q ":pw@" "$WORK/out" && fail "the database password was printed"
echo "   ok: a node without Redis or PostgreSQL at start exits 1 with the reason"
echo "$operator_key" >"$WORK/operator.key"
py cluster-live "127.0.0.1:$prom2_port" "$cluster_redis_pid" "127.0.0.1:$cluster_redis_port" "$WORK" "${cluster_nodes[@]}" ||
  { tail -n 5 "$WORK"/node*.err "$WORK/prom-cluster.log" >&2; exit 1; }

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
