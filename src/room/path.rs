//! Where a participant's media goes on the shared UDP port. Pure: no sockets, time is an
//! argument.
//!
//! str0m 0.25's ICE agent (the `is` crate) follows a nomination only when it has a higher pair
//! priority than the pair it sends on. When a carrier NAT rebinds, the client's checks arrive
//! from a new address and port with the same priority as before (both are peer-reflexive), so
//! str0m nominates the new pair but keeps sending to the old address until that pair fails,
//! about 21 s later, while the client, seeing no change locally, receives nothing. Media
//! follows the client instead (as mediasoup's "selected tuple" does, and symmetric RTP): to the
//! latest source that proved to be the client, once the address str0m sends to has gone quiet.
//!
//! What proves it, both checked by str0m, never by the source address alone:
//! - an RTP packet str0m accepted: new to its replay window and SRTP-authenticated with the
//!   keys of this participant's DTLS session; the client sends these on the path it selected
//!   (50 audio packets/s), so media moves within `QUIET` of a rebinding;
//! - a binding request with USE-CANDIDATE that str0m answered with a success response (same
//!   transaction id, to that source): str0m answers only requests whose MESSAGE-INTEGRITY it
//!   verified with our ICE password. This also covers clients that send no media.
//!
//! A forged datagram proves nothing. A captured binding request replayed from elsewhere would
//! pass the integrity check, but moves media only while the client's own address is quiet (it
//! sends no media at all), and the client's next check or packet takes it back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
const BINDING_SUCCESS: [u8; 2] = [0x01, 0x01];
const USE_CANDIDATE: u16 = 0x0025;

/// The address str0m sends to must have sent us no media for this long before media moves to
/// a newer proven source: a client sends audio every 20-60 ms and video every 50 ms, so a live
/// path is hardly ever this quiet, while a rebound NAT's old binding is silent for good.
pub const QUIET: Duration = Duration::from_millis(300);

/// A destination str0m has just chosen is followed at least this long, even if quiet: after
/// an ICE restart the client moves its media to the new pair only once our nomination reaches
/// it, a round trip later, and until then its media still proves the old pair.
pub const FRESH: Duration = Duration::from_secs(1);

/// Nominations awaiting str0m's answer; str0m answers within the same poll, so a few suffice.
const PENDING: usize = 4;
/// Sources whose last media arrival is remembered.
const HEARD: usize = 4;

type TransactionId = [u8; 12];

#[derive(Debug, Default)]
pub struct SendPath {
    /// USE-CANDIDATE requests received and not yet answered: (source, transaction id).
    pending: Vec<(SocketAddr, TransactionId)>,
    /// The latest source proven to be the client (see the module comment), unless str0m chose
    /// a destination of its own since.
    proven: Option<SocketAddr>,
    /// When accepted media last arrived from each recent source.
    heard: Vec<(SocketAddr, Instant)>,
    /// Where str0m last addressed media, and since when.
    chosen: Option<(SocketAddr, Instant)>,
    /// Where media last went.
    sent: Option<SocketAddr>,
}

/// Where one outgoing datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub destination: SocketAddr,
    /// Media goes to another address than the media before it, and that one had gone quiet:
    /// what was sent there in between is lost, so video must restart from a keyframe. (A
    /// switch while the old address still sends, as in an ICE restart over a working path,
    /// loses nothing.)
    pub moved: bool,
}

impl SendPath {
    /// A datagram from `source` reached this participant (before it is given to str0m).
    pub fn on_receive(&mut self, source: SocketAddr, packet: &[u8]) {
        if let Some((kind, id)) = stun_header(packet) {
            if kind == BINDING_REQUEST && has_use_candidate(packet) {
                self.pending.retain(|(a, _)| *a != source);
                if self.pending.len() == PENDING {
                    self.pending.remove(0);
                }
                self.pending.push((source, id));
            }
        }
    }

    /// str0m accepted an RTP packet that came from `source` (fresh and authenticated).
    pub fn on_media(&mut self, source: SocketAddr, now: Instant) {
        self.proven = Some(source);
        if let Some(h) = self.heard.iter_mut().find(|(a, _)| *a == source) {
            h.1 = now;
            return;
        }
        if self.heard.len() == HEARD {
            // The longest silent source is the least useful to remember.
            if let Some(k) = (0..self.heard.len()).min_by_key(|&k| self.heard[k].1) {
                self.heard.swap_remove(k);
            }
        }
        self.heard.push((source, now));
    }

