//! The tests' one HTTP/1.1 client for the admin API (one request per connection, over plain TCP
//! or any stream such as TLS), its tokens, and the one reader of `/metrics`, which fails the test
//! when a series is missing: a metric that disappeared must not read as 0.

use std::net::SocketAddr;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::WAIT;

/// The tokens of [`write_tokens`], one per role.
pub const ADMIN: &str = "admin-token-aaaaaaaaaaaa";
pub const WRITER: &str = "writer-token-bbbbbbbbbbbb";
pub const READER: &str = "reader-token-cccccccccccc";

/// A tokens file at `path` giving [`ADMIN`] to `ops`, [`WRITER`] to `bot` and [`READER`] to
/// `viewer`.
pub fn write_tokens(path: &Path) {
    std::fs::write(
        path,
        format!("# test tokens\nops admin {ADMIN}\nbot write {WRITER}\nviewer read {READER}\n"),
    )
    .unwrap();
}

pub struct Resp {
    pub status: u16,
    pub headers: String,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }
}

/// `s` percent-encoded for a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One request to `addr`, with `token` as the bearer when given.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Resp {
    let s = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("HTTP connection in time")
        .unwrap();
    request_on(s, method, path, token, body).await
}

/// `GET path`, with `token` as the bearer when given.
pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Resp {
    request(addr, "GET", path, token, b"").await
}

/// One request on an open connection (plain or TLS), read until the server closes it.
pub async fn request_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Resp {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // A server may answer (413) before reading a large body; a failed write is then expected.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("HTTP answer in time");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Resp {
        status,
        headers: headers.to_string(),
        text: body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = s.split_once("\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// The agent's `/metrics` exposition (which needs no token).
pub async fn metrics(api: SocketAddr) -> String {
    let r = get(api, "/metrics", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.text
}

/// The value of one exact series line (`name{labels}`) in a Prometheus exposition. A missing
/// series fails the test: a metric that disappeared must not read as 0.
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no series {series} in /metrics:\n{text}"))
}
