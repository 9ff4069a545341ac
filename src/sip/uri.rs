//! URIs (`sip:`, `sips:`, `tel:` and opaque unknown schemes) and name-addr values (From, To,
//! Contact, P-Asserted-Identity, Route), parsed as borrowed slices of the received text.
//!
//! Knows nothing of messages or headers beyond one value's text.

use std::borrow::Cow;

use super::grammar::{
    is_lws, is_token, is_uri_param, is_uri_user, parse_uint, quoted_string_end, skip_lws,
    token_end, valid_host,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    Other,
}

/// A parsed URI; every field borrows from the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    pub raw: &'a str,
    pub scheme: Scheme,
    /// The scheme as written (`sip`, `TEL`, `nobodyKnowsThisScheme`).
    pub scheme_raw: &'a str,
    /// User part (still `%`-escaped); for `tel:` the number; `None` when absent.
    pub user: Option<&'a str>,
    /// Host (IPv6 references keep their brackets); empty for `tel:` and unknown schemes.
    pub host: &'a str,
    pub port: Option<u16>,
    /// Parameters after the host (or the tel number), starting with `;`, or empty.
    pub params: &'a str,
    /// Headers after `?`, without the `?`.
    pub headers: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UriError;

fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(mut i) = memchr::memchr(b'%', b) else {
        return true;
    };
    while i < b.len() {
        if b[i] == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Remove `%xx` escapes; invalid UTF-8 after unescaping is replaced.
pub fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

impl<'a> Uri<'a> {
    pub fn parse(raw: &'a str) -> Result<Uri<'a>, UriError> {
        let colon = memchr::memchr(b':', raw.as_bytes()).ok_or(UriError)?;
        let scheme_raw = &raw[..colon];
        let sb = scheme_raw.as_bytes();
        if sb.is_empty()
            || !sb[0].is_ascii_alphabetic()
            || !sb
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err(UriError);
        }
        let rest = &raw[colon + 1..];
        if rest.is_empty() || rest.bytes().any(|c| c <= b' ' || c == 0x7f) {
            return Err(UriError);
        }
        let scheme = if scheme_raw.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_raw.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_raw.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let mut uri = Uri {
            raw,
            scheme,
            scheme_raw,
            user: None,
            host: "",
            port: None,
            params: "",
            headers: None,
        };
        match scheme {
            Scheme::Other => Ok(uri),
            Scheme::Tel => {
                let (num, params) = rest.split_at(rest.find(';').unwrap_or(rest.len()));
                let ok = !num.is_empty()
                    && num.bytes().all(|c| {
                        c.is_ascii_hexdigit()
                            || matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
                    });
                if !ok {
                    return Err(UriError);
                }
                uri.user = Some(num);
                uri.params = params;
                Ok(uri)
            }
            Scheme::Sip | Scheme::Sips => {
                sip_rest(&mut uri, rest)?;
                Ok(uri)
            }
        }
    }

    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// A URI parameter by name (case-insensitive): `Some("")` for a flag like `lr`.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        param_in(self.params, name)
    }

    /// The user part with `%xx` escapes removed.
    pub fn user_unescaped(&self) -> Option<Cow<'a, str>> {
        self.user.map(unescape)
    }

    /// The user part with any `;param` suffix removed (`+1555;verstat=...` -> `+1555`).
    pub fn user_base(&self) -> Option<&'a str> {
        self.user.map(|u| u.split(';').next().unwrap_or(u))
    }
}

/// What follows `sip:` or `sips:`: userinfo, hostport, parameters and headers, checked against
/// the RFC 3261 character sets and stored into `uri`.
fn sip_rest<'a>(uri: &mut Uri<'a>, rest: &'a str) -> Result<(), UriError> {
    let mut hp = rest;
    if let Some(at) = memchr::memchr(b'@', rest.as_bytes()) {
        let userinfo = &rest[..at];
        let user = &userinfo[..memchr::memchr(b':', userinfo.as_bytes()).unwrap_or(userinfo.len())];
        let ok_user = !user.is_empty() && valid_escapes(userinfo) && user.bytes().all(is_uri_user);
        if !ok_user {
            return Err(UriError);
        }
        uri.user = Some(user);
        hp = &rest[at + 1..];
    }
    let (hostport, tail) =
        hp.split_at(memchr::memchr2(b';', b'?', hp.as_bytes()).unwrap_or(hp.len()));
    let (host, port) = split_hostport(hostport).ok_or(UriError)?;
    uri.host = host;
    uri.port = port;
    let (params, headers) = match memchr::memchr(b'?', tail.as_bytes()) {
        Some(q) => (&tail[..q], Some(&tail[q + 1..])),
        None => (tail, None),
    };
    let ok_params = valid_escapes(params)
        && params.bytes().all(is_uri_param)
        && params
            .as_bytes()
            .split(|&c| c == b';')
            .skip(1)
            .all(|p| p.first().is_some_and(|&c| c != b'='));
    if !ok_params {
        return Err(UriError);
    }
    uri.params = params;
    uri.headers = headers;
    Ok(())
}

