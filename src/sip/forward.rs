//! The edits a proxy makes to what it passes on, spliced into the received bytes (see
//! [`Splice`]): on a request our Via (with `received`/`rport` on the one below), Record-Route,
//! Max-Forwards, our Route popped, the display name rewritten, headers added, the body
//! replaced; on a response our Via popped and the body replaced.
//!
//! Also who we are on the wire ([`Local`]): the host and port we write into Via and
//! Record-Route are the ones we must recognise when they come back. Knows nothing of
//! transactions, routing decisions or why a call is forwarded.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use bytes::Bytes;

use super::edit::Splice;
use super::msg::{split_commas, Hdr, Message, StartLine, Via};
use super::uri::{quote_display, NameAddr, Scheme, Uri};
use super::Transport;

/// Prefix of every branch we generate: the magic cookie plus our mark.
pub(super) const BRANCH_PREFIX: &str = "z9hG4bKsg";

/// An IP literal host (bracketed IPv6 included); names are not resolved.
pub(super) fn ip_of(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Our address as peers see it.
pub(super) struct Local {
    /// Written towards IPv4 peers (and towards any peer when there is no `host6`).
    pub(super) host: String,
    /// Written towards IPv6 peers, when it differs from `host`.
    pub(super) host6: Option<String>,
    pub(super) port: u16,
    /// The hosts as IPs, and the bound IPs: a peer may name us by any.
    pub(super) ips: Vec<IpAddr>,
    /// The TLS listener's port, when there is one.
    pub(super) tls_port: Option<u16>,
}

impl Local {
    fn is_ours_host(&self, host: &str, port: Option<u16>, sips: bool) -> bool {
        let default = if sips { 5061 } else { 5060 };
        let port = port.unwrap_or(default);
        if port != self.port && Some(port) != self.tls_port {
            return false;
        }
        host.eq_ignore_ascii_case(&self.host)
            || self
                .host6
                .as_deref()
                .is_some_and(|h| host.eq_ignore_ascii_case(h))
            || ip_of(host).is_some_and(|ip| self.ips.contains(&ip))
    }

    /// The host a peer at `ip` reaches us at: one of its own family (RFC 3261 18.2.1 has the
    /// peer add `received` when our Via names another, but the Record-Route it must follow).
    pub(super) fn host_for(&self, ip: IpAddr) -> &str {
        match (&self.host6, ip) {
            (Some(h), IpAddr::V6(_)) => h,
            _ => &self.host,
        }
    }

    pub(super) fn via_is_ours(&self, v: &Via<'_>) -> bool {
        v.branch.is_some_and(|b| b.starts_with(BRANCH_PREFIX))
            && self.is_ours_host(v.host, v.port, false)
    }

    pub(super) fn uri_is_ours(&self, u: &Uri<'_>) -> bool {
        u.is_sip() && self.is_ours_host(u.host, u.port, u.scheme == Scheme::Sips)
    }

    /// The port peers reach us at over `t`: the TLS listener's for TLS (without one, the
    /// shared port, and TLS peers reach us only on the connections we open).
    fn port_for(&self, t: Transport) -> u16 {
        match (t, self.tls_port) {
            (Transport::Tls, Some(p)) => p,
            _ => self.port,
        }
    }

    /// Our Record-Route URI for the side of a call reached over `t`: `sips:` when the request
    /// was (RFC 3261 16.6 item 4 / RFC 5630), else with its transport.
    /// The host is the one of the side's family (`ip`, the side's address).
    fn record_route(&self, t: Transport, ip: IpAddr, sips: bool) -> String {
        let port = self.port_for(t);
        let host = self.host_for(ip);
        match (t, sips) {
            (Transport::Tls, true) => format!("<sips:{host}:{port};lr>"),
            (Transport::Tls, false) => format!("<sip:{host}:{port};transport=tls;lr>"),
            (Transport::Tcp, _) => format!("<sip:{host}:{port};transport=tcp;lr>"),
            (Transport::Udp, _) => format!("<sip:{host}:{port};lr>"),
        }
    }
}

/// Per-request forwarding options.
#[derive(Default)]
pub(super) struct Fwd<'a> {
    pub(super) display: Option<&'a str>,
    pub(super) headers: &'a [String],
    pub(super) record_route: bool,
    pub(super) body: Option<Vec<u8>>,
    /// A request from the callee to a caller whose INVITE we changed: undo it (see [`Restore`]).
    pub(super) restore: Option<&'a Restore>,
    /// A new user part for the Request-URI (a diverted call).
    pub(super) user: Option<&'a str>,
}

