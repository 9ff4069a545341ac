//! Plays one country's labelled day through the real agent over SIP, as a carrier in that
//! country would deploy it: the shipped config with only `default_country`, `trusted_peers` and
//! `international_gateways` set, the shipped lists plus the consortium blocklist.
//!
//! The harness is both ends of every call: the caller side sends from the address of the
//! ingress it models (the carrier's core, a legacy interconnect or the international gateway,
//! each its own loopback address), and the callee side is the agent's next hop, which answers,
//! rings out or refuses with 607 as the call's script says. Velocity, wangiri and reports
//! therefore see live traffic with real timing. The outcome is read off the wire: a final
//! refusal that never reached the callee is a block, and the verdict header on a forwarded
//! INVITE says warn or pass. The decision log gives the reasons.
//!
//! Knows nothing of the agent's insides beyond its config and its decision log's format.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use scamguard::app::config::{Config, LogTarget};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, timeout, Instant};

use super::gen::{Call, Callee, Day, Ingress};

/// What the callee's side saw of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seen {
    Pass,
    Warn,
    Block,
    /// No outcome within the call's time bounds: a harness or agent fault, always reported.
    Lost,
}

impl Seen {
    pub fn name(self) -> &'static str {
        match self {
            Seen::Pass => "pass",
            Seen::Warn => "warn",
            Seen::Block => "block",
            Seen::Lost => "lost",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub seen: Seen,
    /// The SIP status of a block (603, 608, 433 ...).
    pub status: Option<u16>,
    /// The decision log's reasons: `source/category: text`.
    pub reasons: Vec<String>,
    /// The sum of the enforced scores the log shows, and the overrides that decided.
    pub score: i32,
    pub overrides: Vec<String>,
}

const CORE: &str = "127.0.0.2";
const GATEWAY: &str = "127.0.0.3";
const LEGACY: &str = "127.0.0.4";
/// How long any one step may take beyond its script before the call counts as lost.
const SLACK: Duration = Duration::from_secs(20);

type Routes = Arc<DashMap<String, mpsc::UnboundedSender<Msg>>>;

/// A received SIP message, kept as text.
#[derive(Debug, Clone)]
struct Msg {
    text: String,
}

impl Msg {
    fn head(&self) -> &str {
        self.text.split("\r\n\r\n").next().unwrap_or("")
    }
    fn start_line(&self) -> &str {
        self.head().lines().next().unwrap_or("")
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.head()
            .split("\r\n")
            .skip(1)
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
            .collect()
    }
    fn hdr(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }
    fn status(&self) -> Option<u16> {
        let s = self.start_line().strip_prefix("SIP/2.0 ")?;
        s.get(..3)?.parse().ok()
    }
    fn method(&self) -> &str {
        self.start_line().split(' ').next().unwrap_or("")
    }
    fn cseq_method(&self) -> &str {
        self.hdr("CSeq")
            .and_then(|c| c.split_whitespace().nth(1))
            .unwrap_or("")
    }
}

/// A response to `req` the way a UA builds one.
fn reply(req: &Msg, code: u16, phrase: &str, extra: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {phrase}\r\n");
    for l in req.head().split("\r\n").skip(1) {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "record-route" | "from" | "call-id" | "cseq" => {
                s.push_str(l);
                s.push_str("\r\n");
            }
            "to" if l.contains(";tag=") => {
                s.push_str(l);
                s.push_str("\r\n");
            }
            "to" => s.push_str(&format!("{l};tag=uas\r\n")),
            _ => {}
        }
    }
    s.push_str(extra);
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// Reads datagrams and hands each to the call it belongs to (by Call-ID).
fn dispatch(sock: Arc<UdpSocket>, routes: Routes) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, _)) = sock.recv_from(&mut buf).await {
            let m = Msg {
                text: String::from_utf8_lossy(&buf[..n]).into_owned(),
            };
            if let Some(id) = m.hdr("Call-ID").or_else(|| m.hdr("i")) {
                if let Some(tx) = routes.get(id) {
                    let _ = tx.send(m);
                }
            }
        }
    });
}

