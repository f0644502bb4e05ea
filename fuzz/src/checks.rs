//! What each fuzz target checks: one function per target, taking the raw input. The libFuzzer
//! targets (`fuzz/fuzz_targets/`) call them on nightly; the stable replay test
//! (`tests/fuzz_corpus.rs`) calls the same functions on the seeds and on pseudo-random
//! mutations, so "correct" is defined once. A violated property panics, which libFuzzer
//! reports as a crash and `cargo test` as a failure.
//!
//! Everything here is deterministic for a given input (fixed secret, fixed clock for tokens, a
//! fixed SDP offer for the `Rtc`), so a crash reproduces from its input file alone.

#[path = "redis_reply.rs"]
pub mod redis_reply;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use consult_sfu::consult::token::{self, Claims, TokenError};
use consult_sfu::demux::{stun_local_ufrag, Demux};
use consult_sfu::forward::codec::{is_keyframe_start, vp8_info, VideoCodec};
use consult_sfu::forward::red;
use signaling::protocol::{
    validate_room, MAX_INVITE_BYTES, MAX_MESSAGE_BYTES, MAX_NAME_CHARS, PROTOCOL_VERSION,
};
use signaling::{parse_client_message, ClientMessage, ProtocolError, Role};
use str0m::bwe::Bitrate;
use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Vp8Descriptor, Vp8Patch};
use str0m::{Candidate, Input, Output, Rtc};

use crate::room::channel;

// ---------------------------------------------------------------------------------------------
// Signaling: one WebSocket text frame from a client.

pub fn signaling_message(data: &[u8]) {
    // WebSocket text frames are UTF-8 (RFC 6455); the socket layer rejects others before us.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let message = match parse_client_message(text) {
        Ok(m) => m,
        Err(e) => {
            // Every rejection becomes an error message for the client without panicking.
            let _ = e.to_message();
            if text.len() > MAX_MESSAGE_BYTES {
                assert_eq!(e, ProtocolError::TooLarge(text.len()));
            }
            return;
        }
    };
    assert!(text.len() <= MAX_MESSAGE_BYTES);
    // What validation promises the rest of the server.
    match &message {
        ClientMessage::Join {
            invite: Some(invite),
            room,
            name,
            role,
            resume,
        } => {
            assert!(room.is_none() && name.is_none() && role.is_none());
            assert!(resume
                .as_ref()
                .is_none_or(|r| !r.is_empty() && r.len() <= MAX_INVITE_BYTES));
            assert!(!invite.is_empty() && invite.len() <= MAX_INVITE_BYTES);
        }
        ClientMessage::Join {
            invite: None,
            room,
            name,
            role,
            ..
        } => {
            let (room, name) = (room.as_deref().unwrap(), name.as_deref().unwrap());
            assert!(validate_room(room).is_ok() && role.is_some());
            let name = name.trim();
            assert!(!name.is_empty() && name.chars().count() <= MAX_NAME_CHARS);
            assert!(!name.chars().any(char::is_control));
        }
        ClientMessage::Offer { sdp, .. } | ClientMessage::Answer { sdp } => {
            assert!(!sdp.trim().is_empty())
        }
        ClientMessage::SetPreference {
            max_layer: Some(layer),
            ..
        } => assert!(["q", "h", "f"].contains(&layer.as_str())),
        ClientMessage::Admit { participant_id }
        | ClientMessage::Deny { participant_id }
        | ClientMessage::Remove { participant_id }
        | ClientMessage::MuteParticipant { participant_id } => {
            assert!((1..=32).contains(&participant_id.len()))
        }
        _ => {}
    }
    // Round trip: the message as the server understood it, written back in wire form, parses
    // to the same message (nothing was half-read or defaulted differently).
    let mut value = serde_json::to_value(&message).expect("client messages serialize");
    let object = value.as_object_mut().expect("an object");
    assert_eq!(object["type"], message.type_name());
    object.insert("v".into(), PROTOCOL_VERSION.into());
    let wire = value.to_string();
    if wire.len() <= MAX_MESSAGE_BYTES {
        assert_eq!(parse_client_message(&wire), Ok(message), "{wire}");
    }
}

// ---------------------------------------------------------------------------------------------
// Invite tokens.

/// The secret and clock the token target verifies with.
pub const TOKEN_SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-sec";
pub const TOKEN_NOW: i64 = 1_780_000_000;

