//! The message scanner: one pass over received bytes that indexes the start line, every header
//! (canonical name, value range, whole-line range) and the body, without copying or allocating
//! per header.
//!
//! It also judges the message against RFC 3261 and the RFC 4475 torture tests and records the
//! first problem found, so the caller can still answer a broken request with `400` when it has
//! enough to build one. It knows nothing of transactions, routing or what a message is for.

use std::ops::Range;

use bytes::Bytes;

use super::grammar::{
    is_lws, is_token, is_word, parse_uint, quoted_string_end, skip_lws, token_end, trim, valid_host,
};
use super::uri::{NameAddr, Uri};

/// Caps applied before and while scanning.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_size: usize,
    pub max_headers: usize,
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 65535,
            max_headers: 128,
            max_line: 8192,
        }
    }
}

/// What is wrong with a message; also the label of the `malformed` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    TooLarge,
    TooManyHeaders,
    LineTooLong,
    NotSip,
    BadStartLine,
    BadRequestUri,
    BadVersion,
    BadStatusCode,
    BadHeaderLine,
    NoBlankLine,
    BadContentLength,
    ContentLengthMismatch,
    Duplicate,
    MissingHeader,
    BadCSeq,
    CSeqMismatch,
    BadMaxForwards,
    BadVia,
    BadFrom,
    BadTo,
    BadContact,
    /// A control byte (NUL, bare CR, DEL...) in a header line: never passed on.
    ControlByte,
    /// A Call-ID that is not `word ["@" word]`.
    BadCallId,
}

impl Problem {
    pub const ALL: [Problem; 23] = [
        Problem::TooLarge,
        Problem::TooManyHeaders,
        Problem::LineTooLong,
        Problem::NotSip,
        Problem::BadStartLine,
        Problem::BadRequestUri,
        Problem::BadVersion,
        Problem::BadStatusCode,
        Problem::BadHeaderLine,
        Problem::NoBlankLine,
        Problem::BadContentLength,
        Problem::ContentLengthMismatch,
        Problem::Duplicate,
        Problem::MissingHeader,
        Problem::BadCSeq,
        Problem::CSeqMismatch,
        Problem::BadMaxForwards,
        Problem::BadVia,
        Problem::BadFrom,
        Problem::BadTo,
        Problem::BadContact,
        Problem::ControlByte,
        Problem::BadCallId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Problem::TooLarge => "too_large",
            Problem::TooManyHeaders => "too_many_headers",
            Problem::LineTooLong => "line_too_long",
            Problem::NotSip => "not_sip",
            Problem::BadStartLine => "bad_start_line",
            Problem::BadRequestUri => "bad_request_uri",
            Problem::BadVersion => "bad_version",
            Problem::BadStatusCode => "bad_status_code",
            Problem::BadHeaderLine => "bad_header_line",
            Problem::NoBlankLine => "no_blank_line",
            Problem::BadContentLength => "bad_content_length",
            Problem::ContentLengthMismatch => "content_length_mismatch",
            Problem::Duplicate => "duplicate_header",
            Problem::MissingHeader => "missing_header",
            Problem::BadCSeq => "bad_cseq",
            Problem::CSeqMismatch => "cseq_method_mismatch",
            Problem::BadMaxForwards => "bad_max_forwards",
            Problem::BadVia => "bad_via",
            Problem::BadFrom => "bad_from",
            Problem::BadTo => "bad_to",
            Problem::BadContact => "bad_contact",
            Problem::ControlByte => "control_byte",
            Problem::BadCallId => "bad_call_id",
        }
    }

    pub fn index(self) -> usize {
        Problem::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

/// Canonical header names the proxy cares about; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hdr {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Contact,
    Route,
    RecordRoute,
    ProxyRequire,
    Require,
    Supported,
    Subject,
    ContentEncoding,
    Event,
    ReferTo,
    AllowEvents,
    SessionExpires,
    PAssertedIdentity,
    Privacy,
    Identity,
    Other,
}

impl Hdr {
    /// Canonical kind of a header name (case-insensitive, compact forms understood).
    pub fn of(name: &[u8]) -> Hdr {
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => Hdr::Via,
                b'f' => Hdr::From,
                b't' => Hdr::To,
                b'i' => Hdr::CallId,
                b'm' => Hdr::Contact,
                b'l' => Hdr::ContentLength,
                b'c' => Hdr::ContentType,
                b'k' => Hdr::Supported,
                b's' => Hdr::Subject,
                b'e' => Hdr::ContentEncoding,
                b'o' => Hdr::Event,
                b'r' => Hdr::ReferTo,
                b'u' => Hdr::AllowEvents,
                b'x' => Hdr::SessionExpires,
                _ => Hdr::Other,
            };
        }
        // A static, not a const: a const array is copied onto the stack on every call.
        static NAMES: [(&str, Hdr); 22] = [
            ("via", Hdr::Via),
            ("from", Hdr::From),
            ("to", Hdr::To),
            ("call-id", Hdr::CallId),
            ("cseq", Hdr::CSeq),
            ("max-forwards", Hdr::MaxForwards),
            ("content-length", Hdr::ContentLength),
            ("content-type", Hdr::ContentType),
            ("contact", Hdr::Contact),
            ("route", Hdr::Route),
            ("record-route", Hdr::RecordRoute),
            ("proxy-require", Hdr::ProxyRequire),
            ("require", Hdr::Require),
            ("supported", Hdr::Supported),
            ("subject", Hdr::Subject),
            ("content-encoding", Hdr::ContentEncoding),
            ("event", Hdr::Event),
            ("refer-to", Hdr::ReferTo),
            ("allow-events", Hdr::AllowEvents),
            ("session-expires", Hdr::SessionExpires),
            ("p-asserted-identity", Hdr::PAssertedIdentity),
            ("privacy", Hdr::Privacy),
        ];
        for &(n, h) in NAMES.iter() {
            if n.len() == name.len() && n.as_bytes().eq_ignore_ascii_case(name) {
                return h;
            }
        }
        if name.eq_ignore_ascii_case(b"identity") {
            return Hdr::Identity;
        }
        Hdr::Other
    }

    /// Headers whose values may be joined by commas in one line.
    pub fn is_list(self) -> bool {
        matches!(
            self,
            Hdr::Via | Hdr::Route | Hdr::RecordRoute | Hdr::Contact | Hdr::PAssertedIdentity
        )
    }

    fn is_singleton(self) -> bool {
        matches!(
            self,
            Hdr::CallId | Hdr::From | Hdr::To | Hdr::CSeq | Hdr::MaxForwards | Hdr::ContentLength
        )
    }
}

