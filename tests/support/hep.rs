//! A HEP3 decoder for the test collector: one datagram into its chunks, strictly (the
//! `HEP3` magic, a length equal to the datagram's, chunks that fit exactly, vendor 0, fixed
//! sizes where the format fixes them, each chunk at most once, the ones every packet needs).
//! Written from the HEP3 specification, not from the agent's encoder, so that the two check
//! each other. Knows nothing of the agent.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hep {
    /// Chunk 0x01: 2 (IPv4) or 10 (IPv6).
    pub family: u8,
    /// Chunk 0x02: 17 (UDP) or 6 (TCP).
    pub proto: u8,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub secs: u32,
    pub usecs: u32,
    /// Chunk 0x0b: 1 (SIP) or 100 (log).
    pub kind: u8,
    pub capture_id: u32,
    pub auth: Option<Vec<u8>>,
    pub correlation: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

pub fn decode(b: &[u8]) -> Result<Hep, String> {
    if b.len() < 6 || &b[..4] != b"HEP3" {
        return Err("no HEP3 magic".into());
    }
    let total = usize::from(u16::from_be_bytes([b[4], b[5]]));
    if total != b.len() {
        return Err(format!("length field {total}, datagram {}", b.len()));
    }
    let mut chunks: HashMap<u16, &[u8]> = HashMap::new();
    let mut i = 6;
    while i < b.len() {
        if i + 6 > b.len() {
            return Err(format!("chunk header cut at {i}"));
        }
        let vendor = u16::from_be_bytes([b[i], b[i + 1]]);
        let kind = u16::from_be_bytes([b[i + 2], b[i + 3]]);
        let len = usize::from(u16::from_be_bytes([b[i + 4], b[i + 5]]));
        if vendor != 0 {
            return Err(format!("chunk {kind:#x}: vendor {vendor}"));
        }
        if len < 6 || i + len > b.len() {
            return Err(format!("chunk {kind:#x}: length {len} at {i}"));
        }
        if chunks.insert(kind, &b[i + 6..i + len]).is_some() {
            return Err(format!("chunk {kind:#x} twice"));
        }
        i += len;
    }
    let get = |k: u16, size: Option<usize>| -> Result<&[u8], String> {
        let c = chunks.get(&k).ok_or(format!("no chunk {k:#x}"))?;
        match size {
            Some(n) if c.len() != n => Err(format!("chunk {k:#x}: {} bytes, not {n}", c.len())),
            _ => Ok(c),
        }
    };
    let u8_of = |k| get(k, Some(1)).map(|c| c[0]);
    let u16_of = |k| get(k, Some(2)).map(|c| u16::from_be_bytes([c[0], c[1]]));
    let u32_of = |k| get(k, Some(4)).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    let family = u8_of(0x01)?;
    let (src, dst): (IpAddr, IpAddr) = match family {
        2 => {
            let ip = |k| get(k, Some(4)).map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]).into());
            (ip(0x03)?, ip(0x04)?)
        }
        10 => {
            let ip = |k| {
                get(k, Some(16)).map(|c| {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(c);
                    Ipv6Addr::from(o).into()
                })
            };
            (ip(0x05)?, ip(0x06)?)
        }
        f => return Err(format!("family {f}")),
    };
    Ok(Hep {
        family,
        proto: u8_of(0x02)?,
        src: SocketAddr::new(src, u16_of(0x07)?),
        dst: SocketAddr::new(dst, u16_of(0x08)?),
        secs: u32_of(0x09)?,
        usecs: u32_of(0x0a)?,
        kind: u8_of(0x0b)?,
        capture_id: u32_of(0x0c)?,
        auth: chunks.get(&0x0e).map(|c| c.to_vec()),
        correlation: chunks.get(&0x11).map(|c| c.to_vec()),
        payload: get(0x0f, None)?.to_vec(),
    })
}
