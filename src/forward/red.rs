//! RFC 2198 redundant audio (Opus RED): the primary block, for subscribers that did not
//! negotiate RED. Pure.

/// The primary (newest) block of a RED payload, or `None` if the payload is malformed.
pub fn primary(payload: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    let mut redundant_len = 0usize;
    loop {
        let b = *payload.get(i)?;
        if b & 0x80 == 0 {
            i += 1; // the primary's 1-byte header
            break;
        }
        let h = payload.get(i..i + 4)?;
        redundant_len += (((h[2] & 0x03) as usize) << 8) | h[3] as usize;
        i += 4;
    }
    payload.get(i + redundant_len..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        // One redundant block of 3 bytes (PT 111, offset 960), then the primary of 2 bytes.
        let two = [0xEF, 0x0F, 0x00, 0x03, 0x6F, 1, 2, 3, 9, 9];
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (&[0x6F, 7, 7, 7], Some(&[7, 7, 7])),
            (&two, Some(&[9, 9])),
            (&[0xEF, 0x0F, 0x00, 0x09, 0x6F, 1], None),
            (&[0xEF, 0x0F], None),
            (&[], None),
        ];
        for (payload, want) in cases {
            assert_eq!(primary(payload), *want, "{payload:?}");
        }
    }
}