fn split_hostport(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let close = s.find(']')?;
        let rest = &s[close + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return None,
        };
        (&s[..=close], port)
    } else {
        match memchr::memrchr(b':', s.as_bytes()) {
            Some(c) => (&s[..c], Some(&s[c + 1..])),
            None => (s, None),
        }
    };
    if !valid_host(host) {
        return None;
    }
    let port = match port {
        Some(p) => Some(parse_uint(p.as_bytes(), 65535)? as u16),
        None => None,
    };
    Some((host, port))
}

/// Find `name` in a `;a=b;c` parameter string.
pub fn param_in<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    // Byte searches, not `str::split`: this runs for every parameter looked up on every
    // message, and the separators are ASCII, so every cut is on a character boundary.
    let b = params.as_bytes();
    let mut start = 0;
    loop {
        let end = memchr::memchr(b';', &b[start..]).map_or(b.len(), |e| start + e);
        let p = params[start..end].trim_matches(|c: char| c.is_ascii_whitespace());
        let (n, v) = match memchr::memchr(b'=', p.as_bytes()) {
            Some(e) => (p[..e].trim_end(), p[e + 1..].trim_start()),
            None => (p, ""),
        };
        if !n.is_empty() && n.eq_ignore_ascii_case(name) {
            return Some(v);
        }
        if end == b.len() {
            return None;
        }
        start = end + 1;
    }
}

/// `[display-name] <URI> *(;param)` or `addr-spec *(;param)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name exactly as written (with quotes when quoted), if any.
    pub display_raw: Option<&'a str>,
    pub uri: Uri<'a>,
    /// True when the URI was enclosed in `<>`.
    pub bracketed: bool,
    /// Header parameters after the URI (after `>` or after an addr-spec), starting at `;`.
    pub params: &'a str,
}

impl<'a> NameAddr<'a> {
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, UriError> {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() && is_lws(b[i]) {
            i += 1;
        }
        let mut display_raw = None;
        let lt;
        if b.get(i) == Some(&b'"') {
            let ds = i;
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(UriError),
                    Some(b'\\') => {
                        // quoted-pair: any char but CR/LF
                        // quoted-pair = "\" %x00-09 / %x0B-0C / %x0E-7F
                        if !b
                            .get(i + 1)
                            .is_some_and(|c| c.is_ascii() && *c != b'\r' && *c != b'\n')
                        {
                            return Err(UriError);
                        }
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            display_raw = Some(&s[ds..i]);
            while i < b.len() && is_lws(b[i]) {
                i += 1;
            }
            if b.get(i) != Some(&b'<') {
                return Err(UriError);
            }
            lt = i;
        } else {
            match find_unquoted(b, i, b'<') {
                Some(p) => {
                    let d = s[i..p].trim_end_matches(|c: char| c.is_ascii_whitespace());
                    if !d.is_empty() {
                        // *(token LWS): tokens separated by whitespace only.
                        if !d.bytes().all(|c| is_token(c) || is_lws(c)) {
                            return Err(UriError);
                        }
                        display_raw = Some(d);
                    }
                    lt = p;
                }
                None => {
                    // addr-spec: the URI ends at whitespace or the first ';' after the host part.
                    let st = i;
                    while i < b.len() && !is_lws(b[i]) && b[i] != b';' {
                        i += 1;
                    }
                    let raw = &s[st..i];
                    let uri = Uri::parse(raw)?;
                    if memchr::memchr2(b'?', b',', raw.as_bytes()).is_some() {
                        return Err(UriError);
                    }
                    let params = header_params(s, i)?;
                    return Ok(NameAddr {
                        display_raw: None,
                        uri,
                        bracketed: false,
                        params,
                    });
                }
            }
        }
        let gt = memchr::memchr(b'>', &b[lt..])
            .map(|p| p + lt)
            .ok_or(UriError)?;
        let raw = &s[lt + 1..gt];
        if raw.bytes().any(is_lws) {
            return Err(UriError);
        }
        let uri = Uri::parse(raw)?;
        let params = header_params(s, gt + 1)?;
        Ok(NameAddr {
            display_raw,
            uri,
            bracketed: true,
            params,
        })
    }

    /// The display name without quotes and escapes.
    pub fn display(&self) -> Option<String> {
        let d = self.display_raw?;
        match d.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
            Some(inner) => {
                let mut out = String::with_capacity(inner.len());
                let mut esc = false;
                for c in inner.chars() {
                    if esc {
                        out.push(c);
                        esc = false;
                    } else if c == '\\' {
                        esc = true;
                    } else {
                        out.push(c);
                    }
                }
                Some(out)
            }
            None => Some(d.split_ascii_whitespace().collect::<Vec<_>>().join(" ")),
        }
    }

