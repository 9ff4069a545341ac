//! Just enough SDP (RFC 4566, RFC 3264 offer/answer) to anchor a call's audio: find the session
//! and audio `c=` lines, the audio `m=` port and payload types, `a=rtpmap`, `a=rtcp` and the
//! direction, and rewrite the addresses and ports to our own while leaving every other byte as it
//! was (line endings included).
//!
//! For early media the agent answers an offer itself ([`Sdp::answer`]): one G.711 codec and, when
//! offered, RFC 4733 telephone-events, every other stream refused.
//!
//! Works on bytes because `s=`/`i=` lines may hold any charset; only the lines it reads are
//! interpreted, as ASCII. Knows nothing of SIP, sockets or sessions; never panics on input.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::g711::Codec;

/// Why an SDP body could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SdpError {
    /// No `m=audio` line at all.
    NoAudio,
    /// A line we need is malformed: 1-based line number and what was expected.
    BadLine { line: usize, expected: &'static str },
    /// The audio stream has no `c=` at media or session level (RFC 4566 5.7 requires one).
    NoConnection,
    /// Bigger than any real SDP; refused before parsing.
    TooLarge(usize),
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::NoAudio => write!(f, "SDP has no m=audio line"),
            SdpError::BadLine { line, expected } => {
                write!(f, "SDP line {line}: expected {expected}")
            }
            SdpError::NoConnection => write!(f, "SDP audio stream has no c= line"),
            SdpError::TooLarge(n) => write!(f, "SDP body of {n} bytes exceeds {MAX_SDP} bytes"),
        }
    }
}

impl std::error::Error for SdpError {}

/// Larger bodies are refused (a real audio SDP is well under 2 kB).
pub const MAX_SDP: usize = 16 * 1024;

/// Media direction (RFC 3264 5.1); media-level overrides session-level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// What we learned from one SDP body about its audio stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioInfo {
    /// Connection address in effect for the audio stream (media-level `c=`, else session-level).
    /// `None` for the null address `0.0.0.0` (the RFC 2543 way to put a call on hold).
    pub addr: Option<IpAddr>,
    /// The audio `m=` port; 0 means the stream is rejected/disabled.
    pub port: u16,
    /// Payload types in `m=` order.
    pub payloads: Vec<u8>,
    /// `a=rtpmap` entries of the audio section: (payload type, encoding name, clock rate).
    pub rtpmap: Vec<(u8, String, u32)>,
    /// `a=rtcp` (RFC 3605): port and optional address.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    pub rtcp_mux: bool,
    pub direction: Direction,
    /// Transport protocol of the audio `m=` line (`RTP/AVP`, `RTP/SAVP`, ...).
    pub proto: String,
    /// SRTP keying is present (`a=crypto` in the audio section, or `a=fingerprint` for DTLS).
    pub keyed: bool,
}

impl AudioInfo {
    /// Where the sender of this SDP wants to receive RTP.
    pub fn rtp_addr(&self) -> Option<SocketAddr> {
        match (self.addr, self.port) {
            (Some(ip), p) if p != 0 => Some(SocketAddr::new(ip, p)),
            _ => None,
        }
    }