struct Net {
    agent: SocketAddr,
    uas: Arc<UdpSocket>,
    uas_routes: Routes,
    ingress: HashMap<&'static str, Arc<UdpSocket>>,
    uac_routes: Routes,
    verdict_header: String,
}

/// Plays `day` through a fresh agent whose shipped files come from `root`; returns each call's
/// outcome, in the order of `day.calls`.
pub async fn play(day: &Day, root: &Path) -> Vec<Outcome> {
    let dir = tempfile::tempdir().expect("temp dir");
    let lists = dir.path().join("lists");
    std::fs::create_dir_all(&lists).unwrap();
    for e in std::fs::read_dir(root.join("blocklists")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "csv") {
            std::fs::copy(&p, lists.join(p.file_name().unwrap())).unwrap();
        }
    }
    let mut csv = String::from(
        "# The consortium blocklist the carrier receives from its partners (generated).\n\
         pattern,action,category,reason,source\n",
    );
    for l in &day.consortium {
        let action = if l.block { "block" } else { "warn" };
        csv.push_str(&format!(
            "{},{action},scam,tech-support campaign {},consortium\n",
            l.number, l.campaign
        ));
    }
    std::fs::write(lists.join("consortium.csv"), csv).unwrap();

    let uas = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let mut ingress = HashMap::new();
    for ip in [CORE, GATEWAY, LEGACY] {
        ingress.insert(
            ip,
            Arc::new(UdpSocket::bind(format!("{ip}:0")).await.unwrap()),
        );
    }

    let shipped = std::fs::read_to_string(root.join("config/scamguard.toml")).unwrap();
    let mut text = shipped.clone();
    for (from, to) in [
        (
            "default_country = \"US\"".to_string(),
            format!("default_country = \"{}\"", day.country.code()),
        ),
        (
            "trusted_peers = []".into(),
            format!("trusted_peers = [\"{CORE}\", \"{LEGACY}\"]"),
        ),
        (
            "international_gateways = []".into(),
            format!("international_gateways = [\"{GATEWAY}\"]"),
        ),
    ] {
        assert!(text.contains(&from), "shipped config has no {from:?}");
        text = text.replacen(&from, &to, 1);
    }
    let mut c = Config::parse("scamguard.toml", &text).expect("shipped config");
    c.sip.listen = "127.0.0.1:0".parse().unwrap();
    c.sip.next_hop = Some(uas.local_addr().unwrap().into());
    c.api.listen = "127.0.0.1:0".into();
    c.lists.dir = lists.clone();
    c.store.data_dir = dir.path().join("data");
    let log = dir.path().join("decisions.jsonl");
    c.log.decisions = LogTarget::File(log.clone());
    c.log.level = "warn".into();
    c.signals.brands.file = root.join(&c.signals.brands.file).display().to_string();
    let verdict_header = c.disposition.verdict_header.clone();
    let agent = scamguard::app::start(c).await.expect("agent starts");

    let net = Arc::new(Net {
        agent: agent.sip_addr,
        uas: uas.clone(),
        uas_routes: Arc::default(),
        ingress,
        uac_routes: Arc::default(),
        verdict_header,
    });
    dispatch(uas, net.uas_routes.clone());
    for s in net.ingress.values() {
        dispatch(s.clone(), net.uac_routes.clone());
    }

    let start = Instant::now();
    let mut tasks = Vec::with_capacity(day.calls.len());
    for (i, call) in day.calls.iter().enumerate() {
        let at = start + Duration::from_millis(call.at_ms);
        let net = net.clone();
        let call = call.clone();
        let id = format!("q{i}-{}@quality", day.country.code());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            run_call(&net, &call, &id).await
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await.unwrap_or((Seen::Lost, None)));
    }
    agent.stop().await;

    let reasons = read_log(&log);
    outcomes
        .into_iter()
        .enumerate()
        .map(|(i, (seen, status))| {
            let id = format!("q{i}-{}@quality", day.country.code());
            let (reasons, score, overrides, action) = reasons.get(&id).cloned().unwrap_or_default();
            let seen = match (seen, status, action.as_str()) {
                (Seen::Lost, Some(487), "pass") => Seen::Pass,
                (Seen::Lost, Some(487), "warn") => Seen::Warn,
                (Seen::Lost, Some(487), "block") => Seen::Block,
                (s, _, _) => s,
            };
            Outcome {
                seen,
                status,
                reasons,
                score,
                overrides,
            }
        })
        .collect()
}