    /// Where a datagram str0m addressed to `destination` goes. STUN always goes where str0m
    /// says (its checks decide which pairs live); media follows the latest proven source once
    /// str0m's own destination has gone quiet.
    pub fn on_transmit(
        &mut self,
        destination: SocketAddr,
        packet: &[u8],
        now: Instant,
    ) -> Decision {
        if let Some((kind, id)) = stun_header(packet) {
            if kind == BINDING_SUCCESS {
                if let Some(k) = self
                    .pending
                    .iter()
                    .position(|&(a, t)| a == destination && t == id)
                {
                    self.pending.remove(k);
                    self.proven = Some(destination);
                }
            }
            return Decision {
                destination,
                moved: false,
            };
        }
        let since = match self.chosen {
            Some((c, since)) if c == destination => since,
            Some(_) => {
                // str0m changed its mind (a restart, a failed pair): that is newer than any
                // proof seen before it.
                self.proven = None;
                now
            }
            None => now,
        };
        self.chosen = Some((destination, since));
        let fresh = now.saturating_duration_since(since) < FRESH;
        let target = match self.proven {
            Some(n) if n != destination && !fresh && self.quiet(destination, now) => n,
            _ => destination,
        };
        let moved = self.sent.is_some_and(|s| s != target && self.quiet(s, now));
        self.sent = Some(target);
        Decision {
            destination: target,
            moved,
        }
    }

    fn quiet(&self, source: SocketAddr, now: Instant) -> bool {
        self.heard
            .iter()
            .find(|(a, _)| *a == source)
            .is_none_or(|&(_, t)| now.saturating_duration_since(t) >= QUIET)
    }
}

/// The message type and transaction id of a STUN message.
fn stun_header(packet: &[u8]) -> Option<([u8; 2], TransactionId)> {
    if packet.len() < 20 || packet[0] & 0xC0 != 0 || packet[4..8] != MAGIC_COOKIE {
        return None;
    }
    let mut id = [0; 12];
    id.copy_from_slice(&packet[8..20]);
    Some(([packet[0], packet[1]], id))
}