    /// Where the sender of this SDP wants to receive RTCP: `a=rtcp`, the RTP port with
    /// rtcp-mux, else RTP port + 1 (RFC 3550 11).
    pub fn rtcp_addr(&self) -> Option<SocketAddr> {
        let rtp = self.rtp_addr()?;
        match self.rtcp {
            Some((port, ip)) => Some(SocketAddr::new(ip.unwrap_or(rtp.ip()), port)),
            None if self.rtcp_mux => Some(rtp),
            None => Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?)),
        }
    }

    /// Plain RTP that we may read and restamp. Encrypted media (SRTP via SDES or DTLS, including
    /// "best effort" `a=crypto` on `RTP/AVP`) cannot carry our prompt and would fail
    /// authentication after restamping, so it is not anchored.
    pub fn plain_rtp(&self) -> bool {
        let p = self.proto.as_str();
        (p.eq_ignore_ascii_case("RTP/AVP") || p.eq_ignore_ascii_case("RTP/AVPF")) && !self.keyed
    }

    /// The payload type this SDP uses for `codec`, if it lists it (static number or rtpmap name).
    pub fn pt_for(&self, codec: Codec) -> Option<u8> {
        self.payloads
            .iter()
            .copied()
            .find(|&pt| self.codec_of(pt) == Some(codec))
    }

    /// The first G.711 codec in `m=` order (the answerer's preference), with its payload type.
    pub fn first_g711(&self) -> Option<(Codec, u8)> {
        self.payloads
            .iter()
            .find_map(|&pt| self.codec_of(pt).map(|c| (c, pt)))
    }

    /// The payload type this SDP lists for RFC 4733 telephone-events at 8000 Hz (DTMF digits).
    pub fn telephone_event(&self) -> Option<u8> {
        self.payloads.iter().copied().find(|&pt| {
            self.rtpmap.iter().any(|(p, name, rate)| {
                *p == pt && *rate == 8000 && name.eq_ignore_ascii_case("telephone-event")
            })
        })
    }

    fn codec_of(&self, pt: u8) -> Option<Codec> {
        if let Some((_, name, rate)) = self.rtpmap.iter().find(|(p, _, _)| *p == pt) {
            if *rate != 8000 {
                return None;
            }
            return match name.to_ascii_uppercase().as_str() {
                "PCMU" => Some(Codec::Pcmu),
                "PCMA" => Some(Codec::Pcma),
                _ => None,
            };
        }
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }
}

/// One line of the body: byte range of its content (without the line ending) and of the whole
/// line (with it).
#[derive(Clone, Copy, Debug)]
struct Line {
    start: usize,
    end: usize,
    next: usize,
}

/// Byte positions of the lines a rewrite touches.
#[derive(Clone, Debug)]
struct Layout {
    lines: Vec<Line>,
    session_c: Option<usize>,
    audio_m: usize,
    audio_c: Option<usize>,
    audio_rtcp: Option<usize>,
    /// Where a media-level `c=` may be inserted in the audio section (index of the line before
    /// which it goes: after `m=` and an optional `i=`).
    audio_c_insert: usize,
    /// Another active `m=` section relies on the session-level `c=`.
    others_use_session_c: bool,
    /// Every `m=` line, in order (an answer has one for each).
    m_lines: Vec<usize>,
}

/// A parsed SDP body: the facts about its audio stream plus where those facts sit in the bytes.
#[derive(Clone, Debug)]
pub struct Sdp<'a> {
    raw: &'a [u8],
    layout: Layout,
    pub audio: AudioInfo,
}

fn trim_cr(raw: &[u8], start: usize, end: usize) -> usize {
    if end > start && raw[end - 1] == b'\r' {
        end - 1
    } else {
        end
    }
}

fn split_lines(raw: &[u8]) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < raw.len() {
        let (end, next) = match raw[start..].iter().position(|&b| b == b'\n') {
            Some(i) => (trim_cr(raw, start, start + i), start + i + 1),
            None => (raw.len(), raw.len()),
        };
        out.push(Line { start, end, next });
        start = next;
    }
    out
}

fn text(raw: &[u8], l: Line) -> &str {
    // Lines we interpret must be ASCII; anything else is reported as malformed by the caller.
    std::str::from_utf8(&raw[l.start..l.end]).unwrap_or("")
}

/// `c=IN IP4 192.0.2.1` -> address (None for the null address). TTL/count suffixes are ignored.
fn parse_c(v: &str, line: usize) -> Result<Option<IpAddr>, SdpError> {
    let bad = SdpError::BadLine {
        line,
        expected: "c=IN IP4|IP6 <address>",
    };
    let mut it = v.split_ascii_whitespace();
    if it.next() != Some("IN") {
        return Err(bad);
    }
    let fam = it.next().ok_or(bad.clone())?;
    let addr = it.next().ok_or(bad.clone())?;
    let addr = addr.split('/').next().unwrap_or(addr);
    let ip: IpAddr = addr.parse().map_err(|_| bad.clone())?;
    match (fam, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => {}
        _ => return Err(bad),
    }
    Ok(if ip.is_unspecified() { None } else { Some(ip) })
}

