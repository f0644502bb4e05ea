//! `database_url`: where the PostgreSQL store is, as a `postgres://` URL that may carry a
//! password. The password never leaves this type except to connect: `Debug` and `Display`
//! show the URL with it replaced, because configs and errors end up in logs and tickets.

use std::fmt;
use std::net::IpAddr;

use postgres::config::{Host, SslMode};

/// Shown instead of a password.
const REDACTED: &str = "(redacted)";

/// A checked `postgres://` or `postgresql://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
}

impl DatabaseUrl {
    /// Checks the URL the way the connection will read it. The error never quotes the URL, so
    /// it can be shown as it is.
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = s.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("must be a postgres:// URL, e.g. \
                        postgres://consult@/consult?host=/run/postgresql or \
                        postgres://consult:PASSWORD@127.0.0.1:5432/consult"
                .into());
        }
        let config: postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(
                "names no server: give a host (postgres://consult@127.0.0.1/consult) \
                        or a socket folder (?host=/run/postgresql)"
                    .into(),
            );
        }
        // The store connects without TLS (no second TLS stack in the build): a URL that
        // insists on it could never connect, so say so now rather than at every start.
        if config.get_ssl_mode() == SslMode::Require {
            return Err(
                "sslmode=require: this server talks to PostgreSQL without TLS; use a \
                        unix socket, a loopback address or a local TLS tunnel"
                    .into(),
            );
        }
        Ok(DatabaseUrl {
            url: url.to_string(),
        })
    }

    /// The URL with its password, to connect. Nowhere else.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// Whether the URL carries a password (in the user part or as `password=`).
    pub fn has_password(&self) -> bool {
        self.redacted() != self.url
    }

    /// Whether every server it names is on this machine (a unix socket or a loopback
    /// address): the only places where the plain-text connection stays off the network.
    pub fn is_local(&self) -> bool {
        let Ok(config) = self.url.parse::<postgres::Config>() else {
            return false;
        };
        let host_local = |h: &Host| match h {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        };
        config.get_hosts().iter().all(host_local)
            && config.get_hostaddrs().iter().all(IpAddr::is_loopback)
    }

    /// The URL with any password replaced. Errs on the side of hiding too much: everything
    /// between `user:` and the last `@` goes, so a password with an unescaped `@` or `/` is
    /// hidden too.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }
}

fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return REDACTED.into();
    };
    let (userinfo, tail) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut out = format!("{scheme}://");
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _)) => out.push_str(&format!("{user}:{REDACTED}@")),
            None => out.push_str(&format!("{userinfo}@")),
        }
    }
    match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => {
                        format!("{k}={REDACTED}")
                    }
                    _ => p.to_string(),
                })
                .collect();
            out.push_str(&format!("{path}?{}", params.join("&")));
        }
        None => out.push_str(tail),
    }
    out
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let cases = [
            (
                "postgres://consult:s3cret@127.0.0.1:5432/consult",
                "postgres://consult:(redacted)@127.0.0.1:5432/consult",
            ),
            (
                "postgresql://u:p%40ss@db.internal/c?connect_timeout=3",
                "postgresql://u:(redacted)@db.internal/c?connect_timeout=3",
            ),
            (
                "postgres://u:pa@ss/word@localhost/c",
                "postgres://u:(redacted)@localhost/c",
            ),
            (
                "postgres://consult@/consult?host=/run/postgresql&password=s3cret",
                "postgres://consult@/consult?host=/run/postgresql&password=(redacted)",
            ),
            (
                "postgres://consult@/consult?host=/run/postgresql",
                "postgres://consult@/consult?host=/run/postgresql",
            ),
        ];
        for (url, want) in cases {
            let parsed = DatabaseUrl::parse(url).unwrap();
            assert_eq!(parsed.redacted(), want);
            assert_eq!(parsed.to_string(), want);
            assert_eq!(format!("{parsed:?}"), format!("DatabaseUrl({want})"));
            assert_eq!(parsed.has_password(), url != want, "{url}");
            assert_eq!(parsed.expose(), url);
        }
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for url in [
            "",
            "mysql://u:s3cret@localhost/db",
            "host=/run/postgresql user=consult password=s3cret",
            "postgres://u:s3cret@/db",
            "postgres://u:s3cret@localhost:notaport/db",
            "postgres://u:s3cret@localhost/db?sslmode=require",
            "postgres://u:s3cret@localhost/db?no_such_option=1",
        ] {
            let err = DatabaseUrl::parse(url).unwrap_err();
            assert!(!err.contains("s3cret"), "{url}: {err}");
        }
    }

    #[test]
    fn local_servers_are_sockets_and_loopback() {
        let local = |u: &str| DatabaseUrl::parse(u).unwrap().is_local();
        assert!(local("postgres://c@/c?host=/run/postgresql"));
        assert!(local("postgres://c@127.0.0.1:5433/c"));
        assert!(local("postgres://c@[::1]/c"));
        assert!(local("postgres://c@localhost/c"));
        assert!(!local("postgres://c@10.0.0.5/c"));
        assert!(!local("postgres://c@db.example/c"));
        assert!(!local("postgres://c@localhost,db.example/c"));
    }
}
