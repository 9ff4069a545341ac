//! Calls over TLS from real user agents through the whole agent to a real PBX.
//!
//! The enterprise is `pbx.test`: its NAPTR points at `_sip._udp.pbx.test`, whose SRV names
//! Kamailio's port on `kam.test`, 127.0.0.1. The agent's `next_hop` is `pbx.test` and REGISTER
//! is relayed to it. Bob (the callee) registers with Kamailio directly, finding it by the same
//! records; the caller's baresip sends everything to the agent's TLS port (`outbound`), so its
//! REGISTER reaches Kamailio through the agent. Media goes from phone to phone.

use std::net::SocketAddr;

use scamguard::app::{self, config::Config, Agent};

use crate::baresip::{account, Baresip};
use crate::kamailio::Kamailio;
use crate::support::agent::shipped_config;
use crate::support::dns::{dns_config, Dns};
use crate::support::eventually;
use crate::support::pki::Pki;

/// The genuine caller: a number on no list.
const CALLER: &str = "+12125550147";
/// A caller on the test's list, blocked.
const LISTED: &str = "+12125550666";
/// The callee, as Kamailio knows him.
const CALLEE: &str = "bob";

/// The agent in front of Kamailio, with a TLS listener showing a certificate for `sbc.test` and
/// 127.0.0.1 (what the callers' outbound proxy names), lists of the test's own, and Kamailio
/// found by DNS.
async fn agent(pki: &Pki, dns: SocketAddr, dir: &std::path::Path) -> Agent {
    let lists = dir.join("lists");
    std::fs::create_dir(&lists).unwrap();
    std::fs::write(
        lists.join("interop.csv"),
        format!("pattern,action,category,reason\n{LISTED},block,scam,interop test caller\n"),
    )
    .unwrap();
    let leaf = pki.issue("agent", &["sbc.test", "127.0.0.1"]);
    let text = shipped_config(&[
        ("next_hop = \"127.0.0.1:5070\"", "next_hop = \"pbx.test\""),
        ("register = \"refuse\"", "register = \"relay\""),
    ]);
    let mut c = Config::parse("scamguard.toml", &text).unwrap();
    c.sip.listen = "127.0.0.1:0".parse().unwrap();
    c.sip.tls_listen = Some("127.0.0.1:0".parse().unwrap());
    c.sip.tls_cert = Some(leaf.cert);
    c.sip.tls_key = Some(leaf.key);
    c.sip.tls_roots = Some(pki.roots());
    c.sip.dns = dns_config(dns);
    c.api.listen = "127.0.0.1:0".into();
    c.lists.dir = lists;
    c.store.data_dir = dir.join("data");
    c.log.decisions = app::config::LogTarget::File(dir.join("decisions.jsonl"));
    app::start(c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_phones_call_over_tls_through_the_agent_to_a_real_pbx() {
    let kam = Kamailio::start("pbx.test");
    let dns = Dns::start(&[
        "--naptr-record=pbx.test,10,10,S,SIP+D2U,,_sip._udp.pbx.test".into(),
        format!("--srv-host=_sip._udp.pbx.test,kam.test,{},10,10", kam.port),
        "--host-record=kam.test,127.0.0.1".into(),
    ]);
    let pki = Pki::new("interop");
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&pki, dns.addr, dir.path()).await;
    let stats = agent.proxy.stats().clone();
    let tls = agent.sip_tls_addr.expect("the agent listens on TLS");
    let outbound = format!("sip:{tls};transport=tls");
    let ca = pki.ca_file();

    // Bob registers with Kamailio on his own, by name; the caller through the agent, over TLS.
    let bob_aor = format!("sip:{CALLEE}@pbx.test");
    let mut bob = Baresip::start("bob", &account(&bob_aor, true, true, None), dns.addr, &ca).await;
    let mut alice = Baresip::start(
        "alice",
        &account(
            &format!("sip:{CALLER}@pbx.test"),
            false,
            true,
            Some(&outbound),
        ),
        dns.addr,
        &ca,
    )
    .await;
    eventually("both phones are registered with Kamailio", || async {
        kam.contact_of(CALLEE).is_some() && kam.contact_of(CALLER).is_some()
    })
    .await;
    let alice_contact = kam.contact_of(CALLER).unwrap();
    assert!(
        alice_contact.contains("transport=tls"),
        "the caller registered over TLS: {alice_contact}"
    );
    assert!(stats.rx_tls.get() > 0 && stats.tx_tls.get() > 0);

    // Two calls: the caller hangs up the first, the callee the second. Each call's events are
    // told apart by its Call-ID, which both phones report.
    let mut earlier = String::new();
    for (n, caller_ends) in [(1, true), (2, false)] {
        alice.command("dial", &bob_aor).await;
        // bob answers by himself (no CALL_INCOMING event then).
        let answered = bob.event("CALL_ESTABLISHED").await;
        assert!(
            answered["peeruri"].as_str().unwrap_or("").contains(CALLER),
            "call {n}: the callee sees the caller: {answered}"
        );
        let id = answered["id"].as_str().unwrap_or("").to_string();
        assert!(
            !id.is_empty() && id != earlier,
            "call {n}: a new call: {answered}"
        );
        alice.call_event("CALL_ESTABLISHED", &id).await;
        // RTP arrived at each side: the audio flows both ways.
        alice.call_event("CALL_RTPESTAB", &id).await;
        bob.call_event("CALL_RTPESTAB", &id).await;
        let (ender, other) = if caller_ends {
            (&mut alice, &mut bob)
        } else {
            (&mut bob, &mut alice)
        };
        ender.command("hangup", "").await;
        // baresip's reason for a call the other side ended with a BYE (its own hangup says
        // "by user", a lost dialog 408 or 481).
        let closed = other.call_event("CALL_CLOSED", &id).await;
        assert_eq!(
            closed["param"], "Connection reset by peer",
            "call {n}: {} got {}'s BYE",
            other.name, ender.name
        );
        ender.call_event("CALL_CLOSED", &id).await;
        earlier = id;
    }
    // The callee's BYE came to the caller on the caller's own connection: the only stream
    // connection the agent holds is the one the caller opened (Kamailio is UDP), and no
    // connection to the caller's Contact was tried (the caller shows no certificate: a
    // handshake with it would have failed).
    assert_eq!(
        stats.tcp_connections.get(),
        1,
        "one TLS connection, the caller's"
    );
    assert_eq!(stats.tls_handshake_failures.get(), 0);

    // A listed caller gets 603 over TLS; the callee's phone never rings.
    let mut mallory = Baresip::start(
        "mallory",
        &account(
            &format!("sip:{LISTED}@pbx.test"),
            false,
            false,
            Some(&outbound),
        ),
        dns.addr,
        &ca,
    )
    .await;
    let rx_before = stats.rx_tls.get();
    mallory.command("dial", &bob_aor).await;
    let closed = mallory.event("CALL_CLOSED").await;
    assert!(
        closed["param"].as_str().unwrap_or("").starts_with("603"),
        "the listed caller is refused 603: {closed}"
    );
    assert!(stats.rx_tls.get() > rx_before, "the INVITE came over TLS");
    assert!(
        !bob.has_heard_from(LISTED),
        "the callee's phone never heard of it"
    );

    let log_path = dir.path().join("decisions.jsonl");
    agent.stop().await;
    let decisions = crate::support::agent::decisions(&log_path);
    let verdicts: Vec<(String, String)> = decisions
        .iter()
        .map(|d| {
            (
                d["caller"].as_str().unwrap_or("").to_string(),
                d["action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        verdicts.contains(&(LISTED.to_string(), "block".to_string())),
        "{verdicts:?}"
    );
    assert!(
        !verdicts.iter().any(|(c, v)| c == CALLER && v == "block"),
        "{verdicts:?}"
    );
}
