//! What each fuzz target checks: one function per target, taking the raw input. The libFuzzer
//! targets (`fuzz/fuzz_targets/`) call them on nightly; the stable replay test
//! (`tests/fuzz_corpus.rs`) calls the same functions on the seeds and on pseudo-random
//! mutations, so "correct" is defined once. A violated property panics, which libFuzzer
//! reports as a crash and `cargo test` as a failure.
//!
//! Everything here is deterministic for a given input (fixed secret, fixed clock for tokens, a
//! fixed SDP offer for the `Rtc`), so a crash reproduces from its input file alone.
//!
//! The checks are grouped by what they parse, one file per group next to this one (declared with
//! `#[path]`, so they resolve in `fuzz/src/` both in the fuzz crate and when
//! `tests/fuzz_corpus.rs` includes this file by path); this file re-exports them under the
//! `checks::` paths the targets use and keeps the target list, `run` and `seeds`:
//!
//! - `check_signaling.rs`: signaling messages, invite tokens, data-channel messages;
//! - `check_codecs.rs`: VP8 descriptor, H264 keyframe, RED primary;
//! - `check_stun.rs`: the demux's STUN ufrag, and the STUN builder the others use;
//! - `check_rtc.rs`: datagrams into a participant's str0m `Rtc`;
//! - `redis_reply.rs`: Redis replies.

#[path = "redis_reply.rs"]
pub mod redis_reply;

#[path = "check_codecs.rs"]
mod check_codecs;
#[path = "check_rtc.rs"]
mod check_rtc;
#[path = "check_signaling.rs"]
mod check_signaling;
#[path = "check_stun.rs"]
mod check_stun;

pub use check_codecs::{h264_keyframe, red_primary, vp8_descriptor};
pub use check_rtc::{op, rtc_datagram};
pub use check_signaling::{
    data_channel, invite_token, signaling_message, signed_tokens, token_claims, TOKEN_NOW,
    TOKEN_SECRET,
};
pub use check_stun::stun_ufrag;
use check_stun::{push_attr, stun_message};

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
