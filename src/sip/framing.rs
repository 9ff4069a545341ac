//! Stream framing (RFC 3261 18.3): cut a TCP byte stream into messages by Content-Length,
//! with the size caps applied before a message is indexed; CRLF keep-alives are skipped.
//!
//! A Content-Length larger than the body a peer really sent would pull the next message into
//! this one's body, and both would be lost. So the bytes a Content-Length claims are looked at
//! before they are taken: where a line in them starts like a request (`INVITE sip:`...) or a
//! status line, the message is cut there. The cut message is then shorter than its
//! Content-Length, which the scanner refuses (400), and the next message is framed as usual. Only
//! bodies that may hold a SIP message (`message/*`, `multipart/*`) are taken as they are.
//!
//! Knows nothing of what the messages mean.

use bytes::{Buf, Bytes, BytesMut};

use super::grammar::{is_lws, parse_uint};
use super::msg::Hdr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Headers or the whole message exceed the size cap.
    TooLarge,
    /// Content-Length missing a number, or two different values.
    BadContentLength,
}

/// Accumulates stream bytes and yields whole messages.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max: usize,
}

impl Framer {
    pub fn new(max_message: usize) -> Framer {
        Framer {
            buf: BytesMut::with_capacity(4096),
            max: max_message,
        }
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed. After an error the
    /// stream cannot be resynchronised and should be closed.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        // Keep-alives (RFC 5626 double CRLF) and stray line breaks between messages.
        let lead = self
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        self.buf.advance(lead);
        if self.buf.is_empty() {
            return Ok(None);
        }
        let Some((head_len, body_at)) = find_blank(&self.buf) else {
            if self.buf.len() > self.max {
                return Err(FrameError::TooLarge);
            }
            return Ok(None);
        };
        let (cl, sip_body) = content_length(&self.buf[..head_len])?;
        let total = body_at
            .checked_add(cl.unwrap_or(0))
            .ok_or(FrameError::TooLarge)?;
        if total > self.max {
            return Err(FrameError::TooLarge);
        }
        if !sip_body {
            if let Some(p) = next_start(&self.buf, body_at, total) {
                return Ok(Some(self.buf.split_to(p).freeze()));
            }
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(self.buf.split_to(total).freeze()))
    }
}

/// Methods of RFC 3261 and its extensions: a line of a body that begins with one of these, a
/// space and a SIP or tel URI is taken for the start of the next request.
const METHODS: [&[u8]; 14] = [
    b"INVITE",
    b"ACK",
    b"BYE",
    b"CANCEL",
    b"OPTIONS",
    b"REGISTER",
    b"PRACK",
    b"SUBSCRIBE",
    b"NOTIFY",
    b"PUBLISH",
    b"INFO",
    b"REFER",
    b"MESSAGE",
    b"UPDATE",
];

/// Where the first line starting in `b[from..end]` (at `from` or after a line feed) begins a
/// request or status line. A line the buffer holds too little of to tell is not one: while
/// the claimed body is incomplete the framer waits anyway, and looks again with more bytes.
fn next_start(b: &[u8], from: usize, end: usize) -> Option<usize> {
    let stop = end.min(b.len());
    let mut at = from;
    while at < stop {
        if starts_message(&b[at..]) {
            return Some(at);
        }
        at += b[at..stop].iter().position(|&c| c == b'\n')? + 1;
    }
    None
}

/// `METHOD SP sip:` (or `sips:`, `tel:`) or `SIP/2.0 SP DIGIT` at the start of `b`. Methods are
/// case-sensitive (RFC 3261 7.1); the version and the scheme are not.
fn starts_message(b: &[u8]) -> bool {
    let ci = |at: usize, p: &[u8]| {
        b.get(at..at + p.len())
            .is_some_and(|x| x.eq_ignore_ascii_case(p))
    };
    if ci(0, b"SIP/2.0 ") {
        return b.get(8).is_some_and(u8::is_ascii_digit);
    }
    METHODS.iter().any(|m| {
        b.starts_with(m)
            && [&b" sip:"[..], b" sips:", b" tel:"]
                .iter()
                .any(|s| ci(m.len(), s))
    })
}

/// (end of the header block, start of the body).
fn find_blank(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&c| c == b'\n') {
        let lf = i + p;
        match b.get(lf + 1) {
            Some(b'\n') => return Some((lf + 1, lf + 2)),
            Some(b'\r') if b.get(lf + 2) == Some(&b'\n') => return Some((lf + 1, lf + 3)),
            _ => {}
        }
        i = lf + 1;
    }
    None
}