/// Claims of the tokens the seeds hold: valid, lobby with a Vietnamese name, expired.
pub fn token_claims() -> Vec<Claims> {
    let base = Claims {
        cid: "c-7f3a9b2e1d".into(),
        name: "Bác sĩ Lan".into(),
        role: Role::Specialist,
        lobby: false,
        iat: TOKEN_NOW - 60,
        exp: TOKEN_NOW + 3600,
        jti: "00112233445566778899aabbccddeeff".into(),
    };
    let patient = Claims {
        name: "Chị Hoa".into(),
        role: Role::Patient,
        lobby: true,
        ..base.clone()
    };
    let expired = Claims {
        role: Role::Observer,
        exp: TOKEN_NOW,
        ..base.clone()
    };
    vec![base, patient, expired]
}

/// Every token that may verify (or fail only as expired): those signed from `token_claims`.
pub fn signed_tokens() -> &'static [String] {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        token_claims()
            .iter()
            .map(|c| token::sign(c, TOKEN_SECRET))
            .collect()
    })
}

pub fn invite_token(data: &[u8]) {
    // The input as a token: it arrives in a JSON string, so it is UTF-8.
    if let Ok(text) = std::str::from_utf8(data) {
        match token::verify(text, TOKEN_SECRET, TOKEN_NOW) {
            Ok(claims) => {
                // Without the secret no input verifies, however it was mutated: an accepted
                // token is byte for byte one the server signed.
                assert!(
                    signed_tokens().iter().any(|t| t == text),
                    "accepted a token it never signed: {text:?}"
                );
                assert!(claims.exp > TOKEN_NOW);
                assert_eq!(token::sign(&claims, TOKEN_SECRET), text);
            }
            Err(TokenError::Expired) => {
                // Expiry is checked only after the signature held.
                assert!(signed_tokens().iter().any(|t| t == text), "{text:?}");
            }
            Err(_) => {}
        }
    }
    // The input as claims: whatever the operator API may put in a token signs and verifies
    // back to the same claims.
    if let Ok(claims) = serde_json::from_slice::<Claims>(data) {
        let signed = token::sign(&claims, TOKEN_SECRET);
        let want = if signed.len() > token::MAX_TOKEN_BYTES {
            Err(TokenError::Malformed)
        } else if claims.exp <= TOKEN_NOW {
            Err(TokenError::Expired)
        } else {
            Ok(claims)
        };
        assert_eq!(token::verify(&signed, TOKEN_SECRET, TOKEN_NOW), want);
        assert_eq!(
            token::verify(&signed, b"another secret of 32 bytes......", TOKEN_NOW).ok(),
            None
        );
    }
}

// ---------------------------------------------------------------------------------------------
// VP8 payload descriptor: our parser, str0m's, and the picture-id patch the room applies.

/// Input: 2 bytes of new picture id, 1 byte of new TL0PICIDX, then the RTP payload.
pub fn vp8_descriptor(data: &[u8]) {
    let (new_picture, new_tl0, payload) = match data {
        [a, b, t, rest @ ..] => (u16::from_be_bytes([*a, *b]), *t, rest),
        _ => (0, 0, data),
    };
    let info = vp8_info(payload);
    assert_eq!(
        is_keyframe_start(VideoCodec::Vp8, payload),
        info.is_some_and(|i| i.keyframe)
    );
    if let Some(i) = info {
        assert!(!i.keyframe || i.frame_start);
        if let Some(p) = i.picture_id {
            assert!(p < 1 << 15);
        }
        if let Some(t) = i.temporal {
            assert!(t < 4);
        }
    }
    let Ok(descriptor) = Vp8Descriptor::parse(payload) else {
        return;
    };
    // The room reads each packet with both parsers: they must agree where str0m accepts.
    let info = info.expect("str0m parsed a descriptor that vp8_info rejected");
    assert_eq!(descriptor.picture_id(), info.picture_id);
    assert_eq!(descriptor.tl0_pic_idx(), info.tl0_pic_idx);
    assert_eq!(descriptor.starts_keyframe(payload), info.keyframe);
    let header_len = vp8_descriptor_len(payload);
    assert!(header_len < payload.len());

    // Patching in the values already there changes nothing.
    let mut same = descriptor.patch();
    if let Some(p) = info.picture_id {
        same = same.picture_id(p);
    }
    if let Some(t) = info.tl0_pic_idx {
        same = same.tl0_pic_idx(t);
    }
    let same = same.build().expect("the parsed values fit");
    assert_eq!(apply_patch(payload, &same), payload);

    // Patch round trip: new values in, the same values parsed back out, the length and every
    // byte after the descriptor (the VP8 frame itself) unchanged.
    let fifteen_bit = info.picture_id.is_some() && payload[2] & 0x80 != 0;
    let picture = if fifteen_bit {
        new_picture & 0x7FFF
    } else {
        new_picture & 0x7F
    };
    let mut builder = descriptor.patch();
    if info.picture_id.is_some() {
        builder = builder.picture_id(picture);
    }
    if info.tl0_pic_idx.is_some() {
        builder = builder.tl0_pic_idx(new_tl0);
    }
    let patched = apply_patch(payload, &builder.build().expect("values that fit build"));
    assert_eq!(patched.len(), payload.len());
    assert_eq!(patched[header_len..], payload[header_len..]);
    let out = vp8_info(&patched).expect("a patched descriptor parses");
    assert_eq!(out.picture_id, info.picture_id.map(|_| picture));
    assert_eq!(out.tl0_pic_idx, info.tl0_pic_idx.map(|_| new_tl0));
    assert_eq!(
        (out.frame_start, out.keyframe, out.temporal),
        (info.frame_start, info.keyframe, info.temporal)
    );
    assert!(Vp8Descriptor::parse(&patched).is_ok());

    // A 7-bit descriptor cannot take a 15-bit picture id: the patch is refused, not truncated.
    if info.picture_id.is_some() && !fifteen_bit {
        assert!(descriptor.patch().picture_id(0x80).build().is_err());
    }
}