/// One header line: name and value ranges into the message bytes.
#[derive(Debug, Clone)]
pub struct Header {
    pub kind: Hdr,
    pub name: Range<usize>,
    /// Trimmed value; folded continuation lines stay inside it (as LWS).
    pub value: Range<usize>,
    /// The whole line from the name to after its final line break.
    pub line: Range<usize>,
}

/// The first line of a message.
#[derive(Debug, Clone)]
pub enum StartLine {
    Request {
        method: Range<usize>,
        uri: Range<usize>,
    },
    Response {
        code: u16,
        reason: Range<usize>,
    },
}

/// An indexed SIP message over its received bytes.
#[derive(Debug, Clone)]
pub struct Message {
    pub buf: Bytes,
    pub start: StartLine,
    /// End of the start line (after its line break): where new top headers go.
    pub head_start: usize,
    pub headers: Vec<Header>,
    /// Where the blank line starts: where appended headers go.
    pub head_end: usize,
    /// The body as framed by Content-Length (or the rest of a datagram without one).
    pub body: Range<usize>,
    /// The first problem found, if any.
    pub problem: Option<Problem>,
    /// Tag parameters of From and To, found while checking (looked up on every request).
    from_tag: Option<Range<usize>>,
    to_tag: Option<Range<usize>>,
}

/// Split a list header value at commas that are outside quotes and `<>`; trimmed pieces.
pub fn split_commas(buf: &[u8], value: Range<usize>) -> CommaSplit<'_> {
    CommaSplit {
        buf,
        pos: value.start,
        end: value.end,
        done: value.start >= value.end,
    }
}

pub struct CommaSplit<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    done: bool,
}

