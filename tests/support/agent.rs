//! The end-to-end agent tests' harness: the real agent from `app::start` with the shipped config
//! (text edits applied) and lists, a caller and a callee UDP socket, and raw SIP message helpers
//! that keep the bytes as text. Knows nothing of the agent's insides.

use std::net::SocketAddr;
use std::path::Path;

use scamguard::app::config::Config;
use scamguard::app::{self, Agent};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use super::http::{metric, metrics};
use super::{root, WAIT};

/// The shipped config with each `(from, to)` text replacement applied (each must apply, so a
/// renamed key fails here instead of silently testing the default).
pub fn shipped_config(edits: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(root().join("config/scamguard.toml")).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "shipped config has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    text
}

pub struct Harness {
    pub agent: Agent,
    /// The callee behind the agent (its next hop).
    pub down: UdpSocket,
    /// The caller.
    pub up: UdpSocket,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start(edits: &[(&str, &str)]) -> Harness {
        Harness::start_with(edits, |_| {}).await
    }

    /// As [`Harness::start`], then `configure` sees the config last (e.g. a port range).
    pub async fn start_with(
        edits: &[(&str, &str)],
        configure: impl FnOnce(&mut Config),
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let down = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut c = Config::parse("scamguard.toml", &shipped_config(edits)).unwrap();
        c.sip.listen = "127.0.0.1:0".parse().unwrap();
        c.sip.next_hop = Some(down.local_addr().unwrap().into());
        c.api.listen = "127.0.0.1:0".into();
        c.lists.dir = root().join("blocklists");
        c.store.data_dir = dir.path().join("data");
        c.log.decisions =
            scamguard::app::config::LogTarget::File(dir.path().join("decisions.jsonl"));
        if c.media.enabled {
            c.media.prompts_dir = root().join("prompts").display().to_string();
        }
        configure(&mut c);
        let agent = app::start(c).await.unwrap();
        Harness {
            agent,
            down,
            up,
            dir,
        }
    }

    pub fn sip(&self) -> SocketAddr {
        self.agent.sip_addr
    }

    pub fn up_port(&self) -> u16 {
        self.up.local_addr().unwrap().port()
    }

    pub async fn send_up(&self, text: &str) {
        self.up.send_to(text.as_bytes(), self.sip()).await.unwrap();
    }

    pub async fn send_down(&self, text: &str) {
        self.down
            .send_to(text.as_bytes(), self.sip())
            .await
            .unwrap();
    }

    /// Stop the agent (flushing the decision log) and return the log's lines as JSON.
    pub async fn stop(self) -> (Vec<serde_json::Value>, tempfile::TempDir) {
        let path = self.dir.path().join("decisions.jsonl");
        self.agent.stop().await;
        (decisions(&path), self.dir)
    }
}

/// Every line of the decision log at `path`, its rotated files first (`<file>.2026-12-05...`,
/// whose names sort by time): with `[callback]` on the agent rotates at UTC midnight, and a test
/// running across it must still see every call.
pub fn decisions(path: &Path) -> Vec<serde_json::Value> {
    let prefix = format!(
        "{}.",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut files: Vec<_> = path
        .parent()
        .and_then(|d| std::fs::read_dir(d).ok())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect();
    files.sort();
    files.push(path.to_path_buf());
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A received SIP message, kept as text: the tests compare bytes, not a parser's view.
#[derive(Debug, Clone)]
pub struct Msg {
    pub text: String,
}

impl Msg {
    pub fn new(b: &[u8]) -> Msg {
        Msg {
            text: String::from_utf8(b.to_vec()).expect("UTF-8 message"),
        }
    }
    pub fn head(&self) -> &str {
        self.text.split_once("\r\n\r\n").expect("end of headers").0
    }
    pub fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").unwrap().1
    }
    pub fn start_line(&self) -> &str {
        self.head().lines().next().unwrap()
    }
    pub fn lines(&self) -> Vec<&str> {
        self.head().split("\r\n").skip(1).collect()
    }
    /// Every value of header `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.lines()
            .into_iter()
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
            .collect()
    }
    pub fn hdr(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }
    pub fn status(&self) -> Option<u16> {
        let s = self.start_line().strip_prefix("SIP/2.0 ")?;
        s[..3].parse().ok()
    }
    pub fn method(&self) -> &str {
        self.start_line().split(' ').next().unwrap()
    }
}

pub async fn recv(sock: &UdpSocket) -> (Msg, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("a SIP message in time")
        .unwrap();
    (Msg::new(&buf[..n]), from)
}

