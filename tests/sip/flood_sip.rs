//! Issue 13, per-source fairness, over real sockets: the whole agent from `app::start` with the
//! shipped config (its `[sip.flood]` limits made small), flooding and legitimate callers on
//! loopback addresses of their own (127.0.0.2, 127.0.0.3: the harness's 127.0.0.1 is the next
//! hop's address, so it is the core), and a UDP socket playing the callee. Each test checks what
//! reaches the wire and the metrics, waiting with `eventually`, never on a clock.
//!
//! Knows nothing of the agent's insides beyond its config and `/metrics`.

use tokio::net::UdpSocket;

use crate::support::agent::*;
use crate::support::eventually;
use crate::support::http::{metric, metrics};

const CLEAN: &str = "+14155552671";
const BLOCKED: &str = "+12025550143";
const CALLEE: &str = "+16175551234";

async fn bind(ip: &str) -> UdpSocket {
    UdpSocket::bind(format!("{ip}:0")).await.unwrap()
}

/// An INVITE from `caller` to `callee` as `sock` sends it.
fn inv(h: &Harness, sock: &UdpSocket, call_id: &str, caller: &str, callee: &str) -> String {
    invite(
        "UDP",
        h.sip(),
        sock.local_addr().unwrap().port(),
        call_id,
        &format!("z9hG4bK{}", call_id.replace(['@', '.'], "-")),
        &format!("<sip:{caller}@127.0.0.1>;tag=f1"),
        callee,
        "",
        "",
    )
}

async fn send(h: &Harness, sock: &UdpSocket, text: &str) {
    sock.send_to(text.as_bytes(), h.sip()).await.unwrap();
}

async fn metric_now(h: &Harness, series: &str) -> u64 {
    metric(&metrics(h.agent.api_addr).await, series)
}

/// 603s the agent sent: 0 until the first, since a response code's series is rendered only
/// once it has been sent.
fn refusals(text: &str) -> u64 {
    let series = "sip_responses_sent_total{code=\"603\"}";
    if text.contains(series) {
        metric(text, series)
    } else {
        0
    }
}

/// The callee's next INVITE whose Call-ID starts with `prefix` (others are let by).
async fn callee_gets(h: &Harness, prefix: &str) -> Msg {
    loop {
        let (m, _) = recv(&h.down).await;
        if m.method() == "INVITE" && m.hdr("Call-ID").unwrap_or("").starts_with(prefix) {
            return m;
        }
    }
}

/// A source over `max_messages` is banned: the messages past the limit are dropped unanswered
/// and counted. When the ban has run out (the source sending no faster than the limit), the same
/// source is answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_source_is_banned_and_the_ban_expires() {
    let h = Harness::start_with(&[], |c| {
        c.sip.flood.window_secs = 1;
        c.sip.flood.max_messages = 20;
        c.sip.flood.ban_secs = 1;
    })
    .await;
    let flooder = bind("127.0.0.2").await;
    for i in 0..100 {
        send(
            &h,
            &flooder,
            &inv(&h, &flooder, &format!("flood{i}@itest"), BLOCKED, CALLEE),
        )
        .await;
    }
    eventually("every flood message answered or dropped", || async {
        let m = metrics(h.agent.api_addr).await;
        metric(&m, "sip_flood_dropped_total") + refusals(&m) == 100
    })
    .await;
    assert_eq!(metric_now(&h, "sip_flood_bans_total").await, 1);
    // At least the 20 under the limit were answered (more only if the burst spanned windows).
    let answered = refusals(&metrics(h.agent.api_addr).await);
    assert!((20..100).contains(&answered), "{answered} answered");
    for _ in 0..answered {
        let r = recv_final(&flooder).await;
        assert_eq!(r.start_line(), "SIP/2.0 603 Network Blocked");
    }

    // One call at a time, well under the limit: the ban runs out and the source is answered.
    let mut n = 0;
    eventually("the banned source is answered again", || {
        n += 1;
        let again = inv(
            &h,
            &flooder,
            &format!("after-ban{n}@itest"),
            BLOCKED,
            CALLEE,
        );
        let (h, flooder) = (&h, &flooder);
        async move {
            send(h, flooder, &again).await;
            let wait = std::time::Duration::from_millis(500);
            match tokio::time::timeout(wait, recv_final(flooder)).await {
                Ok(r) => {
                    assert_eq!(r.start_line(), "SIP/2.0 603 Network Blocked");
                    assert!(r.hdr("Call-ID").unwrap_or("").starts_with("after-ban"));
                    true
                }
                Err(_) => false,
            }
        }
    })
    .await;
    assert_eq!(metric_now(&h, "sip_flood_bans_total").await, 1);
}