/// Bytes of the VP8 payload descriptor (RFC 7741 4.2) before the VP8 payload header.
fn vp8_descriptor_len(p: &[u8]) -> usize {
    if p[0] & 0x80 == 0 {
        return 1;
    }
    let x = p[1];
    let mut n = 2;
    if x & 0x80 != 0 {
        n += if p[2] & 0x80 != 0 { 2 } else { 1 };
    }
    if x & 0x40 != 0 {
        n += 1;
    }
    if x & 0x30 != 0 {
        n += 1;
    }
    n
}

/// Applies a patch as str0m does when it serializes the packet. str0m keeps `Vp8Patch::copy_to`
/// crate-private; the derived `Debug` (`Vp8Patch { len, offsets, bytes }`) is the one public
/// view of what it replaces. str0m is pinned (`=0.25.0`), and a format change fails loudly here.
pub fn apply_patch(payload: &[u8], patch: &Vp8Patch) -> Vec<u8> {
    let text = format!("{patch:?}");
    let field = |name: &str| -> &str {
        let start = text
            .find(&format!("{name}: "))
            .expect("Vp8Patch Debug format")
            + name.len()
            + 2;
        let rest = &text[start..];
        let end = rest.find([',', '}']).expect("Vp8Patch Debug format");
        let value = rest[..end].trim();
        if value.starts_with('[') {
            let close = rest.find(']').expect("Vp8Patch Debug format");
            rest[1..close].trim()
        } else {
            value
        }
    };
    let numbers = |s: &str| -> Vec<usize> {
        s.split(',')
            .map(|n| n.trim().parse().expect("Vp8Patch Debug format"))
            .collect()
    };
    let len: usize = field("len").parse().expect("Vp8Patch Debug format");
    let (offsets, bytes) = (numbers(field("offsets")), numbers(field("bytes")));
    let mut out = payload.to_vec();
    for k in 0..len {
        out[offsets[k]] = bytes[k] as u8;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// H264 keyframe detection.

pub fn h264_keyframe(data: &[u8]) {
    assert_eq!(
        is_keyframe_start(VideoCodec::H264, data),
        h264_reference(data),
        "{data:?}"
    );
    assert!(!is_keyframe_start(VideoCodec::Other, data));

    // Packetize the input's NAL units (a length byte, then that many bytes, repeated) as a
    // STAP-A and as the first FU-A fragment of each: detection sees what was put in.
    let mut nals = Vec::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize).clamp(1, tail.len().max(1));
        if tail.is_empty() {
            break;
        }
        nals.push(&tail[..n]);
        rest = &tail[n..];
    }
    let is_key = |nal: &[u8]| matches!(nal[0] & 0x1F, 5 | 7);
    let mut stap = vec![0x78]; // NRI 3, type 24
    for nal in &nals {
        stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        stap.extend_from_slice(nal);
    }
    // A NAL of type 24..31 inside is not a NAL unit the detector looks into; it still counts
    // by its type bits like any other.
    assert_eq!(
        is_keyframe_start(VideoCodec::H264, &stap),
        nals.iter().any(|n| is_key(n)),
        "{stap:?}"
    );
    for nal in &nals {
        let fu = [0x7C, 0x80 | (nal[0] & 0x1F), 0x88];
        assert_eq!(is_keyframe_start(VideoCodec::H264, &fu), is_key(nal));
        let middle = [0x7C, nal[0] & 0x1F, 0x88];
        assert!(!is_keyframe_start(VideoCodec::H264, &middle));
    }
}

