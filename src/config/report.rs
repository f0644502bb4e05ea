//! What `--check-config` prints: the effective settings (secrets only as set/unset and
//! length) and the warnings about settings that work but are risky in production.

use super::*;

impl Config {
    /// The effective settings, one `key = value` line each (TOML key paths), for
    /// `--check-config`. Secrets show only whether they are set and their length: the output
    /// goes to terminals, tickets and CI logs.
    pub fn summary(&self) -> Vec<(String, String)> {
        let or_unset = |v: Option<String>, unset: &str| v.unwrap_or_else(|| format!("({unset})"));
        let layers = self
            .video_layers
            .iter()
            .map(|l| {
                format!(
                    "{} /{} {} bps {} fps",
                    l.rid, l.scale_resolution_down_by, l.max_bitrate, l.max_framerate
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let operators = if self.operators.is_empty() {
            "(none: a local dev operator, for one machine only)".to_string()
        } else {
            self.operators
                .iter()
                .map(|o| format!("{:?} key (redacted)", o.clinic))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let c = &self.consults;
        vec![
            ("http_addr".into(), self.http_addr.to_string()),
            ("udp_addr".into(), self.udp_addr.to_string()),
            (
                "ice_tcp_addr".into(),
                self.ice_tcp_addr
                    .map_or_else(|| "off".to_string(), |a| a.to_string()),
            ),
            (
                "public_ip".into(),
                or_unset(
                    self.public_ip.map(|ip| ip.to_string()),
                    "unset: the UDP bind address",
                ),
            ),
            ("web_root".into(), self.web_root.display().to_string()),
            ("log".into(), self.log.clone()),
            ("max_participants".into(), self.max_participants.to_string()),
            ("video_layers".into(), layers),
            (
                "initial_estimate_bps".into(),
                self.initial_estimate_bps.to_string(),
            ),
            ("max_connections".into(), self.max_connections.to_string()),
            (
                "max_connections_per_ip".into(),
                self.max_connections_per_ip.to_string(),
            ),
            (
                "allowed_origins".into(),
                if self.allowed_origins.is_empty() {
                    "none".into()
                } else {
                    self.allowed_origins.join(", ")
                },
            ),
            (
                "tls_cert".into(),
                or_unset(
                    self.tls_cert.as_ref().map(|p| p.display().to_string()),
                    "unset: plain HTTP",
                ),
            ),
            (
                "tls_key".into(),
                or_unset(
                    self.tls_key.as_ref().map(|p| p.display().to_string()),
                    "unset: plain HTTP",
                ),
            ),
            (
                "turn_secret".into(),
                or_unset(
                    self.turn
                        .secret
                        .as_ref()
                        .map(|s| format!("(redacted, {} characters)", s.expose().chars().count())),
                    "unset: no TURN credentials",
                ),
            ),
            ("turn_urls".into(), list_or_none(&self.turn.urls)),
            (
                "turn_credential_ttl".into(),
                self.turn.credential_ttl.as_secs().to_string(),
            ),
            ("ice_servers".into(), list_or_none(&self.ice_servers)),
            (
                "drain_timeout".into(),
                self.drain_timeout.as_secs().to_string(),
            ),
            (
                "max_node_participants".into(),
                off_or(self.max_node_participants),
            ),
            (
                "admission_max_lag_ms".into(),
                off_or(self.admission_max_lag.map(|d| d.as_millis())),
            ),
            ("admission_max_cpu".into(), off_or(self.admission_max_cpu)),
            (
                "reconnect_grace".into(),
                self.reconnect_grace.as_secs().to_string(),
            ),
            (
                "redis_url".into(),
                or_unset(
                    self.cluster.redis_url.as_ref().map(|u| u.to_string()),
                    "unset: a single node",
                ),
            ),
            (
                "node_id".into(),
                or_unset(
                    self.cluster.node_id.clone(),
                    "unset: host name and HTTP port",
                ),
            ),
            (
                "advertise_url".into(),
                or_unset(self.cluster.advertise_url.clone(), "unset: public_url"),
            ),
            ("consults.db_path".into(), c.db_path.display().to_string()),
            (
                "consults.database_url".into(),
                or_unset(
                    c.database_url.as_ref().map(|u| u.redacted()),
                    "unset: SQLite at db_path",
                ),
            ),
            (
                "consults.token_secret".into(),
                or_unset(
                    c.token_secret
                        .as_ref()
                        .map(|s| format!("(redacted, {} characters)", s.expose().chars().count())),
                    "unset: generated once, kept in the database",
                ),
            ),
            (
                "consults.public_url".into(),
                or_unset(c.public_url.clone(), "unset: from http_addr"),
            ),
            (
                "consults.allow_open_join".into(),
                c.allow_open_join.to_string(),
            ),
            ("operators".into(), operators),
        ]
    }

    /// Valid but probably not meant for a server that browsers on other machines use.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.cluster.redis_url.is_some() && self.cluster.advertise_url.is_none() {
            out.push(
                "redis_url without advertise_url: other nodes send this node's clients to \
                 public_url, which behind a load balancer is not this node; set advertise_url \
                 to the address clients reach this node at"
                    .to_string(),
            );
        }
        if self.cluster.redis_url.is_some() && self.consults.database_url.is_none() {
            out.push(
                "redis_url without database_url: each node keeps its own SQLite, so an invite \
                 made on one node is not known to the others; use PostgreSQL for a cluster"
                    .to_string(),
            );
        }
        if self.consults.allow_open_join {
            out.push(
                "allow_open_join is on: anyone who reaches the server enters any consult \
                 (media load tests only)"
                    .to_string(),
            );
        }
        if self.operators.is_empty() {
            out.push(
                "no [[operators]]: a local dev operator is made, whose link only works on \
                 this machine"
                    .to_string(),
            );
        }
        if self.public_ip.is_none() && !self.udp_addr.ip().is_loopback() {
            out.push(format!(
                "public_ip unset: browsers are told to send media to {}, which only works \
                 on this machine or when that is the address they reach",
                self.candidate_ip(self.udp_addr)
            ));
        }
        let has_urls = !self.turn.urls.is_empty();
        if self.turn.secret.is_some() != has_urls {
            out.push(
                "turn_secret and turn_urls go together: with only one of them, browsers are \
                 told of no TURN server"
                    .to_string(),
            );
        }
        if self
            .consults
            .database_url
            .as_ref()
            .is_some_and(|u| !u.is_local())
        {
            out.push(
                "consults.database_url names a server on another machine: the connection to \
                 it is not encrypted (no TLS to the database); use a unix socket, loopback or \
                 a local tunnel"
                    .to_string(),
            );
        }
        if self.consults.public_url.is_none() && !self.http_addr.ip().is_loopback() {
            out.push(
                "consults.public_url unset: invite links use the bind address; set the \
                 https:// name browsers reach (the TLS proxy's)"
                    .to_string(),
            );
        }
        out
    }
}

fn off_or(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "off".to_string(), |v| v.to_string())
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}
