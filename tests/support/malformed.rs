//! The project's own malformed-SIP corpus, in place of PROTOS c07-sip: a pure enumeration (no
//! randomness, the same cases in the same order on every run) of mutations of one valid INVITE
//! with an SDP body, in the families PROTOS covers: over-long values, format strings, bad
//! integers, missing or doubled separators, control bytes (NUL, bare CR, bare LF, injected CRLF),
//! invalid UTF-8, missing and doubled headers, bad SIP versions and request-URIs, wrong
//! Content-Length, bad display names, too many headers.
//!
//! Every case carries a label decided here, from the family and the place of the mutation and
//! never from what the agent does:
//!
//! - [`Label::Refuse`]: the agent must answer 4xx (505 for a bad version) or drop it; it must
//!   never reach the next hop. That is the label of a message whose framing or message-level
//!   syntax is broken (control bytes in a header, a header line without its colon, a size cap
//!   exceeded), and of a broken component the proxy works with (request line, Via, From, To,
//!   Call-ID, CSeq, Max-Forwards, Content-Length, Contact), judged against RFC 3261's ABNF.
//! - [`Label::Screen`]: a valid message, or one whose only fault is in a component a proxy does
//!   not use (User-Agent, Subject, Expires, Allow, Supported, X- headers, Content-Type,
//!   P-Asserted-Identity): RFC 3261 16.3 step 1 says those "SHOULD be ignored and remain
//!   unchanged when the message is forwarded" (RFC 4475 3.1.2.11, a bad Date, is the same case).
//!   The agent must screen it as usual (the test's hook forwards every call).
//!
//! The size caps are the agent's documented defaults ([`SipConfig::default`]): a line over
//! `max_line_length`, a message over `max_message_size` or more than `max_headers` headers is
//! refused. Sizes are chosen around them, not on them.
//!
//! Each case carries a token (`mg`, the transport letter, five digits, `z`) in its Via branch,
//! From tag, Call-ID and X-Case header, so whatever reaches the next hop or comes back can be
//! traced to its case; a case mutates one place, so the token survives in the others.

use std::net::SocketAddr;

use scamguard::sip::SipConfig;

/// What the agent must do with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    /// Answer 4xx (505 for a bad SIP version) or drop; never forward.
    Refuse,
    /// Screen as usual: with a hook that forwards everything, the request reaches the next hop.
    Screen,
}

/// One generated message.
#[derive(Debug, Clone)]
pub struct Case {
    /// Index in the corpus; also the number in the case's token.
    pub id: usize,
    pub family: &'static str,
    /// The header, slot or part of the message the mutation touches.
    pub place: String,
    /// Which mutation of the family (payload, position, length).
    pub variant: String,
    pub label: Label,
    pub data: Vec<u8>,
}

/// Where the cases are sent from: written in Via and Contact.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// `UDP` or `TCP`.
    pub transport: &'static str,
    pub local: SocketAddr,
}

impl Target {
    fn letter(&self) -> char {
        if self.transport == "TCP" {
            't'
        } else {
            'u'
        }
    }
}

/// Find the case number of a token (`mg<letter><5 digits>z`) in `data`.
pub fn find_token(data: &[u8], letter: char) -> Option<usize> {
    let l = letter as u8;
    data.windows(9).find_map(|w| {
        (w[0] == b'm'
            && w[1] == b'g'
            && w[2] == l
            && w[8] == b'z'
            && w[3..8].iter().all(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(&w[3..8]).ok()?.parse().ok())
        .flatten()
    })
}

/// The grammar of a slot's text (RFC 3261 section 25 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `token`.
    Token,
    /// `word` (the part of a Call-ID before its `@`).
    Word,
    /// The inside of a `quoted-string` (display names).
    Quoted,
    /// The `user` of a SIP URI.
    User,
    /// `1*DIGIT` up to `max`; `zero_refused`: 0 is valid but answered 4xx (Max-Forwards: 483).
    Digits { max: u64, zero_refused: bool },
    /// `TEXT-UTF8` and the like: free text.
    Text,
}

/// Whether the proxy works with the header the slot is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Request line, Via, From, To, Call-ID, CSeq, Max-Forwards, Contact: must be well formed.
    Checked,
    /// Ignored and forwarded unchanged, well formed or not (RFC 3261 16.3 step 1).
    Opaque,
}

struct Slot {
    name: &'static str,
    /// `$TOK` stands for the case's token.
    default: &'static str,
    kind: Kind,
    role: Role,
}

const fn slot(name: &'static str, default: &'static str, kind: Kind, role: Role) -> Slot {
    Slot {
        name,
        default,
        kind,
        role,
    }
}

const DIGITS_CSEQ: Kind = Kind::Digits {
    max: (1 << 31) - 1,
    zero_refused: false,
};
const DIGITS_MF: Kind = Kind::Digits {
    max: 255,
    zero_refused: true,
};
const DIGITS_ANY: Kind = Kind::Digits {
    max: u32::MAX as u64,
    zero_refused: false,
};

