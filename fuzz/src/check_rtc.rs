//! The sans-IO core (`rtc_datagram`): a participant's str0m `Rtc`, built as the room builds it
//! after a fixed Chromium-like offer, fed records of STUN, DTLS, RTP, RTCP, time and raw bytes
//! as `Room::handle_datagram` feeds it, and driven as `Room::drive` drives it. Its own file
//! because the offer, the record selectors (`op`, also used by the seeds) and the driver
//! belong to this target alone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Output, Rtc};

use super::check_stun::{pad4, push_attr, stun_message, STUN_COOKIE};
use crate::room::channel;

// ---------------------------------------------------------------------------------------------
// A participant's str0m `Rtc`, fed datagrams as the room feeds them.

pub const SERVER_ADDR: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    40000,
);
const CLIENT_ADDRS: [SocketAddr; 2] = [
    SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
        50000,
    ),
    SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
        50001,
    ),
];
const CLIENT_UFRAG: &str = "fzcl";
const CLIENT_PWD: &str = "fuzzclientpassword01234567";
/// SSRCs for RTP and RTCP: the offer's audio SSRC, and unannounced ones such as simulcast
/// layers (found by rid) and their RTX use.
const SSRCS: [u32; 7] = [1111, 2221, 2222, 2223, 3331, 3332, 3333];
const PAYLOAD_TYPES: [u8; 6] = [111, 63, 96, 97, 102, 103];

/// A Chromium-shaped offer: Opus with RED, simulcast VP8/H264 with RTX, the data channel.
pub const OFFER: &str = "v=0\r
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0 1 2\r
a=extmap-allow-mixed\r
a=msid-semantic: WMS s\r
m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r
c=IN IP4 0.0.0.0\r
a=rtcp:9 IN IP4 0.0.0.0\r
a=ice-ufrag:fzcl\r
a=ice-pwd:fuzzclientpassword01234567\r
a=ice-options:trickle\r
a=fingerprint:sha-256 3D:0E:8C:9A:2B:47:5F:11:6C:DE:70:4A:93:B2:18:C5:E6:0F:7D:21:8B:44:A9:3C:5E:67:F0:12:9D:BC:36:8E\r
a=setup:actpass\r
a=mid:0\r
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r
a=sendrecv\r
a=msid:s a0\r
a=rtcp-mux\r
a=rtcp-rsize\r
a=rtpmap:111 opus/48000/2\r
a=rtcp-fb:111 transport-cc\r
a=fmtp:111 minptime=10;useinbandfec=1\r
a=rtpmap:63 red/48000/2\r
a=fmtp:63 111/111\r
a=ssrc:1111 cname:fuzz\r
a=ssrc:1111 msid:s a0\r
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r
c=IN IP4 0.0.0.0\r
a=rtcp:9 IN IP4 0.0.0.0\r
a=ice-ufrag:fzcl\r
a=ice-pwd:fuzzclientpassword01234567\r
a=ice-options:trickle\r
a=fingerprint:sha-256 3D:0E:8C:9A:2B:47:5F:11:6C:DE:70:4A:93:B2:18:C5:E6:0F:7D:21:8B:44:A9:3C:5E:67:F0:12:9D:BC:36:8E\r
a=setup:actpass\r
a=mid:1\r
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r
a=sendrecv\r
a=msid:s v0\r
a=rtcp-mux\r
a=rtcp-rsize\r
a=rtpmap:96 VP8/90000\r
a=rtcp-fb:96 goog-remb\r
a=rtcp-fb:96 transport-cc\r
a=rtcp-fb:96 ccm fir\r
a=rtcp-fb:96 nack\r
a=rtcp-fb:96 nack pli\r
a=rtpmap:97 rtx/90000\r
a=fmtp:97 apt=96\r
a=rtpmap:102 H264/90000\r
a=rtcp-fb:102 transport-cc\r
a=rtcp-fb:102 ccm fir\r
a=rtcp-fb:102 nack\r
a=rtcp-fb:102 nack pli\r
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r
a=rtpmap:103 rtx/90000\r
a=fmtp:103 apt=102\r
a=rid:q send\r
a=rid:h send\r
a=rid:f send\r
a=simulcast:send q;h;f\r
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r
c=IN IP4 0.0.0.0\r
a=ice-ufrag:fzcl\r
a=ice-pwd:fuzzclientpassword01234567\r
a=ice-options:trickle\r
a=fingerprint:sha-256 3D:0E:8C:9A:2B:47:5F:11:6C:DE:70:4A:93:B2:18:C5:E6:0F:7D:21:8B:44:A9:3C:5E:67:F0:12:9D:BC:36:8E\r
a=setup:actpass\r
a=mid:2\r
a=sctp-port:5000\r
a=max-message-size:262144\r
";

