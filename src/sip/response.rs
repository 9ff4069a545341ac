//! Responses we originate (100 Trying, 400, 482, 483, 503, the hook's 603, 408 and 487 on
//! timeout and cancel...), built from the request they answer: its Via, From, To, Call-ID and
//! CSeq lines copied byte for byte, so the response matches the transaction at every hop.
//!
//! Knows nothing of when to answer or with what: the proxy core decides, this only writes.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::msg::{Hdr, Message};

/// The request carries what every response needs; without it an answer could match no
/// transaction upstream, so it is dropped instead.
pub(super) fn can_answer(msg: &Message) -> bool {
    [Hdr::Via, Hdr::From, Hdr::To, Hdr::CallId, Hdr::CSeq]
        .iter()
        .all(|k| msg.header(*k).is_some())
}

/// A response built from a request: all Via in order, From, To (+ tag), Call-ID, CSeq.
pub(crate) fn build_response(
    req: &Message,
    code: u16,
    phrase: &str,
    extra: &[String],
    to_tag: Option<&str>,
) -> Bytes {
    build_response_with_body(req, code, phrase, extra, to_tag, &[])
}

/// [`build_response`] with a body (its Content-Type goes in `extra`): the early-media answer
/// of a held call.
pub(crate) fn build_response_with_body(
    req: &Message,
    code: u16,
    phrase: &str,
    extra: &[String],
    to_tag: Option<&str>,
    body: &[u8],
) -> Bytes {
    let mut out = BytesMut::with_capacity(512 + body.len());
    let _ = write!(Adapter(&mut out), "SIP/2.0 {code} {phrase}\r\n");
    let b: &[u8] = &req.buf;
    let mut seen = [false; 4];
    for h in &req.headers {
        // Singletons are copied once, even from a request that repeats them (RFC 4475 multi01).
        let slot = match h.kind {
            Hdr::From => Some(0),
            Hdr::To => Some(1),
            Hdr::CallId => Some(2),
            Hdr::CSeq => Some(3),
            _ => None,
        };
        if let Some(i) = slot {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
        }
        match h.kind {
            Hdr::Via | Hdr::From | Hdr::CallId | Hdr::CSeq => {
                put_line(&mut out, &b[h.line.clone()])
            }
            Hdr::To => {
                // The tag was located while checking the message; parse only otherwise.
                let has_tag = req.to_tag().is_some()
                    || (req.problem.is_some() && req.to().is_some_and(|t| t.tag().is_some()));
                match to_tag {
                    Some(tag) if !has_tag && code > 100 => {
                        out.put_slice(&b[h.line.start..h.value.end]);
                        let _ = write!(Adapter(&mut out), ";tag={tag}");
                        put_line(&mut out, &b[h.value.end..h.line.end]);
                    }
                    _ => put_line(&mut out, &b[h.line.clone()]),
                }
            }
            _ => {}
        }
    }
    for e in extra {
        let e = e.trim_end_matches(['\r', '\n']);
        if !e.is_empty() && !e.contains(['\r', '\n']) {
            out.put_slice(e.as_bytes());
            out.put_slice(b"\r\n");
        }
    }
    let _ = write!(Adapter(&mut out), "Content-Length: {}\r\n\r\n", body.len());
    out.put_slice(body);
    out.freeze()
}

/// Copy a header line, ending it with CRLF when the received one ended the buffer without.
pub(super) fn put_line(out: &mut BytesMut, line: &[u8]) {
    out.put_slice(line);
    if !line.ends_with(b"\n") {
        out.put_slice(b"\r\n");
    }
}

/// `write!` straight into the output buffer, without a `String` in between.
pub(super) struct Adapter<'a>(pub(super) &'a mut BytesMut);

impl std::fmt::Write for Adapter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}
