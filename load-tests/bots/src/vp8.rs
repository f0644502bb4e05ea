//! A synthetic VP8 RTP packetizer (RFC 7741): payload descriptors with a 15-bit picture id,
//! TL0PICIDX and a temporal layer id in the pattern 0,2,1,2, the 3-byte VP8 payload header on
//! the first packet of a frame (P bit 0 on keyframes, then the keyframe start code and size)
//! and frames split into packets of at most
//! [`MAX_PAYLOAD`] bytes. The bytes after the headers are filler, except a slot of
//! [`crate::stamp::STAMP_LEN`] bytes at [`STAMP_OFFSET`] that the sender fills at send time.

use crate::stamp::STAMP_LEN;

/// Largest RTP payload produced (descriptor, header, stamp and filler).
pub const MAX_PAYLOAD: usize = 1200;
/// X, I (15-bit picture id: 2 bytes), L and T/K: 6 bytes.
pub const DESCRIPTOR_LEN: usize = 6;
/// The VP8 payload header (3-byte frame tag) on the first packet of a frame, followed on a
/// keyframe by its start code and size (7 bytes; RFC 6386 9.1), which some SFUs (Janus) check
/// before they call a packet a keyframe. The first packet of a delta frame has first-partition
/// bytes there, the others filler, so the stamp sits at the same offset in every packet.
pub const FRAME_HEADER_LEN: usize = 10;
/// The keyframe start code (RFC 6386 9.1).
pub const KEYFRAME_START_CODE: [u8; 3] = [0x9D, 0x01, 0x2A];
/// Where the send stamp goes in every video payload.
pub const STAMP_OFFSET: usize = DESCRIPTOR_LEN + FRAME_HEADER_LEN;
/// Smallest packet: headers plus the stamp.
pub const MIN_PAYLOAD: usize = STAMP_OFFSET + STAMP_LEN;
/// Picture ids are 15 bits.
pub const PICTURE_ID_MOD: u16 = 1 << 15;
/// Temporal layer ids of consecutive frames after a keyframe (3 temporal layers).
pub const TID_PATTERN: [u8; 4] = [0, 2, 1, 2];

/// The descriptor fields of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    pub picture_id: u16,
    pub tl0_pic_idx: u8,
    pub tid: u8,
    pub keyframe: bool,
}

/// Per-stream (per simulcast layer) picture numbering.
#[derive(Debug, Clone)]
pub struct Vp8Packetizer {
    next_picture_id: u16,
    tl0_pic_idx: u8,
    pattern_pos: usize,
}

impl Vp8Packetizer {
    /// `first_picture_id` is the first frame's picture id (taken mod 2^15); the first frame
    /// with TID 0 carries `tl0_start + 1`.
    pub fn new(first_picture_id: u16, tl0_start: u8) -> Self {
        Self {
            next_picture_id: first_picture_id % PICTURE_ID_MOD,
            tl0_pic_idx: tl0_start,
            pattern_pos: 0,
        }
    }

    /// Numbers the next frame. A keyframe is always TID 0 and restarts the temporal pattern.
    pub fn next_frame(&mut self, keyframe: bool) -> FrameMeta {
        let tid = if keyframe {
            self.pattern_pos = 1;
            0
        } else {
            let t = TID_PATTERN[self.pattern_pos];
            self.pattern_pos = (self.pattern_pos + 1) % TID_PATTERN.len();
            t
        };
        if tid == 0 {
            self.tl0_pic_idx = self.tl0_pic_idx.wrapping_add(1);
        }
        let picture_id = self.next_picture_id;
        self.next_picture_id = (self.next_picture_id + 1) % PICTURE_ID_MOD;
        FrameMeta {
            picture_id,
            tl0_pic_idx: self.tl0_pic_idx,
            tid,
            keyframe,
        }
    }
}

/// Writes the 6-byte payload descriptor. `start`: first packet of the frame (S=1, PID=0).
pub fn write_descriptor(meta: &FrameMeta, start: bool, out: &mut [u8]) {
    let mut b0 = 0x80; // X
    if start {
        b0 |= 0x10; // S
    }
    if meta.tid == 2 && !meta.keyframe {
        b0 |= 0x20; // N: the top temporal layer is never referenced
    }
    out[0] = b0;
    out[1] = 0x80 | 0x40 | 0x20; // I, L, T
    out[2] = 0x80 | ((meta.picture_id >> 8) as u8 & 0x7F); // M=1: 15-bit picture id
    out[3] = meta.picture_id as u8;
    out[4] = meta.tl0_pic_idx;
    out[5] = meta.tid << 6; // Y=0, KEYIDX=0
}

