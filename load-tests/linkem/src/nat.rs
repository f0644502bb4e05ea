//! A carrier-grade NAT in front of the weak side (ns-b), so a schedule step can change the
//! address and port the server side sees, as when a phone's Wi-Fi gives way to 3G.
//!
//! Packets from b to a (uplink) get their source address and port rewritten to an external
//! binding; packets from a to b (downlink) addressed to a binding get the internal address and
//! port back. Mappings are endpoint-independent (one external port per internal address, port
//! and protocol, whatever the destination), as carrier NATs do, and never expire on their own.
//!
//! [`Nat::rebind`] models the network change: every binding is forgotten, the external address
//! moves to the next one in the list (round robin; with one address only the ports change), and
//! new flows get fresh ports. Packets in flight towards an old binding are dropped, and the
//! server sees the client's next packets come from a new 5-tuple. The client's own address
//! does not change, so its sockets stay valid: only what the server (and any TCP connection's
//! far end) sees is new.
//!
//! Handled: UDP, TCP and ICMP echo (its identifier stands in for the port). Dropped (and
//! counted by the caller): other protocols, ICMP errors, fragments after the first, malformed
//! headers, and downlink packets that match no binding. Checksums are updated incrementally
//! (RFC 1624); a UDP checksum of 0 (none) stays 0.
//!
//! Pure: no IO, no clock.

use std::collections::HashMap;
use std::net::Ipv4Addr;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Where the NAT takes its external bindings from.
#[derive(Clone, Debug, PartialEq)]
pub struct NatConfig {
    /// External addresses; binding generation `g` uses `addrs[g % len]`. Not empty.
    pub addrs: Vec<Ipv4Addr>,
    /// External ports are handed out from `port_min..=port_max`, in order, wrapping.
    pub port_min: u16,
    pub port_max: u16,
}

/// Why a packet was not translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatDrop {
    /// Not an IPv4 packet with a complete header.
    Malformed,
    /// A protocol (or ICMP type) the NAT does not translate, or a later fragment.
    Unsupported,
    /// A downlink packet for an external address/port that has no binding (any more).
    NoBinding,
}

type Key = (u8, Ipv4Addr, u16);

#[derive(Clone, Debug)]
pub struct Nat {
    cfg: NatConfig,
    generation: u32,
    next_port: u16,
    /// (proto, internal addr, internal port) -> external port (the address is the generation's).
    out: HashMap<Key, u16>,
    /// (proto, external addr, external port) -> (internal addr, internal port).
    back: HashMap<Key, (Ipv4Addr, u16)>,
}

/// Offsets of the fields the NAT rewrites in one packet.
struct Parsed {
    proto: u8,
    /// Offset of the port (or ICMP identifier) being translated: source port for the uplink,
    /// destination port for the downlink.
    port_at: usize,
    /// Offset of the transport checksum, if it has to follow the rewrite.
    csum_at: Option<usize>,
    /// Whether the transport checksum covers the IP addresses (pseudo-header).
    pseudo: bool,
}

impl Nat {
    pub fn new(cfg: NatConfig) -> Self {
        assert!(!cfg.addrs.is_empty(), "NAT needs an external address");
        assert!(cfg.port_min <= cfg.port_max, "empty NAT port range");
        let next_port = cfg.port_min;
        Self {
            cfg,
            generation: 0,
            next_port,
            out: HashMap::new(),
            back: HashMap::new(),
        }
    }

    /// How many times the bindings were changed.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// External address of the current generation.
    pub fn external_addr(&self) -> Ipv4Addr {
        self.cfg.addrs[self.generation as usize % self.cfg.addrs.len()]
    }

    /// Number of live bindings.
    pub fn bindings(&self) -> usize {
        self.out.len()
    }

    /// The network changed: forget every binding, move to the next external address.
    pub fn rebind(&mut self) {
        self.generation += 1;
        self.out.clear();
        self.back.clear();
    }

    /// Rebinds until `generation` is reached (idempotent; both directions' threads call it).
    /// Returns true if it changed anything.
    pub fn sync_generation(&mut self, generation: u32) -> bool {
        let mut changed = false;
        while self.generation < generation {
            self.rebind();
            changed = true;
        }
        changed
    }

    /// The external binding of an internal endpoint, if it has one.
    pub fn binding_of(&self, proto: u8, addr: Ipv4Addr, port: u16) -> Option<(Ipv4Addr, u16)> {
        self.out
            .get(&(proto, addr, port))
            .map(|p| (self.external_addr(), *p))
    }

    fn alloc_port(&mut self, proto: u8, ext: Ipv4Addr) -> u16 {
        // Ports in use in this generation are skipped; the range is far larger than the
        // number of flows a test makes, so this always terminates quickly. If every port is
        // taken, the oldest-numbered one is reused (its binding is replaced).
        let span = u32::from(self.cfg.port_max - self.cfg.port_min) + 1;
        let mut port = self.next_port;
        for _ in 0..span {
            if !self.back.contains_key(&(proto, ext, port)) {
                break;
            }
            port = self.step(port);
        }
        self.next_port = self.step(port);
        port
    }

    fn step(&self, port: u16) -> u16 {
        if port >= self.cfg.port_max {
            self.cfg.port_min
        } else {
            port + 1
        }
    }

