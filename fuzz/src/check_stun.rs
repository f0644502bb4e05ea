//! The demux's reading of STUN (`stun_ufrag`): the server ufrag in a binding request's
//! USERNAME and the routing that follows it. Also the STUN message builder (attributes, padding,
//! MESSAGE-INTEGRITY, FINGERPRINT) that the `rtc_datagram` target and the seeds use to make
//! well-formed requests, which is why those helpers are visible to the rest of `checks`.

use std::net::SocketAddr;

use aws_lc_rs::hmac;
use consult_sfu::demux::{stun_local_ufrag, Demux};

// ---------------------------------------------------------------------------------------------
// Demux: the server ufrag in a STUN request's USERNAME.

pub(super) const STUN_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

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
pub(super) fn push_attr(attrs: &mut Vec<u8>, kind: u16, value: &[u8]) {
    attrs.extend_from_slice(&kind.to_be_bytes());
    attrs.extend_from_slice(&(value.len() as u16).to_be_bytes());
    attrs.extend_from_slice(value);
    pad4(attrs);
}

/// Zero padding to a multiple of 4 bytes (STUN attributes, RTCP packets).
pub(super) fn pad4(bytes: &mut Vec<u8>) {
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
}

/// A STUN message (RFC 5389) with MESSAGE-INTEGRITY when a password is given, and FINGERPRINT.
pub(super) fn stun_message(
    kind: u16,
    txid: [u8; 12],
    attrs: &[u8],
    password: Option<&[u8]>,
) -> Vec<u8> {
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