/// The VP8 payload header (RFC 7741 4.3): show_frame=1, version 0, P=0 on keyframes, and the
/// first partition size (19 bits); on a keyframe then the start code and the 14-bit width and
/// height (little endian, scale 0). `out` is [`FRAME_HEADER_LEN`] bytes.
pub fn write_frame_header(
    keyframe: bool,
    first_partition_size: usize,
    (width, height): (u16, u16),
    out: &mut [u8],
) {
    let size = first_partition_size.min(0x7FFFF) as u32;
    let p = if keyframe { 0 } else { 1 };
    out[0] = (((size & 0x7) as u8) << 5) | 0x10 | p;
    out[1] = (size >> 3) as u8;
    out[2] = (size >> 11) as u8;
    if keyframe {
        out[3..6].copy_from_slice(&KEYFRAME_START_CODE);
        out[6..8].copy_from_slice(&(width & 0x3FFF).to_le_bytes());
        out[8..10].copy_from_slice(&(height & 0x3FFF).to_le_bytes());
    } else {
        // First-partition bytes of a delta frame: anything but the start code.
        for (k, b) in out[3..FRAME_HEADER_LEN].iter_mut().enumerate() {
            *b = 0x40 | k as u8;
        }
    }
}

/// Splits one frame of `frame_len` payload bytes (headers included) into packets of at most
/// [`MAX_PAYLOAD`] bytes, as even as possible. Each has the descriptor, then the frame header
/// (first packet) or filler, then a zeroed stamp slot, then filler. The last one carries the
/// marker (the caller sets it on the last element).
/// `dims` (width, height) goes into a keyframe's header.
pub fn packetize(meta: &FrameMeta, frame_len: usize, dims: (u16, u16)) -> Vec<Vec<u8>> {
    let frame_len = frame_len.max(MIN_PAYLOAD);
    let n = frame_len.div_ceil(MAX_PAYLOAD);
    let base = frame_len / n;
    let extra = frame_len % n;
    (0..n)
        .map(|i| {
            let len = (base + usize::from(i < extra)).max(MIN_PAYLOAD);
            let mut p = vec![0u8; len];
            write_descriptor(meta, i == 0, &mut p[..DESCRIPTOR_LEN]);
            if i == 0 {
                write_frame_header(
                    meta.keyframe,
                    frame_len / 2,
                    dims,
                    &mut p[DESCRIPTOR_LEN..STAMP_OFFSET],
                );
            }
            // Filler that is not all zeros (a real encoder's output is not).
            for (k, b) in p[MIN_PAYLOAD..].iter_mut().enumerate() {
                *b = (k as u8)
                    .wrapping_mul(31)
                    .wrapping_add(meta.picture_id as u8);
            }
            p
        })
        .collect()
}

/// Parsed descriptor fields (for tests and for receivers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedDescriptor {
    pub start: bool,
    pub non_reference: bool,
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
    pub tid: Option<u8>,
    /// Length of the descriptor in bytes.
    pub len: usize,
}