type Logged = (Vec<String>, i32, Vec<String>, String);

/// The decision log by call: reasons as text, the enforced score, the overrides, the action.
fn read_log(path: &Path) -> HashMap<String, Logged> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = HashMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(id) = v["call_id"].as_str() else {
            continue;
        };
        let mut reasons = Vec::new();
        let mut score = 0;
        let mut overrides = Vec::new();
        for r in v["reasons"].as_array().into_iter().flatten() {
            let text = r["reason"].as_str().unwrap_or("");
            let cat = r["category"].as_str().unwrap_or("");
            if cat == "override" {
                overrides.push(r["entry"].as_str().unwrap_or("").to_string());
            }
            if let Some(n) = text
                .strip_prefix("(+")
                .and_then(|t| t.split_once(')'))
                .and_then(|(n, _)| n.parse::<i32>().ok())
            {
                score += n;
            }
            reasons.push(format!(
                "{}/{cat}: {text}",
                r["list"].as_str().unwrap_or("")
            ));
        }
        let action = v["action"].as_str().unwrap_or("").to_string();
        out.insert(id.to_string(), (reasons, score, overrides, action));
    }
    out
}

/// A branch is a token: the Call-ID's `@` may not appear in it.
fn branch_of(id: &str) -> String {
    id.replace('@', ".")
}

fn invite(net: &Net, call: &Call, id: &str, local: SocketAddr) -> String {
    let agent = net.agent;
    let host = match call.ingress {
        Ingress::Core => "core.carrier.example",
        Ingress::Legacy => "tdm-gw.carrier.example",
        Ingress::Gateway => "intl-gw.carrier.example",
    };
    let display = call
        .display
        .as_deref()
        .map(|d| format!("\"{}\" ", d.replace('"', "")))
        .unwrap_or_default();
    let mut extra = String::new();
    let from = if call.withheld {
        "\"Anonymous\" <sip:anonymous@anonymous.invalid>".to_string()
    } else {
        format!("{display}<sip:{}@{host};user=phone>", call.caller)
    };
    if call.ingress != Ingress::Gateway {
        let user = if call.attested {
            format!("{};verstat=TN-Validation-Passed", call.caller)
        } else {
            call.caller.clone()
        };
        extra.push_str(&format!(
            "P-Asserted-Identity: {display}<sip:{user}@{host};user=phone>\r\n"
        ));
        if call.withheld {
            extra.push_str("Privacy: id\r\n");
        }
    }
    format!(
        "INVITE sip:{callee}@{agent} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: {from};tag=uac-{branch}\r\n\
         To: <sip:{callee}@{agent}>\r\n\
         Call-ID: {id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@{local}>\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        callee = call.callee,
        branch = branch_of(id),
    )
}

/// A request within the dialog the 2xx `ok` set up, through its Record-Route set.
fn in_dialog(
    method: &str,
    cseq: u32,
    invite: &Msg,
    ok: &Msg,
    local: SocketAddr,
    id: &str,
) -> String {
    let target = ok
        .hdr("Contact")
        .map(|c| c.trim_start_matches('<').split('>').next().unwrap_or(c))
        .unwrap_or("sip:callee@127.0.0.1")
        .to_string();
    let mut routes: Vec<String> = ok
        .all("Record-Route")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|r| r.trim().to_string())
        .collect();
    routes.reverse();
    let route = routes
        .iter()
        .map(|r| format!("Route: {r}\r\n"))
        .collect::<String>();
    format!(
        "{method} {target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{method}-{branch}\r\n\
         Max-Forwards: 70\r\n\
         {route}From: {}\r\n\
         To: {}\r\n\
         Call-ID: {id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n",
        invite.hdr("From").unwrap_or(""),
        ok.hdr("To").unwrap_or(""),
        branch = branch_of(id),
    )
}

