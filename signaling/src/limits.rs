//! Connection limits of the signaling endpoint. Pure: counters and guards, no sockets and no
//! clock (the timeouts are only values here; the endpoint applies them).
//!
//! Every WebSocket connection holds a [`ConnectionGuard`] from before the upgrade until its
//! socket is gone, so thousands of idle sockets from one place cannot use up the server's
//! file descriptors and memory while real consults go on.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Default cap on WebSocket connections in total. A consult has at most 8 participants plus
/// 16 in the lobby; 2000 is far above what one server carries in media (see load-tests) yet
/// far below the default file-descriptor limit of a systemd service (524288).
pub const DEFAULT_MAX_CONNECTIONS: usize = 2000;

/// Default cap on WebSocket connections from one client address. A clinic behind one NAT may
/// run several consults at once (operator page, a few rooms, reconnects overlapping the old
/// socket), so this is generous; one misbehaving host still cannot take the whole server.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 50;

/// A connection that has not sent `join` by then is closed: the web client sends `join` as
/// soon as the socket opens, so only idle or broken clients ever reach it.
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Most media sections (`m=` lines) accepted in a client's one `offer`. The web client offers
/// at most four (audio, camera, screen, data channel); the limit leaves room for other clients
/// while keeping a hostile offer from making the room allocate hundreds of transceivers.
/// Answers are not limited here: they mirror the server's own offers.
pub const MAX_OFFER_MEDIA_SECTIONS: usize = 8;

/// What the endpoint enforces per connection and in total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// From the upgrade to `join`.
    pub join_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            join_timeout: DEFAULT_JOIN_TIMEOUT,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the server has {0} connections, its limit; try again later")]
    Total(usize),
    #[error("{0} connections from your address already, the limit; close some or try later")]
    PerAddress(usize),
}

/// The key connections are counted under. IPv4 addresses count one by one; an IPv6 host
/// usually owns a whole /64, so IPv6 addresses count by their /64 prefix (otherwise one host
/// could open unlimited connections from its own prefix). IPv4-mapped IPv6 addresses (a
/// dual-stack listener) count as the IPv4 address they carry.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// The address a connection is counted under, from its TCP peer and its `X-Forwarded-For`
/// header. None: counted in the total only.
///
/// The header is trusted only from a loopback peer, i.e. the TLS reverse proxy on this
/// machine the deployment guide puts in front (`deploy/README.md`); its last entry is the
/// address that proxy saw (earlier entries come from the client and may be forged). A
/// loopback peer without a usable header is a local proxy that does not forward addresses, or
/// a local tool such as the load tests: counting it per address would cap every user behind
/// that proxy at the per-address limit, so it counts in the total only.
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>) -> Option<IpAddr> {
    if !peer.to_canonical().is_loopback() {
        return Some(peer);
    }
    let last = forwarded_for?.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        // Some proxies add the port: `198.51.100.7:51234`, `[2001:db8::1]:51234`.
        .or_else(|| last.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Only addresses with open connections: entries are removed at zero, so the map is
    /// bounded by the total limit, not by how many addresses ever connected.
    per_address: HashMap<IpAddr, usize>,
}

/// Open connections, in total and per client address. Cloning shares the counts.
#[derive(Debug, Clone)]
pub struct ConnectionCounter {
    max_total: usize,
    max_per_address: usize,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionCounter {
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        ConnectionCounter {
            max_total,
            max_per_address,
            counts: Arc::new(Mutex::new(Counts::default())),
        }
    }

    /// Counts one more connection from `ip` (None: in the total only, see
    /// [`client_address`]), or says which limit it would exceed. The connection is counted
    /// until the guard is dropped.
    pub fn try_acquire(&self, ip: Option<IpAddr>) -> Result<ConnectionGuard, LimitError> {
        let key = ip.map(address_key);
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(LimitError::Total(self.max_total));
        }
        if let Some(key) = key {
            let from_address = counts.per_address.get(&key).copied().unwrap_or(0);
            if from_address >= self.max_per_address {
                return Err(LimitError::PerAddress(self.max_per_address));
            }
            counts.per_address.insert(key, from_address + 1);
        }
        counts.total += 1;
        Ok(ConnectionGuard {
            counts: self.counts.clone(),
            key,
        })
    }

    /// Open connections in total.
    pub fn total(&self) -> usize {
        self.lock().total
    }

    /// Open connections counted under `ip`'s key.
    pub fn from_address(&self, ip: IpAddr) -> usize {
        self.lock()
            .per_address
            .get(&address_key(ip))
            .copied()
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        lock(&self.counts)
    }
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    counts
        .lock()
        .expect("invariant: no code panics while holding the counts lock (plain arithmetic)")
}

/// One counted connection; dropping it releases the slot.
#[derive(Debug)]
pub struct ConnectionGuard {
    counts: Arc<Mutex<Counts>>,
    key: Option<IpAddr>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        let Some(key) = self.key else { return };
        if let Some(n) = counts.per_address.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_address.remove(&key);
            }
        }
    }
}

/// Media sections (`m=` lines) in an SDP.
pub fn media_sections(sdp: &str) -> usize {
    sdp.lines().filter(|line| line.starts_with("m=")).count()
}