/// What the caller of a call we changed for the callee must get back as it was: a caller is
/// never told its call was flagged. The callee's side copies the From we rewrote into its
/// responses (and into the To of its own requests), and a B2BUA may echo the headers we added.
#[derive(Debug)]
pub(super) struct Restore {
    /// The caller's From value as it sent it, when we rewrote its display name.
    pub(super) from: Option<Box<str>>,
    /// The INVITE's CSeq number: the responses to it are the ones that carry our From.
    pub(super) cseq: u32,
    /// The header lines we added (`Name: value`); an echo of one is dropped.
    pub(super) added: Vec<String>,
}

impl Restore {
    /// For an INVITE forwarded with these edits; `None` when it was forwarded unchanged.
    pub(super) fn of(msg: &Message, fwd: &Fwd<'_>) -> Option<Restore> {
        if fwd.display.is_none() && fwd.headers.is_empty() {
            return None;
        }
        Some(Restore {
            from: fwd
                .display
                .and_then(|_| msg.value(Hdr::From))
                .map(Box::from),
            cseq: msg.cseq().map_or(0, |c| c.0),
            added: fwd.headers.to_vec(),
        })
    }

    /// Undo our edits on a message towards the caller: `value_of` is the header (From on a
    /// response to the INVITE, To on a request from the callee) that carries our rewrite.
    fn apply(&self, sp: &mut Splice, msg: &Message, value_of: Option<Hdr>) {
        if let (Some(from), Some(h)) = (&self.from, value_of.and_then(|k| msg.header(k))) {
            sp.replace(h.value.clone(), from.as_bytes());
        }
        for h in &msg.headers {
            let (name, value) = (msg.bytes(h.name.clone()), msg.bytes(h.value.clone()));
            let ours = self.added.iter().any(|a| {
                a.split_once(':').is_some_and(|(n, v)| {
                    n.trim().as_bytes().eq_ignore_ascii_case(name) && v.trim().as_bytes() == value
                })
            });
            if ours {
                sp.delete(h.line.clone());
            }
        }
    }
}

/// The received request with our edits spliced in.
///
/// Over TLS our Via carries `alias` (RFC 5923): the next hop may send its requests back on
/// the connection we opened. When the call's two sides differ in TLS (one side TLS, the other
/// not) we Record-Route twice (RFC 5658), one URI per side, so neither side is asked to reach
/// us over a transport it did not use; likewise when they differ in address family (an IPv4
/// caller, an IPv6 callee), so each side is given our host in its own family. Our Via names
/// us in the family of `to`, where the request goes.
pub(super) fn request(
    me: &Local,
    msg: &Message,
    (from, in_t): (SocketAddr, Transport),
    (to, out_t): (SocketAddr, Transport),
    branch: &str,
    fwd: &Fwd<'_>,
) -> Bytes {
    let mut sp = Splice::new();
    let alias = if out_t == Transport::Tls {
        ";alias"
    } else {
        ""
    };
    sp.insert(
        msg.head_start,
        format!(
            "Via: SIP/2.0/{} {}:{};branch={branch}{alias}\r\n",
            out_t.as_str(),
            me.host_for(to.ip()),
            me.port_for(out_t)
        ),
    );
    if fwd.record_route {
        let sips = msg.request_uri().is_some_and(|u| u.scheme == Scheme::Sips);
        // The top one faces the callee (its route set keeps our order), the one below the
        // caller (whose route set is reversed).
        let out_face = me.record_route(out_t, to.ip(), sips);
        sp.insert(msg.head_start, format!("Record-Route: {out_face}\r\n"));
        let families = me.host_for(from.ip()) != me.host_for(to.ip());
        if (in_t == Transport::Tls) != (out_t == Transport::Tls) || families {
            let in_face = me.record_route(in_t, from.ip(), sips);
            sp.insert(msg.head_start, format!("Record-Route: {in_face}\r\n"));
        }
    }
    mark_received(&mut sp, msg, from);
    upper_case_version(&mut sp, msg);
    if let Some(user) = fwd.user {
        retarget(&mut sp, msg, user);
    }
    match msg.header(Hdr::MaxForwards) {
        Some(h) => {
            let mf = msg.max_forwards().unwrap_or(70).saturating_sub(1);
            sp.replace(h.value.clone(), mf.to_string());
        }
        None => sp.insert(msg.head_end, "Max-Forwards: 70\r\n"),
    }
    pop_our_routes(&mut sp, msg, me);
    if let Some(r) = fwd.restore {
        r.apply(&mut sp, msg, Some(Hdr::To));
    }
    if let Some(name) = fwd.display {
        let q = quote_display(name);
        let ranges = msg
            .values(Hdr::From)
            .take(1)
            .chain(msg.values(Hdr::PAssertedIdentity));
        for r in ranges {
            rewrite_display(&mut sp, msg, r, &q);
        }
    }
    for h in fwd.headers {
        let h = h.trim_end_matches(['\r', '\n']);
        if !h.is_empty() && !h.contains(['\r', '\n']) {
            sp.insert(msg.head_end, format!("{h}\r\n"));
        }
    }
    let body_len = match &fwd.body {
        Some(nb) => {
            sp.replace(msg.body.clone(), nb.clone());
            nb.len()
        }
        None => msg.body.len(),
    };
    fix_content_length(&mut sp, msg, body_len, fwd.body.is_some());
    sp.apply(&msg.buf, msg.body.end)
}