    /// Uplink (b -> a): rewrites the source to the external binding, creating it if needed.
    pub fn outbound(&mut self, pkt: &mut [u8]) -> Result<(), NatDrop> {
        let p = parse(pkt, Side::Source)?;
        let int_addr = ipv4_at(pkt, 12);
        let int_port = u16_at(pkt, p.port_at);
        let key = (p.proto, int_addr, int_port);
        let ext_addr = self.external_addr();
        let ext_port = match self.out.get(&key) {
            Some(port) => *port,
            None => {
                let port = self.alloc_port(p.proto, ext_addr);
                if let Some((old_addr, old_port)) = self
                    .back
                    .insert((p.proto, ext_addr, port), (int_addr, int_port))
                {
                    self.out.remove(&(p.proto, old_addr, old_port));
                }
                self.out.insert(key, port);
                port
            }
        };
        rewrite(pkt, &p, 12, ext_addr, ext_port);
        Ok(())
    }

    /// Downlink (a -> b): rewrites the destination back to the internal endpoint.
    pub fn inbound(&mut self, pkt: &mut [u8]) -> Result<(), NatDrop> {
        let p = parse(pkt, Side::Destination)?;
        let key = (p.proto, ipv4_at(pkt, 16), u16_at(pkt, p.port_at));
        let Some(&(int_addr, int_port)) = self.back.get(&key) else {
            return Err(NatDrop::NoBinding);
        };
        rewrite(pkt, &p, 16, int_addr, int_port);
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Source,
    Destination,
}

fn u16_at(pkt: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([pkt[at], pkt[at + 1]])
}

fn put_u16(pkt: &mut [u8], at: usize, v: u16) {
    pkt[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn ipv4_at(pkt: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(pkt[at], pkt[at + 1], pkt[at + 2], pkt[at + 3])
}

fn parse(pkt: &[u8], side: Side) -> Result<Parsed, NatDrop> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return Err(NatDrop::Malformed);
    }
    let ihl = usize::from(pkt[0] & 0x0F) * 4;
    let total = usize::from(u16_at(pkt, 2));
    if ihl < 20 || total < ihl || total > pkt.len() {
        return Err(NatDrop::Malformed);
    }
    let frag_offset = u16_at(pkt, 6) & 0x1FFF;
    if frag_offset != 0 {
        return Err(NatDrop::Unsupported);
    }
    let proto = pkt[9];
    let l4 = &pkt[ihl..total];
    let (port_off, csum_off, pseudo) = match proto {
        PROTO_UDP => {
            if l4.len() < 8 {
                return Err(NatDrop::Malformed);
            }
            let port = if side == Side::Source { 0 } else { 2 };
            // UDP over IPv4 may carry no checksum (0): leave it so.
            let csum = (u16_at(l4, 6) != 0).then_some(6);
            (port, csum, true)
        }
        PROTO_TCP => {
            if l4.len() < 20 {
                return Err(NatDrop::Malformed);
            }
            let port = if side == Side::Source { 0 } else { 2 };
            (port, Some(16), true)
        }
        PROTO_ICMP => {
            if l4.len() < 8 {
                return Err(NatDrop::Malformed);
            }
            // Echo request goes out, echo reply comes back; the identifier is the "port".
            let want = if side == Side::Source { 8 } else { 0 };
            if l4[0] != want {
                return Err(NatDrop::Unsupported);
            }
            (4, Some(2), false)
        }
        _ => return Err(NatDrop::Unsupported),
    };
    Ok(Parsed {
        proto,
        port_at: ihl + port_off,
        csum_at: csum_off.map(|c| ihl + c),
        pseudo,
    })
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word changes from `old` to `new`.
pub fn csum_update(csum: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!csum) + u32::from(!old) + u32::from(new);
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes `addr` at `addr_at` (12 = source, 16 = destination) and `port` at the parsed port
/// offset, keeping the IP header and transport checksums right.
fn rewrite(pkt: &mut [u8], p: &Parsed, addr_at: usize, addr: Ipv4Addr, port: u16) {
    let new = addr.octets();
    let mut ip_csum = u16_at(pkt, 10);
    let mut l4_csum = p.csum_at.map(|at| u16_at(pkt, at));
    for w in 0..2 {
        let at = addr_at + 2 * w;
        let old_w = u16_at(pkt, at);
        let new_w = u16::from_be_bytes([new[2 * w], new[2 * w + 1]]);
        ip_csum = csum_update(ip_csum, old_w, new_w);
        if p.pseudo {
            l4_csum = l4_csum.map(|c| csum_update(c, old_w, new_w));
        }
        put_u16(pkt, at, new_w);
    }
    let old_port = u16_at(pkt, p.port_at);
    l4_csum = l4_csum.map(|c| csum_update(c, old_port, port));
    put_u16(pkt, p.port_at, port);
    put_u16(pkt, 10, ip_csum);
    if let (Some(at), Some(mut c)) = (p.csum_at, l4_csum) {
        // For UDP, a computed 0 is sent as 0xFFFF (0 means "no checksum").
        if p.proto == PROTO_UDP && c == 0 {
            c = 0xFFFF;
        }
        put_u16(pkt, at, c);
    }
}