impl Iterator for CommaSplit<'_> {
    type Item = Range<usize>;
    fn next(&mut self) -> Option<Range<usize>> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let (mut quoted, mut angle, mut i) = (false, false, self.pos);
        // Jump from one byte that changes the state to the next: most values hold none, and a
        // byte-at-a-time walk was a large share of the parser's cost.
        while i < self.end {
            let rest = &self.buf[i..self.end];
            let next = if quoted {
                memchr::memchr2(b'\\', b'"', rest)
            } else if angle {
                memchr::memchr2(b'>', b'"', rest)
            } else {
                memchr::memchr3(b',', b'"', b'<', rest)
            };
            let Some(off) = next else { break };
            i += off;
            let b = self.buf[i];
            if quoted {
                if b == b'\\' {
                    i += 1;
                } else if b == b'"' {
                    quoted = false;
                }
            } else {
                match b {
                    b'"' => quoted = true,
                    b'<' => angle = true,
                    b'>' => angle = false,
                    b',' if !angle => {
                        self.pos = i + 1;
                        return Some(trim(self.buf, start..i));
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        self.done = true;
        Some(trim(self.buf, start..self.end))
    }
}

fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\n', &buf[from..]).map(|p| p + from)
}

impl Message {
    /// Index `buf`. `datagram` selects UDP rules (Content-Length may be absent, must fit).
    /// Returns `Err` only when the bytes cannot be indexed at all; otherwise `problem` says
    /// whether the message is acceptable.
    pub fn parse(buf: Bytes, limits: &Limits, datagram: bool) -> Result<Message, Problem> {
        if buf.len() > limits.max_size {
            return Err(Problem::TooLarge);
        }
        // RFC 3261 7.5: line breaks before the start line are ignored.
        let lead = buf
            .iter()
            .take_while(|&&c| c == b'\r' || c == b'\n')
            .count();
        let buf = if lead > 0 { buf.slice(lead..) } else { buf };
        let b: &[u8] = &buf;
        // Start line.
        let lf = find_lf(b, 0).ok_or(Problem::NotSip)?;
        if lf > limits.max_line {
            return Err(Problem::LineTooLong);
        }
        let line_end = if lf > 0 && b[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf
        };
        let mut problem = None;
        let start = parse_start_line(b, 0..line_end, &mut problem)?;
        let head_start = lf + 1;

        let (headers, head_end, body_start) =
            scan_headers(b, head_start, limits, datagram, &mut problem)?;

        let mut msg = Message {
            buf: buf.clone(),
            start,
            head_start,
            headers,
            head_end,
            body: body_start..body_start,
            problem,
            from_tag: None,
            to_tag: None,
        };
        msg.frame_body(datagram);
        msg.check();
        Ok(msg)
    }

    fn frame_body(&mut self, datagram: bool) {
        let avail = self.buf.len() - self.body.start;
        let mut cl: Option<usize> = None;
        let mut bad = false;
        for h in self.headers.iter().filter(|h| h.kind == Hdr::ContentLength) {
            match parse_uint(&self.buf[h.value.clone()], u32::MAX as u64) {
                Some(v) if cl.is_none() || cl == Some(v as usize) => cl = Some(v as usize),
                _ => bad = true,
            }
        }
        if bad {
            self.problem.get_or_insert(Problem::BadContentLength);
        }
        let len = match cl {
            Some(n) if n > avail => {
                self.problem.get_or_insert(Problem::ContentLengthMismatch);
                avail
            }
            Some(n) => n,
            None if datagram => avail,
            None => 0,
        };
        self.body = self.body.start..self.body.start + len;
    }

    /// Semantic checks from RFC 3261 and RFC 4475.
    fn check(&mut self) {
        if self.problem.is_some() {
            return;
        }
        match self.find_problem() {
            Ok((from_tag, to_tag)) => {
                self.from_tag = from_tag;
                self.to_tag = to_tag;
            }
            Err(p) => self.problem = Some(p),
        }
    }

    /// The From tag (only for messages without a problem).
    pub fn from_tag(&self) -> Option<&str> {
        self.str(self.from_tag.clone()?)
    }

    /// The To tag (only for messages without a problem).
    pub fn to_tag(&self) -> Option<&str> {
        self.str(self.to_tag.clone()?)
    }

    /// The first problem, or the From and To tags (located while From and To are checked, so
    /// that they are parsed once per message).
    #[allow(clippy::type_complexity)]
    fn find_problem(&self) -> Result<(Option<Range<usize>>, Option<Range<usize>>), Problem> {
        let b: &[u8] = &self.buf;
        let mut seen = [0u8; 6];
        for h in &self.headers {
            let slot = match h.kind {
                Hdr::CallId => 0,
                Hdr::From => 1,
                Hdr::To => 2,
                Hdr::CSeq => 3,
                Hdr::MaxForwards => 4,
                Hdr::ContentLength => 5,
                _ => continue,
            };
            seen[slot] += 1;
            if h.kind.is_singleton() && seen[slot] > 1 {
                return Err(Problem::Duplicate);
            }
        }
        let is_request = matches!(self.start, StartLine::Request { .. });
        if seen[0] == 0
            || seen[1] == 0
            || seen[2] == 0
            || seen[3] == 0
            || self.header(Hdr::Via).is_none()
        {
            return Err(Problem::MissingHeader);
        }
        if self.header(Hdr::CallId).is_some_and(|h| h.value.is_empty()) {
            return Err(Problem::MissingHeader);
        }
        if self
            .header(Hdr::CallId)
            .is_some_and(|h| !valid_call_id(&b[h.value.clone()]))
        {
            return Err(Problem::BadCallId);
        }
        // CSeq: number and method matching the request line.
        let Some((num, meth)) = self.cseq_raw() else {
            return Err(Problem::BadCSeq);
        };
        if parse_uint(num, (1 << 31) - 1).is_none()
            || meth.is_empty()
            || !meth.iter().all(|&c| is_token(c))
        {
            return Err(Problem::BadCSeq);
        }
        if let StartLine::Request { method, .. } = &self.start {
            if &b[method.clone()] != meth {
                return Err(Problem::CSeqMismatch);
            }
        }
        if let Some(h) = self.header(Hdr::MaxForwards) {
            if parse_uint(&b[h.value.clone()], 255).is_none() {
                return Err(Problem::BadMaxForwards);
            }
        }
        for v in self.values(Hdr::Via) {
            let ok = std::str::from_utf8(&b[v])
                .ok()
                .and_then(|s| Via::parse(s).ok())
                .is_some();
            if !ok {
                return Err(Problem::BadVia);
            }
        }
        let base = self.buf.as_ptr() as usize;
        let span = |t: &str| {
            let o = t.as_ptr() as usize - base;
            o..o + t.len()
        };
        let from_tag = match self.from() {
            Some(f) => f.tag().map(span),
            None => return Err(Problem::BadFrom),
        };
        let to_tag = match self.to() {
            Some(t) => t.tag().map(span),
            None => return Err(Problem::BadTo),
        };
        if is_request {
            // `Contact:` with nothing after it is no contact-param and no STAR.
            if self
                .headers
                .iter()
                .any(|h| h.kind == Hdr::Contact && h.value.is_empty())
            {
                return Err(Problem::BadContact);
            }
            for v in self.values(Hdr::Contact) {
                let s = std::str::from_utf8(&b[v]).unwrap_or("<");
                if s != "*" && NameAddr::parse(s).is_err() {
                    return Err(Problem::BadContact);
                }
            }
        }
        Ok((from_tag, to_tag))
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method bytes (empty for a response).
    pub fn method(&self) -> &[u8] {
        match &self.start {
            StartLine::Request { method, .. } => &self.buf[method.clone()],
            StartLine::Response { .. } => b"",
        }
    }

    pub fn method_is(&self, m: &str) -> bool {
        self.method() == m.as_bytes()
    }

    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn request_uri_str(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => std::str::from_utf8(&self.buf[uri.clone()]).ok(),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<Uri<'_>> {
        Uri::parse(self.request_uri_str()?).ok()
    }

    pub fn header(&self, kind: Hdr) -> Option<&Header> {
        self.headers.iter().find(|h| h.kind == kind)
    }

    pub fn bytes(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    pub fn str(&self, r: Range<usize>) -> Option<&str> {
        std::str::from_utf8(&self.buf[r]).ok()
    }

    /// First value of a header by canonical kind, as text.
    pub fn value(&self, kind: Hdr) -> Option<&str> {
        self.str(self.header(kind)?.value.clone())
    }

    /// Value of any header by name (case-insensitive, compact forms understood for known ones).
    pub fn header_by_name(&self, name: &str) -> Option<&str> {
        let kind = Hdr::of(name.as_bytes());
        let h = self.headers.iter().find(|h| {
            if kind == Hdr::Other {
                self.buf[h.name.clone()].eq_ignore_ascii_case(name.as_bytes())
            } else {
                h.kind == kind
            }
        })?;
        self.str(h.value.clone())
    }

    /// Every value of a header kind, comma-split for list headers, in message order.
    pub fn values(&self, kind: Hdr) -> impl Iterator<Item = Range<usize>> + '_ {
        self.headers
            .iter()
            .filter(move |h| h.kind == kind)
            .flat_map(move |h| {
                let list = kind.is_list();
                let mut single = Some(h.value.clone());
                let mut split = list.then(|| split_commas(&self.buf, h.value.clone()));
                std::iter::from_fn(move || match split.as_mut() {
                    Some(s) => s.next(),
                    None => single.take(),
                })
            })
    }

    /// Every value of a header kind as text (values that are not UTF-8 are skipped).
    pub fn values_str(&self, kind: Hdr) -> impl Iterator<Item = &str> + '_ {
        self.values(kind).filter_map(move |r| self.str(r))
    }

    pub fn from(&self) -> Option<NameAddr<'_>> {
        NameAddr::parse(self.value(Hdr::From)?).ok()
    }

    pub fn to(&self) -> Option<NameAddr<'_>> {
        NameAddr::parse(self.value(Hdr::To)?).ok()
    }

    pub fn call_id(&self) -> Option<&str> {
        self.value(Hdr::CallId)
    }

    fn cseq_raw(&self) -> Option<(&[u8], &[u8])> {
        let h = self.header(Hdr::CSeq)?;
        let v = &self.buf[h.value.clone()];
        let sp = v.iter().position(|&c| is_lws(c))?;
        let rest = trim(v, sp..v.len());
        Some((&v[..sp], &v[rest]))
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let (n, m) = self.cseq_raw()?;
        let n = parse_uint(n, u32::MAX as u64)? as u32;
        Some((n, std::str::from_utf8(m).ok()?))
    }

    pub fn max_forwards(&self) -> Option<u8> {
        let h = self.header(Hdr::MaxForwards)?;
        parse_uint(&self.buf[h.value.clone()], 255).map(|v| v as u8)
    }

    /// The top Via value, parsed.
    pub fn top_via(&self) -> Option<Via<'_>> {
        let r = self.values(Hdr::Via).next()?;
        Via::parse(self.str(r)?).ok()
    }

    pub fn top_via_range(&self) -> Option<Range<usize>> {
        self.values(Hdr::Via).next()
    }

    pub fn body_bytes(&self) -> &[u8] {
        &self.buf[self.body.clone()]
    }

    /// True when the first Content-Type is SDP.
    pub fn body_is_sdp(&self) -> bool {
        !self.body.is_empty()
            && self.value(Hdr::ContentType).is_some_and(|v| {
                let t = v.split(';').next().unwrap_or("").trim();
                t.eq_ignore_ascii_case("application/sdp")
            })
    }
}