/// While one source floods (and is banned), another source's calls keep their verdicts: a listed
/// caller is refused 603, a clean one reaches the callee marked `pass` and gets its answer back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sources_keep_their_verdicts_during_a_flood() {
    let h = Harness::start_with(&[], |c| {
        c.sip.flood.window_secs = 3600;
        c.sip.flood.max_messages = 50;
    })
    .await;
    let flooder = bind("127.0.0.2").await;
    let legit = bind("127.0.0.3").await;
    let (sip, fport) = (h.sip(), flooder.local_addr().unwrap().port());
    let flood = tokio::spawn(async move {
        for i in 0..3000 {
            let text = invite(
                "UDP",
                sip,
                fport,
                &format!("flood{i}@itest"),
                &format!("z9hG4bKflood{i}"),
                &format!("<sip:{BLOCKED}@127.0.0.1>;tag=f1"),
                CALLEE,
                "",
                "",
            );
            flooder.send_to(text.as_bytes(), sip).await.unwrap();
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    for i in 0..10 {
        let id = format!("legit{i}@itest");
        if i % 2 == 0 {
            send(&h, &legit, &inv(&h, &legit, &id, BLOCKED, CALLEE)).await;
            let r = recv_final(&legit).await;
            assert_eq!(r.start_line(), "SIP/2.0 603 Network Blocked", "{id}");
            assert_eq!(r.hdr("Call-ID"), Some(id.as_str()));
        } else {
            send(&h, &legit, &inv(&h, &legit, &id, CLEAN, CALLEE)).await;
            let f = callee_gets(&h, &id).await;
            assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"), "{id}");
            h.send_down(&reply(&f, 486, "Busy Here", "callee1", "", ""))
                .await;
            let r = recv_final(&legit).await;
            assert_eq!(r.start_line(), "SIP/2.0 486 Busy Here", "{id}");
            assert_eq!(r.hdr("Call-ID"), Some(id.as_str()));
        }
    }
    flood.await.unwrap();
    eventually("the flood dropped past the limit", || async {
        metric_now(&h, "sip_flood_dropped_total").await == 3000 - 50
    })
    .await;
    assert_eq!(metric_now(&h, "sip_flood_bans_total").await, 1);
}

/// A source holds at most `max_transactions_per_source` server transactions: its next INVITE is
/// answered 503, while another source's call goes on. A call to an emergency number is held to
/// no source budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_source_transaction_cap_holds() {
    let h = Harness::start_with(&[], |c| {
        c.sip.flood.max_transactions_per_source = 3;
    })
    .await;
    let busy = bind("127.0.0.2").await;
    let other = bind("127.0.0.3").await;
    // Three calls ringing (the callee never answers): three transactions held.
    for i in 0..3 {
        let id = format!("ring{i}@itest");
        send(&h, &busy, &inv(&h, &busy, &id, CLEAN, CALLEE)).await;
        callee_gets(&h, &id).await;
    }
    send(&h, &busy, &inv(&h, &busy, "over@itest", CLEAN, CALLEE)).await;
    let r = recv_final(&busy).await;
    assert_eq!(r.start_line(), "SIP/2.0 503 Service Unavailable");
    assert_eq!(r.hdr("Call-ID"), Some("over@itest"));
    assert!(r.hdr("Retry-After").is_some());
    assert_eq!(
        metric_now(&h, "sip_flood_refused_total{budget=\"source\"}").await,
        1
    );
    // An emergency call from the same source still goes through.
    send(&h, &busy, &inv(&h, &busy, "sos@itest", CLEAN, "911")).await;
    let f = callee_gets(&h, "sos@itest").await;
    assert!(f.start_line().starts_with("INVITE sip:911@"), "{}", f.text);
    // Another source is not held to the first one's budget.
    send(&h, &other, &inv(&h, &other, "other@itest", CLEAN, CALLEE)).await;
    callee_gets(&h, "other@itest").await;
    assert_eq!(
        metric_now(&h, "sip_flood_refused_total{budget=\"source\"}").await,
        1
    );
}

/// The core (here 127.0.0.1, the next hop's address) has a share of the transaction table that
/// other sources cannot take, and is never banned however much it sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_has_its_own_budget() {
    let h = Harness::start_with(&[], |c| {
        c.sip.max_transactions = 10;
        c.sip.flood.core_reserve_percent = 50;
        c.sip.flood.window_secs = 3600;
        c.sip.flood.max_messages = 8;
    })
    .await;
    let outsider = bind("127.0.0.2").await;
    let mut refused = false;
    for i in 0..10 {
        let id = format!("out{i}@itest");
        send(&h, &outsider, &inv(&h, &outsider, &id, CLEAN, CALLEE)).await;
        let (m, _) = recv(&outsider).await;
        if m.status() == Some(503) {
            refused = true;
            break;
        }
        assert_eq!(m.status(), Some(100), "{}", m.text);
        callee_gets(&h, &id).await;
    }
    assert!(refused, "other sources filled their share and were refused");
    assert_eq!(
        metric_now(&h, "sip_flood_refused_total{budget=\"shared\"}").await,
        1
    );
    // The core sends more than max_messages and still gets its calls through.
    for i in 0..10 {
        let options = format!(
            "OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKopt{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:core@127.0.0.1>;tag=o{i}\r\nTo: <sip:{}>\r\n\
             Call-ID: opt{i}@itest\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            h.sip(),
            h.up_port(),
            h.sip()
        );
        h.send_up(&options).await;
        assert_eq!(recv(&h.up).await.0.status(), Some(200));
    }
    for i in 0..2 {
        let id = format!("core{i}@itest");
        h.send_up(&call_from_core(&h, &id)).await;
        callee_gets(&h, &id).await;
    }
    assert_eq!(metric_now(&h, "sip_flood_bans_total").await, 0);
}

