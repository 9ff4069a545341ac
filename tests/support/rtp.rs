//! A test party's side of RTP over SIP: the SDP it offers or answers, where the agent's SDP
//! points it, RTP packets in and out, RFC 4733 key presses, and hearing a whole prompt checked
//! sample by sample against the WAV file it was made from. Knows nothing of the agent's insides:
//! only the wire and the files in `prompts/`.

use std::net::SocketAddr;
use std::time::Instant;

use scamguard::media::{dtmf, wav, Codec};
use tokio::net::UdpSocket;
use tokio::time::timeout;

use super::{root, WAIT};

/// An SDP body of `user` listening on 127.0.0.1:`port`, offering `fmts` with `rtpmaps` lines.
pub fn sdp(user: &str, port: u16, fmts: &str, rtpmaps: &str) -> String {
    format!(
        "v=0\r\no={user} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {fmts}\r\n{rtpmaps}a=sendrecv\r\n"
    )
}

/// The `c=` address and `m=audio` port of an SDP body.
pub fn media_addr(body: &str) -> SocketAddr {
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line")
        .trim();
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .expect("m=audio line")
        .split(' ')
        .next()
        .unwrap();
    format!("{ip}:{port}").parse().unwrap()
}

/// The fields of a received RTP packet.
pub struct Rtp {
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

pub fn parse_rtp(b: &[u8]) -> Rtp {
    assert!(b.len() >= 12 && b[0] >> 6 == 2, "not RTP: {b:?}");
    Rtp {
        marker: b[1] & 0x80 != 0,
        pt: b[1] & 0x7f,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload: b[12..].to_vec(),
    }
}

fn header(marker: bool, pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

/// A 20 ms audio packet whose every payload byte is `fill`.
pub fn rtp_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = header(false, pt, seq, ts, ssrc);
    p.extend(std::iter::repeat(fill).take(160));
    p
}

pub async fn recv_rtp(s: &UdpSocket) -> (Rtp, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = timeout(WAIT, s.recv_from(&mut buf))
        .await
        .expect("RTP in time")
        .unwrap();
    (parse_rtp(&buf[..n]), from)
}

/// Press `digit` as a phone sends it over RFC 4733 (payload type `pt`, the press starting at
/// timestamp `ts`): a start packet with the marker, two updates, the end three times. Returns
/// the next free sequence number.
pub async fn press(s: &UdpSocket, to: SocketAddr, pt: u8, digit: char, seq: u16, ts: u32) -> u16 {
    let event = dtmf::event(digit).expect("a DTMF digit");
    let mut seq = seq;
    for (i, (end, duration)) in [
        (false, 160u16),
        (false, 320),
        (false, 480),
        (true, 640),
        (true, 640),
        (true, 640),
    ]
    .into_iter()
    .enumerate()
    {
        let mut p = header(i == 0, pt, seq, ts, 0xD7F0);
        p.push(event);
        p.push(if end { 0x80 | 10 } else { 10 });
        p.extend_from_slice(&duration.to_be_bytes());
        s.send_to(&p, to).await.unwrap();
        // The end's retransmissions repeat its sequence number.
        if i < 3 {
            seq = seq.wrapping_add(1);
        }
    }
    seq.wrapping_add(1)
}

/// `prompts/<name>.wav` as the agent plays it: padded to whole 20 ms frames.
pub fn prompt_samples(name: &str) -> Vec<i16> {
    let bytes = std::fs::read(root().join(format!("prompts/{name}.wav"))).unwrap();
    let mut s = wav::decode(&bytes).unwrap_or_else(|e| panic!("prompts/{name}.wav: {e}"));
    while s.len() % 160 != 0 {
        s.push(0);
    }
    s
}

/// A prompt as one party heard it.
pub struct Heard {
    pub first: Rtp,
    /// Sequence number and timestamp of the last packet.
    pub seq: u16,
    pub ts: u32,
    pub frames: usize,
    /// When the last packet arrived.
    pub last_at: Instant,
}

/// Hear the whole of `prompts/<name>.wav` on `sock`, sent from `leg` in `codec` with payload
/// type `pt`: a proper RTP stream (marker on the first packet only, one SSRC, sequence +1 and
/// timestamp +160 a packet) whose decoded samples equal the file's, sample by sample.
pub async fn hear_prompt(
    sock: &UdpSocket,
    leg: SocketAddr,
    codec: Codec,
    pt: u8,
    name: &str,
) -> Heard {
    let expected: Vec<u8> = prompt_samples(name)
        .iter()
        .map(|&s| codec.encode(s))
        .collect();
    let frames = expected.len() / 160;
    assert!(frames > 10, "a real prompt");
    let mut got = Vec::with_capacity(expected.len());
    let (first, from) = recv_rtp(sock).await;
    assert_eq!(from, leg, "the prompt comes from the agent's leg");
    assert!(first.marker, "marker on the first prompt packet");
    assert_eq!(first.pt, pt);
    got.extend_from_slice(&first.payload);
    let (mut seq, mut ts) = (first.seq, first.ts);
    let mut last_at = Instant::now();
    for i in 1..frames {
        let (p, from) = recv_rtp(sock).await;
        assert_eq!(from, leg);
        assert!(!p.marker, "marker on prompt packet {i}");
        assert_eq!(p.pt, pt);
        assert_eq!(p.ssrc, first.ssrc, "one SSRC");
        assert_eq!(p.seq, seq.wrapping_add(1), "sequence at packet {i}");
        assert_eq!(p.ts, ts.wrapping_add(160), "timestamp at packet {i}");
        (seq, ts) = (p.seq, p.ts);
        got.extend_from_slice(&p.payload);
        last_at = Instant::now();
    }
    assert_eq!(got.len(), expected.len());
    let want: Vec<i16> = expected.iter().map(|&c| codec.decode(c)).collect();
    let heard: Vec<i16> = got.iter().map(|&c| codec.decode(c)).collect();
    if let Some(i) = (0..want.len()).find(|&i| want[i] != heard[i]) {
        panic!(
            "{name}: prompt differs at sample {i} (frame {}): {} != {}",
            i / 160,
            heard[i],
            want[i]
        );
    }
    Heard {
        first,
        seq,
        ts,
        frames,
        last_at,
    }
}