/// The Content-Length, and whether the Content-Type says the body may hold a SIP message.
fn content_length(head: &[u8]) -> Result<(Option<usize>, bool), FrameError> {
    let mut found: Option<usize> = None;
    let mut sip_body = false;
    for line in head.split(|&c| c == b'\n') {
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        match Hdr::of(name) {
            Hdr::ContentLength => {}
            Hdr::ContentType => {
                let v = trim(&line[colon + 1..]);
                sip_body |= [&b"message/"[..], b"multipart/"]
                    .iter()
                    .any(|p| v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p));
                continue;
            }
            _ => continue,
        }
        let v = parse_uint(trim(&line[colon + 1..]), u32::MAX as u64)
            .ok_or(FrameError::BadContentLength)? as usize;
        if found.is_some_and(|f| f != v) {
            return Err(FrameError::BadContentLength);
        }
        found = Some(v);
    }
    Ok((found, sip_body))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [f, rest @ ..] = s {
        if is_lws(*f) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., l] = s {
        if is_lws(*l) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_by_content_length_across_pushes() {
        let m1 = "OPTIONS sip:a SIP/2.0\r\nl: 4\r\n\r\nbody";
        let m2 = "BYE sip:b SIP/2.0\r\nContent-Length : 0\r\n\r\n";
        let mut f = Framer::new(1000);
        f.push(b"\r\n\r\n");
        f.push(&m1.as_bytes()[..10]);
        assert_eq!(f.next_message(), Ok(None));
        f.push(&m1.as_bytes()[10..]);
        f.push(b"\r\n\r\n");
        f.push(m2.as_bytes());
        assert_eq!(f.next_message().unwrap().unwrap(), m1.as_bytes());
        assert_eq!(f.next_message().unwrap().unwrap(), m2.as_bytes());
        assert_eq!(f.next_message(), Ok(None));
        assert_eq!(f.buffered(), 0);
    }

    /// A Content-Length larger than the body must not swallow the next message: the first is
    /// cut where the next starts (and is refused by the scanner for its Content-Length), the
    /// next is framed whole.
    #[test]
    fn a_long_content_length_does_not_swallow_the_next_message() {
        let next = "INVITE sip:+15550001111@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        let sdp = "v=0\r\ns=-\r\n";
        let cases = [
            // (first message, where it must be cut)
            ("BYE sip:a SIP/2.0\r\nContent-Length: 50\r\n\r\n".to_string(), 0),
            (
                format!(
                    "INVITE sip:a SIP/2.0\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                    sdp.len() + 5
                ),
                sdp.len(),
            ),
            (
                "MESSAGE sip:a SIP/2.0\r\nl: 99\r\nc: text/plain\r\n\r\nhi\r\n".to_string(),
                4,
            ),
        ];
        for (first, body_kept) in cases {
            let mut f = Framer::new(4000);
            f.push(first.as_bytes());
            assert_eq!(f.next_message(), Ok(None), "waits for the body: {first}");
            f.push(next.as_bytes());
            let head = first.find("\r\n\r\n").unwrap() + 4;
            let got = f.next_message().unwrap().unwrap();
            assert_eq!(&got[..], &first.as_bytes()[..head + body_kept], "{first}");
            let m = super::super::msg::Message::parse(got, &Default::default(), false).unwrap();
            assert_eq!(
                m.problem,
                Some(super::super::msg::Problem::ContentLengthMismatch)
            );
            assert_eq!(f.next_message().unwrap().unwrap(), next.as_bytes());
            assert_eq!(f.buffered(), 0);
        }
    }

    /// What is no misframe is framed by Content-Length as before: a body that may carry a SIP
    /// message, a body whose last line runs into the next message, lower-case methods.
    #[test]
    fn bodies_that_only_look_like_messages_are_kept() {
        let next = "OPTIONS sip:b SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        let firsts = [
            "NOTIFY sip:a SIP/2.0\r\nContent-Type: message/sipfrag\r\nContent-Length: 16\r\n\r\nSIP/2.0 200 OK\r\n",
            "MESSAGE sip:a SIP/2.0\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
            "MESSAGE sip:a SIP/2.0\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n\r\ninvite sip:x now\n",
        ];
        for first in firsts {
            let mut f = Framer::new(4000);
            f.push(first.as_bytes());
            f.push(next.as_bytes());
            assert_eq!(f.next_message().unwrap().unwrap(), first.as_bytes());
            assert_eq!(f.next_message().unwrap().unwrap(), next.as_bytes());
        }
    }

    #[test]
    fn caps_and_bad_lengths() {
        let mut f = Framer::new(50);
        f.push(&[b'a'; 60]);
        assert_eq!(f.next_message(), Err(FrameError::TooLarge));
        let mut f = Framer::new(500);
        f.push(b"X sip:a SIP/2.0\r\nContent-Length: 9999\r\n\r\n");
        assert_eq!(f.next_message(), Err(FrameError::TooLarge));
        let mut f = Framer::new(500);
        f.push(b"X sip:a SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(f.next_message(), Err(FrameError::BadContentLength));
        let mut f = Framer::new(500);
        f.push(b"X sip:a SIP/2.0\r\nl: -1\r\n\r\n");
        assert_eq!(f.next_message(), Err(FrameError::BadContentLength));
    }
}