/// The places inside header values that the value families mutate, one at a time.
const SLOTS: &[Slot] = &[
    slot("ruri_user", "+15550001111", Kind::User, Role::Checked),
    slot("via_branch", "$TOK", Kind::Token, Role::Checked),
    slot("max_forwards", "70", DIGITS_MF, Role::Checked),
    slot("from_display", "Alice", Kind::Quoted, Role::Checked),
    slot("from_user", "+15552223333", Kind::User, Role::Checked),
    slot("from_tag", "$TOK", Kind::Token, Role::Checked),
    slot("to_display", "Bob", Kind::Quoted, Role::Checked),
    slot("to_user", "+15550001111", Kind::User, Role::Checked),
    slot("call_id", "$TOK", Kind::Word, Role::Checked),
    slot("cseq", "1", DIGITS_CSEQ, Role::Checked),
    slot("contact_user", "alice", Kind::User, Role::Checked),
    slot("pai_display", "Alice", Kind::Quoted, Role::Opaque),
    slot("pai_user", "+15552223333", Kind::User, Role::Opaque),
    slot(
        "user_agent",
        "scamguard-corpus/1.0",
        Kind::Text,
        Role::Opaque,
    ),
    slot("subject", "Hello", Kind::Text, Role::Opaque),
    slot("expires", "120", DIGITS_ANY, Role::Opaque),
    slot("allow", "OPTIONS", Kind::Token, Role::Opaque),
    slot("supported", "timer", Kind::Token, Role::Opaque),
    slot("x_case", "$TOK", Kind::Text, Role::Opaque),
    slot("content_type", "application/sdp", Kind::Text, Role::Opaque),
];

const REQUEST_URI: &str = "sip:{ruri_user}@127.0.0.1";

/// The valid INVITE: header names and values with `{slot}` markers; `{CL}` is the body length.
const HEADERS: &[(&str, &str)] = &[
    (
        "Via",
        "SIP/2.0/{transport} {local};branch=z9hG4bK{via_branch};rport",
    ),
    ("Max-Forwards", "{max_forwards}"),
    (
        "From",
        "\"{from_display}\" <sip:{from_user}@127.0.0.1>;tag={from_tag}",
    ),
    ("To", "\"{to_display}\" <sip:{to_user}@127.0.0.1>"),
    ("Call-ID", "{call_id}@127.0.0.1"),
    ("CSeq", "{cseq} INVITE"),
    ("Contact", "<sip:{contact_user}@{local}>"),
    (
        "P-Asserted-Identity",
        "\"{pai_display}\" <sip:{pai_user}@127.0.0.1>",
    ),
    ("User-Agent", "{user_agent}"),
    ("Subject", "{subject}"),
    ("Expires", "{expires}"),
    ("Allow", "INVITE, ACK, CANCEL, BYE, {allow}"),
    ("Supported", "{supported}"),
    ("X-Case", "{x_case}"),
    ("Content-Type", "{content_type}"),
    ("Content-Length", "{CL}"),
];

const SDP: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// Headers whose absence makes a request unusable (RFC 3261 8.1.1); Max-Forwards is not one
/// for a proxy (16.3 step 3: "If the request does not contain a Max-Forwards header field,
/// this check is passed").
const MANDATORY: &[&str] = &["Via", "From", "To", "Call-ID", "CSeq"];
/// Headers the proxy works with (the rest are [`Role::Opaque`]).
const CHECKED: &[&str] = &[
    "Via",
    "Max-Forwards",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Content-Length",
];
/// At most one of each (RFC 3261 7.3.1: only list headers may repeat).
const SINGLETON_CHECKED: &[&str] = &[
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Length",
];

fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// True when `v` is valid for `kind` (RFC 3261 ABNF). Control bytes are judged before this.
fn valid(kind: Kind, v: &[u8]) -> bool {
    match kind {
        Kind::Token => !v.is_empty() && v.iter().all(|&c| is_token(c)),
        Kind::Word => {
            !v.is_empty()
                && v.iter()
                    .all(|&c| is_token(c) || b"()<>:\\\"/[]?{}".contains(&c))
        }
        Kind::Quoted => {
            if std::str::from_utf8(v).is_err() {
                return false;
            }
            let mut i = 0;
            while i < v.len() {
                match v[i] {
                    b'\\' => match v.get(i + 1) {
                        Some(&c) if c <= 0x7f && c != b'\r' && c != b'\n' => i += 2,
                        _ => return false,
                    },
                    b'"' => return false,
                    _ => i += 1,
                }
            }
            true
        }
        Kind::User => {
            let mut i = 0;
            while i < v.len() {
                let c = v[i];
                if c == b'%' {
                    if !(v.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                        && v.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
                    {
                        return false;
                    }
                    i += 3;
                } else if c.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&c) {
                    i += 1;
                } else {
                    return false;
                }
            }
            !v.is_empty()
        }
        Kind::Digits { max, zero_refused } => {
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return false;
            }
            let digits: Vec<u8> = v.iter().copied().skip_while(|&c| c == b'0').collect();
            if digits.len() > 19 {
                return false;
            }
            let n: u64 = std::str::from_utf8(&digits).unwrap().parse().unwrap_or(0);
            n <= max && !(zero_refused && n == 0)
        }
        Kind::Text => true,
    }
}

/// Control bytes that no header value may hold raw (folding aside): everything below 0x20
/// but HTAB, and DEL.
fn has_control(v: &[u8]) -> bool {
    v.iter().any(|&c| (c < 0x20 && c != b'\t') || c == 0x7f)
}

fn slot_label(s: &Slot, v: &[u8]) -> Label {
    if has_control(v) {
        return Label::Refuse;
    }
    match s.role {
        Role::Opaque => Label::Screen,
        Role::Checked if valid(s.kind, v) => Label::Screen,
        Role::Checked => Label::Refuse,
    }
}

/// A message before rendering: start line, header lines (without their line break), the line
/// breaks after the start line and after each header, the blank line, the body.
#[derive(Clone)]
struct Draft {
    lead: Vec<u8>,
    start: Vec<u8>,
    lines: Vec<Vec<u8>>,
    /// `seps[0]` follows the start line, `seps[i + 1]` follows `lines[i]`.
    seps: Vec<Vec<u8>>,
    blank: Vec<u8>,
    body: Vec<u8>,
}