/// Replace the Request-URI's user part by `user`. Only a user made of characters a SIP user
/// part may hold unescaped is written (the app's config is checked, but bytes are not trusted
/// here); a URI without a user part is left as it is.
fn retarget(sp: &mut Splice, msg: &Message, user: &str) {
    let safe = !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()+".contains(&b));
    let old = msg.request_uri().and_then(|u| u.user);
    if let (true, Some(old)) = (safe, old) {
        let at = off(&msg.buf, old);
        sp.replace(at..at + old.len(), user);
    }
}

/// A response with our Via popped (and an SDP replacement); towards a caller whose INVITE we
/// changed, with the change undone.
pub(super) fn response(msg: &Message, body: Option<Vec<u8>>, restore: Option<&Restore>) -> Bytes {
    let mut sp = Splice::new();
    if let Some(r) = restore {
        let to_invite = msg
            .cseq()
            .is_some_and(|(n, m)| n == r.cseq && m == "INVITE");
        r.apply(&mut sp, msg, to_invite.then_some(Hdr::From));
    }
    upper_case_version(&mut sp, msg);
    if let Some((hi, vr)) = first_value(msg, Hdr::Via) {
        remove_value(&mut sp, msg, hi, vr);
    }
    let len = match &body {
        Some(nb) => {
            sp.replace(msg.body.clone(), nb.clone());
            nb.len()
        }
        None => msg.body.len(),
    };
    fix_content_length(&mut sp, msg, len, body.is_some());
    sp.apply(&msg.buf, msg.body.end)
}

/// RFC 3261 7.1: the version is read in any case but sent in upper case. A message that passed
/// the scanner has exactly `SIP/2.0` in some case where its start line says.
fn upper_case_version(sp: &mut Splice, msg: &Message) {
    const V: &[u8] = b"SIP/2.0";
    let at = match &msg.start {
        StartLine::Request { uri, .. } => uri.end + 1,
        StartLine::Response { .. } => 0,
    };
    if msg.buf.get(at..at + V.len()).is_some_and(|v| v != V) {
        sp.replace(at..at + V.len(), "SIP/2.0");
    }
}

/// RFC 3581 / 18.2.1 on the received top Via: where the request really came from, so the
/// responses find their way back through NAT.
fn mark_received(sp: &mut Splice, msg: &Message, from: SocketAddr) {
    let Some(r) = msg.top_via_range() else {
        return;
    };
    let Some(v) = msg.str(r.clone()).and_then(|s| Via::parse(s).ok()) else {
        return;
    };
    let mut add = String::new();
    if v.received.is_none() && ip_of(v.host) != Some(from.ip()) {
        let _ = write!(add, ";received={}", from.ip());
    }
    if v.rport == Some(None) {
        if let Some(pos) = find_flag(msg.str(r.clone()).unwrap_or(""), "rport") {
            sp.insert(r.start + pos, format!("={}", from.port()));
        }
    }
    sp.insert(r.end, add);
}

