//! Keyframe detection from RTP payloads, without decoding.

/// Video codecs whose payloads we can inspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    H264,
    /// Forwarded, but keyframes are not detected: the forwarder starts at once.
    Other,
}

/// Whether this packet starts a keyframe.
pub fn is_keyframe_start(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_keyframe_start(payload),
        VideoCodec::H264 => h264_has_keyframe(payload),
        VideoCodec::Other => false,
    }
}

/// RFC 7741: payload descriptor, then the VP8 payload header whose P bit is 0 on key frames.
fn vp8_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let extended = b0 & 0x80 != 0;
    let start_of_partition = b0 & 0x10 != 0;
    let partition_id = b0 & 0x07;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut i = 1;
    if extended {
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    p.get(i).is_some_and(|h| h & 0x01 == 0)
}

/// RFC 6184: an IDR slice or SPS in a single NAL unit, a STAP-A, or the first FU-A fragment.
fn h264_has_keyframe(p: &[u8]) -> bool {
    let is_key = |nal_type: u8| nal_type == 5 || nal_type == 7;
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1F {
        t @ 1..=23 => is_key(t),
        24 => {
            let mut i = 1;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                if size == 0 || i + 2 + size > p.len() {
                    return false;
                }
                if is_key(p[i + 2] & 0x1F) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p
            .get(1)
            .is_some_and(|&fu| fu & 0x80 != 0 && is_key(fu & 0x1F)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8() {
        let cases: &[(&[u8], bool, &str)] = &[
            (&[0x10, 0x00], true, "start, no extension, P=0"),
            (&[0x10, 0x01], false, "P=1: interframe"),
            (&[0x00, 0x00], false, "not start of partition"),
            (&[0x11, 0x00], false, "partition 1"),
            (&[0x90, 0x80, 0x12, 0x00], true, "7-bit picture id"),
            (&[0x90, 0x80, 0x92, 0x34, 0x00], true, "15-bit picture id"),
            (
                &[0x90, 0xE0, 0x92, 0x34, 0x05, 0x20, 0x00],
                true,
                "picid, tl0picidx, tid",
            ),
            (
                &[0x90, 0xE0, 0x92, 0x34, 0x05, 0x20, 0x01],
                false,
                "same, interframe",
            ),
            (&[0x90, 0xE0, 0x92], false, "truncated"),
            (&[], false, "empty"),
        ];
        for (p, want, what) in cases {
            assert_eq!(is_keyframe_start(VideoCodec::Vp8, p), *want, "{what}");
        }
    }

    #[test]
    fn h264() {
        let cases: &[(&[u8], bool, &str)] = &[
            (&[0x65, 0x88], true, "IDR slice"),
            (&[0x67, 0x42], true, "SPS"),
            (&[0x41, 0x9a], false, "non-IDR slice"),
            (
                &[0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce],
                true,
                "STAP-A with SPS",
            ),
            (&[0x18, 0x00, 0x02, 0x41, 0x9a], false, "STAP-A without"),
            (&[0x18, 0x00, 0x09, 0x67], false, "STAP-A truncated"),
            (&[0x7c, 0x85, 0x88], true, "FU-A start of IDR"),
            (&[0x7c, 0x05, 0x88], false, "FU-A middle of IDR"),
            (&[0x7c, 0x81, 0x88], false, "FU-A start of non-IDR"),
            (&[], false, "empty"),
        ];
        for (p, want, what) in cases {
            assert_eq!(is_keyframe_start(VideoCodec::H264, p), *want, "{what}");
        }
    }
}
