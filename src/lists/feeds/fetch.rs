//! The feeds' HTTP client: one GET of a configured `http://` URL, with the feed's bearer token,
//! `since` and `If-None-Match`, bounded by the caller's timeout and the feed's body cap. It
//! returns the status, the feed headers and the bytes; judging them is
//! [`check`](super::check)'s job.
//!
//! Kept inside `lists::feeds` rather than shared with the STIR certificate fetcher (`certs`):
//! every header and limit here is feed protocol, and the two have nothing else in common but
//! hyper. Knows nothing of signatures, the database or the rules.

use bytes::Bytes;

use super::{FeedConfig, SIGNATURE_HEADER, VERSION_HEADER};

/// An `http://host:port/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub authority: String,
    pub path: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url:?}: expected http://host:port/... (https is not supported)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        Ok(HttpUrl {
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
}

/// What one GET brought back, unjudged.
pub(super) struct Fetched {
    pub status: u16,
    pub version: Option<String>,
    pub signature: Option<String>,
    pub etag: Option<String>,
    pub body: Bytes,
}

pub(super) async fn fetch(
    cfg: &FeedConfig,
    since: Option<u64>,
    etag: Option<&str>,
) -> Result<Fetched, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    let url = HttpUrl::parse(&cfg.url)?;
    let stream = tokio::net::TcpStream::connect(&url.authority)
        .await
        .map_err(|e| format!("connect {}: {e}", url.authority))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let conn_task = tokio::spawn(conn);
    let mut path = url.path.clone();
    if let Some(v) = since {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str(&format!("since={v}"));
    }
    let mut req = hyper::Request::get(path).header(hyper::header::HOST, &url.authority);
    if let Some(t) = &cfg.token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let (Some(e), Some(_)) = (etag, since) {
        req = req.header(hyper::header::IF_NONE_MATCH, e);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (status, version, signature, etag) = (
        resp.status().as_u16(),
        h(VERSION_HEADER),
        h(SIGNATURE_HEADER),
        h("etag"),
    );
    let body = Limited::new(resp.into_body(), cfg.max_body_bytes)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    conn_task.abort();
    Ok(Fetched {
        status,
        version,
        signature,
        etag,
        body,
    })
}
