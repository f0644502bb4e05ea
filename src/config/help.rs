//! The `--help` text. Long prose that changes with the options, not with how they are parsed;
//! `tests/deploy.rs` checks that it lists every option the parser takes.

pub const HELP: &str = "\
consult-sfu: telehealth consult SFU

Options (each also as env CONSULT_<NAME>, e.g. CONSULT_HTTP_ADDR; the command line wins):
  --config FILE           TOML file with the same keys (http_addr, udp_addr, ...)
  --check-config          load and validate the config (file, env, command line) like a
                          start would, print the effective settings (secrets redacted), exit:
                          0 valid, 2 invalid
  --http-addr ADDR        HTTP listen address        [127.0.0.1:8080]
  --udp-addr ADDR         media UDP listen address   [127.0.0.1:40000]
  --ice-tcp-addr ADDR     ICE-TCP listen address for clients without UDP, or off  [off]
  --public-ip IP          address given to browsers in ICE candidates
  --web-root DIR          web client folder          [web-client]
  --log FILTER            log filter                 [info]
  --max-participants N    per room, 2 to 8           [8]
  --db-path FILE          consult database (SQLite)  [data/consults.sqlite]
  --database-url URL      PostgreSQL shared by several nodes, instead of --db-path:
                          postgres://user@/db?host=/run/postgresql (no TLS: a unix
                          socket or loopback; with a password: env or file only)  [off]
  --public-url URL        base of invite links       [http://<http-addr>]
  --allow-open-join 1     join by room name without an invite: media load tests ONLY
  --max-connections N     WebSocket connections at once    [2000]
  --max-connections-per-ip N
                          ... from one client address      [50]
                          (behind a local proxy: its X-Forwarded-For; IPv6: a /64)
  --allowed-origins LIST  other pages that may open /ws, e.g. https://portal.example
                          (comma-separated; the server's own pages always may)  [none]
  --initial-estimate-bps N
                          bandwidth a new subscriber starts from   [600000]
  --tls-cert FILE         PEM certificate chain: HTTPS and WSS on http-addr (with
                          --tls-key; renewed files are picked up without a restart)  [off]
  --tls-key FILE          PEM private key of --tls-cert
  --turn-urls LIST        TURN servers given to browsers with credentials from
                          turn_secret, e.g. turns:turn.example:443?transport=tcp  [none]
  --turn-credential-ttl SECONDS
                          how long those credentials are valid     [43200]
  --ice-servers LIST      other ICE servers given to browsers as they are (stun:...)  [none]
  --drain-timeout SECONDS after POST /api/v1/admin/drain (or SIGUSR1): how long running
                          consults may go on before the process exits   [3600]
  --max-node-participants N
                          admission control: participants on this node at which new
                          joins get server_busy, or off           [off]
  --admission-max-lag-ms MS
                          ... when the event loop's tick runs this late (median), or off  [50]
  --admission-max-cpu FRACTION
                          ... when the process uses this share of all cores, or off  [0.8]
  --reconnect-grace SECONDS
                          how long a participant whose connection dropped keeps its
                          place (others see it reconnecting)   [30]
  --redis-url URL         several nodes: the shared Redis directory,
                          redis://[:password@]host[:port][/db]      [off: one node]
  --node-id NAME          this node's id in the directory   [host name and HTTP port]
  --advertise-url URL     how clients reach this node (http(s)://host[:port])  [public_url]
Env or file only:
  CONSULT_TOKEN_SECRET    invite signing key, 32+ characters [generated, kept in the database]
  CONSULT_TURN_SECRET     coturn's static-auth-secret (use-auth-secret), 16+ characters
File only:
  operators               [[operators]] tables (docs/API.md), one per clinic:
                          clinic = \"...\", key = \"...\" (16+ characters)
  video_layers            simulcast layers q, h, f (rid, scale_resolution_down_by,
                          max_bitrate, max_framerate)          [320x180, 640x360, 1280x720]
";
