//! The RFC 3261 section 25 building blocks that both the message scanner (`msg`) and the URI
//! parser (`uri`) need: character classes, LWS trimming, tokens, quoted strings, hosts and
//! bounded decimals.
//!
//! They live here, below both, so that `msg` (which hands out `Uri` and `NameAddr` values) can
//! use `uri` without `uri` reaching back into `msg` for its character classes. Knows nothing of
//! headers, messages or URIs: only bytes and positions in them.

use std::ops::Range;

#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

const TOKEN: u8 = 1;
const WORD: u8 = 2;
const URI_USER: u8 = 4;
const URI_PARAM: u8 = 8;

/// The RFC 3261 25.1 character sets: `token`, `word`, and what a SIP URI's user part and its
/// parameters may hold unescaped. A table, since every byte of every header name, parameter,
/// Call-ID and URI is classified: a lookup is one load where the comparisons were a dozen
/// branches.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let token = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        let word = token
            || matches!(
                b,
                b'(' | b')'
                    | b'<'
                    | b'>'
                    | b':'
                    | b'\\'
                    | b'"'
                    | b'/'
                    | b'['
                    | b']'
                    | b'?'
                    | b'{'
                    | b'}'
            );
        let unreserved = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            );
        let user = unreserved
            || matches!(
                b,
                b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
            );
        let param = unreserved
            || matches!(
                b,
                b'%' | b';' | b'=' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$'
            );
        t[c] = (token as u8 * TOKEN)
            | (word as u8 * WORD)
            | (user as u8 * URI_USER)
            | (param as u8 * URI_PARAM);
        c += 1;
    }
    t
};

#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    CLASS[b as usize] & TOKEN != 0
}

/// A character of `word` (RFC 3261 25.1), the Call-ID's alphabet.
#[inline]
pub(crate) fn is_word(b: u8) -> bool {
    CLASS[b as usize] & WORD != 0
}

/// A character a SIP URI's user part may hold: `unreserved`, `user-unreserved` and `%` of an
/// escape.
#[inline]
pub(crate) fn is_uri_user(b: u8) -> bool {
    CLASS[b as usize] & URI_USER != 0
}

/// A character of a SIP URI's parameters (`;name=value`): `unreserved`, `param-unreserved`,
/// the separators and `%` of an escape.
#[inline]
pub(crate) fn is_uri_param(b: u8) -> bool {
    CLASS[b as usize] & URI_PARAM != 0
}

/// Trim LWS (including folded line breaks) from both ends of a range.
pub(crate) fn trim(buf: &[u8], mut r: Range<usize>) -> Range<usize> {
    while r.start < r.end && is_lws(buf[r.start]) {
        r.start += 1;
    }
    while r.end > r.start && is_lws(buf[r.end - 1]) {
        r.end -= 1;
    }
    r
}

/// The position of the first byte at or after `i` that is not LWS.
pub(crate) fn skip_lws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_lws(b[i]) {
        i += 1;
    }
    i
}

/// The end of the token starting at `i` (`i` itself when there is none).
pub(crate) fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_token(b[i]) {
        i += 1;
    }
    i
}

/// The position just past the quoted-string whose opening `"` is at `open`; `None` when it is
/// unterminated or a backslash escapes something other than ASCII.
pub(crate) fn quoted_string_end(b: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    loop {
        match b.get(i) {
            None => return None,
            Some(b'\\') if b.get(i + 1).is_some_and(u8::is_ascii) => i += 2,
            Some(b'\\') => return None,
            Some(b'"') => return Some(i + 1),
            Some(_) => i += 1,
        }
    }
}

/// Parse a non-negative decimal with at most `max` value; LWS-free digits only.
pub(crate) fn parse_uint(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (v <= max).then_some(v)
}

/// hostname / IPv4address / IPv6reference.
pub(crate) fn valid_host(h: &str) -> bool {
    if let Some(inner) = h.strip_prefix('[') {
        return inner
            .strip_suffix(']')
            .is_some_and(|v| v.parse::<std::net::Ipv6Addr>().is_ok());
    }
    !h.is_empty()
        && h.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
        && !h.starts_with('.')
        && !h.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_word_are_the_rfc_3261_alphabets() {
        // RFC 3261 25.1, spelled out as the grammar writes them.
        let token = "-.!%*_+`'~ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let word = format!("{token}()<>:\\\"/[]?{{}}");
        for b in 0..=255u8 {
            assert_eq!(is_token(b), token.as_bytes().contains(&b), "token {b:#04x}");
            assert_eq!(is_word(b), word.as_bytes().contains(&b), "word {b:#04x}");
            let unreserved = format!("{}-_.!~*'()", &token[10..]);
            let user = format!("{unreserved}%&=+$,;?/");
            let param = format!("{unreserved}%;=[]/:&+$");
            assert_eq!(
                is_uri_user(b),
                user.as_bytes().contains(&b),
                "user {b:#04x}"
            );
            assert_eq!(
                is_uri_param(b),
                param.as_bytes().contains(&b),
                "param {b:#04x}"
            );
        }
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(quoted_string_end(br#""ab" x"#, 0), Some(4));
        assert_eq!(quoted_string_end(br#""a\"b""#, 0), Some(6));
        assert_eq!(quoted_string_end(br#""ab"#, 0), None);
        assert_eq!(quoted_string_end(br#""a\"#, 0), None);
        assert_eq!(quoted_string_end("\"a\\\u{e9}\"".as_bytes(), 0), None);
    }

    #[test]
    fn tokens_and_lws() {
        let b = b"  abc-1 ;x";
        let i = skip_lws(b, 0);
        assert_eq!(i, 2);
        assert_eq!(token_end(b, i), 7);
        assert_eq!(token_end(b, 7), 7);
        assert_eq!(trim(b, 0..8), 2..7);
    }
}