fn call_from_core(h: &Harness, id: &str) -> String {
    invite(
        "UDP",
        h.sip(),
        h.up_port(),
        id,
        &format!("z9hG4bK{}", id.replace(['@', '.'], "-")),
        &format!("<sip:{CLEAN}@127.0.0.1>;tag=c1"),
        CALLEE,
        "",
        "",
    )
}

/// A banned source's call to an emergency number still gets through, with the rest of its call
/// (its answer goes back, its ACK is taken), while its other messages stay dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_call_gets_through_a_ban() {
    let h = Harness::start_with(&[], |c| {
        c.sip.flood.window_secs = 3600;
        c.sip.flood.max_messages = 5;
    })
    .await;
    let flooder = bind("127.0.0.2").await;
    for i in 0..10 {
        send(
            &h,
            &flooder,
            &inv(&h, &flooder, &format!("flood{i}@itest"), BLOCKED, CALLEE),
        )
        .await;
    }
    eventually("the source is banned and dropped", || async {
        metric_now(&h, "sip_flood_dropped_total").await == 5
    })
    .await;
    let sos = inv(&h, &flooder, "sos@itest", CLEAN, "112");
    send(&h, &flooder, &sos).await;
    let f = callee_gets(&h, "sos@itest").await;
    h.send_down(&reply(&f, 486, "Busy Here", "psap1", "", ""))
        .await;
    let r = loop {
        let r = recv_final(&flooder).await;
        if r.hdr("Call-ID") == Some("sos@itest") {
            break r;
        }
    };
    assert_eq!(r.start_line(), "SIP/2.0 486 Busy Here");
    send(
        &h,
        &flooder,
        &ack_for(flooder.local_addr().unwrap().port(), &sos, &r),
    )
    .await;
    send(
        &h,
        &flooder,
        &inv(&h, &flooder, "flood-more@itest", BLOCKED, CALLEE),
    )
    .await;
    eventually(
        "the ACK let through and the next INVITE dropped",
        || async {
            let m = metrics(h.agent.api_addr).await;
            metric(&m, "sip_flood_urgent_total") == 2 && metric(&m, "sip_flood_dropped_total") == 6
        },
    )
    .await;
}
