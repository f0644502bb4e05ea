//! Which participant a datagram on the shared UDP port belongs to. Pure: no sockets.
//!
//! A STUN binding request names our ICE ufrag in its USERNAME (`ours:theirs`); that is how a
//! new remote address is learned. Everything else (DTLS, SRTP, SRTCP) is routed by the remote
//! address alone: one hash lookup, no scan over peers.
//!
//! SRTP from an address not (yet) learned is routed by its SSRC (in clear in the header) to
//! the participant that publishes it: a client behind a NAT that rebound keeps sending media
//! from its new address, and its next STUN check may be 2.5 s away. The address is not learned
//! from it (anyone can put any SSRC in a datagram); the participant's `Rtc` authenticates the
//! packet, and only what it accepts moves that participant's media (`room::path`).

use std::collections::HashMap;
use std::net::SocketAddr;

const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const STUN_USERNAME: u16 = 0x0006;

/// The server's ufrag from a STUN message's USERNAME attribute, if this is one.
pub fn stun_local_ufrag(packet: &[u8]) -> Option<&str> {
    if packet.len() < 20 || packet[0] & 0xC0 != 0 || packet[4..8] != STUN_MAGIC_COOKIE {
        return None;
    }
    let declared = u16::from_be_bytes([packet[2], packet[3]]) as usize;
    let body = packet.get(20..20 + declared)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[i], body[i + 1]]);
        let len = u16::from_be_bytes([body[i + 2], body[i + 3]]) as usize;
        let value = body.get(i + 4..i + 4 + len)?;
        if kind == STUN_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        i += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// The SSRC of an RTP packet (not RTCP: payload types 64-95 with the marker bit are RTCP's
/// 192-223, RFC 5761), if this looks like one.
pub fn rtp_ssrc(packet: &[u8]) -> Option<u32> {
    if packet.len() < 12 || packet[0] >> 6 != 2 || (64..96).contains(&(packet[1] & 0x7f)) {
        return None;
    }
    Some(u32::from_be_bytes([
        packet[8], packet[9], packet[10], packet[11],
    ]))
}

/// Routing table from ufrag and remote address to a target (a participant's room inbox).
#[derive(Debug)]
pub struct Demux<T> {
    by_ufrag: HashMap<String, T>,
    by_addr: HashMap<SocketAddr, (String, T)>,
    by_ssrc: HashMap<u32, (String, T)>,
}

impl<T: Clone> Demux<T> {
    pub fn new() -> Self {
        Self {
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            by_ssrc: HashMap::new(),
        }
    }

    pub fn register(&mut self, ufrag: String, target: T) {
        self.by_ufrag.insert(ufrag, target);
    }

    /// Forgets a participant and every address and SSRC it used.
    pub fn unregister(&mut self, ufrag: &str) {
        self.by_ufrag.remove(ufrag);
        self.by_addr.retain(|_, (u, _)| u != ufrag);
        self.by_ssrc.retain(|_, (u, _)| u != ufrag);
    }

    /// SRTP with `ssrc` from an unknown address goes to the participant registered as `ufrag`
    /// (one that publishes it). A later registration of the same SSRC wins.
    pub fn register_ssrc(&mut self, ufrag: &str, ssrc: u32) {
        if let Some(target) = self.by_ufrag.get(ufrag) {
            self.by_ssrc
                .insert(ssrc, (ufrag.to_string(), target.clone()));
        }
    }

    /// Where a datagram from `source` goes. A STUN request with a known ufrag (re)binds the
    /// address, which also follows a client whose network changed.
    pub fn route(&mut self, source: SocketAddr, packet: &[u8]) -> Option<&T> {
        if let Some(ufrag) = stun_local_ufrag(packet) {
            if let Some(target) = self.by_ufrag.get(ufrag) {
                let bound = self.by_addr.get(&source).is_some_and(|(u, _)| u == ufrag);
                if !bound {
                    self.by_addr
                        .insert(source, (ufrag.to_string(), target.clone()));
                }
            }
        }
        if let Some((_, t)) = self.by_addr.get(&source) {
            return Some(t);
        }
        let ssrc = rtp_ssrc(packet)?;
        self.by_ssrc.get(&ssrc).map(|(_, t)| t)
    }