impl Draft {
    fn render(&self) -> Vec<u8> {
        let cl = self.body.len().to_string();
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(&self.lead);
        out.extend_from_slice(&self.start);
        out.extend_from_slice(&self.seps[0]);
        for (l, sep) in self.lines.iter().zip(&self.seps[1..]) {
            out.extend_from_slice(&replace(l, b"{CL}", cl.as_bytes()));
            out.extend_from_slice(sep);
        }
        out.extend_from_slice(&self.blank);
        out.extend_from_slice(&self.body);
        out
    }

    fn index(&self, name: &str) -> usize {
        let p = format!("{name}:");
        self.lines
            .iter()
            .position(|l| l.starts_with(p.as_bytes()))
            .unwrap_or_else(|| panic!("no {name} line"))
    }

    fn remove(&mut self, i: usize) {
        self.lines.remove(i);
        self.seps.remove(i + 1);
    }

    fn insert(&mut self, i: usize, line: Vec<u8>) {
        self.lines.insert(i, line);
        self.seps.insert(i + 1, b"\r\n".to_vec());
    }
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len() + to.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Over the agent's caps (line length, header count, size): refused whatever the content.
fn over_caps(data: &[u8]) -> bool {
    let lim = SipConfig::default();
    if data.len() > lim.max_message_size {
        return true;
    }
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = &data[..head_end];
    let lines: Vec<&[u8]> = head.split(|&c| c == b'\n').collect();
    // One line is the start line; folded lines belong to the header before them.
    let headers = lines
        .iter()
        .skip(1)
        .filter(|l| !l.starts_with(b" ") && !l.starts_with(b"\t"))
        .count();
    lines.iter().any(|l| l.len() > lim.max_line_length) || headers > lim.max_headers
}

struct Gen {
    t: Target,
    cases: Vec<Case>,
}

impl Gen {
    fn tok(&self) -> String {
        format!("mg{}{:05}z", self.t.letter(), self.cases.len())
    }

    /// The valid message with some slots given other text.
    fn draft(&self, overrides: &[(&str, &[u8])]) -> Draft {
        let tok = self.tok();
        let fill = |tpl: &str| -> Vec<u8> {
            let mut v = tpl
                .replace("{transport}", self.t.transport)
                .replace("{local}", &self.t.local.to_string())
                .into_bytes();
            for s in SLOTS {
                let marker = format!("{{{}}}", s.name);
                let text: Vec<u8> = match overrides.iter().find(|(n, _)| *n == s.name) {
                    Some((_, o)) => o.to_vec(),
                    None => s.default.replace("$TOK", &tok).into_bytes(),
                };
                v = replace(&v, marker.as_bytes(), &text);
            }
            v
        };
        let mut start = b"INVITE ".to_vec();
        start.extend(fill(REQUEST_URI));
        start.extend_from_slice(b" SIP/2.0");
        let lines: Vec<Vec<u8>> = HEADERS
            .iter()
            .map(|(n, v)| {
                let mut l = format!("{n}: ").into_bytes();
                l.extend(fill(v));
                l
            })
            .collect();
        Draft {
            lead: vec![],
            start,
            seps: vec![b"\r\n".to_vec(); lines.len() + 1],
            lines,
            blank: b"\r\n".to_vec(),
            body: SDP.as_bytes().to_vec(),
        }
    }

    fn default_of(&self, s: &Slot) -> Vec<u8> {
        s.default.replace("$TOK", &self.tok()).into_bytes()
    }

    fn push(
        &mut self,
        family: &'static str,
        place: &str,
        variant: String,
        label: Label,
        d: &Draft,
    ) {
        self.push_raw(family, place, variant, label, d.render());
    }

    fn push_raw(
        &mut self,
        family: &'static str,
        place: &str,
        variant: String,
        label: Label,
        data: Vec<u8>,
    ) {
        let label = if over_caps(&data) {
            Label::Refuse
        } else {
            label
        };
        self.cases.push(Case {
            id: self.cases.len(),
            family,
            place: place.to_string(),
            variant,
            label,
            data,
        });
    }