impl<'a> Sdp<'a> {
    /// Parse a body. Only the first `m=audio` section is used (the one we anchor).
    // Long on purpose: one pass over the SDP lines, one arm per line type.
    #[allow(clippy::too_many_lines)]
    pub fn parse(raw: &'a [u8]) -> Result<Self, SdpError> {
        if raw.len() > MAX_SDP {
            return Err(SdpError::TooLarge(raw.len()));
        }
        let lines = split_lines(raw);
        let mut session_c = None;
        let mut session_addr = None;
        let mut session_dir = None;
        let mut audio_m = None;
        let mut audio_c = None;
        let mut audio_addr = None;
        let mut audio_rtcp = None;
        let mut audio_c_insert = 0;
        let mut others_use_session_c = false;
        let mut m_lines = Vec::new();
        let mut audio = AudioInfo {
            addr: None,
            port: 0,
            payloads: Vec::new(),
            rtpmap: Vec::new(),
            rtcp: None,
            rtcp_mux: false,
            direction: Direction::SendRecv,
            proto: String::new(),
            keyed: false,
        };
        let mut media_dir = None;
        // Section we are in: None = session, Some(true) = our audio, Some(false) = other media.
        let mut section: Option<bool> = None;
        // For other media sections: (active, has its own c=).
        let mut other: Option<(bool, bool)> = None;
        let close_other = |other: &mut Option<(bool, bool)>, flag: &mut bool| {
            if let Some((active, own_c)) = other.take() {
                if active && !own_c {
                    *flag = true;
                }
            }
        };

        for (i, &l) in lines.iter().enumerate() {
            let n = i + 1;
            let t = text(raw, l);
            if t.len() < 2 || t.as_bytes()[1] != b'=' {
                // Blank trailing lines are common; anything else without "x=" is tolerated but
                // never interpreted.
                continue;
            }
            let (kind, v) = (t.as_bytes()[0], &t[2..]);
            match (kind, section) {
                (b'm', _) => {
                    close_other(&mut other, &mut others_use_session_c);
                    m_lines.push(i);
                    let bad = SdpError::BadLine {
                        line: n,
                        expected: "m=<media> <port> <proto> <fmt> ...",
                    };
                    // Split as `rewrite` does (spaces only, the media first on the line), so
                    // the port it replaces is the port read here.
                    if v.starts_with(' ') {
                        return Err(bad);
                    }
                    let mut it = v.split(' ').filter(|t| !t.is_empty());
                    let media = it.next().ok_or(bad.clone())?;
                    let port_tok = it.next().ok_or(bad.clone())?;
                    let port: u16 =
                        uint(port_tok.split('/').next().unwrap_or("")).ok_or(bad.clone())?;
                    let proto = it.next().ok_or(bad.clone())?;
                    if media == "audio" && audio_m.is_none() {
                        audio_m = Some(i);
                        audio.proto = proto.to_string();
                        audio_c_insert = i + 1;
                        audio.port = port;
                        for f in it {
                            // Non-numeric formats only occur with non-RTP protocols; skip them.
                            if let Ok(pt) = f.parse::<u8>() {
                                if pt < 128 {
                                    audio.payloads.push(pt);
                                }
                            }
                        }
                        section = Some(true);
                    } else {
                        section = Some(false);
                        other = Some((port != 0, false));
                    }
                }
                (b'c', None) => {
                    session_c = Some(i);
                    session_addr = parse_c(v, n)?;
                }
                (b'c', Some(true)) => {
                    audio_c = Some(i);
                    audio_addr = parse_c(v, n)?;
                }
                (b'c', Some(false)) => {
                    if let Some(o) = other.as_mut() {
                        o.1 = true;
                    }
                }
                (b'i', Some(true)) if audio_c_insert == i => audio_c_insert = i + 1,
                (b'a', Some(in_audio)) if in_audio => {
                    let (name, val) = match v.split_once(':') {
                        Some((a, b)) => (a, Some(b)),
                        None => (v, None),
                    };
                    match (name, val) {
                        ("rtpmap", Some(val)) => {
                            let bad = SdpError::BadLine {
                                line: n,
                                expected: "a=rtpmap:<pt> <name>/<rate>[/<channels>]",
                            };
                            let (pt, enc) = val.split_once(' ').ok_or(bad.clone())?;
                            let pt: u8 = pt.trim().parse().map_err(|_| bad.clone())?;
                            let mut parts = enc.trim().split('/');
                            let name = parts.next().unwrap_or("").to_string();
                            let rate: u32 = parts
                                .next()
                                .unwrap_or("")
                                .parse()
                                .map_err(|_| bad.clone())?;
                            if audio.rtpmap.len() < 64 {
                                audio.rtpmap.push((pt, name, rate));
                            }
                        }
                        ("rtcp", Some(val)) => {
                            let bad = SdpError::BadLine {
                                line: n,
                                expected: "a=rtcp:<port> [IN IP4|IP6 <address>]",
                            };
                            let mut it = val.splitn(2, ' ');
                            let port: u16 =
                                uint(it.next().unwrap_or("").trim()).ok_or(bad.clone())?;
                            let addr = match it.next() {
                                Some(rest) if !rest.trim().is_empty() => {
                                    parse_c(rest, n).map_err(|_| bad.clone())?
                                }
                                _ => None,
                            };
                            audio_rtcp = Some(i);
                            audio.rtcp = Some((port, addr));
                        }
                        ("rtcp-mux", None) => audio.rtcp_mux = true,
                        ("crypto" | "fingerprint", Some(_)) => audio.keyed = true,
                        _ => {
                            if let Some(d) = direction(name) {
                                media_dir = Some(d);
                            }
                        }
                    }
                }
                (b'a', None) if v.starts_with("fingerprint:") => audio.keyed = true,
                (b'a', None) => {
                    if let Some(d) = direction(v) {
                        session_dir = Some(d);
                    }
                }
                _ => {}
            }
        }
        close_other(&mut other, &mut others_use_session_c);

        let audio_m = audio_m.ok_or(SdpError::NoAudio)?;
        if audio_c.is_none() && session_c.is_none() {
            return Err(SdpError::NoConnection);
        }
        audio.addr = if audio_c.is_some() {
            audio_addr
        } else {
            session_addr
        };
        audio.direction = media_dir.or(session_dir).unwrap_or_default();
        Ok(Sdp {
            raw,
            layout: Layout {
                lines,
                session_c,
                audio_m,
                audio_c,
                audio_rtcp,
                audio_c_insert,
                others_use_session_c,
                m_lines,
            },
            audio,
        })
    }