/// Parses an RFC 7741 payload descriptor of any shape; `None` if truncated.
pub fn parse_descriptor(p: &[u8]) -> Option<ParsedDescriptor> {
    let b0 = *p.first()?;
    let mut d = ParsedDescriptor {
        start: b0 & 0x10 != 0 && b0 & 0x07 == 0,
        non_reference: b0 & 0x20 != 0,
        picture_id: None,
        tl0_pic_idx: None,
        tid: None,
        len: 1,
    };
    if b0 & 0x80 == 0 {
        return Some(d);
    }
    let x = *p.get(1)?;
    let mut i = 2;
    if x & 0x80 != 0 {
        let a = *p.get(i)?;
        if a & 0x80 != 0 {
            d.picture_id = Some((((a & 0x7F) as u16) << 8) | *p.get(i + 1)? as u16);
            i += 2;
        } else {
            d.picture_id = Some(a as u16);
            i += 1;
        }
    }
    if x & 0x40 != 0 {
        d.tl0_pic_idx = Some(*p.get(i)?);
        i += 1;
    }
    if x & 0x30 != 0 {
        let t = *p.get(i)?;
        if x & 0x20 != 0 {
            d.tid = Some(t >> 6);
        }
        i += 1;
    }
    d.len = i;
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_fields() {
        let mut v = Vp8Packetizer::new(0x1234, 9);
        let meta = v.next_frame(true);
        assert_eq!(
            meta,
            FrameMeta {
                picture_id: 0x1234,
                tl0_pic_idx: 10,
                tid: 0,
                keyframe: true
            }
        );
        let packets = packetize(&meta, 3000, (1280, 720));
        assert_eq!(packets.len(), 3);
        assert!(packets.iter().all(|p| p.len() <= MAX_PAYLOAD));
        assert_eq!(packets.iter().map(Vec::len).sum::<usize>(), 3000);
        assert_eq!(&packets[0][..6], &[0x90, 0xE0, 0x92, 0x34, 10, 0x00]);
        for (i, p) in packets.iter().enumerate() {
            let d = parse_descriptor(p).unwrap();
            assert_eq!(d.start, i == 0);
            assert_eq!(d.picture_id, Some(0x1234));
            assert_eq!(d.tl0_pic_idx, Some(10));
            assert_eq!(d.tid, Some(0));
            assert_eq!(d.len, DESCRIPTOR_LEN);
        }
        // VP8 payload header on the first packet: P=0 on a keyframe, show_frame set.
        assert_eq!(packets[0][DESCRIPTOR_LEN] & 0x01, 0);
        assert_eq!(packets[0][DESCRIPTOR_LEN] & 0x10, 0x10);
        // Then the keyframe start code and 1280x720, little endian.
        assert_eq!(
            &packets[0][DESCRIPTOR_LEN + 3..STAMP_OFFSET],
            &[0x9D, 0x01, 0x2A, 0x00, 0x05, 0xD0, 0x02]
        );

        let meta = v.next_frame(false);
        let p = &packetize(&meta, 500, (1280, 720))[0];
        assert_eq!(p[DESCRIPTOR_LEN] & 0x01, 1, "P=1 on an interframe");
        assert_ne!(
            &p[DESCRIPTOR_LEN + 3..DESCRIPTOR_LEN + 6],
            &KEYFRAME_START_CODE
        );
        assert_eq!(parse_descriptor(p).unwrap().tid, Some(2));
        assert!(parse_descriptor(p).unwrap().non_reference);
    }

    #[test]
    fn first_partition_size_round_trips() {
        let mut h = [0u8; FRAME_HEADER_LEN];
        write_frame_header(false, 0x5_4321, (0, 0), &mut h);
        let size = ((h[0] >> 5) as u32) | ((h[1] as u32) << 3) | ((h[2] as u32) << 11);
        assert_eq!(size, 0x5_4321);
    }

    #[test]
    fn tid_pattern_and_tl0picidx() {
        let mut v = Vp8Packetizer::new(0, 255);
        let frames: Vec<FrameMeta> = (0..9).map(|i| v.next_frame(i == 0)).collect();
        let tids: Vec<u8> = frames.iter().map(|f| f.tid).collect();
        assert_eq!(tids, [0, 2, 1, 2, 0, 2, 1, 2, 0]);
        let tl0: Vec<u8> = frames.iter().map(|f| f.tl0_pic_idx).collect();
        assert_eq!(
            tl0,
            [0, 0, 0, 0, 1, 1, 1, 1, 2],
            "wraps from 255 and counts TID 0"
        );
        // A keyframe in the middle restarts the pattern.
        let k = v.next_frame(true);
        assert_eq!((k.tid, k.tl0_pic_idx), (0, 3));
        let after: Vec<u8> = (0..4).map(|_| v.next_frame(false).tid).collect();
        assert_eq!(after, [2, 1, 2, 0]);
    }

    #[test]
    fn picture_id_wraps_at_15_bits() {
        let mut v = Vp8Packetizer::new(PICTURE_ID_MOD - 2, 0);
        let ids: Vec<u16> = (0..4).map(|_| v.next_frame(false).picture_id).collect();
        assert_eq!(ids, [32766, 32767, 0, 1]);
        let meta = FrameMeta {
            picture_id: 32767,
            tl0_pic_idx: 0,
            tid: 1,
            keyframe: false,
        };
        let p = &packetize(&meta, 100, (320, 180))[0];
        assert_eq!(&p[2..4], &[0xFF, 0xFF]);
        assert_eq!(parse_descriptor(p).unwrap().picture_id, Some(32767));
    }

    #[test]
    fn packet_sizes() {
        let meta = Vp8Packetizer::new(1, 0).next_frame(false);
        for len in [1, MIN_PAYLOAD, 1199, 1200, 1201, 5000, 20_000] {
            let packets = packetize(&meta, len, (640, 360));
            assert_eq!(
                packets.len(),
                len.max(MIN_PAYLOAD).div_ceil(MAX_PAYLOAD),
                "{len}"
            );
            assert!(packets
                .iter()
                .all(|p| p.len() <= MAX_PAYLOAD && p.len() >= MIN_PAYLOAD));
            assert_eq!(
                packets.iter().map(Vec::len).sum::<usize>(),
                len.max(MIN_PAYLOAD)
            );
        }
    }
}
