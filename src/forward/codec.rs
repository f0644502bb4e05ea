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
        VideoCodec::Vp8 => vp8_info(payload).is_some_and(|i| i.keyframe),
        VideoCodec::H264 => h264_has_keyframe(payload),
        VideoCodec::Other => false,
    }
}

/// The VP8 payload descriptor fields the forwarder rewrites or filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Info {
    /// Starts a frame (S=1, partition 0).
    pub frame_start: bool,
    pub keyframe: bool,
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
    pub temporal: Option<u8>,
}

/// Parses the VP8 payload descriptor (RFC 7741 section 4.2); `None` if truncated.
pub fn vp8_info(p: &[u8]) -> Option<Vp8Info> {
    let b0 = *p.first()?;
    let mut info = Vp8Info {
        frame_start: b0 & 0x10 != 0 && b0 & 0x07 == 0,
        ..Vp8Info::default()
    };
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            let a = *p.get(i)?;
            if a & 0x80 != 0 {
                info.picture_id = Some((((a & 0x7F) as u16) << 8) | *p.get(i + 1)? as u16);
                i += 2;
            } else {
                info.picture_id = Some(a as u16);
                i += 1;
            }
        }
        if x & 0x40 != 0 {
            info.tl0_pic_idx = Some(*p.get(i)?);
            i += 1;
        }
        if x & 0x30 != 0 {
            let t = *p.get(i)?;
            if x & 0x20 != 0 {
                info.temporal = Some(t >> 6);
            }
            i += 1;
        }
    }
    info.keyframe = info.frame_start && p.get(i)? & 0x01 == 0;
    Some(info)
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
    fn vp8_descriptor_fields() {
        let info = vp8_info(&[0x90, 0xE0, 0x92, 0x34, 0x05, 0x60, 0x01]).unwrap();
        assert_eq!(
            info,
            Vp8Info {
                frame_start: true,
                keyframe: false,
                picture_id: Some(0x1234),
                tl0_pic_idx: Some(5),
                temporal: Some(1),
            }
        );
        let info = vp8_info(&[0x80, 0x80, 0x12, 0xAA]).unwrap();
        assert_eq!(
            (info.frame_start, info.picture_id, info.temporal),
            (false, Some(0x12), None)
        );
        assert_eq!(vp8_info(&[0x90, 0x80]), None);
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