    /// A header parameter (`tag`, `expires`, ...) by name.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        param_in(self.params, name)
    }

    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").filter(|t| !t.is_empty())
    }
}

fn find_unquoted(b: &[u8], from: usize, what: u8) -> Option<usize> {
    let mut q = false;
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'\\' if q => i += 1,
            b'"' => q = !q,
            c if c == what && !q => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Validate `*( SEMI generic-param )` from `at`; returns the parameter text (may be empty).
fn header_params(s: &str, at: usize) -> Result<&str, UriError> {
    let b = s.as_bytes();
    let rest = &s[at..];
    let mut i = at;
    loop {
        i = skip_lws(b, i);
        if i >= b.len() {
            return Ok(rest.trim());
        }
        if b[i] != b';' {
            return Err(UriError);
        }
        let ns = skip_lws(b, i + 1);
        i = token_end(b, ns);
        if i == ns {
            return Err(UriError);
        }
        i = skip_lws(b, i);
        if b.get(i) == Some(&b'=') {
            i = skip_lws(b, i + 1);
            if b.get(i) == Some(&b'"') {
                i = quoted_string_end(b, i).ok_or(UriError)?;
            } else {
                let vs = i;
                while i < b.len() && (is_token(b[i]) || matches!(b[i], b'[' | b']' | b':')) {
                    i += 1;
                }
                if i == vs {
                    return Err(UriError);
                }
            }
        }
    }
}

/// Quote a display name: `"` and `\` escaped, control characters dropped.
pub fn quote_display(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5118 (IPv6 torture tests), the URI cases: a reference keeps its brackets as the
    /// host, a port after them is the port and one inside them is part of the address; a
    /// bare IPv6 address is no host (4.2) and never read as host and port.
    #[test]
    fn rfc5118_ipv6_references() {
        for (raw, host, port) in [
            ("sip:[2001:db8::10]", "[2001:db8::10]", None),
            ("sip:user@[2001:db8::20]", "[2001:db8::20]", None),
            // 4.3: port ambiguous, read as an address.
            ("sip:[2001:db8::10:5070]", "[2001:db8::10:5070]", None),
            // 4.4: unambiguous.
            ("sip:[2001:db8::10]:5070", "[2001:db8::10]", Some(5070)),
            // 4.8 and 4.9: IPv4-mapped and the uncompressed form.
            ("sip:[::ffff:192.0.2.151]", "[::ffff:192.0.2.151]", None),
            (
                "sip:[2001:db8:0:0:0:0:0:1]:5060;lr",
                "[2001:db8:0:0:0:0:0:1]",
                Some(5060),
            ),
            ("sips:[::1]:5061", "[::1]", Some(5061)),
        ] {
            let u = Uri::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
            assert_eq!((u.host, u.port), (host, port), "{raw}");
        }
        // 4.2: no brackets. Whatever it is read as, it is not 2001:db8::10.
        if let Ok(u) = Uri::parse("sip:2001:db8::10") {
            assert_ne!(u.host, "2001:db8::10");
            assert_ne!(u.host, "[2001:db8::10]");
        }
        for bad in [
            "sip:[2001:db8::10",
            "sip:[2001:db8::10]:",
            "sip:[2001:db8::10]x",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    // A table of cases, one per URI form: splitting it would only scatter the table.
    #[allow(clippy::too_many_lines)]
    #[test]
    fn uri_table() {
        // (input, scheme, user, host, port, params)
        type Row<'a> = (
            &'a str,
            Scheme,
            Option<&'a str>,
            &'a str,
            Option<u16>,
            &'a str,
        );
        let rows: &[Row] = &[
            (
                "sip:alice@example.com",
                Scheme::Sip,
                Some("alice"),
                "example.com",
                None,
                "",
            ),
            (
                "SIPS:bob@10.0.0.1:5061;transport=tcp",
                Scheme::Sips,
                Some("bob"),
                "10.0.0.1",
                Some(5061),
                ";transport=tcp",
            ),
            (
                "sip:[2001:db8::1]:5070;lr",
                Scheme::Sip,
                None,
                "[2001:db8::1]",
                Some(5070),
                ";lr",
            ),
            (
                "sip:+15551234567;verstat=TN-Validation-Passed@ims.example.net;user=phone",
                Scheme::Sip,
                Some("+15551234567;verstat=TN-Validation-Passed"),
                "ims.example.net",
                None,
                ";user=phone",
            ),
            (
                "tel:+1-555-123-4567;verstat=No-TN-Validation",
                Scheme::Tel,
                Some("+1-555-123-4567"),
                "",
                None,
                ";verstat=No-TN-Validation",
            ),
            (
                "sip:I%20have%20spaces@example.net",
                Scheme::Sip,
                Some("I%20have%20spaces"),
                "example.net",
                None,
                "",
            ),
            (
                "nobodyKnowsThisScheme:totallyopaquecontent",
                Scheme::Other,
                None,
                "",
                None,
                "",
            ),
            (
                "sip:user:pass@host",
                Scheme::Sip,
                Some("user"),
                "host",
                None,
                "",
            ),
        ];
        for (raw, scheme, user, host, port, params) in rows {
            let u = Uri::parse(raw).unwrap_or_else(|_| panic!("{raw}"));
            assert_eq!(
                (u.scheme, u.user, u.host, u.port, u.params),
                (*scheme, *user, *host, *port, *params),
                "{raw}"
            );
        }
        for bad in [
            "sip:",
            "sip:a@",
            "sip:a@b:99999",
            "sip:a b@c",
            "sip:a@[::1",
            "tel:",
            "1abc:x",
            "sip:%zz@h",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Uri::parse("sip:I%20x@h").unwrap().user_unescaped().unwrap(),
            "I x"
        );
        assert_eq!(
            Uri::parse("sip:+1555;verstat=x@h").unwrap().user_base(),
            Some("+1555")
        );
        assert_eq!(
            Uri::parse("sip:h;user=phone;lr").unwrap().param("USER"),
            Some("phone")
        );
    }

    #[test]
    fn name_addr_table() {
        // (input, display(), uri, tag)
        type Row<'a> = (&'a str, Option<&'a str>, &'a str, Option<&'a str>);
        let rows: &[Row] = &[
            ("\"Alice\" <sip:alice@example.com>;tag=1", Some("Alice"), "sip:alice@example.com", Some("1")),
            ("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8", Some("J Rosenberg \\\""), "sip:jdrosen@example.com", Some("98asjd8")),
            ("caller<sip:caller@example.com>;tag=323", Some("caller"), "sip:caller@example.com", Some("323")),
            ("token1~` token2'+_ <sip:m@example.com>", Some("token1~` token2'+_"), "sip:m@example.com", None),
            ("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n", None, "sip:vivekg@chair-dnrc.example.com", Some("1918181833n")),
            ("<tel:+15551234567>", None, "tel:+15551234567", None),
            ("isbn:2983792873", None, "isbn:2983792873", None),
            ("\"a,b\" <sip:x@y>;p=\"q;r\";tag=z", Some("a,b"), "sip:x@y", Some("z")),
        ];
        for (raw, disp, uri, tag) in rows {
            let n = NameAddr::parse(raw).unwrap_or_else(|_| panic!("{raw}"));
            assert_eq!(
                (n.display().as_deref(), n.uri.raw, n.tag()),
                (*disp, *uri, *tag),
                "{raw}"
            );
        }
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@b>;;;",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(
            quote_display("SCAM? \"Bank\" \\"),
            "\"SCAM? \\\"Bank\\\" \\\\\""
        );
    }
}