    /// Our own answer to this offer (RFC 3264 6), for early media from the agent: the audio
    /// stream at `ip:rtp_port` with `codec` at the payload type the offer gave it, plus
    /// telephone-events when offered (so the caller can press a digit), every other stream
    /// refused with port 0. The direction mirrors the offer's: `None` when the offerer would
    /// not receive (sendonly, inactive) or lists no G.711, so nothing could be heard.
    pub fn answer(&self, session: u64, ip: IpAddr, rtp_port: u16) -> Option<Vec<u8>> {
        let a = &self.audio;
        let (codec, pt) = a.first_g711()?;
        let dir = match a.direction {
            Direction::SendRecv => "sendrecv",
            Direction::RecvOnly => "sendonly",
            Direction::SendOnly | Direction::Inactive => return None,
        };
        let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let mut out = format!(
            "v=0\r\no=scamguard {session} 1 IN {fam} {ip}\r\ns=scamguard\r\nc=IN {fam} {ip}\r\nt=0 0\r\n"
        );
        for &i in &self.layout.m_lines {
            if i != self.layout.audio_m {
                // Refused: same media and protocol, port 0, one format (RFC 3264 6).
                let line = text(self.raw, self.layout.lines[i]);
                let mut t = line.get(2..).unwrap_or("").split_ascii_whitespace();
                let (media, _, proto) = (t.next(), t.next(), t.next());
                let fmt = t.next().unwrap_or("0");
                out.push_str(&format!(
                    "m={} 0 {} {fmt}\r\n",
                    media.unwrap_or("application"),
                    proto.unwrap_or("RTP/AVP")
                ));
                continue;
            }
            let te = a.telephone_event();
            let fmts = te.map_or_else(|| pt.to_string(), |te| format!("{pt} {te}"));
            out.push_str(&format!("m=audio {rtp_port} {} {fmts}\r\n", a.proto));
            out.push_str(&format!("a=rtpmap:{pt} {}/8000\r\n", codec.name()));
            if let Some(te) = te {
                out.push_str(&format!(
                    "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n"
                ));
            }
            out.push_str(&format!("a=ptime:20\r\na={dir}\r\n"));
        }
        Some(out.into_bytes())
    }

