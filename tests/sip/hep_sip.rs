//! HEP3 capture end to end (issue 16): the whole agent with `[hep]` pointed at a test collector
//! on a loopback UDP socket. Every SIP message the test sends to the agent or receives from it
//! must reach the collector as a HEP3 packet (protocol type 1) with its exact bytes, addresses
//! and ports, and nothing else may; each call's decision must arrive as a log record (type 100)
//! whose correlation id is the Call-ID and whose payload is that call's decision-log line.
//!
//! Packets are decoded by the tests' own decoder (`support::hep`), not the agent's encoder.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::net::UdpSocket;

use crate::support::agent::*;
use crate::support::eventually;
use crate::support::hep::{decode, Hep};
use crate::support::http::{metric, metrics};

/// A message as the wire carried it: from, to, bytes.
type Seen = (SocketAddr, SocketAddr, Vec<u8>);

/// Receive on `sock` until a final response (recording each message, 100 Trying included).
async fn recv_until_final(sock: &UdpSocket, seen: &mut Vec<Seen>) -> Msg {
    let me = sock.local_addr().unwrap();
    loop {
        let (m, from) = recv(sock).await;
        seen.push((from, me, m.text.as_bytes().to_vec()));
        if m.status() != Some(100) {
            return m;
        }
    }
}

async fn send(sock: &UdpSocket, to: SocketAddr, text: &str, seen: &mut Vec<Seen>) {
    sock.send_to(text.as_bytes(), to).await.unwrap();
    seen.push((sock.local_addr().unwrap(), to, text.as_bytes().to_vec()));
}

