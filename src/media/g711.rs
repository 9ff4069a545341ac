//! ITU-T G.711 companding: 16-bit linear PCM to and from µ-law (PCMU, RTP payload type 0) and
//! A-law (PCMA, payload type 8).
//!
//! Pure arithmetic after the classic Sun reference implementation; knows nothing of RTP, files or
//! sockets. Used once per prompt at start (pre-encoding) and, when the caller is mixed into the
//! prompt instead of held, per packet.

/// One of the two G.711 laws an announcement can be sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// µ-law, RTP/AVP static payload type 0.
    Pcmu,
    /// A-law, RTP/AVP static payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551 table 4).
    pub fn static_pt(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name used in `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    pub fn encode(self, s: i16) -> u8 {
        match self {
            Codec::Pcmu => linear_to_ulaw(s),
            Codec::Pcma => linear_to_alaw(s),
        }
    }

    pub fn decode(self, c: u8) -> i16 {
        match self {
            Codec::Pcmu => ulaw_to_linear(c),
            Codec::Pcma => alaw_to_linear(c),
        }
    }
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// Linear PCM to µ-law.
pub fn linear_to_ulaw(pcm: i16) -> u8 {
    let mut v = pcm as i32;
    let sign = if v < 0 {
        v = -v;
        0x80
    } else {
        0
    };
    v = v.min(ULAW_CLIP) + ULAW_BIAS;
    // Segment = position of the highest set bit above bit 7 (v is at most 0x7FFF here).
    let exponent = (31 - (v as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (v >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// µ-law to linear PCM.
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let t = ((((u & 0x0F) as i32) << 3) + ULAW_BIAS) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

/// Linear PCM to A-law.
pub fn linear_to_alaw(pcm: i16) -> u8 {
    let mut v = (pcm as i32) >> 3;
    let mask = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    // Segment ends of the 13-bit magnitude: 0x1F, 0x3F, 0x7F, ... 0xFFF.
    let seg = (0..8).find(|&s| v < (0x20 << s)).unwrap_or(8);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let shift = if seg < 2 { 1 } else { seg };
    let aval = (seg << 4) | ((v >> shift) & 0x0F);
    (aval as u8) ^ mask
}

/// A-law to linear PCM.
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values from the ITU-T G.711 tables as reproduced in the Sun reference code (g711.c); the
    // encode tables were cross-checked with `sox -D` (which differs only in rounding -1 to +0).
    #[test]
    fn ulaw_decode_table() {
        for (code, lin) in [
            (0x00u8, -32124i16),
            (0x01, -31100),
            (0x0F, -16764),
            (0x10, -15996),
            (0x70, -120),
            (0x7E, -8),
            (0x7F, 0),
            (0x80, 32124),
            (0x8F, 16764),
            (0xF0, 120),
            (0xFE, 8),
            (0xFF, 0),
        ] {
            assert_eq!(ulaw_to_linear(code), lin, "code {code:#04x}");
        }
    }

    #[test]
    fn ulaw_encode_table() {
        for (lin, code) in [
            (0i16, 0xFFu8),
            (-1, 0x7F),
            (8, 0xFE),
            (-8, 0x7E),
            (120, 0xF0),
            (24, 0xFC),
            (1000, 0xCE),
            (-1000, 0x4E),
            (32767, 0x80),
            (-32768, 0x00),
            (32124, 0x80),
        ] {
            assert_eq!(linear_to_ulaw(lin), code, "sample {lin}");
        }
    }

    #[test]
    fn alaw_decode_table() {
        for (code, lin) in [
            (0x00u8, -5504i16),
            (0x01, -5248),
            (0x2A, -32256),
            (0x55, -8),
            (0x54, -24),
            (0x80, 5504),
            (0xAA, 32256),
            (0xD5, 8),
            (0xD4, 24),
        ] {
            assert_eq!(alaw_to_linear(code), lin, "code {code:#04x}");
        }
    }

    #[test]
    fn alaw_encode_table() {
        for (lin, code) in [
            (0i16, 0xD5u8),
            (-1, 0x55),
            (8, 0xD5),
            (24, 0xD4),
            (120, 0xD2),
            (1000, 0xFA),
            (-1000, 0x7A),
            (32767, 0xAA),
            (-32768, 0x2A),
        ] {
            assert_eq!(linear_to_alaw(lin), code, "sample {lin}");
        }
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for c in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "A-law {c:#04x}");
            // µ-law has two zeros (0x7F is -0); it re-encodes as +0.
            let want = if c == 0x7F { 0xFF } else { c };
            assert_eq!(linear_to_ulaw(ulaw_to_linear(c)), want, "µ-law {c:#04x}");
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut last = (i16::MIN, i16::MIN);
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_to_linear(linear_to_ulaw(s));
            let a = alaw_to_linear(linear_to_alaw(s));
            assert!(u >= last.0 && a >= last.1, "not monotonic at {s}");
            last = (u, a);
        }
    }
}