/// The ACK or CANCEL of the INVITE's own transaction: same branch, same Request-URI.
fn same_tx(method: &str, invite: &Msg, to: &str) -> String {
    let ruri = invite.start_line().split(' ').nth(1).unwrap_or("");
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {to}\r\n\
         Call-ID: {}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n",
        invite.hdr("Via").unwrap_or(""),
        invite.hdr("From").unwrap_or(""),
        invite.hdr("Call-ID").unwrap_or(""),
    )
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Msg>, within: Duration) -> Option<Msg> {
    timeout(within, rx.recv()).await.ok().flatten()
}

async fn run_call(net: &Net, call: &Call, id: &str) -> (Seen, Option<u16>) {
    let sock = net.ingress[match call.ingress {
        Ingress::Core => CORE,
        Ingress::Legacy => LEGACY,
        Ingress::Gateway => GATEWAY,
    }]
    .clone();
    let local = sock.local_addr().unwrap();
    let (uac_tx, mut uac_rx) = mpsc::unbounded_channel();
    let (uas_tx, uas_rx) = mpsc::unbounded_channel();
    net.uac_routes.insert(id.to_string(), uac_tx);
    net.uas_routes.insert(id.to_string(), uas_tx);
    let (seen_tx, mut seen_rx) = oneshot::channel();
    let callee = tokio::spawn(callee_side(
        net.uas.clone(),
        uas_rx,
        call.callee_does,
        net.verdict_header.clone(),
        seen_tx,
    ));

    let inv_text = invite(net, call, id, local);
    let inv = Msg {
        text: inv_text.clone(),
    };
    let _ = sock.send_to(inv_text.as_bytes(), net.agent).await;
    let started = Instant::now();
    let cancel_at = match call.callee_does {
        Callee::NoAnswer { cancel_ms } => Some(started + Duration::from_millis(cancel_ms)),
        _ => None,
    };
    let script = match call.callee_does {
        Callee::Answers { ring_ms, talk_ms } => ring_ms + talk_ms,
        Callee::NoAnswer { cancel_ms } => cancel_ms,
        Callee::Unwanted { ring_ms } => ring_ms,
    };
    let deadline = started + Duration::from_millis(script) + SLACK;
    let mut cancelled = false;
    // RFC 3261 9.1: a CANCEL waits for a provisional response to the INVITE.
    let mut provisional = false;
    let mut result = (Seen::Lost, None);
    loop {
        let wake = match cancel_at {
            Some(t) if !cancelled && provisional => t.min(deadline),
            _ => deadline,
        };
        let m = tokio::select! {
            m = uac_rx.recv() => m,
            _ = tokio::time::sleep_until(wake) => None,
        };
        let Some(m) = m else {
            if Instant::now() >= deadline {
                break;
            }
            cancelled = true;
            let to = inv.hdr("To").unwrap_or("").to_string();
            let _ = sock
                .send_to(same_tx("CANCEL", &inv, &to).as_bytes(), net.agent)
                .await;
            continue;
        };
        let Some(code) = m.status() else { continue };
        if m.cseq_method() != "INVITE" {
            continue;
        }
        if code < 200 {
            provisional = true;
            continue;
        }
        // The callee side reports what it saw the moment the INVITE reached it.
        let reached = seen_rx.try_recv().ok();
        if code >= 300 {
            let to = m.hdr("To").unwrap_or("").to_string();
            let _ = sock
                .send_to(same_tx("ACK", &inv, &to).as_bytes(), net.agent)
                .await;
            result = match reached {
                Some(s) => (s, None),
                // Given up before the agent had forwarded it: the log tells the verdict.
                None if cancelled && code == 487 => (Seen::Lost, Some(487)),
                None => (Seen::Block, Some(code)),
            };
            break;
        }
        let ack = in_dialog("ACK", 1, &inv, &m, local, id);
        let _ = sock.send_to(ack.as_bytes(), net.agent).await;
        if let Callee::Answers { talk_ms, .. } = call.callee_does {
            sleep(Duration::from_millis(talk_ms)).await;
        }
        let bye = in_dialog("BYE", 2, &inv, &m, local, id);
        let _ = sock.send_to(bye.as_bytes(), net.agent).await;
        let until = Instant::now() + SLACK;
        while let Some(r) = recv(&mut uac_rx, until - Instant::now()).await {
            if r.cseq_method() == "BYE" && r.status().is_some_and(|s| s >= 200) {
                break;
            }
        }
        result = (reached.unwrap_or(Seen::Lost), None);
        break;
    }
    net.uac_routes.remove(id);
    if result.0 == Seen::Block {
        // The INVITE never reached the callee: nothing is left for its side to do.
        callee.abort();
    } else {
        // Let the callee side finish its own script (an ACK or a BYE may still be on the way).
        let _ = timeout(SLACK, callee).await;
    }
    net.uas_routes.remove(id);
    result
}