    /// The body with the audio stream pointed at `ip:rtp_port` (RTCP at `rtp_port + 1`).
    ///
    /// Touches only the audio `m=` port, the `c=` in effect for audio and `a=rtcp`. A null
    /// connection address (hold) and a rejected stream (port 0) are kept as they are, so their
    /// meaning survives. When other active streams share the session-level `c=`, that line is
    /// left alone and a media-level `c=` is inserted in the audio section instead.
    pub fn rewrite(&self, ip: IpAddr, rtp_port: u16) -> Vec<u8> {
        let lay = &self.layout;
        let raw = self.raw;
        let c_line = format!("c=IN {} {}", if ip.is_ipv4() { "IP4" } else { "IP6" }, ip);
        let hold = self.audio.addr.is_none();
        let mut out = Vec::with_capacity(raw.len() + 40);
        let mut insert_c = false;
        let mut replace_session_c = false;
        if !hold {
            match (lay.audio_c, lay.session_c) {
                (Some(_), _) => {}
                (None, Some(_)) if lay.others_use_session_c => insert_c = true,
                (None, Some(_)) => replace_session_c = true,
                (None, None) => {}
            }
        }
        let eol = |l: Line| &raw[l.end..l.next];
        for (i, &l) in lay.lines.iter().enumerate() {
            if insert_c && i == lay.audio_c_insert {
                out.extend_from_slice(c_line.as_bytes());
                let m = lay.lines[lay.audio_m];
                let e = eol(m);
                out.extend_from_slice(if e.is_empty() { b"\r\n" } else { e });
            }
            let content: Option<Vec<u8>> = if i == lay.audio_m && self.audio.port != 0 {
                Some(replace_token(&raw[l.start..l.end], 1, rtp_port))
            } else if !hold
                && (Some(i) == lay.audio_c || (replace_session_c && Some(i) == lay.session_c))
            {
                Some(c_line.as_bytes().to_vec())
            } else if Some(i) == lay.audio_rtcp && self.audio.port != 0 {
                let t = &raw[l.start..l.end];
                match self.audio.rtcp {
                    Some((_, Some(_))) if !hold => {
                        let p = rtp_port.wrapping_add(1);
                        Some(format!("a=rtcp:{p} {}", &c_line[2..]).into_bytes())
                    }
                    _ => Some(replace_rtcp_port(t, rtp_port.wrapping_add(1))),
                }
            } else {
                None
            };
            match content {
                Some(c) => {
                    out.extend_from_slice(&c);
                    out.extend_from_slice(eol(l));
                }
                None => out.extend_from_slice(&raw[l.start..l.next]),
            }
        }
        if insert_c && lay.audio_c_insert >= lay.lines.len() {
            // The body's own last line may be unterminated (the m= line or a trailing i=), and
            // the c= must not be glued onto it.
            let e = eol(lay.lines[lay.audio_m]);
            let e: &[u8] = if e.is_empty() { b"\r\n" } else { e };
            if lay.lines.last().is_some_and(|l| l.next == l.end) {
                out.extend_from_slice(e);
            }
            out.extend_from_slice(c_line.as_bytes());
            out.extend_from_slice(e);
        }
        out
    }
}

fn direction(name: &str) -> Option<Direction> {
    Some(match name {
        "sendrecv" => Direction::SendRecv,
        "sendonly" => Direction::SendOnly,
        "recvonly" => Direction::RecvOnly,
        "inactive" => Direction::Inactive,
        _ => return None,
    })
}

/// A port or number as SDP writes it (RFC 4566: `1*DIGIT`). `str::parse` also takes a leading
/// `+`, which `rewrite` would leave behind the port it writes (`40002+9170`).
fn uint<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Replace the port number of the `idx`-th space-separated token (keeping any `/count`).
fn replace_token(line: &[u8], idx: usize, port: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 5);
    let mut tok = 0;
    let mut i = 0;
    while i < line.len() {
        if line[i] == b' ' {
            out.push(b' ');
            i += 1;
            // Several spaces count as one separator.
            while i < line.len() && line[i] == b' ' {
                out.push(b' ');
                i += 1;
            }
            tok += 1;
            continue;
        }
        if tok == idx {
            out.extend_from_slice(port.to_string().as_bytes());
            while i < line.len() && line[i].is_ascii_digit() {
                i += 1;
            }
            tok += 1; // only once
            continue;
        }
        out.push(line[i]);
        i += 1;
    }
    out
}