/// A participant's `Rtc` as `Room::new_rtc` (src/room/mod.rs) builds it, after the client's
/// offer. Kept in step by hand: the room's builder is a private method.
pub fn server_rtc(now: Instant) -> Rtc {
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, true)
        .enable_vp8(true)
        .enable_h264(true)
        .enable_bwe(Some(Bitrate::bps(600_000)))
        .set_stats_interval(Some(Duration::from_secs(1)))
        .set_sctp_max_buffered_amount(channel::SCTP_BUFFER)
        .build(now);
    rtc.add_local_candidate(Candidate::host(SERVER_ADDR, "udp").expect("a host candidate"));
    let offer = SdpOffer::from_sdp_string(OFFER).expect("the fixed offer parses");
    rtc.sdp_api()
        .accept_offer(offer)
        .expect("the fixed offer is accepted");
    rtc
}

/// Selectors of the `rtc_datagram` input (its low 3 bits; bit 7 picks the source address).
pub mod op {
    /// A binding request from the client with valid MESSAGE-INTEGRITY and FINGERPRINT; body:
    /// flags (bit 0 USE-CANDIDATE, bit 1 append the rest as raw attributes), priority.
    pub const STUN_REQUEST: u8 = 0;
    /// STUN framing (header with the magic cookie, length fixed up) around raw attributes.
    pub const STUN_RAW: u8 = 1;
    /// A binding success answering the server's latest connectivity check, signed.
    pub const STUN_REPLY: u8 = 2;
    /// A DTLS 1.2 record (handshake records get a consistent handshake header).
    pub const DTLS: u8 = 3;
    /// An RTP header with an offered payload type and SSRC, then raw bytes.
    pub const RTP: u8 = 4;
    /// An RTCP packet (PT 200..=207) with its length fixed up.
    pub const RTCP: u8 = 5;
    /// Time passes: body[0] * 4 ms.
    pub const TIMEOUT: u8 = 6;
    /// The body as it is.
    pub const RAW: u8 = 7;
}