fn unix_secs(t: SystemTime) -> u32 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_and_each_decision_reach_the_collector() {
    let collector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = collector.local_addr().unwrap();
    let got: Arc<Mutex<Vec<Hep>>> = Arc::default();
    let bad: Arc<Mutex<Vec<String>>> = Arc::default();
    let (g, b) = (got.clone(), bad.clone());
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 70_000];
        loop {
            let Ok((n, _)) = collector.recv_from(&mut buf).await else {
                return;
            };
            match decode(&buf[..n]) {
                Ok(p) => g.lock().unwrap().push(p),
                Err(e) => b.lock().unwrap().push(e),
            }
        }
    });
    let began = SystemTime::now();
    let h = Harness::start_with(&[], |c| {
        c.hep.collector = to.to_string();
        c.hep.capture_id = 4711;
        c.hep.password = "homer-key".into();
    })
    .await;
    let (sip, up, down) = (
        h.sip(),
        h.up.local_addr().unwrap(),
        h.down.local_addr().unwrap(),
    );
    let mut seen: Vec<Seen> = Vec::new();

    // A blocked call: INVITE, 100?, 603, ACK.
    let inv = invite(
        "UDP",
        sip,
        up.port(),
        "hep-block@itest",
        "z9hG4bKhepblock",
        "<sip:+12025550143@127.0.0.1>;tag=hb",
        "+12025550100",
        "",
        "",
    );
    send(&h.up, sip, &inv, &mut seen).await;
    let r = recv_until_final(&h.up, &mut seen).await;
    assert_eq!(r.status(), Some(603), "{}", r.text);
    send(&h.up, sip, &ack_for(up.port(), &inv, &r), &mut seen).await;

    // A passed call the callee refuses: INVITE both ways, 486 both ways, the agent's ACK to
    // the callee and the caller's ACK to the agent.
    let inv = invite(
        "UDP",
        sip,
        up.port(),
        "hep-pass@itest",
        "z9hG4bKheppass",
        "<sip:+14155552671@127.0.0.1>;tag=hp",
        "+12025550100",
        "",
        "",
    );
    send(&h.up, sip, &inv, &mut seen).await;
    let (fwd, from) = recv(&h.down).await;
    seen.push((from, down, fwd.text.as_bytes().to_vec()));
    assert_eq!(fwd.method(), "INVITE");
    let busy = reply(&fwd, 486, "Busy Here", "callee1", "", "");
    send(&h.down, sip, &busy, &mut seen).await;
    let (ack, from) = recv(&h.down).await;
    seen.push((from, down, ack.text.as_bytes().to_vec()));
    assert_eq!(ack.method(), "ACK");
    let r = recv_until_final(&h.up, &mut seen).await;
    assert_eq!(r.status(), Some(486), "{}", r.text);
    send(&h.up, sip, &ack_for(up.port(), &inv, &r), &mut seen).await;

    let want: HashSet<Seen> = seen.iter().cloned().collect();
    let sips = || -> Vec<Hep> {
        let g = got.lock().unwrap();
        g.iter().filter(|p| p.kind == 1).cloned().collect()
    };
    eventually("every SIP message captured", || {
        let have: HashSet<Seen> = sips()
            .into_iter()
            .map(|p| (p.src, p.dst, p.payload))
            .collect();
        let all = want.iter().all(|w| have.contains(w));
        async move { all }
    })
    .await;
    let ended = SystemTime::now();
    for p in sips() {
        let key = (p.src, p.dst, p.payload.clone());
        assert!(
            want.contains(&key),
            "captured a message the test never saw: {} -> {}\n{}",
            p.src,
            p.dst,
            String::from_utf8_lossy(&p.payload)
        );
        assert_eq!((p.family, p.proto), (2, 17), "IPv4, UDP");
        assert_eq!(p.capture_id, 4711);
        assert_eq!(p.auth.as_deref(), Some(&b"homer-key"[..]));
        assert_eq!(
            p.correlation, None,
            "SIP carries its Call-ID in the payload"
        );
        assert!(
            (unix_secs(began)..=unix_secs(ended)).contains(&p.secs) && p.usecs < 1_000_000,
            "timestamp {}.{:06} outside the test",
            p.secs,
            p.usecs
        );
    }

    // Each decision: a log record keyed by its Call-ID, the decision-log line byte for byte.
    let path = h.dir.path().join("decisions.jsonl");
    for id in ["hep-block@itest", "hep-pass@itest"] {
        let logs = || -> Vec<Hep> {
            let g = got.lock().unwrap();
            g.iter()
                .filter(|p| p.kind == 100 && p.correlation.as_deref() == Some(id.as_bytes()))
                .cloned()
                .collect()
        };
        eventually("the decision's log record captured", || {
            let n = logs().len();
            async move { n > 0 }
        })
        .await;
        let recs = logs();
        assert_eq!(recs.len(), 1, "one record per decision: {recs:?}");
        let p = &recs[0];
        let text = std::fs::read_to_string(&path).unwrap();
        let line = text
            .lines()
            .find(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["call_id"] == id)
            .unwrap_or_else(|| panic!("no decision-log line for {id}:\n{text}"));
        assert_eq!(String::from_utf8_lossy(&p.payload), line);
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = time::OffsetDateTime::parse(
            v["time"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(i64::from(p.secs), t.unix_timestamp(), "the decision's time");
        assert_eq!(p.usecs, t.microsecond());
        assert_eq!((p.capture_id, p.proto), (4711, 17));
        // `hlog()`'s addresses: the capture socket's and the collector's.
        assert_eq!(p.dst, to);
        assert_eq!(p.src.ip(), to.ip());
    }
    let block = serde_json::from_slice::<serde_json::Value>(
        &got.lock()
            .unwrap()
            .iter()
            .find(|p| p.kind == 100 && p.correlation.as_deref() == Some(b"hep-block@itest"))
            .unwrap()
            .payload,
    )
    .unwrap();
    assert_eq!(
        (block["action"].as_str(), block["caller"].as_str()),
        (Some("block"), Some("+12025550143"))
    );

    let api = h.agent.api_addr;
    let captured = sips().len() as u64;
    eventually("the counters caught up", || async move {
        let m = metrics(api).await;
        metric(&m, "scamguard_hep_packets_total{kind=\"sip\"}") >= captured
            && metric(&m, "scamguard_hep_packets_total{kind=\"log\"}") == 2
    })
    .await;
    let m = metrics(api).await;
    assert_eq!(
        metric(&m, "scamguard_hep_dropped_total{why=\"queue_full\"}"),
        0
    );
    assert_eq!(metric(&m, "scamguard_hep_send_errors_total"), 0);
    assert!(
        bad.lock().unwrap().is_empty(),
        "undecodable: {:?}",
        bad.lock().unwrap()
    );
    h.stop().await;
    reader.abort();
}