/// `a=rtcp:53021` -> `a=rtcp:<port>`, keeping anything after the number.
fn replace_rtcp_port(line: &[u8], port: u16) -> Vec<u8> {
    let prefix = b"a=rtcp:";
    let mut out = prefix.to_vec();
    let rest = &line[prefix.len().min(line.len())..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    out.extend_from_slice(port.to_string().as_bytes());
    out.extend_from_slice(&rest[digits..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn answers_an_offer_with_one_codec_and_telephone_events() {
        let with_video = format!("{OFFER}m=video 51372 RTP/AVP 99\r\na=rtpmap:99 H264/90000\r\n");
        let s = Sdp::parse(with_video.as_bytes()).unwrap();
        assert_eq!(s.audio.telephone_event(), Some(101));
        let a = s.answer(7, ip("203.0.113.5"), 30000).unwrap();
        assert_eq!(
            String::from_utf8(a).unwrap(),
            "v=0\r\no=scamguard 7 1 IN IP4 203.0.113.5\r\ns=scamguard\r\nc=IN IP4 203.0.113.5\r\n\
             t=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n\
             a=sendrecv\r\nm=video 0 RTP/AVP 99\r\n"
        );
        // A-law first, no DTMF, the offerer only listening: we only send.
        let recv = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                    m=audio 4000 RTP/AVP 8 0\r\na=recvonly\r\n";
        let a = Sdp::parse(recv.as_bytes())
            .unwrap()
            .answer(1, ip("2001:db8::5"), 30002);
        assert_eq!(
            String::from_utf8(a.unwrap()).unwrap(),
            "v=0\r\no=scamguard 1 1 IN IP6 2001:db8::5\r\ns=scamguard\r\nc=IN IP6 2001:db8::5\r\n\
             t=0 0\r\nm=audio 30002 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\n\
             a=sendonly\r\n"
        );
        // Nothing to be heard: no answer.
        for bad in [
            recv.replace("recvonly", "sendonly"),
            recv.replace("recvonly", "inactive"),
            recv.replace("8 0", "9"),
        ] {
            assert_eq!(
                Sdp::parse(bad.as_bytes())
                    .unwrap()
                    .answer(1, ip("192.0.2.9"), 30000),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_audio_facts() {
        let s = Sdp::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(s.audio.addr, Some(ip("198.51.100.7")));
        assert_eq!(s.audio.port, 49170);
        assert_eq!(s.audio.payloads, vec![0, 8, 101]);
        assert_eq!(s.audio.first_g711(), Some((Codec::Pcmu, 0)));
        assert_eq!(s.audio.pt_for(Codec::Pcma), Some(8));
        assert_eq!(
            s.audio.rtcp_addr(),
            Some("198.51.100.7:49171".parse().unwrap())
        );
        assert_eq!(s.audio.direction, Direction::SendRecv);
    }

    // (input, rewritten with 203.0.113.5:30000) -- byte-exact.
    const REWRITES: &[(&str, &str)] = &[
        // session-level c= only: rewritten in place, o= untouched
        (OFFER, "v=0\r\no=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"),
        // media-level c= and a=rtcp with address; LF line endings kept
        ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=x\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 8\nc=IN IP4 10.0.0.2\na=rtcp:4001 IN IP4 10.0.0.2\na=sendonly\n",
         "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=x\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 30000 RTP/AVP 8\nc=IN IP4 203.0.113.5\na=rtcp:30001 IN IP4 203.0.113.5\na=sendonly\n"),
        // a=rtcp port only
        ("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:4011\r\n",
         "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtcp:30001\r\n"),
        // hold with the null address: c= kept, port still anchored
        ("v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n",
         "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=sendonly\r\n"),
        // rejected audio (port 0): port kept
        ("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
         "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"),
        // video shares the session c=: session c= kept, media-level c= inserted after m= and i=
        ("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\ni=voice\r\na=sendrecv\r\nm=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
         "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\ni=voice\r\nc=IN IP4 203.0.113.5\r\na=sendrecv\r\nm=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"),
        // rejected video does not need the session c=
        ("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n",
         "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n"),
        // IPv6 remote, no trailing line ending, non-UTF-8 session name kept
        ("v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=caf\u{e9}\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0",
         "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=caf\u{e9}\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 30000 RTP/AVP 8 0"),
        // audio last, after video that shares the session c=, ending in an unterminated i=:
        // the inserted c= starts a line of its own (found by the sdp fuzz target)
        ("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\nm=audio 4000 RTP/AVP 0\r\ni=voice",
         "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\nm=audio 30000 RTP/AVP 0\r\ni=voice\r\nc=IN IP4 203.0.113.5\r\n"),
    ];

    #[test]
    fn rewrite_table() {
        for (i, (input, want)) in REWRITES.iter().enumerate() {
            // The table is written as str; treat \u{e9} as the single Latin-1 byte it stands for.
            let input: Vec<u8> = input.chars().map(|c| c as u32 as u8).collect();
            let want: Vec<u8> = want.chars().map(|c| c as u32 as u8).collect();
            let s = Sdp::parse(&input).unwrap_or_else(|e| panic!("case {i}: {e}"));
            let got = s.rewrite(ip("203.0.113.5"), 30000);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "case {i}"
            );
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn rewrite_to_ipv6() {
        let s = Sdp::parse(OFFER.as_bytes()).unwrap();
        let got = String::from_utf8(s.rewrite(ip("2001:db8::5"), 30002)).unwrap();
        assert!(got.contains("\r\nc=IN IP6 2001:db8::5\r\n"), "{got}");
        assert!(
            got.contains("\r\nm=audio 30002 RTP/AVP 0 8 101\r\n"),
            "{got}"
        );
    }

    #[test]
    fn codec_detection_table() {
        // (m= formats and rtpmaps, first G.711)
        let cases: &[(&str, Option<(Codec, u8)>)] = &[
            ("m=audio 1 RTP/AVP 0 8\r\n", Some((Codec::Pcmu, 0))),
            ("m=audio 1 RTP/AVP 8 0\r\n", Some((Codec::Pcma, 8))),
            ("m=audio 1 RTP/AVP 18 8\r\n", Some((Codec::Pcma, 8))),
            ("m=audio 1 RTP/AVP 18 9 101\r\n", None),
            (
                "m=audio 1 RTP/AVP 96\r\na=rtpmap:96 pcma/8000\r\n",
                Some((Codec::Pcma, 96)),
            ),
            (
                "m=audio 1 RTP/AVP 96 97\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:97 PCMU/8000\r\n",
                Some((Codec::Pcmu, 97)),
            ),
            // a static number remapped to something else is not G.711
            ("m=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU/16000\r\n", None),
        ];
        for (m, want) in cases {
            let body = format!(
                "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n{m}"
            );
            let s = Sdp::parse(body.as_bytes()).unwrap();
            assert_eq!(s.audio.first_g711(), *want, "{m}");
        }
    }

    #[test]
    fn encrypted_media_is_recognised() {
        let cases = [
            ("", "RTP/AVP", "", true),
            ("", "RTP/AVPF", "", true),
            ("", "RTP/SAVP", "", false),
            ("", "UDP/TLS/RTP/SAVPF", "", false),
            ("", "RTP/AVP", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n", false),
            ("a=fingerprint:sha-256 AB:CD\r\n", "RTP/AVP", "", false),
        ];
        for (sess, proto, media, plain) in cases {
            let body = format!("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n{sess}m=audio 1 {proto} 0\r\n{media}");
            assert_eq!(
                Sdp::parse(body.as_bytes()).unwrap().audio.plain_rtp(),
                plain,
                "{body}"
            );
        }
    }

    #[test]
    fn direction_table() {
        let cases = [
            ("", "", Direction::SendRecv),
            ("a=sendonly\r\n", "", Direction::SendOnly),
            ("a=sendonly\r\n", "a=recvonly\r\n", Direction::RecvOnly),
            ("", "a=inactive\r\n", Direction::Inactive),
        ];
        for (sess, media, want) in cases {
            let body = format!("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n{sess}m=audio 1 RTP/AVP 0\r\n{media}");
            assert_eq!(Sdp::parse(body.as_bytes()).unwrap().audio.direction, want);
        }
    }

    #[test]
    fn errors_table() {
        let head = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\n";
        let cases: Vec<(String, SdpError)> = vec![
            (format!("{head}c=IN IP4 10.0.0.1\r\nt=0 0\r\nm=video 1 RTP/AVP 96\r\n"), SdpError::NoAudio),
            (format!("{head}t=0 0\r\nm=audio 1 RTP/AVP 0\r\n"), SdpError::NoConnection),
            (format!("{head}c=IN IP4 10.0.0.300\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n"),
             SdpError::BadLine { line: 4, expected: "c=IN IP4|IP6 <address>" }),
            (format!("{head}c=IN IP6 10.0.0.1\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n"),
             SdpError::BadLine { line: 4, expected: "c=IN IP4|IP6 <address>" }),
            (format!("{head}c=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 70000 RTP/AVP 0\r\n"),
             SdpError::BadLine { line: 6, expected: "m=<media> <port> <proto> <fmt> ..." }),
            (format!("{head}c=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio\r\n"),
             SdpError::BadLine { line: 6, expected: "m=<media> <port> <proto> <fmt> ..." }),
            (format!("{head}c=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:x PCMU/8000\r\n"),
             SdpError::BadLine { line: 7, expected: "a=rtpmap:<pt> <name>/<rate>[/<channels>]" }),
            (format!("{head}c=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\na=rtcp:abc\r\n"),
             SdpError::BadLine { line: 7, expected: "a=rtcp:<port> [IN IP4|IP6 <address>]" }),
            (String::new(), SdpError::NoAudio),
            ("x".repeat(MAX_SDP + 1), SdpError::TooLarge(MAX_SDP + 1)),
        ];
        for (body, want) in cases {
            assert_eq!(Sdp::parse(body.as_bytes()).unwrap_err(), want, "{body:?}");
        }
    }

    /// Found by the `sdp` fuzz target: `str::parse` took `+9170` as a port, and the rewrite
    /// then wrote `m=audio 40002+9170 ...`, which does not parse. A port is digits only, and the
    /// port read is the one the rewrite replaces (a tab is not a separator for either).
    #[test]
    fn a_port_is_digits_and_the_rewrite_replaces_it() {
        let head = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n";
        let m_line = SdpError::BadLine {
            line: 6,
            expected: "m=<media> <port> <proto> <fmt> ...",
        };
        let signed = format!("{head}m=audio +9170 RTP/AVP 0\r\n");
        assert_eq!(Sdp::parse(signed.as_bytes()).unwrap_err(), m_line);
        let rtcp = format!("{head}m=audio 9170 RTP/AVP 0\r\na=rtcp:+9171\r\n");
        assert!(Sdp::parse(rtcp.as_bytes()).is_err());
        // `audio\t9170` is one token, so the port would be `RTP/AVP`.
        let tabbed = format!("{head}m=audio\t9170 RTP/AVP 0\r\n");
        assert_eq!(Sdp::parse(tabbed.as_bytes()).unwrap_err(), m_line);
        // A space before the media: the rewrite would have put the port in place of `audio`.
        let spaced = format!("{head}m=  audio 9170 RTP/AVP 0\r\n");
        assert_eq!(Sdp::parse(spaced.as_bytes()).unwrap_err(), m_line);
        for body in [
            OFFER.to_string(),
            format!("{head}m=audio  9170  RTP/AVP 0\r\n"),
        ] {
            let s = Sdp::parse(body.as_bytes()).unwrap();
            let again = s.rewrite(ip("203.0.113.5"), 30000);
            let back = Sdp::parse(&again).unwrap();
            assert_eq!(
                back.audio.rtp_addr(),
                Some("203.0.113.5:30000".parse().unwrap())
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let mut b: Vec<u8> = OFFER.as_bytes().to_vec();
            for _ in 0..rng.usize(1..6) {
                let i = rng.usize(..b.len());
                b[i] = rng.u8(..);
            }
            let cut = rng.usize(..=b.len());
            if let Ok(s) = Sdp::parse(&b[..cut]) {
                let _ = s.rewrite(ip("203.0.113.5"), 30000);
            }
        }
    }
}
