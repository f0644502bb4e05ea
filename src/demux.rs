//! Which participant a datagram on the shared UDP port belongs to. Pure: no sockets.
//!
//! A STUN binding request names our ICE ufrag in its USERNAME (`ours:theirs`); that is how a
//! new remote address is learned. Everything else (DTLS, SRTP, SRTCP) is routed by the remote
//! address alone: one hash lookup, no scan over peers.

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

/// Routing table from ufrag and remote address to a target (a participant's room inbox).
#[derive(Debug)]
pub struct Demux<T> {
    by_ufrag: HashMap<String, T>,
    by_addr: HashMap<SocketAddr, (String, T)>,
}

impl<T: Clone> Demux<T> {
    pub fn new() -> Self {
        Self {
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
        }
    }

    pub fn register(&mut self, ufrag: String, target: T) {
        self.by_ufrag.insert(ufrag, target);
    }

    /// Forgets a participant and every address it used.
    pub fn unregister(&mut self, ufrag: &str) {
        self.by_ufrag.remove(ufrag);
        self.by_addr.retain(|_, (u, _)| u != ufrag);
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
        self.by_addr.get(&source).map(|(_, t)| t)
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
}
