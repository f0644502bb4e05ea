//! The NAT of the weak side, the `outage` and `addr_b` steps and the `[nat]`/`nat_rebind`
//! profile keys: pure tests (no namespaces, no clock).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use linkem::nat::{csum_update, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use linkem::{Dir, Link, LinkParams, Nat, NatConfig, NatDrop, Profile, SplitMix64, Verdict};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const EXT1: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const EXT2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

fn nat(addrs: &[Ipv4Addr]) -> Nat {
    Nat::new(NatConfig {
        addrs: addrs.to_vec(),
        port_min: 40_000,
        port_max: 40_009,
    })
}

/// Ones' complement sum of 16-bit words (odd length padded with a zero byte).
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    for c in data.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        acc += u32::from(w);
    }
    acc
}

fn fold(mut s: u32) -> u16 {
    while s > 0xFFFF {
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}

/// Builds an IPv4 packet with correct checksums.
fn packet(proto: u8, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let l4_len = match proto {
        PROTO_UDP | PROTO_ICMP => 8,
        PROTO_TCP => 20,
        _ => 0,
    };
    let total = 20 + l4_len + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.0.octets());
    p[16..20].copy_from_slice(&dst.0.octets());
    let ip_csum = !fold(sum16(0, &p[..20]));
    p[10..12].copy_from_slice(&ip_csum.to_be_bytes());
    let l4 = 20;
    match proto {
        PROTO_UDP => {
            p[l4..l4 + 2].copy_from_slice(&src.1.to_be_bytes());
            p[l4 + 2..l4 + 4].copy_from_slice(&dst.1.to_be_bytes());
            p[l4 + 4..l4 + 6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        }
        PROTO_TCP => {
            p[l4..l4 + 2].copy_from_slice(&src.1.to_be_bytes());
            p[l4 + 2..l4 + 4].copy_from_slice(&dst.1.to_be_bytes());
            p[l4 + 4..l4 + 8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
            p[l4 + 12] = 0x50;
            p[l4 + 13] = 0x18; // PSH ACK
            p[l4 + 14..l4 + 16].copy_from_slice(&64240u16.to_be_bytes());
        }
        PROTO_ICMP => {
            // Echo request from the client side (src port = identifier), reply towards it.
            p[l4] = if src.0 == CLIENT { 8 } else { 0 };
            let id = if src.0 == CLIENT { src.1 } else { dst.1 };
            p[l4 + 4..l4 + 6].copy_from_slice(&id.to_be_bytes());
            p[l4 + 6..l4 + 8].copy_from_slice(&7u16.to_be_bytes());
        }
        _ => {}
    }
    p[l4 + l4_len..].copy_from_slice(payload);
    if let Some(at) = csum_offset(proto) {
        let csum = l4_checksum(&p);
        let c = if proto == PROTO_UDP && csum == 0 {
            0xFFFF
        } else {
            csum
        };
        p[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
    }
    p
}

fn csum_offset(proto: u8) -> Option<usize> {
    match proto {
        PROTO_UDP => Some(6),
        PROTO_TCP => Some(16),
        PROTO_ICMP => Some(2),
        _ => None,
    }
}

/// The transport checksum computed from scratch (with the checksum field taken as zero).
fn l4_checksum(p: &[u8]) -> u16 {
    let proto = p[9];
    let mut seg = p[20..].to_vec();
    let at = csum_offset(proto).unwrap();
    seg[at] = 0;
    seg[at + 1] = 0;
    let mut acc = 0;
    if proto != PROTO_ICMP {
        acc = sum16(acc, &p[12..20]);
        acc += u32::from(proto) + seg.len() as u32;
    }
    !fold(sum16(acc, &seg))
}

/// Both checksums verify as a receiver would check them.
fn assert_checksums(p: &[u8]) {
    assert_eq!(fold(sum16(0, &p[..20])), 0xFFFF, "IP header checksum");
    let proto = p[9];
    let at = 20 + csum_offset(proto).unwrap();
    let stored = u16::from_be_bytes([p[at], p[at + 1]]);
    if proto == PROTO_UDP && stored == 0 {
        return; // no checksum
    }
    let want = l4_checksum(p);
    // 0x0000 and 0xFFFF are the same number in ones' complement.
    let norm = |c: u16| if c == 0xFFFF { 0 } else { c };
    assert_eq!(
        norm(stored),
        norm(want),
        "transport checksum of proto {proto}"
    );
}

fn src_of(p: &[u8]) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::new(p[12], p[13], p[14], p[15]),
        u16::from_be_bytes([p[20], p[21]]),
    )
}

fn dst_of(p: &[u8]) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::new(p[16], p[17], p[18], p[19]),
        u16::from_be_bytes([p[22], p[23]]),
    )
}

