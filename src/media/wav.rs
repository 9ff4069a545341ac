//! A strict WAV reader for announcement prompts: RIFF/WAVE with a `fmt ` and a `data` chunk,
//! 8 kHz mono, either 16-bit linear PCM or 8-bit G.711 (A-law, µ-law). Anything else is refused
//! with a message saying what was found and what is expected, because a prompt in the wrong
//! format would otherwise play as noise at the wrong speed.
//!
//! Knows nothing of files (it takes bytes), RTP or sessions.

use std::fmt;

use super::g711;

/// The longest prompt accepted (60 s); bounds memory per prompt.
pub const MAX_SAMPLES: usize = 60 * 8000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WavError {
    NotRiff,
    Truncated(&'static str),
    NoFmt,
    NoData,
    Format(String),
    TooLong(usize),
    Empty,
}

impl fmt::Display for WavError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WavError::NotRiff => write!(f, "not a RIFF/WAVE file"),
            WavError::Truncated(what) => write!(f, "truncated {what}"),
            WavError::NoFmt => write!(f, "no fmt chunk before the data chunk"),
            WavError::NoData => write!(f, "no data chunk"),
            WavError::Format(s) => write!(
                f,
                "{s}; expected 8000 Hz mono 16-bit PCM or 8-bit G.711 A-law/µ-law"
            ),
            WavError::TooLong(n) => write!(
                f,
                "{n} samples is longer than the {} s a prompt may last",
                MAX_SAMPLES / 8000
            ),
            WavError::Empty => write!(f, "no samples"),
        }
    }
}

impl std::error::Error for WavError {}

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decode a WAV file's bytes into 8 kHz linear samples.
pub fn decode(b: &[u8]) -> Result<Vec<i16>, WavError> {
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err(WavError::NotRiff);
    }
    let mut at = 12;
    // (format tag, bits per sample)
    let mut fmt: Option<(u16, u16)> = None;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let len = u32le(b, at + 4) as usize;
        let body = at + 8;
        let end = body.checked_add(len).ok_or(WavError::Truncated("chunk"))?;
        match id {
            b"fmt " => {
                if len < 16 || end > b.len() {
                    return Err(WavError::Truncated("fmt chunk"));
                }
                let tag = u16le(b, body);
                let channels = u16le(b, body + 2);
                let rate = u32le(b, body + 4);
                let block_align = u16le(b, body + 12);
                let bits = u16le(b, body + 14);
                let ok = match tag {
                    1 => bits == 16,
                    6 | 7 => bits == 8,
                    _ => false,
                };
                if !ok || channels != 1 || rate != 8000 || block_align != bits / 8 {
                    let name = match tag {
                        1 => "PCM",
                        6 => "A-law",
                        7 => "µ-law",
                        0xFFFE => "WAVE_FORMAT_EXTENSIBLE",
                        _ => "format",
                    };
                    return Err(WavError::Format(format!(
                        "found {name} (tag {tag}) {rate} Hz, {channels} channel(s), \
                         {bits}-bit, block align {block_align}"
                    )));
                }
                fmt = Some((tag, bits));
            }
            b"data" => {
                let (tag, _) = fmt.ok_or(WavError::NoFmt)?;
                // Writers that stream sometimes leave the length unset; a length past the
                // end is a truncated file, which we refuse rather than guess.
                if end > b.len() {
                    return Err(WavError::Truncated("data chunk"));
                }
                let data = &b[body..end];
                let n = if tag == 1 { data.len() / 2 } else { data.len() };
                if n > MAX_SAMPLES {
                    return Err(WavError::TooLong(n));
                }
                if n == 0 {
                    return Err(WavError::Empty);
                }
                return Ok(match tag {
                    1 => data
                        .chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]]))
                        .collect(),
                    6 => data.iter().map(|&c| g711::alaw_to_linear(c)).collect(),
                    _ => data.iter().map(|&c| g711::ulaw_to_linear(c)).collect(),
                });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = end
            .checked_add(len & 1)
            .ok_or(WavError::Truncated("chunk"))?;
    }
    Err(if fmt.is_none() {
        WavError::NoFmt
    } else {
        WavError::NoData
    })
}