/// The header lines from `pos` up to the blank line: the index, where the head ends and where
/// the body starts. Lines that are not headers are skipped and recorded as the problem.
fn scan_headers(
    b: &[u8],
    mut pos: usize,
    limits: &Limits,
    datagram: bool,
    problem: &mut Option<Problem>,
) -> Result<(Vec<Header>, usize, usize), Problem> {
    let mut headers = Vec::with_capacity(24);
    let head_end;
    let body_start;
    loop {
        if pos >= b.len() {
            // No blank line: a datagram's headers end with it; a stream frame cannot.
            head_end = b.len();
            body_start = b.len();
            if !datagram {
                problem.get_or_insert(Problem::NoBlankLine);
            }
            break;
        }
        if b[pos] == b'\n' || (b[pos] == b'\r' && b.get(pos + 1) == Some(&b'\n')) {
            head_end = pos;
            body_start = if b[pos] == b'\n' { pos + 1 } else { pos + 2 };
            break;
        }
        if headers.len() >= limits.max_headers {
            return Err(Problem::TooManyHeaders);
        }
        // One logical header: this line plus continuation lines.
        let line_start = pos;
        let mut end = match find_lf(b, pos) {
            Some(e) => e,
            None => b.len(),
        };
        if end - pos > limits.max_line {
            return Err(Problem::LineTooLong);
        }
        while end + 1 < b.len() && matches!(b[end + 1], b' ' | b'\t') {
            let next = find_lf(b, end + 1).unwrap_or(b.len());
            if next - end > limits.max_line {
                return Err(Problem::LineTooLong);
            }
            end = next;
        }
        let line_next = (end + 1).min(b.len());
        let content_end = if end < b.len() { end } else { b.len() };
        // Name, optional LWS, colon.
        let mut i = line_start;
        while i < content_end && is_token(b[i]) {
            i += 1;
        }
        let name = line_start..i;
        while i < content_end && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if name.is_empty() || i >= content_end || b[i] != b':' {
            problem.get_or_insert(Problem::BadHeaderLine);
            pos = line_next;
            continue;
        }
        if has_control(&b[i..line_next]) {
            problem.get_or_insert(Problem::ControlByte);
        }
        let value = trim(b, i + 1..content_end);
        headers.push(Header {
            kind: Hdr::of(&b[name.clone()]),
            name,
            value,
            line: line_start..line_next,
        });
        pos = line_next;
    }
    Ok((headers, head_end, body_start))
}