    pub fn len(&self) -> (usize, usize) {
        (self.by_ufrag.len(), self.by_addr.len())
    }
}

impl<T: Clone> Default for Demux<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A PRIORITY attribute first, to exercise skipping.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&STUN_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut p = vec![0x00, 0x01];
        p.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        p.extend_from_slice(&STUN_MAGIC_COOKIE);
        p.extend_from_slice(&[7; 12]);
        p.extend_from_slice(&attrs);
        p
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn parses_the_local_ufrag() {
        assert_eq!(stun_local_ufrag(&stun("srvA:cliB")), Some("srvA"));
        assert_eq!(stun_local_ufrag(&stun("odd")), Some("odd"));
        let mut truncated = stun("srvA:cliB");
        truncated.truncate(30);
        assert_eq!(stun_local_ufrag(&truncated), None);
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None, "RTP is not STUN");
        assert_eq!(
            stun_local_ufrag(&[0x16, 0xfe, 0xfd]),
            None,
            "DTLS is not STUN"
        );
        assert_eq!(stun_local_ufrag(&[]), None);
    }

    #[test]
    fn learns_addresses_from_stun_and_forgets_them() {
        let mut d = Demux::new();
        d.register("srvA".into(), 1);
        d.register("srvB".into(), 2);
        let rtp = [0x80u8; 12];
        assert_eq!(d.route(addr(5000), &rtp), None, "unknown address");
        assert_eq!(d.route(addr(5000), &stun("srvA:x")), Some(&1));
        assert_eq!(d.route(addr(5000), &rtp), Some(&1));
        assert_eq!(d.route(addr(6000), &stun("nobody:x")), None);
        // The client moved to another address (network switch).
        assert_eq!(d.route(addr(7000), &stun("srvA:x")), Some(&1));
        assert_eq!(d.route(addr(7000), &rtp), Some(&1));
        assert_eq!(d.route(addr(8000), &stun("srvB:y")), Some(&2));
        d.unregister("srvA");
        assert_eq!(d.route(addr(5000), &rtp), None);
        assert_eq!(d.route(addr(7000), &rtp), None);
        assert_eq!(d.route(addr(8000), &rtp), Some(&2));
        assert_eq!(d.len(), (1, 1));
    }

    fn rtp(pt: u8, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 1, 0, 0, 0, 9];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0; 20]);
        p
    }

    #[test]
    fn routes_rtp_from_unknown_addresses_by_ssrc_without_learning_them() {
        let mut d = Demux::new();
        d.register("srvA".into(), 1);
        d.register("srvB".into(), 2);
        d.register_ssrc("srvA", 0xAAAA);
        d.register_ssrc("nobody", 0xCCCC);
        assert_eq!(d.route(addr(5000), &stun("srvB:y")), Some(&2));
        let cases = [
            (
                addr(6000),
                rtp(111, 0xAAAA),
                Some(&1),
                "a new address, a known SSRC",
            ),
            (
                addr(6000),
                rtp(111 | 0x80, 0xAAAA),
                Some(&1),
                "with the marker bit",
            ),
            (addr(6000), rtp(111, 0xBBBB), None, "an unknown SSRC"),
            (
                addr(6000),
                rtp(111, 0xCCCC),
                None,
                "registered for an unknown ufrag",
            ),
            (
                addr(6000),
                rtp(200, 0xAAAA),
                None,
                "RTCP (sender report) is not routed by SSRC",
            ),
            (
                addr(6000),
                rtp(111, 0xAAAA)[..11].to_vec(),
                None,
                "too short",
            ),
            (
                addr(5000),
                rtp(111, 0xAAAA),
                Some(&2),
                "a known address goes by address",
            ),
        ];
        for (source, packet, want, what) in cases {
            assert_eq!(d.route(source, &packet), want, "{what}");
        }
        assert_eq!(d.len(), (2, 1), "no address learned from SRTP");
        d.unregister("srvA");
        assert_eq!(d.route(addr(6000), &rtp(111, 0xAAAA)), None);
    }
}
