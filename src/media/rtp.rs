//! RTP fixed-header fields (RFC 3550 5.1) read and written in place, and telling RTCP from RTP
//! on a shared port (RFC 5761 4). Knows nothing of sessions or sockets.

/// Fixed header length.
pub const HEADER: usize = 12;

/// A packet long enough for the fixed header, version 2.
pub fn is_rtp_like(p: &[u8]) -> bool {
    p.len() >= HEADER && p[0] >> 6 == 2
}

/// RTCP packet types 192-223 sit where RTP has marker + payload type (RFC 5761 4).
pub fn is_rtcp(p: &[u8]) -> bool {
    p.len() >= 8 && p[0] >> 6 == 2 && (192..=223).contains(&p[1])
}

pub fn payload_type(p: &[u8]) -> u8 {
    p[1] & 0x7F
}

pub fn marker(p: &[u8]) -> bool {
    p[1] & 0x80 != 0
}

pub fn seq(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[2], p[3]])
}

pub fn timestamp(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[4], p[5], p[6], p[7]])
}

pub fn ssrc(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[8], p[9], p[10], p[11]])
}

/// Payload after the fixed header, CSRCs and extension; empty if the lengths do not add up.
pub fn payload(p: &[u8]) -> &[u8] {
    if !is_rtp_like(p) {
        return &[];
    }
    let mut at = HEADER + 4 * (p[0] & 0x0F) as usize;
    if p[0] & 0x10 != 0 {
        if p.len() < at + 4 {
            return &[];
        }
        at += 4 + 4 * u16::from_be_bytes([p[at + 2], p[at + 3]]) as usize;
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        let pad = p[p.len() - 1] as usize;
        end = end.saturating_sub(pad);
    }
    p.get(at..end).unwrap_or(&[])
}

/// Rewrite sequence, timestamp and SSRC; set the marker when asked (never clears it).
pub fn restamp(p: &mut [u8], seq: u16, ts: u32, ssrc: u32, set_marker: bool) {
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    if set_marker {
        p[1] |= 0x80;
    }
}

/// Write a fixed header with no CSRC, extension or padding.
pub fn header(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0] = 0x80;
    h[1] = (pt & 0x7F) | if marker { 0x80 } else { 0 };
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut p = header(8, true, 65535, 0xFFFF_FF60, 0xDEAD_BEEF).to_vec();
        p.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            &p[..HEADER],
            b"\x80\x88\xff\xff\xff\xff\xff\x60\xde\xad\xbe\xef"
        );
        assert!(is_rtp_like(&p) && !is_rtcp(&p));
        assert_eq!((payload_type(&p), marker(&p), seq(&p)), (8, true, 65535));
        assert_eq!((timestamp(&p), ssrc(&p)), (0xFFFF_FF60, 0xDEAD_BEEF));
        assert_eq!(payload(&p), &[1, 2, 3]);
        restamp(&mut p, 7, 9, 11, false);
        assert_eq!(
            (seq(&p), timestamp(&p), ssrc(&p), marker(&p)),
            (7, 9, 11, true)
        );
    }

    #[test]
    fn payload_skips_csrc_extension_and_padding() {
        // 1 CSRC, extension of 1 word, 2 bytes padding
        let mut p = vec![0x80 | 0x20 | 0x10 | 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
        p.extend_from_slice(&[9, 9, 9, 9]); // CSRC
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 5, 5, 5, 5]); // extension
        p.extend_from_slice(&[42, 43]); // payload
        p.extend_from_slice(&[0, 2]); // padding, last byte = count
        assert_eq!(payload(&p), &[42, 43]);
        // lengths that do not add up give nothing rather than a panic
        assert_eq!(payload(&p[..14]), &[] as &[u8]);
    }

    #[test]
    fn rtcp_is_told_apart() {
        for (b1, rtcp) in [
            (200u8, true),
            (201, true),
            (223, true),
            (0, false),
            (136, false),
            (127, false),
        ] {
            assert_eq!(is_rtcp(&[0x80, b1, 0, 1, 0, 0, 0, 0]), rtcp, "{b1}");
        }
    }
}