/// Whether a header value holds a control byte that RFC 3261 allows nowhere in it: anything
/// below 0x20 but HTAB and the CRLF of a folded line, and DEL. Inside a quoted string a
/// backslash may escape one (RFC 3261 25.1 quoted-pair; RFC 4475 3.1.1.3 sends `\NUL`), but
/// never CR or LF. Only a value with a suspicious byte is walked for quotes.
fn has_control(v: &[u8]) -> bool {
    let bad = |i: usize, c: u8| match c {
        b'\t' | b'\n' => false,
        b'\r' => v.get(i + 1) != Some(&b'\n'),
        c => c < 0x20 || c == 0x7f,
    };
    // Every header line is checked, and nearly all are clean: one branch-free pass (which the
    // compiler vectorises) over the bytes, and the few CRs looked at one by one.
    let odd = v.iter().fold(0u8, |acc, &c| {
        acc | u8::from((c < 0x20 && !matches!(c, b'\t' | b'\r' | b'\n')) || c == 0x7f)
    });
    if odd == 0 && memchr::memchr_iter(b'\r', v).all(|i| v.get(i + 1) == Some(&b'\n')) {
        return false;
    }
    let (mut quoted, mut i) = (false, 0);
    while i < v.len() {
        match v[i] {
            b'\\' if quoted => {
                if matches!(v.get(i + 1), None | Some(b'\r' | b'\n')) {
                    return true;
                }
                i += 2;
                continue;
            }
            b'"' => quoted = !quoted,
            c if bad(i, c) => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

fn parse_start_line(
    b: &[u8],
    line: Range<usize>,
    problem: &mut Option<Problem>,
) -> Result<StartLine, Problem> {
    let l = &b[line.clone()];
    // RFC 3261 7.1: the SIP-Version string is case-insensitive (we send it in upper case).
    if l.len() >= 4 && l[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = l.iter().position(|&c| c == b' ').ok_or(Problem::NotSip)?;
        if !l[..sp].eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(Problem::BadVersion);
        }
        let rest = &l[sp + 1..];
        let code_end = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
        let code = &rest[..code_end];
        if code.len() != 3 {
            return Err(Problem::BadStatusCode);
        }
        let code = parse_uint(code, 699)
            .filter(|c| *c >= 100)
            .ok_or(Problem::BadStatusCode)? as u16;
        let rs = (line.start + sp + 1 + code_end + 1).min(line.end);
        return Ok(StartLine::Response {
            code,
            reason: rs..line.end,
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version, single spaces exactly.
    let sp1 = l.iter().position(|&c| c == b' ').ok_or(Problem::NotSip)?;
    let method = line.start..line.start + sp1;
    if sp1 == 0 || !l[..sp1].iter().all(|&c| is_token(c)) {
        return Err(Problem::NotSip);
    }
    let rest = &l[sp1 + 1..];
    let sp2 = match rest.iter().position(|&c| c == b' ') {
        Some(p) => p,
        None => {
            problem.get_or_insert(Problem::BadStartLine);
            return Ok(StartLine::Request {
                method,
                uri: line.start + sp1 + 1..line.end,
            });
        }
    };
    let uri = line.start + sp1 + 1..line.start + sp1 + 1 + sp2;
    let version = &rest[sp2 + 1..];
    let uri_b = &b[uri.clone()];
    if sp2 == 0 || version.contains(&b' ') || version.contains(&b'\t') {
        problem.get_or_insert(Problem::BadStartLine);
    } else if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        if version.len() >= 4 && version[..4].eq_ignore_ascii_case(b"SIP/") {
            problem.get_or_insert(Problem::BadVersion);
        } else {
            problem.get_or_insert(Problem::BadStartLine);
        }
    } else if uri_b
        .iter()
        .any(|&c| c <= b' ' || c == b'<' || c == b'>' || c == b'"' || c >= 0x7f)
    {
        problem.get_or_insert(Problem::BadRequestUri);
    } else {
        match std::str::from_utf8(uri_b)
            .ok()
            .and_then(|s| Uri::parse(s).ok())
        {
            Some(u) if u.is_sip() && u.headers.is_some() => {
                problem.get_or_insert(Problem::BadRequestUri);
            }
            Some(_) => {}
            None => {
                problem.get_or_insert(Problem::BadRequestUri);
            }
        }
    }
    Ok(StartLine::Request { method, uri })
}

/// `callid = word [ "@" word ]` (RFC 3261 25.1).
fn valid_call_id(v: &[u8]) -> bool {
    let mut parts = v.splitn(2, |&c| c == b'@');
    parts.all(|w| !w.is_empty() && w.iter().all(|&c| is_word(c)))
}

/// A Via value that does not follow the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaError;

/// A parsed Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub branch: Option<&'a str>,
    pub received: Option<&'a str>,
    /// `Some(None)` when `rport` is present without a value.
    pub rport: Option<Option<u16>>,
}

impl<'a> Via<'a> {
    /// Parse `SIP / 2.0 / UDP host[:port] *(; param[=value])` with LWS allowed around separators.
    pub fn parse(s: &'a str) -> Result<Via<'a>, ViaError> {
        let b = s.as_bytes();
        let (transport, i) = parse_sent_protocol(s)?;
        let (host, port, mut i) = parse_sent_by(s, i)?;
        let mut via = Via {
            transport,
            host,
            port,
            branch: None,
            received: None,
            rport: None,
        };
        loop {
            i = skip_lws(b, i);
            if i >= b.len() {
                break;
            }
            if b[i] != b';' {
                return Err(ViaError);
            }
            let (name, value, next) = via_param(s, i + 1)?;
            i = next;
            if name.eq_ignore_ascii_case("branch") {
                // via-branch = "branch" EQUAL token: never empty.
                via.branch = Some(value.filter(|v| !v.is_empty()).ok_or(ViaError)?);
            } else if name.eq_ignore_ascii_case("received") {
                via.received = value;
            } else if name.eq_ignore_ascii_case("rport") {
                via.rport = Some(match value {
                    Some(v) => Some(parse_uint(v.as_bytes(), 65535).ok_or(ViaError)? as u16),
                    None => None,
                });
            }
        }
        Ok(via)
    }

    /// `host:port` as written (port omitted when absent).
    pub fn sent_by(&self) -> (&'a str, Option<u16>) {
        (self.host, self.port)
    }
}

/// A token at `i`, and the position after it.
fn via_token(s: &str, i: usize) -> Result<(&str, usize), ViaError> {
    let end = token_end(s.as_bytes(), i);
    if end == i {
        return Err(ViaError);
    }
    Ok((&s[i..end], end))
}

/// LWS, a `/`, LWS: where the next token starts.
fn via_slash(b: &[u8], i: usize) -> Result<usize, ViaError> {
    let i = skip_lws(b, i);
    if b.get(i) != Some(&b'/') {
        return Err(ViaError);
    }
    Ok(skip_lws(b, i + 1))
}

/// `SIP / 2.0 / transport` and the LWS that must follow it: the transport and where sent-by
/// starts.
fn parse_sent_protocol(s: &str) -> Result<(&str, usize), ViaError> {
    let b = s.as_bytes();
    let (proto, i) = via_token(s, skip_lws(b, 0))?;
    if !proto.eq_ignore_ascii_case("SIP") {
        return Err(ViaError);
    }
    let (version, i) = via_token(s, via_slash(b, i)?)?;
    if version != "2.0" {
        return Err(ViaError);
    }
    let (transport, i) = via_token(s, via_slash(b, i)?)?;
    if i >= b.len() || !is_lws(b[i]) {
        return Err(ViaError);
    }
    Ok((transport, skip_lws(b, i)))
}

/// `host [: port]` from `i`: host, port and where the parameters start.
fn parse_sent_by(s: &str, mut i: usize) -> Result<(&str, Option<u16>, usize), ViaError> {
    let b = s.as_bytes();
    let hs = i;
    if b.get(i) == Some(&b'[') {
        while i < b.len() && b[i] != b']' {
            i += 1;
        }
        if i >= b.len() {
            return Err(ViaError);
        }
        i += 1;
    } else {
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-' || b[i] == b'.') {
            i += 1;
        }
    }
    let host = &s[hs..i];
    if host.is_empty() || !valid_host(host) {
        return Err(ViaError);
    }
    i = skip_lws(b, i);
    let mut port = None;
    if b.get(i) == Some(&b':') {
        let ps = skip_lws(b, i + 1);
        i = ps;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        port = Some(parse_uint(&b[ps..i], 65535).ok_or(ViaError)? as u16);
    }
    Ok((host, port, i))
}

/// One `name [= value]` after a `;` at `i - 1`: name, value, and where the next one may start.
fn via_param(s: &str, i: usize) -> Result<(&str, Option<&str>, usize), ViaError> {
    let b = s.as_bytes();
    let (name, i) = via_token(s, skip_lws(b, i))?;
    let i = skip_lws(b, i);
    if b.get(i) != Some(&b'=') {
        return Ok((name, None, i));
    }
    let vs = skip_lws(b, i + 1);
    let mut i = vs;
    if b.get(i) == Some(&b'[') {
        while i < b.len() && b[i] != b']' {
            i += 1;
        }
        i = (i + 1).min(b.len());
    } else if b.get(i) == Some(&b'"') {
        i = quoted_string_end(b, i).ok_or(ViaError)?;
    } else {
        while i < b.len() && (is_token(b[i]) || b[i] == b':') {
            i += 1;
        }
    }
    Ok((name, Some(&s[vs..i]), i))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5118 4.1 and 4.5 and 4.8: Via sent-by as an IPv6 reference, with and without a
    /// port, `received` with and without brackets (RFC 3261's grammar has none, RFC 5118
    /// asks for both to be read), and an IPv4-mapped reference.
    #[test]
    fn rfc5118_via_ipv6() {
        for (raw, host, port, received) in [
            (
                "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
                "[2001:db8::9:1]",
                None,
                None,
            ),
            (
                "SIP/2.0/UDP [2001:db8::9:1]:5060;received=[2001:db8::9:255];branch=z9hG4bKas3-111",
                "[2001:db8::9:1]",
                Some(5060),
                Some("[2001:db8::9:255]"),
            ),
            (
                "SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3",
                "[2001:db8::9:1]",
                None,
                Some("2001:db8::9:255"),
            ),
            (
                "SIP/2.0/UDP [::ffff:192.0.2.151]:5062;rport=5062;branch=z9hG4bK1",
                "[::ffff:192.0.2.151]",
                Some(5062),
                None,
            ),
        ] {
            let v = Via::parse(raw).unwrap_or_else(|_| panic!("{raw}"));
            assert_eq!(
                (v.host, v.port, v.received),
                (host, port, received),
                "{raw}"
            );
        }
        for bad in [
            "SIP/2.0/UDP [2001:db8::9:1;branch=z9hG4bK1",
            "SIP/2.0/UDP [2001:db8::9:1]:;branch=z9hG4bK1",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }

    fn parse(s: &str) -> Message {
        Message::parse(
            Bytes::copy_from_slice(s.as_bytes()),
            &Limits::default(),
            true,
        )
        .unwrap()
    }

    const BASE: &str = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn header_kinds_table() {
        let cases: &[(&str, Hdr)] = &[
            ("v", Hdr::Via),
            ("V", Hdr::Via),
            ("VIA", Hdr::Via),
            ("f", Hdr::From),
            ("t", Hdr::To),
            ("i", Hdr::CallId),
            ("m", Hdr::Contact),
            ("l", Hdr::ContentLength),
            ("c", Hdr::ContentType),
            ("k", Hdr::Supported),
            ("s", Hdr::Subject),
            ("e", Hdr::ContentEncoding),
            ("o", Hdr::Event),
            ("r", Hdr::ReferTo),
            ("u", Hdr::AllowEvents),
            ("x", Hdr::SessionExpires),
            ("MaX-fOrWaRdS", Hdr::MaxForwards),
            ("p-asserted-identity", Hdr::PAssertedIdentity),
            ("Record-Route", Hdr::RecordRoute),
            ("C%6Fntact", Hdr::Other),
            ("q", Hdr::Other),
        ];
        for (name, kind) in cases {
            assert_eq!(Hdr::of(name.as_bytes()), *kind, "{name}");
        }
    }

    #[test]
    fn scanner_table() {
        // (message, expected problem, check)
        let cases: &[(&str, Option<Problem>)] = &[
            (BASE, None),
            (&BASE.replace("Call-ID: c1", "i: c1"), None),
            (
                &BASE.replace("CSeq: 1 INVITE", "CSeq : 1\r\n  INVITE"),
                None,
            ),
            (
                &BASE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
                Some(Problem::CSeqMismatch),
            ),
            (
                &BASE.replace("CSeq: 1 INVITE", "CSeq: 99999999999 INVITE"),
                Some(Problem::BadCSeq),
            ),
            (
                &BASE.replace("Call-ID: c1\r\n", ""),
                Some(Problem::MissingHeader),
            ),
            (
                &BASE.replace("Content-Length: 0", "Content-Length: 5"),
                Some(Problem::ContentLengthMismatch),
            ),
            (
                &BASE.replace("Content-Length: 0", "Content-Length: -1"),
                Some(Problem::BadContentLength),
            ),
            (
                &BASE.replace("SIP/2.0\r\n", "SIP/3.0\r\n"),
                Some(Problem::BadVersion),
            ),
            // Control bytes: refused wherever a header holds them raw (RFC 3261 25.1).
            (
                &BASE.replace("Call-ID: c1\r\n", "Call-ID: c1\r\nUser-Agent: a\0b\r\n"),
                Some(Problem::ControlByte),
            ),
            (
                &BASE.replace("Call-ID: c1", "Call-ID: c\r1"),
                Some(Problem::ControlByte),
            ),
            (
                &BASE.replace("Call-ID: c1", "Call-ID: c1\r"),
                Some(Problem::ControlByte),
            ),
            (
                &BASE.replace("CSeq: 1 INVITE", "CSeq: \r1 INVITE"),
                Some(Problem::ControlByte),
            ),
            (
                &BASE.replace("Call-ID: c1\r\n", "Call-ID: c1\r\nX-Case: \x7f\r\n"),
                Some(Problem::ControlByte),
            ),
            (
                &BASE.replace(
                    "Call-ID: c1\r\n",
                    "Call-ID: c1\r\nContent-Type: application/sdp\x1b\r\n",
                ),
                Some(Problem::ControlByte),
            ),
            (
                &BASE.replace("From: <", "From: \"Al\0ice\" <"),
                Some(Problem::ControlByte),
            ),
            // ...but a quoted-pair may escape one (RFC 4475 3.1.1.3), and HTAB is white space.
            (&BASE.replace("From: <", "From: \"Al\\\0ice\" <"), None),
            (
                &BASE.replace("Call-ID: c1\r\n", "Call-ID: c1\r\nSubject: a\tb\r\n"),
                None,
            ),
            // Call-ID = word ["@" word].
            (&BASE.replace("Call-ID: c1", "Call-ID: c1@host"), None),
            (
                &BASE.replace("Call-ID: c1", "Call-ID: c 1@host"),
                Some(Problem::BadCallId),
            ),
            (
                &BASE.replace("Call-ID: c1", "Call-ID: c1@@host"),
                Some(Problem::BadCallId),
            ),
            (
                &BASE.replace("Call-ID: c1", "Call-ID: c$1"),
                Some(Problem::BadCallId),
            ),
            // An empty Contact, an empty branch.
            (
                &BASE.replace("Call-ID: c1\r\n", "Call-ID: c1\r\nContact:\r\n"),
                Some(Problem::BadContact),
            ),
            (
                &BASE.replace("branch=z9hG4bK1", "branch="),
                Some(Problem::BadVia),
            ),
            // RFC 3261 7.1: the version is case-insensitive.
            (&BASE.replace("SIP/2.0\r\n", "sip/2.0\r\n"), None),
            (&BASE.replace("SIP/2.0\r\n", "Sip/2.0\r\n"), None),
            (
                &BASE.replace("SIP/2.0\r\n", "sip/3.0\r\n"),
                Some(Problem::BadVersion),
            ),
            (
                &BASE.replace("INVITE sip", "INVITE  sip"),
                Some(Problem::BadStartLine),
            ),
            (
                &BASE.replace(
                    "To: <sip:bob@example.com>",
                    "To: \"Bob <sip:bob@example.com>",
                ),
                Some(Problem::BadTo),
            ),
            (
                &BASE.replace(
                    "To: <sip:bob@example.com>",
                    "t: <tel:+1-555-0100;phone-context=x>",
                ),
                None,
            ),
            (&BASE.replace("\r\n", "\n"), None),
            (
                &BASE.replace("Call-ID: c1\r\n", "Call-ID: c1\r\nMax-Forwards: 256\r\n"),
                Some(Problem::BadMaxForwards),
            ),
            (
                &BASE.replace("Call-ID: c1\r\n", "Call-ID: c1\r\ni: c2\r\n"),
                Some(Problem::Duplicate),
            ),
        ];
        for (i, (m, want)) in cases.iter().enumerate() {
            let msg = parse(m);
            assert_eq!(msg.problem, *want, "case {i}: {m}");
        }
    }

    #[test]
    fn folded_and_comma_joined() {
        let m = BASE.replace(
            "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n",
            "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1 ,\r\n SIP / 2.0 / TCP [2001:db8::1]:5070;branch=z9hG4bK2;received=\"x,y\"\r\nv: SIP/2.0/UDP c.example.com;rport\r\n",
        );
        let msg = parse(&m);
        assert_eq!(msg.problem, None);
        let vias: Vec<Via> = msg
            .values_str(Hdr::Via)
            .map(|s| Via::parse(s).unwrap())
            .collect();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].branch, Some("z9hG4bK1"));
        assert_eq!(
            (vias[1].transport, vias[1].host, vias[1].port),
            ("TCP", "[2001:db8::1]", Some(5070))
        );
        assert_eq!(vias[2].rport, Some(None));
    }

    #[test]
    fn datagram_body_rules() {
        let no_cl = BASE.replace("Content-Length: 0\r\n", "") + "hello";
        assert_eq!(parse(&no_cl).body_bytes(), b"hello");
        let extra = BASE.to_string() + "trailing";
        let msg = parse(&extra);
        assert_eq!(msg.problem, None);
        assert!(msg.body.is_empty());
        let framed = Message::parse(Bytes::from(no_cl), &Limits::default(), false).unwrap();
        assert!(framed.body.is_empty());
    }

    #[test]
    fn leading_line_breaks_are_ignored() {
        let m = parse(&format!("\r\n\r\n{BASE}"));
        assert_eq!(m.problem, None);
        assert!(m.method_is("INVITE"));
    }

    #[test]
    fn caps() {
        let lim = Limits {
            max_size: 100,
            ..Limits::default()
        };
        assert_eq!(
            Message::parse(Bytes::from(BASE), &lim, true).unwrap_err(),
            Problem::TooLarge
        );
        let lim = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        assert_eq!(
            Message::parse(Bytes::from(BASE), &lim, true).unwrap_err(),
            Problem::TooManyHeaders
        );
        let lim = Limits {
            max_line: 20,
            ..Limits::default()
        };
        assert_eq!(
            Message::parse(Bytes::from(BASE), &lim, true).unwrap_err(),
            Problem::LineTooLong
        );
    }

    #[test]
    fn responses() {
        let r = parse("SIP/2.0 180 \r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n");
        assert_eq!(r.status(), Some(180));
        assert_eq!(r.problem, None);
        let lower = parse("sip/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n");
        assert_eq!((lower.status(), lower.problem), (Some(200), None));
        let big = Message::parse(
            Bytes::from_static(b"SIP/2.0 4294967301 x\r\n\r\n"),
            &Limits::default(),
            true,
        );
        assert_eq!(big.unwrap_err(), Problem::BadStatusCode);
    }
}