#[test]
fn csum_update_matches_recomputation() {
    // RFC 1624's example: a word changing from 0x5555 to 0x3285 in a header summing to 0xDD2F.
    let data = [0x1234u16, 0x5555, 0xabcd, 0x0f0f];
    let csum = |d: &[u16]| !fold(d.iter().map(|w| u32::from(*w)).sum());
    let before = csum(&data);
    let after = csum(&[0x1234, 0x3285, 0xabcd, 0x0f0f]);
    assert_eq!(csum_update(before, 0x5555, 0x3285), after);
    for (old, new) in [(0u16, 0xFFFF), (0xFFFF, 0), (1, 2), (0x8000, 0x7FFF)] {
        let d2 = [0x1234, new, 0xabcd, 0x0f0f];
        let d1 = [0x1234, old, 0xabcd, 0x0f0f];
        let upd = csum_update(csum(&d1), old, new);
        let norm = |c: u16| if c == 0xFFFF { 0 } else { c };
        assert_eq!(norm(upd), norm(csum(&d2)), "{old:#x} -> {new:#x}");
    }
}

#[test]
fn udp_round_trip_with_valid_checksums() {
    let mut n = nat(&[EXT1]);
    let mut up = packet(PROTO_UDP, (CLIENT, 51_000), (SERVER, 3478), b"hello media");
    assert_checksums(&up);
    n.outbound(&mut up).unwrap();
    assert_eq!(src_of(&up), (EXT1, 40_000));
    assert_eq!(dst_of(&up), (SERVER, 3478), "destination untouched");
    assert_checksums(&up);
    assert_eq!(&up[28..], b"hello media");

    // The same flow keeps its binding.
    let mut again = packet(PROTO_UDP, (CLIENT, 51_000), (SERVER, 3478), b"x");
    n.outbound(&mut again).unwrap();
    assert_eq!(src_of(&again), (EXT1, 40_000));
    // Endpoint-independent: another destination, same binding.
    let mut other = packet(PROTO_UDP, (CLIENT, 51_000), (SERVER, 9), b"x");
    n.outbound(&mut other).unwrap();
    assert_eq!(src_of(&other), (EXT1, 40_000));
    // Another internal port gets another external port.
    let mut second = packet(PROTO_UDP, (CLIENT, 51_001), (SERVER, 3478), b"x");
    n.outbound(&mut second).unwrap();
    assert_eq!(src_of(&second), (EXT1, 40_001));
    assert_eq!(n.bindings(), 2);

    let mut down = packet(PROTO_UDP, (SERVER, 3478), (EXT1, 40_000), b"reply");
    n.inbound(&mut down).unwrap();
    assert_eq!(dst_of(&down), (CLIENT, 51_000));
    assert_eq!(src_of(&down), (SERVER, 3478), "source untouched");
    assert_checksums(&down);
    assert_eq!(
        n.binding_of(PROTO_UDP, CLIENT, 51_000),
        Some((EXT1, 40_000))
    );
}

#[test]
fn udp_without_checksum_stays_without() {
    let mut n = nat(&[EXT1]);
    let mut up = packet(PROTO_UDP, (CLIENT, 5), (SERVER, 6), b"abc");
    up[26] = 0;
    up[27] = 0;
    n.outbound(&mut up).unwrap();
    assert_eq!((up[26], up[27]), (0, 0));
    assert_eq!(fold(sum16(0, &up[..20])), 0xFFFF);
}