/// The callee: reports the verdict header it saw, then plays its script.
async fn callee_side(
    sock: Arc<UdpSocket>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    does: Callee,
    header: String,
    seen: oneshot::Sender<Seen>,
) {
    let inv = loop {
        let Some(m) = recv(&mut rx, Duration::from_secs(30)).await else {
            return;
        };
        if m.method() == "INVITE" {
            break m;
        }
    };
    let verdict = inv.hdr(&header).unwrap_or("");
    let _ = seen.send(if verdict.starts_with("warn") {
        Seen::Warn
    } else if verdict.starts_with("pass") {
        Seen::Pass
    } else {
        Seen::Lost
    });
    let to = |text: String| {
        let sock = sock.clone();
        async move {
            // Responses go back to the agent, the only peer that talks to the callee side.
            let Some(via) = text
                .split("\r\n")
                .find(|l| l.to_ascii_lowercase().starts_with("via:"))
            else {
                return;
            };
            let Some(addr) = via
                .split_once(':')
                .map(|(_, v)| v)
                .and_then(|v| v.split_whitespace().nth(1))
                .and_then(|h| h.split(';').next())
                .and_then(|h| h.parse::<SocketAddr>().ok())
            else {
                return;
            };
            let _ = sock.send_to(text.as_bytes(), addr).await;
        }
    };
    to(reply(&inv, 180, "Ringing", "")).await;
    let local = sock.local_addr().unwrap();
    let ring = match does {
        Callee::Answers { ring_ms, .. } | Callee::Unwanted { ring_ms } => ring_ms,
        Callee::NoAnswer { cancel_ms } => cancel_ms + SLACK.as_millis() as u64,
    };
    let until = Instant::now() + Duration::from_millis(ring);
    // Ring: a CANCEL may come first.
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match recv(&mut rx, left).await {
            Some(m) if m.method() == "CANCEL" => {
                to(reply(&m, 200, "OK", "")).await;
                to(reply(&inv, 487, "Request Terminated", "")).await;
                let _ = recv(&mut rx, Duration::from_secs(5)).await;
                return;
            }
            Some(_) => continue,
            None => break,
        }
    }
    match does {
        Callee::Unwanted { .. } => {
            to(reply(&inv, 607, "Unwanted", "")).await;
            let _ = recv(&mut rx, Duration::from_secs(5)).await;
        }
        Callee::Answers { talk_ms, .. } => {
            to(reply(
                &inv,
                200,
                "OK",
                &format!("Contact: <sip:callee@{local}>\r\n"),
            ))
            .await;
            let until = Instant::now() + Duration::from_millis(talk_ms) + SLACK;
            while let Some(m) = recv(&mut rx, until.saturating_duration_since(Instant::now())).await
            {
                if m.method() == "BYE" {
                    to(reply(&m, 200, "OK", "")).await;
                    return;
                }
            }
        }
        Callee::NoAnswer { .. } => {}
    }
}