/// The next message that is not a `100 Trying`.
pub async fn recv_final(sock: &UdpSocket) -> Msg {
    loop {
        let (m, _) = recv(sock).await;
        if m.status() != Some(100) {
            return m;
        }
    }
}

/// A response to `req` built the way a UA does: Via, Record-Route, From, Call-ID, CSeq copied,
/// To with `to_tag` added (unless it has one).
pub fn reply(req: &Msg, code: u16, phrase: &str, to_tag: &str, extra: &str, body: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {phrase}\r\n");
    for l in req.lines() {
        let name = l.split(':').next().unwrap().trim().to_ascii_lowercase();
        match name.as_str() {
            "via" | "record-route" | "from" | "call-id" | "cseq" => {
                s.push_str(l);
                s.push_str("\r\n");
            }
            "to" if l.contains(";tag=") => {
                s.push_str(l);
                s.push_str("\r\n");
            }
            "to" => s.push_str(&format!("{l};tag={to_tag}\r\n")),
            _ => {}
        }
    }
    s.push_str(extra);
    s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s
}

/// An INVITE from `from_hdr` to `callee` with the caller at `port` (UDP unless `transport`).
#[allow(clippy::too_many_arguments)]
pub fn invite(
    transport: &str,
    agent: SocketAddr,
    port: u16,
    call_id: &str,
    branch: &str,
    from_hdr: &str,
    callee: &str,
    extra: &str,
    body: &str,
) -> String {
    let ctype = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_string()
    };
    format!(
        "INVITE sip:{callee}@{agent} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} 127.0.0.1:{port};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: {from_hdr}\r\n\
         To: <sip:{callee}@{agent}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@127.0.0.1:{port}>\r\n\
         User-Agent: itest-phone/1.0\r\n\
         X-Unrelated: keep ; me  exactly\r\n\
         {extra}{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Places a call from `from_hdr` (with `extra` headers) and returns the agent's final answer to
/// the caller, or the INVITE it forwarded to the callee: whichever comes first.
pub async fn call(h: &Harness, id: &str, from_hdr: &str, callee: &str, extra: &str) -> Msg {
    let inv = invite(
        "UDP",
        h.sip(),
        h.up_port(),
        id,
        &format!("z9hG4bK{id}"),
        from_hdr,
        callee,
        extra,
        "",
    );
    h.send_up(&inv).await;
    tokio::select! {
        r = recv_final(&h.up) => r,
        f = recv(&h.down) => f.0,
    }
}

/// The ACK for a non-2xx final answer: same branch, the To of the response.
pub fn ack_for(port: u16, invite: &str, resp: &Msg) -> String {
    let inv = Msg {
        text: invite.to_string(),
    };
    let ruri = inv.start_line().split(' ').nth(1).unwrap();
    format!(
        "ACK {ruri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\n\
         CSeq: 1 ACK\r\nContact: <sip:caller@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n",
        inv.hdr("Via").unwrap(),
        inv.hdr("From").unwrap(),
        resp.hdr("To").unwrap(),
        inv.hdr("Call-ID").unwrap()
    )
}

/// The caller's CANCEL of `invite` (RFC 3261 9.1: its Request-URI, top Via, From, To and
/// Call-ID, CSeq number with method CANCEL).
pub fn cancel_for(invite: &str) -> String {
    let inv = Msg {
        text: invite.to_string(),
    };
    format!(
        "CANCEL {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\n\
         CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
        inv.start_line().split(' ').nth(1).unwrap(),
        inv.hdr("Via").unwrap(),
        inv.hdr("From").unwrap(),
        inv.hdr("To").unwrap(),
        inv.hdr("Call-ID").unwrap()
    )
}

/// SIP datagrams the agent has received over UDP so far.
pub async fn udp_in(api: SocketAddr) -> u64 {
    metric(
        &metrics(api).await,
        "sip_messages_total{dir=\"in\",transport=\"udp\"}",
    )
}

/// The next message on a stream; `buf` keeps what was read past it (several may come at once).
pub async fn read_stream_msg(s: &mut TcpStream, buf: &mut Vec<u8>) -> Msg {
    let mut b = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let m = Msg::new(&buf[..end + 4 + len]);
                buf.drain(..end + 4 + len);
                return m;
            }
        }
        let n = timeout(WAIT, s.read(&mut b))
            .await
            .expect("TCP answer in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&b[..n]);
    }
}