#[test]
fn tcp_and_icmp_echo_are_translated() {
    let mut n = nat(&[EXT1]);
    let mut syn = packet(
        PROTO_TCP,
        (CLIENT, 43_210),
        (SERVER, 8080),
        b"GET / HTTP/1.1\r\n\r\n",
    );
    n.outbound(&mut syn).unwrap();
    assert_eq!(src_of(&syn), (EXT1, 40_000));
    assert_checksums(&syn);
    let mut ack = packet(
        PROTO_TCP,
        (SERVER, 8080),
        (EXT1, 40_000),
        b"HTTP/1.1 200 OK\r\n",
    );
    n.inbound(&mut ack).unwrap();
    assert_eq!(dst_of(&ack), (CLIENT, 43_210));
    assert_checksums(&ack);

    // ICMP echo: the identifier is the "port"; a TCP binding with the same number is separate.
    let mut ping = packet(PROTO_ICMP, (CLIENT, 77), (SERVER, 0), b"ping-payload");
    n.outbound(&mut ping).unwrap();
    assert_eq!(&ping[12..16], &EXT1.octets());
    assert_eq!(u16::from_be_bytes([ping[24], ping[25]]), 40_001);
    assert_checksums(&ping);
    let mut pong = packet(PROTO_ICMP, (SERVER, 0), (EXT1, 40_001), b"ping-payload");
    n.inbound(&mut pong).unwrap();
    assert_eq!(&pong[16..20], &CLIENT.octets());
    assert_eq!(u16::from_be_bytes([pong[24], pong[25]]), 77);
    assert_checksums(&pong);
}

#[test]
fn rebind_moves_to_the_next_address_and_drops_old_bindings() {
    let mut n = nat(&[EXT1, EXT2]);
    let mut up = packet(PROTO_UDP, (CLIENT, 51_000), (SERVER, 3478), b"a");
    n.outbound(&mut up).unwrap();
    assert_eq!(src_of(&up), (EXT1, 40_000));

    n.rebind();
    assert_eq!(n.generation(), 1);
    assert_eq!(n.bindings(), 0);
    // In-flight replies to the old binding find nothing.
    let mut late = packet(PROTO_UDP, (SERVER, 3478), (EXT1, 40_000), b"late");
    assert_eq!(n.inbound(&mut late), Err(NatDrop::NoBinding));
    // The same flow now appears from the new address and a new port: a new 5-tuple.
    let mut up = packet(PROTO_UDP, (CLIENT, 51_000), (SERVER, 3478), b"b");
    n.outbound(&mut up).unwrap();
    assert_eq!(src_of(&up), (EXT2, 40_001));
    assert_checksums(&up);
    let mut down = packet(PROTO_UDP, (SERVER, 3478), (EXT2, 40_001), b"c");
    n.inbound(&mut down).unwrap();
    assert_eq!(dst_of(&down), (CLIENT, 51_000));

    // With one address only the port changes; round robin wraps.
    n.rebind();
    assert_eq!(n.external_addr(), EXT1);
    let mut up = packet(PROTO_UDP, (CLIENT, 51_000), (SERVER, 3478), b"d");
    n.outbound(&mut up).unwrap();
    assert_eq!(src_of(&up), (EXT1, 40_002));

    // sync_generation is idempotent.
    assert!(!n.sync_generation(2));
    assert!(n.sync_generation(4));
    assert_eq!(n.generation(), 4);
    assert!(!n.sync_generation(3));
}

#[test]
fn port_range_wraps_and_skips_ports_in_use() {
    let mut n = nat(&[EXT1]);
    for i in 0..10u16 {
        let mut p = packet(PROTO_UDP, (CLIENT, 1000 + i), (SERVER, 1), b"");
        n.outbound(&mut p).unwrap();
        assert_eq!(src_of(&p).1, 40_000 + i);
    }
    // The range (10 ports) is full: the next flow takes over the oldest-numbered port.
    let mut p = packet(PROTO_UDP, (CLIENT, 2000), (SERVER, 1), b"");
    n.outbound(&mut p).unwrap();
    assert_eq!(src_of(&p).1, 40_000);
    assert_eq!(n.bindings(), 10);
    assert_eq!(
        n.binding_of(PROTO_UDP, CLIENT, 1000),
        None,
        "replaced binding is gone"
    );
    let mut back = packet(PROTO_UDP, (SERVER, 1), (EXT1, 40_000), b"");
    n.inbound(&mut back).unwrap();
    assert_eq!(dst_of(&back), (CLIENT, 2000));
    // After a rebind, ports continue from where they were (so they differ from the last ones).
    n.rebind();
    let mut p = packet(PROTO_UDP, (CLIENT, 1000), (SERVER, 1), b"");
    n.outbound(&mut p).unwrap();
    assert_eq!(src_of(&p).1, 40_001);
}