/// Input: records of [selector][length u16][body]. Nothing may panic, and the `Rtc` must keep
/// answering `poll_output` until it says it is done.
pub fn rtc_datagram(data: &[u8]) {
    let mut now = Instant::now();
    let mut rtc = server_rtc(now);
    let creds = rtc.direct_api().local_ice_credentials();
    let mut last_check: Option<[u8; 12]> = None;
    let mut rest = data;
    let mut sent = 0u32;
    while let [selector, hi, lo, tail @ ..] = rest {
        let len = (u16::from_be_bytes([*hi, *lo]) as usize).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        let source = CLIENT_ADDRS[(selector >> 7) as usize];
        let byte = |k: usize| body.get(k).copied().unwrap_or(0);
        let datagram = match selector & 0x07 {
            op::STUN_REQUEST => {
                let mut attrs = Vec::new();
                let username = format!("{}:{CLIENT_UFRAG}", creds.ufrag);
                push_attr(&mut attrs, 0x0006, username.as_bytes());
                let priority = u32::from_be_bytes([byte(1), byte(2), byte(3), byte(4)]);
                push_attr(&mut attrs, 0x0024, &priority.max(1).to_be_bytes());
                push_attr(&mut attrs, 0x802A, &[1, 2, 3, 4, 5, 6, 7, 8]); // ICE-CONTROLLING
                if byte(0) & 1 != 0 {
                    push_attr(&mut attrs, 0x0025, &[]); // USE-CANDIDATE
                }
                if byte(0) & 2 != 0 && body.len() > 5 {
                    attrs.extend_from_slice(&body[5..]);
                    pad4(&mut attrs);
                }
                sent += 1;
                let mut txid = [0x5A; 12];
                txid[..4].copy_from_slice(&sent.to_be_bytes());
                Some(stun_message(
                    0x0001,
                    txid,
                    &attrs,
                    Some(creds.pass.as_bytes()),
                ))
            }
            op::STUN_RAW => {
                let kind = u16::from_be_bytes([byte(0) & 0x3F, byte(1)]);
                let mut txid = [0u8; 12];
                for (k, t) in txid.iter_mut().enumerate() {
                    *t = byte(2 + k);
                }
                let attrs = body.get(14..).unwrap_or(&[]);
                let mut m = vec![0u8; 20];
                m[0..2].copy_from_slice(&kind.to_be_bytes());
                m[2..4].copy_from_slice(&(attrs.len() as u16).to_be_bytes());
                m[4..8].copy_from_slice(&STUN_COOKIE);
                m[8..20].copy_from_slice(&txid);
                m.extend_from_slice(attrs);
                Some(m)
            }
            op::STUN_REPLY => last_check.map(|txid| {
                let mut attrs = Vec::new();
                let port = source.port() ^ 0x2112;
                let ip = [127 ^ 0x21, 0x12, 0xA4, 1 ^ 0x42];
                let mut xor_mapped = vec![0, 1];
                xor_mapped.extend_from_slice(&port.to_be_bytes());
                xor_mapped.extend_from_slice(&ip);
                push_attr(&mut attrs, 0x0020, &xor_mapped);
                if byte(0) & 1 != 0 {
                    attrs.extend_from_slice(&body[1..]);
                    pad4(&mut attrs);
                }
                stun_message(0x0101, txid, &attrs, Some(CLIENT_PWD.as_bytes()))
            }),
            op::DTLS => {
                let content_type = 20 + byte(0) % 4;
                let inner = body.get(9..).unwrap_or(&[]);
                let mut fragment = Vec::new();
                if content_type == 22 && !inner.is_empty() {
                    // msg_type, length, message_seq, fragment_offset, fragment_length
                    let n = (inner.len() - 1) as u32;
                    fragment.push(inner[0]);
                    fragment.extend_from_slice(&n.to_be_bytes()[1..]);
                    fragment.extend_from_slice(&[0, byte(8) & 0x07]);
                    fragment.extend_from_slice(&[0, 0, 0]);
                    fragment.extend_from_slice(&n.to_be_bytes()[1..]);
                    fragment.extend_from_slice(&inner[1..]);
                } else {
                    fragment.extend_from_slice(inner);
                }
                let mut r = vec![content_type, 0xFE, 0xFD, 0, byte(1) & 1];
                r.extend_from_slice(&[0, 0, 0, 0, byte(2), byte(3)]);
                r.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
                r.extend_from_slice(&fragment);
                Some(r)
            }
            op::RTP => {
                let mut p = vec![0x80 | (byte(0) & 0x3F)];
                let pt = PAYLOAD_TYPES[byte(1) as usize % PAYLOAD_TYPES.len()];
                p.push((byte(1) & 0x80) | pt);
                p.extend_from_slice(&[byte(2), byte(3), 0, 0, byte(4), byte(5)]);
                p.extend_from_slice(&SSRCS[byte(6) as usize % SSRCS.len()].to_be_bytes());
                p.extend_from_slice(body.get(7..).unwrap_or(&[]));
                Some(p)
            }
            op::RTCP => {
                let mut p = vec![0x80 | (byte(0) & 0x1F), 200 + byte(1) % 8, 0, 0];
                p.extend_from_slice(&SSRCS[byte(2) as usize % SSRCS.len()].to_be_bytes());
                p.extend_from_slice(body.get(3..).unwrap_or(&[]));
                pad4(&mut p);
                let words = (p.len() / 4 - 1) as u16;
                p[2..4].copy_from_slice(&words.to_be_bytes());
                Some(p)
            }
            op::TIMEOUT => {
                now += Duration::from_millis(u64::from(byte(0)) * 4);
                let _ = rtc.handle_input(Input::Timeout(now));
                None
            }
            raw => {
                debug_assert_eq!(raw, op::RAW);
                Some(body.to_vec())
            }
        };
        if let Some(d) = datagram {
            // As `Room::handle_datagram`: what is not STUN, DTLS or RTP never reaches str0m,
            // and an input str0m rejects is logged and dropped.
            if let Ok(contents) = d.as_slice().try_into() {
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: SERVER_ADDR,
                        contents,
                    },
                );
                let _ = rtc.handle_input(input);
            }
        }
        if !drive(&mut rtc, now, &mut last_check) {
            return;
        }
    }
}

/// As `Room::drive`: poll until a future timeout, feeding due timeouts a bounded number of
/// times. Remembers the transaction id of the server's latest binding request. False once the
/// `Rtc` is done (it failed, as the room then disconnects it).
fn drive(rtc: &mut Rtc, now: Instant, last_check: &mut Option<[u8; 12]>) -> bool {
    let mut due_rounds = 0;
    for _ in 0..10_000 {
        if !rtc.is_alive() {
            return false;
        }
        match rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                if t > now || due_rounds >= 64 {
                    return true;
                }
                due_rounds += 1;
                if rtc.handle_input(Input::Timeout(now)).is_err() {
                    return true;
                }
            }
            Ok(Output::Transmit(t)) => {
                let d: &[u8] = &t.contents;
                if d.len() >= 20 && d[0..2] == [0x00, 0x01] && d[4..8] == STUN_COOKIE {
                    let mut txid = [0; 12];
                    txid.copy_from_slice(&d[8..20]);
                    *last_check = Some(txid);
                }
            }
            Ok(Output::Event(_)) => {}
            Err(_) => {
                rtc.disconnect();
                return false;
            }
        }
    }
    panic!("the Rtc produced output forever without a timeout");
}
