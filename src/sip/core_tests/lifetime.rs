//! Calls bounded and reclaimed, sans-IO with a virtual clock (issue 13): idle expiry, session
//! timers (RFC 4028), eviction from a full table; and the scanners' side of the edge: the
//! User-Agent deny list and OPTIONS answered here.

use super::*;

/// A request of the call `call` from the caller, in the dialog the callee's `callee1` tag made.
fn in_dialog(method: &str, call: &str, cseq: u32, extra: &str) -> String {
    format!(
        "{method} sip:+15550001111@callee.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP client.example.com:5080;branch=z9hG4bK{method}{cseq}{call};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:+15552223333@client.example.com>;tag=a1\r\n\
To: <sip:+15550001111@callee.example.com>;tag=callee1\r\n\
Call-ID: {call}\r\n\
CSeq: {cseq} {method}\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
}

/// Forward `call` (staying in the dialog), answer it 200 with `extra` headers and ACK it.
fn answered(p: &Proxy, call: &str, extra: &[String], at: Instant) {
    let fwd = to(
        &feed(p, &invite(call, &format!("z9hG4bK{call}")), UAC, at),
        HOP,
    );
    assert_eq!(fwd.len(), 1, "{call} forwarded");
    let ok = p.handle(answer(&fwd[0], 200, extra), udp(HOP), at);
    assert_eq!(codes(&to(&ok, UAC)), vec![200]);
    assert_eq!(
        to(&feed(p, &in_dialog("ACK", call, 1, ""), UAC, at), HOP).len(),
        1
    );
}

fn calls(p: &Proxy) -> usize {
    p.table_sizes().2
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

#[test]
fn answered_calls_expire_when_idle_unless_something_shows_life() {
    let p = proxy_with(deciding(staying(None, &[])), |c| c.call_idle_secs = 60);
    let t0 = Instant::now();
    answered(&p, "idle", &[], t0);
    p.poll(secs(t0, 50));
    assert_eq!(calls(&p), 1);
    // An in-dialog request either way refreshes it: 50 + 60.
    let info = in_dialog("INFO", "idle", 2, "");
    assert_eq!(to(&feed(&p, &info, UAC, secs(t0, 50)), HOP).len(), 1);
    p.poll(secs(t0, 100));
    assert_eq!(calls(&p), 1, "refreshed at 50");
    assert_eq!(p.stats().calls_expired.get(), 0);
    p.poll(secs(t0, 111));
    assert_eq!(calls(&p), 0, "idle 61 s");
    assert_eq!(p.stats().calls_expired.get(), 1);
    assert_eq!(p.stats().calls.get(), 0);
    // Forgotten, not ended: its BYE still reaches the next hop.
    let bye = in_dialog("BYE", "idle", 3, "");
    assert_eq!(to(&feed(&p, &bye, UAC, secs(t0, 112)), HOP).len(), 1);
}

#[test]
fn session_timers_set_how_long_an_answered_call_may_idle() {
    let p = proxy_with(deciding(staying(None, &[])), |c| c.call_idle_secs = 3600);
    let t0 = Instant::now();
    answered(&p, "se", &["Session-Expires: 100;refresher=uac".into()], t0);
    // 100 s + 64*T1 (32 s) after the answer.
    p.poll(secs(t0, 130));
    assert_eq!(calls(&p), 1);
    // The refresh: a re-INVITE asking for at least 300 s, whose 200 says 120.
    let reinv = in_dialog("INVITE", "se", 2, "Min-SE: 300\r\nSession-Expires: 120\r\n");
    let fwd = to(&feed(&p, &reinv, UAC, secs(t0, 130)), HOP);
    assert_eq!(fwd.len(), 1, "re-INVITE forwarded");
    let ok = answer(&fwd[0], 200, &["Session-Expires: 120;refresher=uac".into()]);
    p.handle(ok, udp(HOP), secs(t0, 130));
    p.poll(secs(t0, 400));
    assert_eq!(calls(&p), 1, "Min-SE 300 beats 120: alive until 130 + 332");
    p.poll(secs(t0, 463));
    assert_eq!(calls(&p), 0, "no refresh within the session interval");
    assert_eq!(p.stats().calls_expired.get(), 1);

    // A 2xx to a refresh without Session-Expires ends the session timer: idle life again.
    let p = proxy_with(deciding(staying(None, &[])), |c| c.call_idle_secs = 3600);
    answered(&p, "se2", &["Session-Expires: 10".into()], t0);
    p.poll(secs(t0, 100));
    assert_eq!(calls(&p), 1, "no session interval is shorter than 90 s");
    let update = in_dialog("UPDATE", "se2", 2, "");
    let fwd = to(&feed(&p, &update, UAC, secs(t0, 100)), HOP);
    assert_eq!(fwd.len(), 1, "UPDATE forwarded");
    p.handle(answer(&fwd[0], 200, &[]), udp(HOP), secs(t0, 100));
    p.poll(secs(t0, 3000));
    assert_eq!(calls(&p), 1, "timer off: call_idle_secs");
    p.poll(secs(t0, 3701));
    assert_eq!(calls(&p), 0);
}

#[test]
fn max_call_secs_still_bounds_a_call_refreshed_forever() {
    let p = proxy_with(deciding(staying(None, &[])), |c| {
        c.call_idle_secs = 60;
        c.max_call_secs = 200;
    });
    let t0 = Instant::now();
    answered(&p, "long", &[], t0);
    for (i, s) in [50u64, 100, 150, 199].into_iter().enumerate() {
        let info = in_dialog("INFO", "long", 2 + i as u32, "");
        feed(&p, &info, UAC, secs(t0, s));
        p.poll(secs(t0, s));
    }
    assert_eq!(calls(&p), 1);
    p.poll(secs(t0, 201));
    assert_eq!(calls(&p), 0);
}

#[test]
fn a_full_table_evicts_the_idlest_answered_call_before_refusing() {
    let hook = deciding(staying(None, &[]));
    let p = proxy_with(hook.clone(), |c| c.max_calls = 2);
    let t0 = Instant::now();
    answered(&p, "old", &[], t0);
    answered(&p, "newer", &[], secs(t0, 10));
    // Both answered within 64*T1: neither may go yet.
    let early = feed(&p, &invite("third", "z9hG4bKthird"), UAC, secs(t0, 20));
    assert_eq!(codes(&early), vec![503]);
    assert_eq!(p.stats().calls_evicted.get(), 0);
    // Later the one idle longest makes room.
    let t = secs(t0, 100);
    let outs = feed(&p, &invite("fourth", "z9hG4bKfourth"), UAC, t);
    assert_eq!(to(&outs, HOP).len(), 1, "forwarded: {:?}", codes(&outs));
    assert_eq!(p.stats().calls_evicted.get(), 1);
    assert_eq!(calls(&p), 2);
    // "old" is forgotten (its requests are of an unknown dialog now), "newer" is not.
    let before = p.stats().unknown_dialog.get();
    feed(&p, &in_dialog("INFO", "newer", 2, ""), UAC, t);
    assert_eq!(p.stats().unknown_dialog.get(), before);
    feed(&p, &in_dialog("INFO", "old", 2, ""), UAC, t);
    assert_eq!(p.stats().unknown_dialog.get(), before + 1);
    // A ringing call is never evicted: with "fourth" still ringing and "newer" just touched,
    // the next call is refused.
    let outs = feed(&p, &invite("fifth", "z9hG4bKfifth"), UAC, t);
    assert_eq!(codes(&outs), vec![503]);
    assert_eq!(p.stats().calls_evicted.get(), 1);
}

#[test]
fn scanners_are_dropped_by_name_and_options_answered_here() {
    let hook = Arc::new(TestHook::default());
    let p = proxy(hook.clone());
    let t0 = Instant::now();
    let scan = invite("scan", "z9hG4bKscan").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nUser-Agent: friendly-scanner\r\n",
    );
    assert!(feed(&p, &scan, UAC, t0).is_empty(), "no answer at all");
    let reg = in_dialog("REGISTER", "scanr", 1, "User-Agent: sipcli/v1.8\r\n");
    assert!(feed(&p, &reg, UAC, t0).is_empty());
    assert_eq!(p.stats().scanners_dropped.get(), 2);
    assert!(hook.calls.lock().unwrap().is_empty(), "never screened");
    // Even a scanner's name never stops a call to an emergency number.
    let sos = scan
        .replace("INVITE sip:+15550001111@", "INVITE sip:911@")
        .replace("Call-ID: scan", "Call-ID: scan-sos")
        .replace("z9hG4bKscan", "z9hG4bKscansos");
    assert_eq!(to(&feed(&p, &sos, UAC, t0), HOP).len(), 1, "911 forwarded");
    assert_eq!(p.stats().scanners_dropped.get(), 2);
    // A phone's User-Agent goes through.
    let phone = invite("phone", "z9hG4bKphone").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nUser-Agent: Linphone/5.2\r\n",
    );
    assert_eq!(to(&feed(&p, &phone, UAC, t0), HOP).len(), 1);
    // Without the list, the scanner is a caller like any other.
    let open = proxy_with(Arc::new(TestHook::default()), |c| {
        c.deny_user_agents.clear()
    });
    assert_eq!(to(&feed(&open, &scan, UAC, t0), HOP).len(), 1);

    // OPTIONS outside a dialog: our own 200 whichever extension it names, nothing relayed.
    for user in ["100", "no-such-user"] {
        let opt = format!(
            "OPTIONS sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKopt{user}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@x>;tag=1\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: opt-{user}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let outs = feed(&p, &opt, UAC, t0);
        assert_eq!(codes(&outs), vec![200], "{user}");
        assert!(to(&outs, HOP).is_empty());
    }
    assert_eq!(p.stats().options_answered.get(), 2);
}