#[test]
fn unsupported_and_malformed_packets_are_refused() {
    let mut n = nat(&[EXT1]);
    assert_eq!(n.outbound(&mut [0u8; 10]), Err(NatDrop::Malformed));
    let mut v6 = packet(PROTO_UDP, (CLIENT, 1), (SERVER, 2), b"");
    v6[0] = 0x60;
    assert_eq!(n.outbound(&mut v6), Err(NatDrop::Malformed));
    let mut short = packet(PROTO_UDP, (CLIENT, 1), (SERVER, 2), b"abcdef");
    short[2..4].copy_from_slice(&200u16.to_be_bytes()); // total length beyond the buffer
    assert_eq!(n.outbound(&mut short), Err(NatDrop::Malformed));
    let mut gre = packet(47, (CLIENT, 0), (SERVER, 0), b"xxxxxxxx");
    assert_eq!(n.outbound(&mut gre), Err(NatDrop::Unsupported));
    let mut frag = packet(PROTO_UDP, (CLIENT, 1), (SERVER, 2), b"abc");
    frag[6..8].copy_from_slice(&0x0010u16.to_be_bytes()); // offset 128 bytes
    assert_eq!(n.outbound(&mut frag), Err(NatDrop::Unsupported));
    // An ICMP echo reply from the client side, or an ICMP error, is not translated.
    let mut reply = packet(PROTO_ICMP, (CLIENT, 9), (SERVER, 0), b"");
    reply[20] = 0;
    assert_eq!(n.outbound(&mut reply), Err(NatDrop::Unsupported));
    let mut unreach = packet(PROTO_ICMP, (SERVER, 0), (EXT1, 9), b"");
    unreach[20] = 3;
    assert_eq!(n.inbound(&mut unreach), Err(NatDrop::Unsupported));
    assert_eq!(n.bindings(), 0, "nothing was bound");
}

#[test]
fn outage_loses_every_packet_and_keeps_the_other_settings() {
    let base = LinkParams {
        delay: Duration::from_millis(40),
        rate_kbps: 2000.0,
        ..LinkParams::default()
    };
    let mut link = Link::new(base.clone());
    let mut rng = SplitMix64::new(7);
    let t0 = Instant::now();
    assert!(matches!(
        link.on_packet(t0, 1200, &mut rng),
        Verdict::Deliver { .. }
    ));
    link.set_params(LinkParams {
        outage: true,
        ..base.clone()
    });
    for i in 1..500u32 {
        let now = t0 + Duration::from_millis(i.into());
        assert_eq!(link.on_packet(now, 1200, &mut rng), Verdict::DropLoss);
    }
    link.set_params(base);
    let now = t0 + Duration::from_secs(2);
    assert_eq!(
        link.on_packet(now, 1200, &mut rng).departure(),
        Some(now + Duration::from_millis(40) + Duration::from_micros(4800))
    );
}

fn parse(s: &str) -> Result<Profile, String> {
    Profile::from_toml_str(s, "t.toml").map_err(|e| e.to_string())
}

#[test]
fn outage_and_nat_rebind_in_profiles() {
    let p = parse(
        "[downlink]\nloss_pct = 2\n[nat]\nexternal = [\"203.0.113.1\", \"203.0.113.5\"]\n\
         [[schedule]]\nat_s = 10\noutage = true\n[[schedule]]\nat_s = 14\noutage = false\n\
         [[schedule]]\nat_s = 20\nnat_rebind = true\n[[schedule]]\nat_s = 30\nnat_rebind = true\nrate_kbps = 100\n",
    )
    .unwrap();
    let nat = p.nat.clone().unwrap();
    assert_eq!(nat.addrs, vec![EXT1, EXT2]);
    assert_eq!((nat.port_min, nat.port_max), (20_000, 60_999));
    assert_eq!(
        p.nat_rebinds(),
        vec![Duration::from_secs(20), Duration::from_secs(30)]
    );
    for dir in [Dir::Downlink, Dir::Uplink] {
        let tl = p.timeline(dir);
        assert!(!tl.params_at(Duration::from_secs(9)).outage);
        assert!(tl.params_at(Duration::from_secs(10)).outage);
        assert!(!tl.params_at(Duration::from_secs(14)).outage);
        // A rebind alone makes no link step; one with a rate change does.
        let times: Vec<u64> = tl.steps().iter().map(|s| s.0.as_secs()).collect();
        assert_eq!(times, vec![0, 10, 14, 30], "{dir:?}");
    }
    assert_eq!(
        p.timeline(Dir::Downlink)
            .params_at(Duration::from_secs(12))
            .loss_pct,
        2.0,
        "an outage keeps the base loss for afterwards"
    );
}

