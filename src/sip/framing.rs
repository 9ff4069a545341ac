//! Stream framing (RFC 3261 18.3): cut a TCP byte stream into messages by Content-Length,
//! with the size caps applied before a message is indexed; CRLF keep-alives are skipped.
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
        let cl = content_length(&self.buf[..head_len])?.unwrap_or(0);
        let total = body_at.checked_add(cl).ok_or(FrameError::TooLarge)?;
        if total > self.max {
            return Err(FrameError::TooLarge);
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(self.buf.split_to(total).freeze()))
    }
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

fn content_length(head: &[u8]) -> Result<Option<usize>, FrameError> {
    let mut found: Option<usize> = None;
    for line in head.split(|&c| c == b'\n') {
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if Hdr::of(name) != Hdr::ContentLength {
            continue;
        }
        let v = parse_uint(trim(&line[colon + 1..]), u32::MAX as u64)
            .ok_or(FrameError::BadContentLength)? as usize;
        if found.is_some_and(|f| f != v) {
            return Err(FrameError::BadContentLength);
        }
        found = Some(v);
    }
    Ok(found)
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
