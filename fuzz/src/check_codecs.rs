//! The media payload parsers the forwarder reads every packet with: the VP8 payload descriptor
//! (`vp8_descriptor`, against str0m's parser and its picture-id patch), H264 keyframe detection
//! (`h264_keyframe`, against a plain reading of RFC 6184) and the RED primary block
//! (`red_primary`). Together because each is a codec parser checked against a reference or a
//! round trip, with no state.

use consult_sfu::forward::codec::{is_keyframe_start, vp8_info, VideoCodec};
use consult_sfu::forward::red;
use str0m::rtp::{Vp8Descriptor, Vp8Patch};

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