/// Checks a client `offer` against [`MAX_OFFER_MEDIA_SECTIONS`]; the error is for the client.
pub fn check_offer(sdp: &str) -> Result<(), String> {
    let n = media_sections(sdp);
    if n > MAX_OFFER_MEDIA_SECTIONS {
        return Err(format!(
            "the offer has {n} media sections; at most {MAX_OFFER_MEDIA_SECTIONS} are accepted \
             (audio, camera, screen and the data channel need 4)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_per_address_and_in_total() {
        // (address, expected outcome) in order, against 2 per address and 3 in total.
        let counter = ConnectionCounter::new(3, 2);
        let cases: &[(&str, Result<(), LimitError>)] = &[
            ("10.0.0.1", Ok(())),
            ("10.0.0.1", Ok(())),
            ("10.0.0.1", Err(LimitError::PerAddress(2))),
            ("::ffff:10.0.0.1", Err(LimitError::PerAddress(2))),
            ("10.0.0.2", Ok(())),
            ("10.0.0.3", Err(LimitError::Total(3))),
        ];
        let mut guards = Vec::new();
        for (address, want) in cases {
            let got = counter.try_acquire(Some(ip(address)));
            assert_eq!(got.as_ref().map(|_| ()).map_err(|e| *e), *want, "{address}");
            guards.extend(got.ok());
        }
        assert_eq!(counter.total(), 3);
        assert_eq!(counter.from_address(ip("10.0.0.1")), 2);

        // Dropping guards frees their slots, and the address entries go with the last one.
        guards.truncate(1);
        assert_eq!(counter.total(), 1);
        assert_eq!(counter.from_address(ip("10.0.0.2")), 0);
        assert!(
            counter.try_acquire(Some(ip("10.0.0.3"))).is_ok(),
            "guard dropped at once"
        );
        drop(guards);
        assert_eq!(counter.total(), 0);
        assert!(lock(&counter.counts).per_address.is_empty());
    }

    #[test]
    fn refused_attempts_leave_no_trace() {
        let counter = ConnectionCounter::new(1, 0);
        assert_eq!(
            counter.try_acquire(Some(ip("10.0.0.1"))).unwrap_err(),
            LimitError::PerAddress(0)
        );
        assert_eq!(counter.total(), 0);
        assert!(lock(&counter.counts).per_address.is_empty());
    }

    #[test]
    fn ipv6_counts_by_prefix() {
        let cases = [
            ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::"),
            ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"),
            ("2001:db8:1:3::1", "2001:db8:1:3::"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("192.0.2.7", "192.0.2.7"),
            ("::1", "::"),
        ];
        for (address, key) in cases {
            assert_eq!(address_key(ip(address)), ip(key), "{address}");
        }
        let counter = ConnectionCounter::new(10, 1);
        let _held = counter.try_acquire(Some(ip("2001:db8:1:2::1"))).unwrap();
        assert!(counter.try_acquire(Some(ip("2001:db8:1:2::2"))).is_err());
        assert!(counter.try_acquire(Some(ip("2001:db8:1:3::2"))).is_ok());
    }

    #[test]
    fn uncounted_addresses_count_in_the_total_only() {
        let counter = ConnectionCounter::new(3, 1);
        let held: Vec<_> = (0..3).map(|_| counter.try_acquire(None).unwrap()).collect();
        assert_eq!(counter.try_acquire(None).unwrap_err(), LimitError::Total(3));
        assert!(lock(&counter.counts).per_address.is_empty());
        drop(held);
        assert_eq!(counter.total(), 0);
    }

    #[test]
    fn forwarded_addresses_are_trusted_only_from_loopback() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            // (TCP peer, X-Forwarded-For, counted under)
            ("203.0.113.5", None, Some("203.0.113.5")),
            ("203.0.113.5", Some("198.51.100.7"), Some("203.0.113.5")),
            ("127.0.0.1", None, None),
            ("::1", None, None),
            ("::ffff:127.0.0.1", None, None),
            ("127.0.0.1", Some("198.51.100.7"), Some("198.51.100.7")),
            (
                "127.0.0.1",
                Some("6.6.6.6, 198.51.100.7"),
                Some("198.51.100.7"),
            ),
            (
                "127.0.0.1",
                Some(" 198.51.100.7:51234 "),
                Some("198.51.100.7"),
            ),
            ("::1", Some("[2001:db8::1]:443"), Some("2001:db8::1")),
            ("::1", Some("2001:db8::1"), Some("2001:db8::1")),
            ("127.0.0.1", Some("unknown"), None),
            ("127.0.0.1", Some(""), None),
        ];
        for (peer, header, want) in cases {
            assert_eq!(
                client_address(ip(peer), *header),
                want.map(ip),
                "{peer} {header:?}"
            );
        }
    }

    #[test]
    fn offers_with_too_many_media_sections_are_refused() {
        let offer = |m: usize| {
            let mut sdp = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
            for i in 0..m {
                sdp.push_str(&format!("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{i}\r\n"));
            }
            sdp
        };
        let cases = [
            (0, true),
            (4, true),
            (MAX_OFFER_MEDIA_SECTIONS, true),
            (9, false),
            (500, false),
        ];
        for (m, ok) in cases {
            let sdp = offer(m);
            assert_eq!(media_sections(&sdp), m);
            assert_eq!(check_offer(&sdp).is_ok(), ok, "{m} m-lines");
        }
        // Only lines that start with `m=` count, whatever the line ending.
        assert_eq!(
            media_sections("v=0\nm=audio 9 RTP 0\na=x:m=video\nm=video 9 RTP 96"),
            2
        );
    }
}