/// RFC 6184 read plainly: an IDR slice (5) or SPS (7) as a single NAL unit, inside a STAP-A
/// (up to the first malformed unit), or as the first FU-A fragment.
fn h264_reference(p: &[u8]) -> bool {
    let key = |t: u8| t == 5 || t == 7;
    match p.first().map(|b| b & 0x1F) {
        Some(t @ 1..=23) => key(t),
        Some(24) => {
            let mut rest = &p[1..];
            while rest.len() > 2 {
                let size = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                let Some(nal) = rest.get(2..2 + size).filter(|n| !n.is_empty()) else {
                    return false;
                };
                if key(nal[0] & 0x1F) {
                    return true;
                }
                rest = &rest[2 + size..];
            }
            false
        }
        Some(28) => p.get(1).is_some_and(|&fu| fu & 0x80 != 0 && key(fu & 0x1F)),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// RED (RFC 2198) primary block.

pub fn red_primary(data: &[u8]) {
    if let Some(primary) = red::primary(data) {
        // The primary is the payload's tail, after every header and redundant block.
        let mut i = 0;
        let mut redundant = 0;
        while data[i] & 0x80 != 0 {
            redundant += ((data[i + 2] as usize & 0x03) << 8) | data[i + 3] as usize;
            i += 4;
        }
        assert_eq!(data.len() - primary.len(), i + 1 + redundant);
        assert_eq!(&data[data.len() - primary.len()..], primary);
    }

    // Round trip: a RED payload built from the input (first byte: how many redundant blocks,
    // then a length byte and the bytes of each) gives back its primary block.
    let Some((&count, mut rest)) = data.split_first() else {
        return;
    };
    let mut blocks = Vec::new();
    for _ in 0..count % 4 {
        let Some((&n, tail)) = rest.split_first() else {
            break;
        };
        let n = (n as usize).min(tail.len());
        blocks.push(&tail[..n]);
        rest = &tail[n..];
    }
    let mut encoded = Vec::new();
    for (k, block) in blocks.iter().enumerate() {
        let offset = 960 * (blocks.len() - k) as u32; // 14 bits: up to 16383
        let word = (offset << 10) | block.len() as u32;
        encoded.push(0x80 | 111);
        encoded.extend_from_slice(&word.to_be_bytes()[1..]);
    }
    encoded.push(111);
    for block in &blocks {
        encoded.extend_from_slice(block);
    }
    encoded.extend_from_slice(rest);
    assert_eq!(red::primary(&encoded), Some(rest));
}

// ---------------------------------------------------------------------------------------------
// Data channel: chat and image-share text messages, image chunk headers.

pub fn data_channel(data: &[u8]) {
    match channel::parse_text(data) {
        Ok(channel::ClientText::Chat { text }) => {
            assert!((1..=channel::MAX_CHAT_CHARS).contains(&text.trim().chars().count()));
        }
        Ok(channel::ClientText::ImageStart {
            file, mime, size, ..
        }) => {
            assert!((1..=channel::MAX_IMAGE_BYTES).contains(&size));
            assert!(mime.starts_with("image/") || mime == "application/dicom");
            assert!(!file.is_empty() && !file.chars().any(char::is_control));
            // The chunks the room will expect cover the image exactly.
            let chunks = channel::chunk_count(size);
            assert!(chunks >= 1);
            let last = channel::chunk_len(size, chunks - 1);
            assert!((1..=channel::CHUNK).contains(&last));
            assert_eq!(
                channel::chunk_len(size, 0),
                channel::CHUNK.min(size as usize)
            );
            assert_eq!(
                (chunks as u64 - 1) * channel::CHUNK as u64 + last as u64,
                size
            );
        }
        Ok(channel::ClientText::ImageAbort { .. }) => {}
        Err((code, message)) => {
            assert!(code == "invalid" || code == "too_large", "{code}");
            assert!(!message.is_empty());
        }
    }
    match channel::parse_header(data) {
        Some((id, index)) => {
            assert!(data.len() >= channel::HEADER);
            assert_eq!(id.to_be_bytes(), data[0..4]);
            assert_eq!(index.to_be_bytes(), data[4..8]);
        }
        None => assert!(data.len() < channel::HEADER),
    }
}

// ---------------------------------------------------------------------------------------------
// Demux: the server ufrag in a STUN request's USERNAME.

const STUN_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

pub fn stun_ufrag(data: &[u8]) {
    let parsed = stun_local_ufrag(data);
    if let Some(ufrag) = parsed {
        assert!(data.len() >= 20 && data[4..8] == STUN_COOKIE && data[0] & 0xC0 == 0);
        assert!(!ufrag.contains(':'));
        // A borrow of the datagram, not a copy.
        let range = data.as_ptr_range();
        assert!(range.contains(&ufrag.as_ptr()) || ufrag.is_empty());
    }
    // Routing follows parsing: only a datagram naming a registered ufrag binds its source.
    let mut demux = Demux::new();
    demux.register("srvA".to_string(), 7u8);
    let source = SocketAddr::from(([127, 0, 0, 1], 5000));
    assert_eq!(
        demux.route(source, data).copied(),
        (parsed == Some("srvA")).then_some(7)
    );

    // Round trip: a well-formed binding request whose USERNAME is the input, after an
    // attribute to skip, yields the part before the first ':'.
    if let Ok(username) = std::str::from_utf8(data) {
        if username.len() <= 513 {
            let mut attrs = vec![0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]; // PRIORITY
            push_attr(&mut attrs, 0x0006, username.as_bytes());
            let packet = stun_message(0x0001, [7; 12], &attrs, None);
            assert_eq!(stun_local_ufrag(&packet), username.split(':').next());
        }
    }
}

/// Appends one STUN attribute, padded to 4 bytes.
fn push_attr(attrs: &mut Vec<u8>, kind: u16, value: &[u8]) {
    attrs.extend_from_slice(&kind.to_be_bytes());
    attrs.extend_from_slice(&(value.len() as u16).to_be_bytes());
    attrs.extend_from_slice(value);
    pad4(attrs);
}

/// Zero padding to a multiple of 4 bytes (STUN attributes, RTCP packets).
fn pad4(bytes: &mut Vec<u8>) {
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
}

/// A STUN message (RFC 5389) with MESSAGE-INTEGRITY when a password is given, and FINGERPRINT.
fn stun_message(kind: u16, txid: [u8; 12], attrs: &[u8], password: Option<&[u8]>) -> Vec<u8> {
    let mut m = Vec::with_capacity(20 + attrs.len() + 32);
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&STUN_COOKIE);
    m.extend_from_slice(&txid);
    m.extend_from_slice(attrs);
    let set_len = |m: &mut Vec<u8>, extra: usize| {
        let len = (m.len() - 20 + extra) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
    };
    if let Some(password) = password {
        // The length covers MESSAGE-INTEGRITY while it is computed (RFC 5389 15.4).
        set_len(&mut m, 24);
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, password);
        let tag = hmac::sign(&key, &m);
        m.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
        m.extend_from_slice(tag.as_ref());
    }
    set_len(&mut m, 8);
    let fingerprint = crc32(&m) ^ 0x5354_554E;
    m.extend_from_slice(&[0x80, 0x28, 0x00, 0x04]);
    m.extend_from_slice(&fingerprint.to_be_bytes());
    m
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

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

// ---------------------------------------------------------------------------------------------
// Seeds: real inputs for each target, made by the code itself or taken from its documentation
// and unit tests. `tests/fuzz_corpus.rs` writes them to `fuzz/seeds/<target>/`.

/// Names of the targets, as in `fuzz/Cargo.toml`.
pub const TARGETS: [&str; 9] = [
    "signaling_message",
    "invite_token",
    "vp8_descriptor",
    "h264_keyframe",
    "red_primary",
    "data_channel",
    "stun_ufrag",
    "rtc_datagram",
    "redis_reply",
];

/// Runs one target's checks on an input.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "signaling_message" => signaling_message(data),
        "invite_token" => invite_token(data),
        "vp8_descriptor" => vp8_descriptor(data),
        "h264_keyframe" => h264_keyframe(data),
        "red_primary" => red_primary(data),
        "data_channel" => data_channel(data),
        "stun_ufrag" => stun_ufrag(data),
        "rtc_datagram" => rtc_datagram(data),
        "redis_reply" => redis_reply::redis_reply(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// `(target, name, bytes)` for every seed. `protocol_md` is `signaling/PROTOCOL.md`: its
/// example client messages are seeds.
pub fn seeds(protocol_md: &str) -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: &[u8]| {
        out.push((target, name.to_string(), bytes.to_vec()))
    };
    for (name, bytes) in redis_reply::seeds() {
        add("redis_reply", name, bytes);
    }

    // Client lines of the examples: `who -> {json}` (server lines name a recipient).
    let mut n = 0;
    for line in protocol_md.lines() {
        if let Some((who, json)) = line.split_once("-> ") {
            if !who.trim().contains(' ') && json.starts_with('{') {
                n += 1;
                add(
                    "signaling_message",
                    &format!("protocol-md-{n:02}"),
                    json.as_bytes(),
                );
            }
        }
    }
    let valid = [
        r#"{"v":1,"type":"join","invite":"eyJ.a.b"}"#,
        r#"{"v":1,"type":"answer","sdp":"v=0\r\n"}"#,
        r#"{"v":1,"type":"candidate","candidate":"","sdp_mid":null}"#,
        r#"{"v":1,"type":"set_preference","data_saver":true,"max_layer":"h"}"#,
        r#"{"v":1,"type":"share","active":true}"#,
        r#"{"v":1,"type":"deny","participant_id":"p3"}"#,
        r#"{"v":1,"type":"remove","participant_id":"p3"}"#,
        r#"{"v":1,"type":"mute_participant","participant_id":"p3"}"#,
        r#"{"v":1,"type":"end_consult"}"#,
        r#"{"v":1,"type":"offer","sdp":"v=0\r\n","screen_mid":"3"}"#,
    ];
    for (k, m) in valid.iter().enumerate() {
        add("signaling_message", &format!("valid-{k:02}"), m.as_bytes());
    }

    for (k, t) in signed_tokens().iter().enumerate() {
        add("invite_token", &format!("signed-{k}"), t.as_bytes());
    }
    for (k, c) in token_claims().iter().enumerate() {
        let json = serde_json::to_vec(c).expect("claims serialize");
        add("invite_token", &format!("claims-{k}"), &json);
    }

    // Descriptors from the codec unit tests, after 3 bytes of new picture id and TL0PICIDX.
    let vp8: [&[u8]; 7] = [
        &[0x10, 0x00],
        &[0x90, 0x80, 0x12, 0x00],
        &[0x90, 0x80, 0x92, 0x34, 0x00],
        &[0x90, 0xE0, 0x92, 0x34, 0x05, 0x20, 0x00],
        &[0x90, 0xE0, 0x92, 0x34, 0x05, 0x60, 0x01],
        &[0x80, 0x80, 0x12, 0xAA],
        &[0x90, 0xF0, 0x92, 0x34, 0x05, 0x3F, 0x9D, 0x01, 0x2A],
    ];
    for (k, p) in vp8.iter().enumerate() {
        let mut seed = vec![0x41, 0x23, 0x77];
        seed.extend_from_slice(p);
        add("vp8_descriptor", &format!("unit-{k}"), &seed);
    }

    let h264: [&[u8]; 6] = [
        &[0x65, 0x88],
        &[0x67, 0x42],
        &[0x41, 0x9a],
        &[0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce],
        &[0x18, 0x00, 0x02, 0x41, 0x9a],
        &[0x7c, 0x85, 0x88],
    ];
    for (k, p) in h264.iter().enumerate() {
        add("h264_keyframe", &format!("unit-{k}"), p);
    }

    let red: [&[u8]; 4] = [
        &[0x6F, 7, 7, 7],
        &[0xEF, 0x0F, 0x00, 0x03, 0x6F, 1, 2, 3, 9, 9],
        &[0xEF, 0x0F, 0x00, 0x09, 0x6F, 1],
        &[2, 3, 1, 2, 3, 2, 4, 5, 6, 7, 8],
    ];
    for (k, p) in red.iter().enumerate() {
        add("red_primary", &format!("unit-{k}"), p);
    }

    let channel_seeds: [&[u8]; 7] = [
        r#"{"t":"chat","text":"xin chào"}"#.as_bytes(),
        br#"{"t":"image_start","id":3,"file":"xray.png","mime":"image/png","size":5242880}"#,
        br#"{"t":"image_start","id":1,"file":"ct.dcm","mime":"application/dicom","size":16385}"#,
        br#"{"t":"image_abort","id":3}"#,
        br#"{"t":"chat","text":"   "}"#,
        &[0, 0, 0, 7, 0, 0, 1, 0, 42],
        &[0, 0, 0],
    ];
    for (k, p) in channel_seeds.iter().enumerate() {
        add("data_channel", &format!("unit-{k}"), p);
    }

    let mut attrs = vec![0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4];
    push_attr(&mut attrs, 0x0006, b"srvA:cliB");
    add(
        "stun_ufrag",
        "binding-srvA",
        &stun_message(0x0001, [7; 12], &attrs, Some(b"pass")),
    );
    add("stun_ufrag", "username", b"srvA:cliB");
    add("stun_ufrag", "rtp", &[0x80; 40]);

    // Sessions: ICE checks both ways and nomination, then each framing.
    let record = |selector: u8, body: &[u8]| {
        let mut r = vec![selector];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    };
    let nominate = [
        record(op::STUN_REQUEST, &[1, 0x6E, 0, 0x1E, 0xFF]),
        record(op::TIMEOUT, &[50]),
        record(op::STUN_REPLY, &[0]),
        record(op::TIMEOUT, &[50]),
        record(op::STUN_REQUEST, &[1, 0x6E, 0, 0x1E, 0xFF]),
    ]
    .concat();
    // A DTLS 1.2 ClientHello as a browser sends it: ECDHE-ECDSA with AES-GCM, P-256, use_srtp,
    // extended master secret. The DTLS selector's body: type, epoch, sequence, message_seq,
    // then msg_type and the message.
    let mut client_hello = vec![2, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0xFE, 0xFD];
    client_hello.extend_from_slice(&[0x42; 32]); // random
    client_hello.extend_from_slice(&[0, 0]); // session id, cookie
    client_hello.extend_from_slice(&[0, 4, 0xC0, 0x2B, 0xC0, 0x2F, 1, 0]);
    let extensions: &[u8] = &[
        0x00, 0x0A, 0, 4, 0, 2, 0x00, 0x17, // supported groups: P-256
        0x00, 0x0B, 0, 2, 1, 0, // point formats: uncompressed
        0x00, 0x0D, 0, 4, 0, 2, 0x04, 0x03, // signature algorithms: ECDSA-SHA256
        0x00, 0x0E, 0, 5, 0, 2, 0x00, 0x01, 0, // use_srtp: AES128_CM_HMAC_SHA1_80
        0x00, 0x17, 0, 0, // extended master secret
        0xFF, 0x01, 0, 1, 0, // renegotiation info
    ];
    client_hello.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    client_hello.extend_from_slice(extensions);
    let sessions: [(&str, Vec<u8>); 7] = [
        (
            "ice-client-hello",
            [nominate.clone(), record(op::DTLS, &client_hello)].concat(),
        ),
        ("ice", nominate.clone()),
        (
            "ice-dtls",
            [
                nominate.clone(),
                record(op::DTLS, &[2, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0xFE, 0xFD, 1, 2]),
                record(op::DTLS, &[1, 0, 0, 2, 0, 0, 0, 0, 0, 2, 40]),
            ]
            .concat(),
        ),
        (
            "rtp",
            [
                nominate.clone(),
                record(
                    op::RTP,
                    &[0x10, 2, 0, 1, 0, 0, 3, 0xBE, 0xDE, 0, 1, 0x10, 0],
                ),
            ]
            .concat(),
        ),
        ("rtcp", record(op::RTCP, &[0, 1, 4, 0, 0, 0, 0, 0, 0, 0, 1])),
        (
            "raw-stun",
            record(
                op::STUN_RAW,
                &[
                    0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 6, 0, 1, b'x', 0, 0, 0,
                ],
            ),
        ),
        (
            "rtp-before-ice",
            record(op::RTP | 0x80, &[0, 96, 0, 1, 0, 0, 1]),
        ),
    ];
    for (name, bytes) in &sessions {
        add("rtc_datagram", name, bytes);
    }
    out
}