fn off(buf: &[u8], s: &str) -> usize {
    s.as_ptr() as usize - buf.as_ptr() as usize
}

/// Position just after a flag parameter `;name` (no value) inside a Via value.
fn find_flag(v: &str, name: &str) -> Option<usize> {
    let lower = v.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower[from..].find(name) {
        let st = from + p;
        let en = st + name.len();
        let before = lower[..st].trim_end_matches(|c: char| c.is_ascii_whitespace());
        let after = lower[en..].trim_start_matches(|c: char| c.is_ascii_whitespace());
        if before.ends_with(';')
            && (after.is_empty() || after.starts_with(';') || after.starts_with(','))
        {
            return Some(en);
        }
        from = en;
    }
    None
}

/// Loose routing: pop the top Routes that name us (two when we Record-Routed twice).
fn pop_our_routes(sp: &mut Splice, msg: &Message, me: &Local) {
    let mut popped = 0;
    for h in msg.headers.iter().filter(|h| h.kind == Hdr::Route) {
        let vals: Vec<Range<usize>> = split_commas(&msg.buf, h.value.clone()).collect();
        let ours = vals
            .iter()
            .take(2 - popped)
            .take_while(|vr| {
                msg.str((*vr).clone())
                    .and_then(|s| NameAddr::parse(s).ok())
                    .is_some_and(|n| me.uri_is_ours(&n.uri))
            })
            .count();
        popped += ours;
        if ours == vals.len() {
            sp.delete(h.line.clone());
        } else {
            if ours > 0 {
                sp.delete(vals[0].start..vals[ours].start);
            }
            return;
        }
        if popped == 2 {
            return;
        }
    }
}

fn first_value(msg: &Message, kind: Hdr) -> Option<(usize, Range<usize>)> {
    let hi = msg.headers.iter().position(|h| h.kind == kind)?;
    let v = split_commas(&msg.buf, msg.headers[hi].value.clone()).next()?;
    Some((hi, v))
}

/// Remove one value of a (possibly comma-joined) header; the whole line when it is the only one.
fn remove_value(sp: &mut Splice, msg: &Message, hi: usize, vr: Range<usize>) {
    let h = &msg.headers[hi];
    let vals: Vec<Range<usize>> = split_commas(&msg.buf, h.value.clone()).collect();
    let Some(i) = vals.iter().position(|v| *v == vr) else {
        return;
    };
    if vals.len() == 1 {
        sp.delete(h.line.clone());
    } else if i + 1 < vals.len() {
        sp.delete(vals[i].start..vals[i + 1].start);
    } else {
        sp.delete(vals[i - 1].end..vals[i].end);
    }
}

fn rewrite_display(sp: &mut Splice, msg: &Message, r: Range<usize>, quoted: &str) {
    let b: &[u8] = &msg.buf;
    let Some(na) = msg.str(r.clone()).and_then(|s| NameAddr::parse(s).ok()) else {
        return;
    };
    match (na.display_raw, na.bracketed) {
        (Some(d), _) => {
            let o = off(b, d);
            // Keep the separation from `<` that an unquoted token display may have relied on.
            sp.replace(o..o + d.len(), quoted);
        }
        (None, true) => {
            if let Some(lt) = b[r.clone()].iter().position(|&c| c == b'<') {
                sp.insert(r.start + lt, format!("{quoted} "));
            }
        }
        (None, false) => {
            let o = off(b, na.uri.raw);
            sp.insert(o, format!("{quoted} <"));
            sp.insert(o + na.uri.raw.len(), ">");
        }
    }
}

/// Make Content-Length right for a body of `len` bytes.
fn fix_content_length(sp: &mut Splice, msg: &Message, len: usize, changed: bool) {
    match msg.header(Hdr::ContentLength) {
        Some(h) if changed => sp.replace(h.value.clone(), len.to_string()),
        Some(_) => {}
        None => sp.insert(msg.head_end, format!("Content-Length: {len}\r\n")),
    }
    if msg.body.start == msg.head_end {
        // A datagram without the blank line: supply it.
        sp.insert(msg.head_end, "\r\n");
    }
}