    /// Put `text` in one slot; the label follows the slot's grammar and role.
    fn slot_case(&mut self, family: &'static str, s: &Slot, variant: String, text: &[u8]) {
        let d = self.draft(&[(s.name, text)]);
        self.push(family, s.name, variant, slot_label(s, text), &d);
    }
}

/// Lengths of over-long values: powers of two and their neighbours, up to past the size cap.
const LENGTHS: &[usize] = &[
    16, 32, 64, 127, 128, 129, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 2047, 2048, 2049,
    4095, 4096, 4097, 6000, 7000, 8000, 9000, 12000, 16384, 32768, 65536, 70000,
];

const FORMAT_STRINGS: &[&str] = &[
    "%s%n",
    "%s",
    "%s%s%s%s%s%s%s%s%s%s",
    "%n%n%n%n%n%n%n%n%n%n",
    "%x%x%x%x%x%x%x%x",
    "%d%d%d%d%d%d%d%d",
    "%p%p%p%p",
    "%.1024d",
    "%99999999999s",
    "%08x.%08x.%08x.%08x",
    "%%%%%%%%",
    "%c%c%c%c",
    "%ls%ls",
    "%hn%hn",
    "%1$s%2$n",
];

const CONTROLS: &[(&str, &[u8])] = &[
    ("NUL", b"\0"),
    ("NULx8", b"\0\0\0\0\0\0\0\0"),
    ("bare-CR", b"\r"),
    ("bare-LF", b"\n"),
    ("CRLF", b"\r\n"),
    ("BEL", b"\x07"),
    ("ESC", b"\x1b[2J"),
    ("DEL", b"\x7f"),
];

const BAD_UTF8: &[(&str, &[u8])] = &[
    ("0xFF", b"\xff"),
    ("overlong-slash", b"\xc0\xaf"),
    ("surrogate", b"\xed\xa0\x80"),
    ("truncated", b"\xe2\x82"),
];

const INTEGERS: &[&str] = &[
    "-1",
    "-0",
    "0",
    "1",
    "255",
    "256",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "abc",
    "1a",
    "a1",
    "0x10",
    "1.0",
    "1e3",
    "+1",
    "1 2",
    "%d",
    "\u{0661}",
];

/// Every case for one transport, in a fixed order.
pub fn generate(t: Target) -> Vec<Case> {
    let mut g = Gen { t, cases: vec![] };
    overlong(&mut g);
    format_strings(&mut g);
    controls(&mut g);
    bad_utf8(&mut g);
    integers(&mut g);
    content_length(&mut g);
    missing_headers(&mut g);
    doubled_headers(&mut g);
    header_colons(&mut g);
    params_and_brackets(&mut g);
    line_breaks(&mut g);
    versions(&mut g);
    request_lines(&mut g);
    request_uris(&mut g);
    display_names(&mut g);
    header_counts(&mut g);
    control_lines(&mut g);
    g.cases
}

/// Over-long values in every slot, in four fills ("a", "9", "-", "%").
fn overlong(g: &mut Gen) {
    for s in SLOTS {
        for fill in ["a", "9", "-", "%"] {
            for &n in LENGTHS {
                let text = fill.repeat(n).into_bytes();
                g.slot_case("overlong", s, format!("{fill}x{n}"), &text);
            }
        }
    }
}

/// Format strings in every slot: instead of the value, and after it.
fn format_strings(g: &mut Gen) {
    for s in SLOTS {
        for f in FORMAT_STRINGS {
            g.slot_case("format-string", s, format!("replace:{f}"), f.as_bytes());
            let mut v = g.default_of(s);
            v.extend_from_slice(f.as_bytes());
            g.slot_case("format-string", s, format!("append:{f}"), &v);
        }
    }
}

/// True when a line break put at `at` in a header line would start a line that is folding
/// (white space), the blank line, or a header line of its own ("token:"): such a split makes
/// another message, not a broken one, and is left out.
fn split_makes_other_message(rest: &[u8]) -> bool {
    match rest.first() {
        None | Some(b' ' | b'\t' | b'\r' | b'\n') => return true,
        _ => {}
    }
    let n = rest.iter().take_while(|&&c| is_token(c)).count();
    let after = rest[n..].iter().skip_while(|&&c| c == b' ' || c == b'\t');
    n > 0 && after.clone().next() == Some(&b':')
}

/// Control bytes at the start, middle and end of every slot.
fn controls(g: &mut Gen) {
    for s in SLOTS {
        for (name, c) in CONTROLS {
            let base = g.default_of(s);
            for (pos, at) in [
                ("start", 0),
                ("middle", base.len() / 2),
                ("end", base.len()),
            ] {
                let mut v = base[..at].to_vec();
                v.extend_from_slice(c);
                v.extend_from_slice(&base[at..]);
                if c.contains(&b'\n') {
                    // What follows the break in the rendered message: where it differs
                    // from the same message with a marker byte after the break.
                    let text = g.draft(&[(s.name, &v)]).render();
                    let marked = [&base[..at], *c, b"\x02", &base[at..]].concat();
                    let other = g.draft(&[(s.name, &marked)]).render();
                    let p = text.iter().zip(&other).take_while(|(a, b)| a == b).count();
                    if split_makes_other_message(&text[p..]) {
                        continue;
                    }
                }
                g.slot_case("control-byte", s, format!("{name}@{pos}"), &v);
            }
        }
    }
}

/// Invalid UTF-8 instead of and after every slot's text.
fn bad_utf8(g: &mut Gen) {
    for s in SLOTS {
        for (name, b) in BAD_UTF8 {
            g.slot_case("bad-utf8", s, format!("replace:{name}"), b);
            let mut v = g.default_of(s);
            v.extend_from_slice(b);
            g.slot_case("bad-utf8", s, format!("append:{name}"), &v);
        }
    }
}

/// Bad (and a few good) integers in CSeq, Max-Forwards and Expires.
fn integers(g: &mut Gen) {
    for name in ["cseq", "max_forwards", "expires"] {
        let s = SLOTS.iter().find(|s| s.name == name).unwrap();
        for v in INTEGERS {
            // "1 2" in CSeq makes the method "2 INVITE": refused like any bad number.
            g.slot_case("integer", s, format!("{v:?}"), v.as_bytes());
        }
    }
}

/// Content-Length: bad integers, too long, too short. Longer than the body is refused (RFC
/// 3261 18.3: 400 on UDP; on a stream it waits for bytes that never come); shorter is valid:
/// the bytes after the announced body are discarded (UDP, 18.3) or start the next message (TCP).
fn content_length(g: &mut Gen) {
    let body = SDP.len() as u64;
    for v in INTEGERS {
        let mut d = g.draft(&[]);
        let i = d.index("Content-Length");
        d.lines[i] = format!("Content-Length: {v}").into_bytes();
        let label = match v.parse::<u64>() {
            Ok(n) if v.bytes().all(|c| c.is_ascii_digit()) && n <= body => Label::Screen,
            _ => Label::Refuse,
        };
        g.push(
            "content-length",
            "Content-Length",
            format!("{v:?}"),
            label,
            &d,
        );
    }
    for delta in 1..=40u64 {
        for (dir, n, label) in [
            ("too-long", body + delta, Label::Refuse),
            ("too-short", body - delta, Label::Screen),
        ] {
            let mut d = g.draft(&[]);
            let i = d.index("Content-Length");
            d.lines[i] = format!("Content-Length: {n}").into_bytes();
            g.push(
                "content-length",
                "Content-Length",
                format!("{dir}:{delta}"),
                label,
                &d,
            );
        }
    }
}

/// Each header left out. Without Content-Length a datagram's body is the rest of the datagram
/// (RFC 3261 18.3); on a stream Content-Length is mandatory (20.14) but its absence cannot be
/// told from a body of length 0, and the body becomes the next message: such cases (here and
/// in `line_breaks`) are sent over UDP only.
fn missing_headers(g: &mut Gen) {
    for (name, _) in HEADERS {
        if *name == "Content-Length" && g.t.transport == "TCP" {
            continue;
        }
        let mut d = g.draft(&[]);
        let i = d.index(name);
        d.remove(i);
        let label = if MANDATORY.contains(name) {
            Label::Refuse
        } else {
            Label::Screen
        };
        g.push("missing-header", name, "absent".into(), label, &d);
    }
}

/// Each header twice (same line), and the compact form beside the long one.
fn doubled_headers(g: &mut Gen) {
    let label = |name: &str| {
        if SINGLETON_CHECKED.contains(&name) {
            Label::Refuse
        } else {
            Label::Screen
        }
    };
    for (name, _) in HEADERS {
        let mut d = g.draft(&[]);
        let i = d.index(name);
        let line = d.lines[i].clone();
        d.insert(i + 1, line);
        g.push(
            "doubled-header",
            name,
            "same-line-twice".into(),
            label(name),
            &d,
        );
    }
    for (name, compact) in [
        ("Via", "v"),
        ("From", "f"),
        ("To", "t"),
        ("Call-ID", "i"),
        ("Contact", "m"),
        ("Subject", "s"),
        ("Supported", "k"),
        ("Content-Type", "c"),
        ("Content-Length", "l"),
    ] {
        let mut d = g.draft(&[]);
        let i = d.index(name);
        let line = d.lines[i].clone();
        let short = [compact.as_bytes(), &line[name.len()..]].concat();
        d.insert(i + 1, short);
        g.push(
            "doubled-header",
            name,
            format!("plus-compact-{compact}"),
            label(name),
            &d,
        );
    }
}

/// The colon of each header line: missing, doubled, replaced, with white space around it, and
/// empty names and values.
fn header_colons(g: &mut Gen) {
    // Each variant is drafted afresh, for its own token.
    for (name, k) in HEADERS
        .iter()
        .flat_map(|(n, _)| (0..9).map(move |k| (n, k)))
    {
        let checked = CHECKED.contains(name);
        let base = g.draft(&[]);
        let i = base.index(name);
        let line = base.lines[i].clone();
        let value = line[name.len() + 2..].to_vec();
        let variants: [(&str, Vec<u8>, Label); 9] = [
            (
                "no-colon",
                [name.as_bytes(), b" ", &value].concat(),
                Label::Refuse,
            ),
            (
                "semicolon-for-colon",
                [name.as_bytes(), b"; ", &value].concat(),
                Label::Refuse,
            ),
            (
                "double-colon",
                [name.as_bytes(), b":: ", &value].concat(),
                if checked {
                    Label::Refuse
                } else {
                    Label::Screen
                },
            ),
            (
                "empty-name",
                [b": ".as_slice(), &value].concat(),
                Label::Refuse,
            ),
            (
                "space-in-name",
                [
                    &name.as_bytes()[..1],
                    b" ",
                    &name.as_bytes()[1..],
                    b": ",
                    &value,
                ]
                .concat(),
                Label::Refuse,
            ),
            (
                "space-before-colon",
                [name.as_bytes(), b" : ", &value].concat(),
                Label::Screen,
            ),
            (
                "tab-before-colon",
                [name.as_bytes(), b"\t: ", &value].concat(),
                Label::Screen,
            ),
            (
                "no-space-after",
                [name.as_bytes(), b":", &value].concat(),
                Label::Screen,
            ),
            (
                "empty-value",
                [name.as_bytes(), b":"].concat(),
                // Every checked header needs a value; the others are ignored.
                if checked {
                    Label::Refuse
                } else {
                    Label::Screen
                },
            ),
        ];
        let (v, l, label) = variants.into_iter().nth(k).unwrap();
        let mut d = base;
        d.lines[i] = l;
        g.push("header-colon", name, v.into(), label, &d);
    }
}

/// `;` before parameters and the `<>` around name-addr URIs: missing, doubled, swapped.
fn params_and_brackets(g: &mut Gen) {
    let cases: &[(&str, &str, &str, &str, Label)] = &[
        // (header, variant, from, to, label)
        ("Via", "no-semicolon", ";branch", "branch", Label::Refuse),
        (
            "Via",
            "double-semicolon",
            ";branch",
            ";;branch",
            Label::Refuse,
        ),
        (
            "Via",
            "trailing-semicolon",
            ";rport",
            ";rport;",
            Label::Refuse,
        ),
        ("Via", "no-slash", "SIP/2.0/", "SIP/2.0", Label::Refuse),
        (
            "Via",
            "double-slash",
            "SIP/2.0/",
            "SIP/2.0//",
            Label::Refuse,
        ),
        ("Via", "no-space", " 127.0.0.1", "127.0.0.1", Label::Refuse),
        (
            "Via",
            "space-for-colon-port",
            "127.0.0.1:",
            "127.0.0.1 ",
            Label::Refuse,
        ),
        (
            "Via",
            "double-colon-port",
            "127.0.0.1:",
            "127.0.0.1::",
            Label::Refuse,
        ),
        (
            "Via",
            "empty-branch",
            "branch=z9hG4bK",
            "branch=;x=z9hG4bK",
            Label::Refuse,
        ),
        ("From", "no-semicolon", ";tag", "tag", Label::Refuse),
        ("From", "double-semicolon", ";tag", ";;tag", Label::Refuse),
        ("From", "empty-tag", "mg", ";mg", Label::Refuse),
        ("To", "trailing-semicolon", ">", ">;", Label::Refuse),
        ("CSeq", "no-space", " INVITE", "INVITE", Label::Refuse),
        (
            "CSeq",
            "double-number",
            " INVITE",
            " 1 INVITE",
            Label::Refuse,
        ),
        ("Call-ID", "space-inside", "@127", " @127", Label::Refuse),
        ("Call-ID", "double-at", "@127", "@@127", Label::Refuse),
        ("Contact", "trailing-semicolon", ">", ">;", Label::Refuse),
        (
            "P-Asserted-Identity",
            "trailing-semicolon",
            ">",
            ">;",
            Label::Screen,
        ),
    ];
    for (name, variant, from, to, label) in cases {
        let mut d = g.draft(&[]);
        let i = d.index(name);
        let line = d.lines[i].clone();
        let pos = line
            .windows(from.len())
            .position(|w| w == from.as_bytes())
            .unwrap_or_else(|| panic!("{name}: no {from}"));
        d.lines[i] = [&line[..pos], to.as_bytes(), &line[pos + from.len()..]].concat();
        g.push("separator", name, (*variant).into(), *label, &d);
    }
    for name in ["From", "To", "Contact", "P-Asserted-Identity"] {
        let checked = CHECKED.contains(&name);
        // Without both brackets Contact (no display name) is a valid addr-spec; From and To
        // have a quoted display name, which needs them.
        let has_display = name != "Contact";
        for (variant, f) in [
            ("no-lt", ("<", "")),
            ("no-gt", (">", "")),
            ("double-lt", ("<", "<<")),
            ("double-gt", (">", ">>")),
            ("no-brackets", ("", "")),
            ("swapped", ("", "")),
        ] {
            let mut d = g.draft(&[]);
            let i = d.index(name);
            let line = d.lines[i].clone();
            let l = match variant {
                "no-brackets" => replace(&replace(&line, b"<", b""), b">", b""),
                "swapped" => replace(
                    &replace(&replace(&line, b"<", b"\x01"), b">", b"<"),
                    b"\x01",
                    b">",
                ),
                _ => replace(&line, f.0.as_bytes(), f.1.as_bytes()),
            };
            d.lines[i] = l;
            let valid = variant == "no-brackets" && !has_display;
            let label = if !checked || valid {
                Label::Screen
            } else {
                Label::Refuse
            };
            g.push("separator", name, variant.into(), label, &d);
        }
    }
}

/// Line breaks between header lines: missing (two lines joined), doubled (the headers end
/// early), folding (valid), line breaks before the start line (valid, RFC 3261 7.5).
fn line_breaks(g: &mut Gen) {
    let names: Vec<&str> = HEADERS.iter().map(|(n, _)| *n).collect();
    // Joined: the start line with Via, then each header with the next; the last with the
    // blank line (the body lines become header lines without a colon).
    // Joined lines: the first keeps its name and gets the second as the tail of its value;
    // the second header is gone. Refused when the first is checked or the second mandatory.
    for i in 0..=names.len() {
        if i > 0 && i < names.len() && names[i] == "Content-Length" && g.t.transport == "TCP" {
            continue; // Content-Length gone: UDP only, as in `missing_headers`
        }
        let mut d = g.draft(&[]);
        d.seps[i] = vec![];
        let (place, label) = match i {
            0 => ("start-line+Via".to_string(), Label::Refuse),
            i if i == names.len() => ("Content-Length+blank-line".to_string(), Label::Refuse),
            i => {
                let (a, b) = (names[i - 1], names[i]);
                let label = if CHECKED.contains(&a) || MANDATORY.contains(&b) {
                    Label::Refuse
                } else {
                    Label::Screen
                };
                (format!("{a}+{b}"), label)
            }
        };
        g.push("crlf", &place, "missing".into(), label, &d);
    }
    // A blank line after header i: refused while a mandatory header is still to come;
    // after the last one the message is valid and the rest is its body. Content-Length then
    // is in the body: UDP only, as in `missing_headers`.
    for i in 0..names.len() - 1 {
        let screen = !names[i + 1..].iter().any(|n| MANDATORY.contains(n));
        if screen && g.t.transport == "TCP" {
            continue;
        }
        let mut d = g.draft(&[]);
        d.seps[i + 1] = b"\r\n\r\n".to_vec();
        let label = if names[i + 1..].iter().any(|n| MANDATORY.contains(n)) {
            Label::Refuse
        } else {
            Label::Screen
        };
        g.push("crlf", names[i], "doubled-after".into(), label, &d);
    }
    // Folding (RFC 3261 7.3.1): valid.
    for (name, from, to) in [
        ("Via", " 127.0.0.1", "\r\n 127.0.0.1"),
        ("From", " <sip", "\r\n <sip"),
        ("To", " <sip", "\r\n\t<sip"),
        ("CSeq", " INVITE", "\r\n INVITE"),
        ("Subject", ": Hello", ":\r\n Hello"),
        ("Max-Forwards", ": 70", ":\r\n 70"),
    ] {
        let mut d = g.draft(&[]);
        let i = d.index(name);
        d.lines[i] = replace(&d.lines[i], from.as_bytes(), to.as_bytes());
        g.push("crlf", name, "folded".into(), Label::Screen, &d);
    }
    for (variant, lead) in [("CRLF", "\r\n"), ("CRLFx2", "\r\n\r\n"), ("LF", "\n")] {
        let mut d = g.draft(&[]);
        d.lead = lead.as_bytes().to_vec();
        g.push(
            "crlf",
            "before-start-line",
            variant.into(),
            Label::Screen,
            &d,
        );
    }
}

/// The SIP version of the request line. Refused: 505 for another `SIP/x.y`, 400 for the rest;
/// but `sip/2.0` and `Sip/2.0` are valid (RFC 3261 7.1: the version is case-insensitive) and
/// screened as usual.
fn versions(g: &mut Gen) {
    let long = format!("SIP/2.0{}", "0".repeat(9000));
    for v in [
        "SIP/3.0",
        "SIP/1.0",
        "SIP/2.1",
        "SIP/20",
        "SIP/2.0.0",
        "SIP/2",
        "SIP/",
        "SIP",
        "HTTP/1.1",
        "",
        "sip/2.0",
        "Sip/2.0",
        "SIP/2.0 ",
        "SIP /2.0",
        "SIP/-2.0",
        "SIP/99999999999999999999.0",
        "SIP/%s%n",
        "SIP/2.O",
        "SIP/2.0\0",
        "SIP/2.0\r",
        long.as_str(),
    ] {
        let mut d = g.draft(&[]);
        d.start = replace(&d.start, b"SIP/2.0", v.as_bytes());
        let variant = if v.len() > 40 {
            format!("SIP/2.0+0x{}", v.len() - 7)
        } else {
            format!("{v:?}")
        };
        let label = if v.eq_ignore_ascii_case("SIP/2.0") {
            Label::Screen
        } else {
            Label::Refuse
        };
        g.push("version", "request-line", variant, label, &d);
    }
}

/// A rewrite of the request line.
type Rewrite = fn(&[u8]) -> Vec<u8>;

/// The shape of the request line: spaces, method case, missing parts.
fn request_lines(g: &mut Gen) {
    let variants: [(&str, Rewrite); 8] = [
        ("double-space-1", |s| replace(s, b"INVITE ", b"INVITE  ")),
        ("double-space-2", |s| replace(s, b" SIP/2.0", b"  SIP/2.0")),
        ("tab-for-space", |s| replace(s, b"INVITE ", b"INVITE\t")),
        ("leading-space", |s| [b" ".as_slice(), s].concat()),
        ("lowercase-method", |s| replace(s, b"INVITE", b"invite")),
        ("no-uri", |s| {
            let v = s.iter().position(|&c| c == b' ').unwrap();
            let w = s.iter().rposition(|&c| c == b' ').unwrap();
            [&s[..v], &s[w..]].concat()
        }),
        ("no-version", |s| replace(s, b" SIP/2.0", b"")),
        ("method-only", |_| b"INVITE".to_vec()),
    ];
    for (variant, f) in variants {
        let mut d = g.draft(&[]);
        d.start = f(&d.start);
        g.push(
            "request-line",
            "request-line",
            variant.into(),
            Label::Refuse,
            &d,
        );
    }
}

/// Broken request-URIs (RFC 3261 19.1.1; headers are not allowed in a Request-URI, 19.1.5).
fn request_uris(g: &mut Gen) {
    for uri in [
        "sip:",
        "sip:@127.0.0.1",
        "sip:bob@",
        "sip:bob@127.0.0.1:99999",
        "sip:bob@127.0.0.1:-1",
        "sip:bob@127.0.0.1:abc",
        "sip:bob@[::1",
        "sip:bob@::1",
        "sip:bob@127.0.0.1?subject=x",
        "<sip:bob@127.0.0.1>",
        "sip:bob@127.0.0.1>",
        "sip:bob@127.0.0.1\"",
        "bob@127.0.0.1",
        ":bob@127.0.0.1",
        "1sip:bob@127.0.0.1",
        "s%p:bob@127.0.0.1",
        "sip:bob@127.0.0.1%s%n",
        "sip:bob@@127.0.0.1",
    ] {
        let mut d = g.draft(&[]);
        let user = SLOTS[0].default;
        let old = format!("sip:{user}@127.0.0.1");
        d.start = replace(&d.start, old.as_bytes(), uri.as_bytes());
        g.push(
            "request-uri",
            "request-uri",
            format!("{uri:?}"),
            Label::Refuse,
            &d,
        );
    }
}

/// Display names of From, To, Contact and P-Asserted-Identity (only the first three are
/// checked; a bad P-Asserted-Identity is ignored and forwarded).
fn display_names(g: &mut Gen) {
    let variants: &[(&str, &[u8], bool)] = &[
        // (variant, name-addr with URI as `U`, valid)
        ("unbalanced-open", b"\"Alice <U>", false),
        ("unbalanced-close", b"Alice\" <U>", false),
        ("quote-inside", b"\"Al\"ice\" <U>", false),
        ("escaped-close", b"\"Alice\\\" <U>", false),
        ("escaped-backslash", b"\"Alice\\\\\" <U>", true),
        ("quoted-pair", b"\"A\\lice\" <U>", true),
        ("two-tokens", b"Alice Smith <U>", true),
        ("at-in-token", b"Al@ice <U>", false),
        ("semicolon-in-token", b"Al;ice <U>", false),
        ("comma-in-token", b"Al,ice <U>", false),
        ("empty-quoted", b"\"\" <U>", true),
        ("no-space", b"\"Alice\"<U>", true),
        ("tab", b"Alice\t<U>", true),
        ("two-quoted", b"\"Alice\" \"Bob\" <U>", false),
        ("after-uri", b"<U> \"Alice\"", false),
        ("utf8", "\"\u{c5}lice\" <U>".as_bytes(), true),
        ("latin1", b"\"\xc5lice\" <U>", false),
        ("long-quoted", b"\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\" <U>", true),
    ];
    let local = g.t.local.to_string();
    for (name, uri) in [
        ("From", "sip:+15552223333@127.0.0.1".to_string()),
        ("To", "sip:+15550001111@127.0.0.1".to_string()),
        ("Contact", format!("sip:alice@{local}")),
        (
            "P-Asserted-Identity",
            "sip:+15552223333@127.0.0.1".to_string(),
        ),
    ] {
        let checked = CHECKED.contains(&name);
        for (variant, na, ok) in variants {
            let mut d = g.draft(&[]);
            let i = d.index(name);
            let mut line = format!("{name}: ").into_bytes();
            line.extend(replace(na, b"U", uri.as_bytes()));
            if name == "From" {
                line.extend(format!(";tag={}", g.tok()).into_bytes());
            }
            d.lines[i] = line;
            let label = if *ok || !checked {
                Label::Screen
            } else {
                Label::Refuse
            };
            g.push("display-name", name, (*variant).into(), label, &d);
        }
    }
}

/// Many headers: extension headers, Via lines, Vias joined by commas in one line.
fn header_counts(g: &mut Gen) {
    let cap = SipConfig::default().max_headers;
    let base = HEADERS.len();
    // Below and above the header cap (the label of the ones above comes from `over_caps`).
    for n in [
        1,
        10,
        50,
        100,
        cap - base - 5,
        cap - base + 5,
        200,
        1000,
        3000,
        6000,
    ] {
        let mut d = g.draft(&[]);
        let at = d.index("Content-Type");
        for k in 0..n {
            d.insert(at, format!("X-Filler-{k}: {k}").into_bytes());
        }
        g.push(
            "header-count",
            "X-Filler",
            format!("x{n}"),
            Label::Screen,
            &d,
        );
    }
    for n in [2, 10, 50, 100, 150, 500] {
        let mut d = g.draft(&[]);
        let at = d.index("Via") + 1;
        for k in 0..n {
            d.insert(
                at,
                format!(
                    "Via: SIP/2.0/UDP 10.0.{}.{}:5060;branch=z9hG4bKhop{k}",
                    k / 250,
                    k % 250
                )
                .into_bytes(),
            );
        }
        g.push(
            "header-count",
            "Via",
            format!("lines-x{n}"),
            Label::Screen,
            &d,
        );
    }
    for n in [2, 10, 50, 100, 200] {
        let mut d = g.draft(&[]);
        let i = d.index("Via");
        let mut line = d.lines[i].clone();
        for k in 0..n {
            line.extend(
                format!(
                    ", SIP/2.0/UDP 10.0.{}.{}:5060;branch=z9hG4bKhop{k}",
                    k / 250,
                    k % 250
                )
                .into_bytes(),
            );
        }
        d.lines[i] = line;
        g.push(
            "header-count",
            "Via",
            format!("commas-x{n}"),
            Label::Screen,
            &d,
        );
    }
}

/// Control bytes at the edges of every header line and of an extension header the template
/// lacks, and bare CRs standing for line breaks (issue 13: messages holding NUL, bare CR or
/// injected CRLF in Content-Type, P-Asserted-Identity, User-Agent, X- headers or Call-ID were
/// forwarded). All must be answered 4xx or dropped: RFC 3261 allows no raw control byte but
/// HTAB in a header. Appended after the other families, so their case numbers do not move.
fn control_lines(g: &mut Gen) {
    let names: Vec<&str> = HEADERS.iter().map(|(n, _)| *n).collect();
    for name in names.iter().copied().chain(["X-Extra"]) {
        for (ctl, c) in CONTROLS.iter().filter(|(_, c)| !c.contains(&b'\n')) {
            for place in ["after-colon", "before-line-end"] {
                let mut d = g.draft(&[]);
                let i = match name {
                    "X-Extra" => {
                        let at = d.index("X-Case");
                        d.insert(at, b"X-Extra: injected".to_vec());
                        at
                    }
                    _ => d.index(name),
                };
                let line = d.lines[i].clone();
                let at = match place {
                    "after-colon" => name.len() + 1,
                    _ => line.len(),
                };
                d.lines[i] = [&line[..at], *c, &line[at..]].concat();
                g.push(
                    "control-line",
                    name,
                    format!("{ctl}@{place}"),
                    Label::Refuse,
                    &d,
                );
            }
        }
    }
    // A bare CR where a line break should be: one header line holding two.
    for name in [
        "Content-Type",
        "P-Asserted-Identity",
        "User-Agent",
        "X-Case",
        "Call-ID",
    ] {
        let mut d = g.draft(&[]);
        let i = d.index(name);
        let mut line = d.lines[i].clone();
        line.extend_from_slice(b"\rX-Injected: 1");
        d.lines[i] = line;
        g.push(
            "control-line",
            name,
            "bare-CR-header-split".into(),
            Label::Refuse,
            &d,
        );
    }
}
