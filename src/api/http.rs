//! The HTTP plumbing every handler shares: JSON and error replies, reading a request body under
//! a cap, query strings and percent-decoding.
//!
//! Knows nothing of which endpoints exist, of tokens, or of lists beyond turning the store's
//! errors into status codes.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::lists::overlay::WriteError;
use crate::lists::store::StoreError;
use crate::screening::entry::check_text;

/// The body of every reply: a whole JSON document, or an export streamed as the store is read.
pub type ResponseBody = BoxBody<Bytes, std::io::Error>;

/// Any error a request body may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body once routing has taken it: hyper's `Incoming` on a socket, `Full<Bytes>` in
/// a test. Boxed once so the handlers need not be generic; its error is an `io::Error` (with
/// the same message) because reading a boxed `dyn Error` through [`Limited`] trips a compiler
/// limitation on lifetimes when the future must be `Send`.
pub(super) type RequestBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// An error reply: status, message and details.
pub(super) struct Fail(pub StatusCode, pub String, pub Vec<String>);

impl Fail {
    pub fn new(code: StatusCode, msg: impl Into<String>) -> Fail {
        Fail(code, msg.into(), vec![])
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        let code = match &e {
            StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            StoreError::Full(_) => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if code.is_server_error() {
            tracing::error!(error = %e, "api: store failure");
        }
        Fail::new(code, e.to_string())
    }
}

impl From<WriteError> for Fail {
    fn from(e: WriteError) -> Fail {
        match e {
            WriteError::Rejected(details) => Fail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid entries; nothing was written".into(),
                details,
            ),
            WriteError::Store(e) => e.into(),
        }
    }
}

pub(super) type Reply = Result<Response<ResponseBody>, Fail>;

pub(super) fn full(b: Bytes) -> ResponseBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

pub(super) fn json_resp(code: StatusCode, v: &Value) -> Response<ResponseBody> {
    let mut r = Response::new(full(Bytes::from(v.to_string())));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(super) fn fail_resp(f: Fail) -> Response<ResponseBody> {
    json_resp(f.0, &json!({"error": f.1, "details": f.2}))
}

/// The whole body, or 413 as soon as it is known to pass `cap`: from `Content-Length` before
/// reading anything, else while streaming, so an unbounded body is never buffered. A body not
/// whole `within` that time is 408: a slow or stalled client holds a connection no longer.
pub(super) async fn read_body(
    req: Request<RequestBody>,
    cap: usize,
    within: Duration,
) -> Result<Bytes, Fail> {
    let too_big = || {
        Fail::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {cap} bytes"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > cap as u64 {
            return Err(too_big());
        }
    }
    let read = tokio::time::timeout(within, Limited::new(req.into_body(), cap).collect());
    let Ok(body) = read.await else {
        return Err(Fail::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                within.as_secs()
            ),
        ));
    };
    match body {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_big()),
        Err(e) => Err(Fail::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
    }
}

/// 400 naming the first text in `v` (a field, or a field of a field: `a.b[2]`) that holds a
/// control character, `what` (`entry 2`) first. Every text a client sends is checked this way
/// before anything reads it, so no endpoint stores a NUL or a line break by forgetting to.
pub(super) fn refuse_controls(v: &Value, what: &str) -> Result<(), Fail> {
    fn walk(v: &Value, path: &mut String) -> Result<(), String> {
        match v {
            Value::String(s) => check_text(if path.is_empty() { "text" } else { path }, s),
            Value::Array(items) => items.iter().enumerate().try_for_each(|(i, x)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let r = walk(x, path);
                path.truncate(len);
                r
            }),
            Value::Object(m) => m.iter().try_for_each(|(k, x)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                check_text("a field name", k)?;
                let r = walk(x, path);
                path.truncate(len);
                r
            }),
            _ => Ok(()),
        }
    }
    walk(v, &mut String::new())
        .map_err(|m| Fail::new(StatusCode::BAD_REQUEST, format!("{what}: {m}")))
}

pub(super) fn qget<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

pub(super) fn qbool(q: &[(String, String)], k: &str) -> Result<bool, Fail> {
    match qget(q, k) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(v) => Err(Fail::new(
            StatusCode::BAD_REQUEST,
            format!("{k}={v:?}: expected true or false"),
        )),
    }
}

/// `a=1&b=x%2By` -> pairs; `+` means space (form encoding). Undecodable pairs are dropped.
pub(super) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .take(32)
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((
                percent_decode(&k.replace('+', " "))?,
                percent_decode(&v.replace('+', " "))?,
            ))
        })
        .collect()
}

/// Decode `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(h).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_named_by_their_field() {
        let ok = json!({"pattern": "+1202", "reason": "Fake \"IRS\" ✓", "n": 1, "a": [true, null]});
        assert!(refuse_controls(&ok, "entry 1").is_ok());
        for (v, want) in [
            (
                json!({"reason": "a\u{0}b"}),
                "entry 1: reason holds a control character (U+0000)",
            ),
            (
                json!({"x": {"source": ["ok", "\r\n"]}}),
                "entry 1: x.source[1] holds a control character (U+000D)",
            ),
            (
                json!({"a\tb": 1}),
                "entry 1: a field name holds a control character (U+0009)",
            ),
            (
                json!("\u{1b}[31m"),
                "entry 1: text holds a control character (U+001B)",
            ),
        ] {
            let Err(Fail(code, msg, _)) = refuse_controls(&v, "entry 1") else {
                panic!("{v} passed");
            };
            assert_eq!(code, StatusCode::BAD_REQUEST);
            assert!(msg.starts_with(want), "{msg}");
        }
    }

    #[test]
    fn query_and_path_decoding() {
        assert_eq!(percent_decode("%2B1202%2A").as_deref(), Some("+1202*"));
        assert_eq!(percent_decode("+1202*").as_deref(), Some("+1202*"));
        assert_eq!(percent_decode("%2").as_deref(), None);
        assert_eq!(percent_decode("%zz").as_deref(), None);
        assert_eq!(percent_decode("%ff").as_deref(), None);
        let q = parse_query("caller=%2B12025550143&display=IRS+Dept&x&bad=%g1");
        assert_eq!(
            q,
            [
                ("caller".to_string(), "+12025550143".to_string()),
                ("display".to_string(), "IRS Dept".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
    }
}