#[test]
fn nat_keys_are_validated() {
    let e = parse("[[schedule]]\nat_s = 1\nnat_rebind = true").unwrap_err();
    assert!(e.contains("needs a [nat] section"), "{e}");
    let e =
        parse("[nat]\nexternal = [\"203.0.113.1\"]\n[[schedule]]\nat_s = 1\nnat_rebind = false")
            .unwrap_err();
    assert!(e.contains("does nothing"), "{e}");
    let e = parse("[nat]\nexternal = []").unwrap_err();
    assert!(e.contains("at least one address"), "{e}");
    let e = parse("[nat]\nexternal = [\"10.0.0.1\"]").unwrap_err();
    assert!(e.contains("only 198.51.100.0/24 and 203.0.113.0/24"), "{e}");
    let e = parse("[nat]\nexternal = [\"203.0.113.x\"]").unwrap_err();
    assert!(e.contains("not an IPv4 address"), "{e}");
    let e = parse("[nat]\nexternal = [\"203.0.113.1\", \"203.0.113.1\"]").unwrap_err();
    assert!(e.contains("listed twice"), "{e}");
    let e =
        parse("[nat]\nexternal = [\"203.0.113.1\"]\nport_min = 5000\nport_max = 4000").unwrap_err();
    assert!(e.contains("port_min <= port_max"), "{e}");
    let e = parse("[nat]\nexternal = [\"203.0.113.1\"]\nports = 3").unwrap_err();
    assert!(e.contains("unknown field"), "{e}");
    let e = parse("[[schedule]]\nat_s = 1\noutage = \"yes\"").unwrap_err();
    assert!(e.contains("outage") || e.contains("invalid type"), "{e}");
}

#[test]
fn shipped_resume_profiles_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
    let o4 = Profile::load(&dir.join("outage-4s.toml")).unwrap();
    let o40 = Profile::load(&dir.join("outage-40s.toml")).unwrap();
    for (p, len) in [(&o4, 4), (&o40, 40)] {
        for dir in [Dir::Downlink, Dir::Uplink] {
            let steps = p.timeline(dir).steps().to_vec();
            assert_eq!(steps.len(), 3, "{}: start, outage, back", p.name);
            assert!(!steps[0].1.outage && steps[1].1.outage && !steps[2].1.outage);
            assert_eq!(
                steps[2].0 - steps[1].0,
                Duration::from_secs(len),
                "{}",
                p.name
            );
        }
    }
    for name in ["address-change", "nat-rebind"] {
        let p = Profile::load(&dir.join(format!("{name}.toml"))).unwrap();
        assert!(p.nat.as_ref().is_some_and(|n| n.addrs.len() >= 2), "{name}");
        assert_eq!(p.nat_rebinds(), vec![Duration::from_secs(40)], "{name}");
    }
    let ac = Profile::load(&dir.join("address-change.toml")).unwrap();
    assert_eq!(
        ac.addr_b_changes(),
        vec![(Duration::from_secs(40), Ipv4Addr::new(198, 51, 100, 6))]
    );
    assert!(Profile::load(&dir.join("nat-rebind.toml"))
        .unwrap()
        .addr_b_changes()
        .is_empty());
    let base = Profile::load(&dir.join("clinic-2m.toml")).unwrap();
    assert!(base.schedule.is_empty() && base.nat.is_none());
}

#[test]
fn addr_b_steps_are_parsed_and_validated() {
    let p = parse("[[schedule]]\nat_s = 5\naddr_b = \"198.51.100.6\"\n[[schedule]]\nat_s = 9\naddr_b = \"203.0.113.22\"\nloss_pct = 1").unwrap();
    assert_eq!(
        p.addr_b_changes(),
        vec![
            (Duration::from_secs(5), Ipv4Addr::new(198, 51, 100, 6)),
            (Duration::from_secs(9), Ipv4Addr::new(203, 0, 113, 22))
        ]
    );
    // An address move alone is no link step.
    let times: Vec<u64> = p
        .timeline(Dir::Uplink)
        .steps()
        .iter()
        .map(|s| s.0.as_secs())
        .collect();
    assert_eq!(times, vec![0, 9]);
    let e = parse("[[schedule]]\nat_s = 5\naddr_b = \"10.1.1.1\"").unwrap_err();
    assert!(
        e.contains("schedule[0].addr_b") && e.contains("only 198.51.100.0/24"),
        "{e}"
    );
    let e = parse("[[schedule]]\nat_s = 5\naddr_b = \"wifi\"").unwrap_err();
    assert!(e.contains("not an IPv4 address"), "{e}");
}