fn has_use_candidate(packet: &[u8]) -> bool {
    let declared = u16::from_be_bytes([packet[2], packet[3]]) as usize;
    let Some(body) = packet.get(20..20 + declared) else {
        return false;
    };
    let mut i = 0;
    while i + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[i], body[i + 1]]);
        let len = u16::from_be_bytes([body[i + 2], body[i + 3]]) as usize;
        if kind == USE_CANDIDATE {
            return true;
        }
        i += 4 + len.div_ceil(4) * 4;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([203, 0, 113, 1], port))
    }

    fn stun(kind: [u8; 2], id: u8, use_candidate: bool) -> Vec<u8> {
        let mut attrs = vec![0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]; // PRIORITY
        if use_candidate {
            attrs.extend_from_slice(&[0x00, 0x25, 0x00, 0x00]);
        }
        let mut p = kind.to_vec();
        p.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        p.extend_from_slice(&MAGIC_COOKIE);
        p.extend_from_slice(&[id; 12]);
        p.extend_from_slice(&attrs);
        p
    }

    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// str0m accepted an RTP packet from a port.
        Media(u16),
        /// A binding request (id, use-candidate) from a port.
        Request(u16, u8, bool),
        /// str0m answers transaction `id` to a port.
        Answer(u16, u8),
        /// str0m sends media to a port: expect (destination, moved).
        Send(u16, u16, bool),
        /// str0m sends a STUN request to a port: it must go there unchanged.
        Check(u16),
        Wait(u64),
    }
    use Step::*;

    #[rustfmt::skip]
    // Most cases start with str0m sending to port 1 for longer than FRESH.
    const CASES: &[(&str, &[Step])] = &[
        ("no proof elsewhere: str0m's destination",
            &[Media(1), Send(1, 1, false), Wait(1000), Send(1, 1, false)]),
        ("NAT rebinding seen in media: the old address goes quiet, the new one sends",
            &[Send(1, 1, false), Wait(1000), Media(1), Wait(40), Media(2), Send(1, 1, false), Wait(300),
              Media(2), Send(1, 2, true), Send(1, 2, false), Check(1)]),
        ("NAT rebinding seen in a nomination (a client that sends no media)",
            &[Send(1, 1, false), Wait(1000), Request(2, 7, true), Answer(2, 7), Send(1, 2, true),
              Check(1)]),
        ("not before the old address has been quiet for QUIET",
            &[Send(1, 1, false), Wait(1000), Media(1), Request(2, 7, true), Answer(2, 7), Wait(100),
              Send(1, 1, false), Wait(250), Send(1, 2, true)]),
        ("a nomination str0m did not answer (bad integrity) moves nothing",
            &[Send(1, 1, false), Media(1), Request(2, 7, true), Wait(1000), Send(1, 1, false)]),
        ("an answer to another transaction id moves nothing",
            &[Send(1, 1, false), Media(1), Request(2, 7, true), Answer(2, 8), Wait(1000),
              Send(1, 1, false)]),
        ("an answer to a request without USE-CANDIDATE moves nothing",
            &[Send(1, 1, false), Media(1), Request(2, 7, false), Answer(2, 7), Wait(1000),
              Send(1, 1, false)]),
        ("a replayed nomination while the client still sends from its address",
            &[Send(1, 1, false), Wait(1000), Media(1), Request(9, 7, true), Answer(9, 7), Wait(20),
              Media(1), Wait(280), Media(1), Send(1, 1, false)]),
        ("the client's next nomination from its address takes media back",
            &[Send(1, 1, false), Wait(1000), Request(9, 7, true), Answer(9, 7), Send(1, 9, true),
              Request(1, 8, true), Answer(1, 8), Send(1, 1, true)]),
        ("str0m choosing a new destination itself supersedes older proofs",
            &[Send(1, 1, false), Wait(1000), Request(2, 7, true), Answer(2, 7), Send(1, 2, true),
              Send(3, 3, true), Wait(1400), Send(3, 3, false)]),
        ("after an ICE restart, str0m's new choice holds while the client still sends on the old pair",
            &[Send(1, 1, false), Wait(1000), Media(1), Send(3, 3, false), Wait(50), Media(1),
              Send(3, 3, false), Wait(200), Media(3), Wait(900), Send(3, 3, false)]),
        ("a choice of str0m's the client never uses is left after FRESH",
            &[Send(1, 1, false), Wait(1000), Media(1), Send(3, 3, false), Wait(1100), Media(1),
              Send(3, 1, true)]),
        ("str0m catching up with the client is no move",
            &[Send(1, 1, false), Wait(1000), Media(2), Wait(400), Send(1, 2, true), Send(2, 2, false)]),
    ];

    #[test]
    fn media_follows_the_proven_client_once_its_old_address_is_quiet() {
        for (name, steps) in CASES {
            let mut path = SendPath::default();
            let mut now = Instant::now();
            for (k, step) in steps.iter().enumerate() {
                let at = format!("{name}: step {k} {step:?}");
                match *step {
                    Media(p) => path.on_media(addr(p), now),
                    Request(p, id, uc) => path.on_receive(addr(p), &stun(BINDING_REQUEST, id, uc)),
                    Answer(p, id) => {
                        let d = path.on_transmit(addr(p), &stun(BINDING_SUCCESS, id, false), now);
                        assert_eq!(d.destination, addr(p), "{at}");
                        assert!(!d.moved, "{at}");
                    }
                    Send(to, want, moved) => {
                        let d = path.on_transmit(addr(to), &[0x80, 0x60, 0, 1], now);
                        let expected = Decision {
                            destination: addr(want),
                            moved,
                        };
                        assert_eq!(d, expected, "{at}");
                    }
                    Check(to) => {
                        let d = path.on_transmit(addr(to), &stun(BINDING_REQUEST, 99, true), now);
                        assert_eq!(d.destination, addr(to), "{at}");
                    }
                    Wait(ms) => now += Duration::from_millis(ms),
                }
            }
        }
    }

    #[test]
    fn parses_stun_headers_and_use_candidate() {
        let request = stun(BINDING_REQUEST, 3, false);
        assert_eq!(stun_header(&request), Some((BINDING_REQUEST, [3; 12])));
        assert!(has_use_candidate(&stun(BINDING_REQUEST, 3, true)));
        assert!(!has_use_candidate(&request));
        let mut truncated = stun(BINDING_REQUEST, 3, true);
        truncated.truncate(26);
        assert!(!has_use_candidate(&truncated));
        assert_eq!(stun_header(&[0x80; 40]), None, "RTP is not STUN");
        assert_eq!(stun_header(&[0x16, 0xfe, 0xfd]), None, "DTLS is not STUN");
    }

    #[test]
    fn remembers_a_bounded_number_of_sources() {
        let mut path = SendPath::default();
        let mut now = Instant::now();
        for p in 0..20 {
            path.on_media(addr(p), now);
            path.on_receive(addr(p), &stun(BINDING_REQUEST, p as u8, true));
            now += Duration::from_millis(1);
        }
        assert_eq!(path.heard.len(), HEARD);
        assert_eq!(path.pending.len(), PENDING);
        assert!(
            path.heard.iter().any(|(a, _)| *a == addr(19)),
            "the newest is kept"
        );
    }
}