/// Build a WAV file (used by tests and benches to make prompts of known content).
pub fn encode_pcm16(samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut v = Vec::with_capacity(44 + samples.len() * 2);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&8000u32.to_le_bytes());
    v.extend_from_slice(&16000u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header with the given format fields and `data` bytes.
    fn wav(tag: u16, ch: u16, rate: u32, bits: u16, extra_fmt: &[u8], data: &[u8]) -> Vec<u8> {
        let mut v = b"RIFF\0\0\0\0WAVE".to_vec();
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&(16 + extra_fmt.len() as u32).to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&ch.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * ch as u32 * bits as u32 / 8).to_le_bytes());
        v.extend_from_slice(&(ch * bits / 8).to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(extra_fmt);
        // a fact chunk of odd length with its pad byte, as some writers emit
        v.extend_from_slice(b"fact\x03\0\0\0abc\0");
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_pcm16_and_g711() {
        assert_eq!(
            decode(&encode_pcm16(&[0, 1, -1, 32767, -32768])).unwrap(),
            vec![0, 1, -1, 32767, -32768]
        );
        assert_eq!(
            decode(&wav(7, 1, 8000, 8, &[0, 0], &[0xFF, 0x80, 0x00])).unwrap(),
            vec![0, 32124, -32124]
        );
        assert_eq!(
            decode(&wav(6, 1, 8000, 8, &[], &[0xD5, 0xAA])).unwrap(),
            vec![8, 32256]
        );
    }

    #[test]
    fn refuses_what_it_cannot_play() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"RIFX\0\0\0\0WAVE".to_vec(), "not a RIFF/WAVE file"),
            (b"RIFF".to_vec(), "not a RIFF/WAVE file"),
            (wav(1, 1, 16000, 16, &[], &[0, 0]), "found PCM (tag 1) 16000 Hz, 1 channel(s), 16-bit, block align 2; expected 8000 Hz mono 16-bit PCM or 8-bit G.711 A-law/µ-law"),
            (wav(1, 2, 8000, 16, &[], &[0, 0, 0, 0]), "found PCM (tag 1) 8000 Hz, 2 channel(s), 16-bit, block align 4; expected 8000 Hz mono 16-bit PCM or 8-bit G.711 A-law/µ-law"),
            (wav(1, 1, 8000, 8, &[], &[0]), "found PCM (tag 1) 8000 Hz, 1 channel(s), 8-bit, block align 1; expected 8000 Hz mono 16-bit PCM or 8-bit G.711 A-law/µ-law"),
            (wav(3, 1, 8000, 32, &[], &[0; 4]), "found format (tag 3) 8000 Hz, 1 channel(s), 32-bit, block align 4; expected 8000 Hz mono 16-bit PCM or 8-bit G.711 A-law/µ-law"),
            (wav(1, 1, 8000, 16, &[], &[]), "no samples"),
            (b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\0\0".to_vec(), "no fmt chunk before the data chunk"),
            (b"RIFF\0\0\0\0WAVEfmt \x08\0\0\0\x01\0\x01\0\x40\x1f\0\0".to_vec(), "truncated fmt chunk"),
            ({ let mut w = encode_pcm16(&[1, 2, 3]); w.truncate(w.len() - 1); w }, "truncated data chunk"),
            ({ let mut w = encode_pcm16(&[1]); w.truncate(36); w }, "no data chunk"),
            (wav(7, 1, 8000, 8, &[], &vec![0xFF; MAX_SAMPLES + 1]), "480001 samples is longer than the 60 s a prompt may last"),
        ];
        for (i, (bytes, want)) in cases.iter().enumerate() {
            assert_eq!(decode(bytes).unwrap_err().to_string(), *want, "case {i}");
        }
    }
}
