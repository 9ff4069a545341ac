//! SIPp, a real SIP peer, as caller and callee around the real `scamguard` binary started with the
//! shipped config and lists: a blocked call, a warned call whose forwarded INVITE is checked at the
//! callee for the tag and the verdict header, and a passed call with ACK and BYE.
//!
//! The scenarios live in `tests/sipp/`. SIPp fails a call on any unexpected message or failed
//! check, and exits non-zero when any call failed, so the exit status is the assertion.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::http::{metric, metrics};
use crate::support::{eventually, free_port, free_port_range, root};
use tokio::net::UdpSocket;
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// Start the agent with the shipped config and lists, placed on the given ports, and wait until
/// it answers an OPTIONS.
async fn start_agent(listen: u16, next_hop: u16, log: &Path) -> Child {
    start_agent_with(
        &root().join("config/scamguard.toml"),
        listen,
        next_hop,
        0,
        log,
    )
    .await
}

/// As [`start_agent`] with another config file and the admin API on `api` (0: any port). The
/// agent is killed when the returned child is dropped.
async fn start_agent_with(
    config: &Path,
    listen: u16,
    next_hop: u16,
    api: u16,
    log: &Path,
) -> Child {
    let agent = Command::new(env!("CARGO_BIN_EXE_scamguard"))
        .current_dir(root())
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--next-hop", &format!("127.0.0.1:{next_hop}")])
        .args([
            "--api",
            &format!("127.0.0.1:{api}"),
            "--lists",
            "blocklists",
        ])
        .arg("--data")
        .arg(log.with_file_name("data"))
        .stdout(Stdio::from(std::fs::File::create(log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(log.with_extension("err")).unwrap(),
        ))
        .kill_on_drop(true)
        .spawn()
        .expect("start scamguard");
    let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = probe.local_addr().unwrap().port();
    let options = format!(
        "OPTIONS sip:127.0.0.1:{listen} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKprobe\r\n\
         Max-Forwards: 0\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1:{listen}>\r\n\
         Call-ID: probe@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let what = format!("scamguard answers OPTIONS; see {}", log.display());
    eventually(&what, || async {
        probe
            .send_to(options.as_bytes(), ("127.0.0.1", listen))
            .await
            .unwrap();
        let mut buf = [0u8; 2048];
        match timeout(Duration::from_millis(200), probe.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                assert!(buf[..n].starts_with(b"SIP/2.0 "), "not a SIP answer");
                true
            }
            _ => false,
        }
    })
    .await;
    agent
}

fn scenario(name: &str) -> String {
    root().join("tests/sipp").join(name).display().to_string()
}

fn sipp(args: &[String], log: &Path) -> Child {
    Command::new("sipp")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(log).unwrap()))
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("SIPp is needed: apt-get install sip-tester (scripts/test does it)")
}

/// Until `child` exits, which it must do with success (bounded only against a hang).
async fn wait(mut child: Child, what: &str, limit: Duration, log: &Path) {
    let Ok(status) = timeout(limit, child.wait()).await else {
        let _ = child.kill().await;
        let text = std::fs::read_to_string(log).unwrap_or_default();
        panic!("{what} did not finish within {limit:?}; its output:\n{text}");
    };
    let status = status.unwrap();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        status.success(),
        "{what} failed ({status}); its output:\n{text}"
    );
}

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scamguard-sipp-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// SIPp's `-inf` file in `dir`: one `caller;callee;` line per call, in order.
fn calls_csv(dir: &Path, calls: impl Iterator<Item = (String, String)>) -> PathBuf {
    let csv = dir.join("calls.csv");
    let mut f = std::fs::File::create(&csv).unwrap();
    writeln!(f, "SEQUENTIAL").unwrap();
    for (caller, callee) in calls {
        writeln!(f, "{caller};{callee};").unwrap();
    }
    csv
}

/// A SIPp caller's arguments: `scenario` placing the `calls` calls of `csv` at `rate` a second
/// towards `target`, with `extra` options, its errors logged in `dir`.
fn uac_args(
    (scenario, csv, calls, rate): (String, &Path, usize, u32),
    dir: &Path,
    extra: &[String],
    target: String,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-sf".into(),
        scenario,
        "-inf".into(),
        csv.display().to_string(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_port().to_string(),
        "-m".into(),
        calls.to_string(),
        "-r".into(),
        rate.to_string(),
        "-nostdin".into(),
        "-trace_err".into(),
        "-error_file".into(),
        dir.join("uac_errors.log").display().to_string(),
    ];
    args.extend_from_slice(extra);
    args.push(target);
    args
}

/// One SIPp run: `calls` calls from `caller(i)` to `callee` through the agent, optionally with a
/// SIPp callee behind it running `uas`. SIPp places 10 calls a second: from one number that is a
/// burst the velocity signal warns and blocks, so a scenario about another verdict varies the
/// caller.
async fn run_calls(
    name: &str,
    transport: &str,
    uac: &str,
    uas: Option<&str>,
    caller: impl Fn(usize) -> String,
    callee: &str,
) {
    const CALLS: usize = 20;
    let dir = workdir(name);
    let listen = free_port();
    let uas_port = free_port();
    let _agent = start_agent(listen, uas_port, &dir.join("agent.log")).await;

    let uas_child = uas.map(|uas| {
        let log = dir.join("uas.log");
        let args: Vec<String> = vec![
            "-sf".into(),
            scenario(uas),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            uas_port.to_string(),
            "-m".into(),
            CALLS.to_string(),
            "-nostdin".into(),
            "-trace_err".into(),
            "-error_file".into(),
            dir.join("uas_errors.log").display().to_string(),
        ];
        (sipp(&args, &log), log)
    });

    let csv = calls_csv(&dir, (0..CALLS).map(|i| (caller(i), callee.to_string())));
    let uac_log = dir.join("uac.log");
    let args = uac_args(
        (scenario(uac), &csv, CALLS, 10),
        &dir,
        &["-t".into(), transport.into()],
        format!("127.0.0.1:{listen}"),
    );
    let uac_child = sipp(&args, &uac_log);
    wait(uac_child, "SIPp caller", Duration::from_secs(60), &uac_log).await;
    if let Some((child, log)) = uas_child {
        wait(child, "SIPp callee", Duration::from_secs(30), &log).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_blocked_call_gets_603_with_redress_reason() {
    run_calls(
        "block",
        "u1",
        "uac_block.xml",
        None,
        |_| "+12025550143".into(),
        "+12025550100",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_blocked_call_over_tcp() {
    run_calls(
        "block-tcp",
        "t1",
        "uac_block.xml",
        None,
        |_| "+12025550143".into(),
        "+12025550100",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_warned_call_is_tagged_at_the_callee() {
    run_calls(
        "warn",
        "u1",
        "uac_call.xml",
        Some("uas_warn.xml"),
        |i| format!("+1900555{:04}", 2600 + i),
        "+12025550100",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_passed_call_with_ack_and_bye() {
    run_calls(
        "pass",
        "u1",
        "uac_call.xml",
        Some("uas_pass.xml"),
        |i| format!("+1415555{:04}", 2600 + i),
        "+12025550100",
    )
    .await;
}

/// 20 free UDP ports starting at a multiple of 100, so that one regular expression
/// (`NNN[01][0-9]`) matches exactly the range.
fn free_media_range() -> (u16, String) {
    let base = free_port_range(20);
    (base, format!("{}[01][0-9]", base / 100))
}

/// The announcement through SIPp (issue 4): the real binary with `[media] enabled = true`, a SIPp
/// caller placing warned calls with PCMU SDP, and a SIPp callee with `-rtp_echo`.
///
/// How it fails: SIPp fails the call (non-zero exit) when the callee's INVITE or the caller's 200
/// does not carry SDP pointing at the agent (`c=IN IP4 127.0.0.1` and an `m=audio` port of the
/// configured range), or on any unexpected message. SIPp cannot assert on RTP it receives, so the
/// callee echoes every RTP packet back to its sender (the agent's callee leg), which relays it to
/// the caller: the agent's `/metrics` must then show every prompt played and at least half of the
/// prompt's packets relayed back per call (loopback loses none in practice; half leaves room for
/// the echo of the last packets racing the BYE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_warned_call_hears_the_announcement() {
    const CALLS: usize = 2;
    let dir = workdir("announce");
    let (base, port_re) = free_media_range();
    let mut config = std::fs::read_to_string(root().join("config/scamguard.toml")).unwrap();
    for (from, to) in [
        ("enabled = false", "enabled = true".to_string()),
        ("port_min = 30000", format!("port_min = {base}")),
        ("port_max = 31999", format!("port_max = {}", base + 19)),
        ("max_sessions = 400", "max_sessions = 4".to_string()),
    ] {
        assert!(config.contains(from), "shipped config has no {from:?}");
        config = config.replacen(from, &to, 1);
    }
    let config_path = dir.join("scamguard.toml");
    std::fs::write(&config_path, config).unwrap();
    for name in ["uac_announce.xml", "uas_announce.xml"] {
        let text = std::fs::read_to_string(scenario(name)).unwrap();
        assert!(text.contains("@PORT_RE@"));
        std::fs::write(dir.join(name), text.replace("@PORT_RE@", &port_re)).unwrap();
    }

    let listen = free_port();
    let uas_port = free_port();
    let api = free_port();
    let _agent =
        start_agent_with(&config_path, listen, uas_port, api, &dir.join("agent.log")).await;

    let uas_log = dir.join("uas.log");
    let uas_args: Vec<String> = vec![
        "-sf".into(),
        dir.join("uas_announce.xml").display().to_string(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        uas_port.to_string(),
        "-mp".into(),
        free_port().to_string(),
        "-rtp_echo".into(),
        "-m".into(),
        CALLS.to_string(),
        "-nostdin".into(),
        "-trace_err".into(),
        "-error_file".into(),
        dir.join("uas_errors.log").display().to_string(),
    ];
    let uas = sipp(&uas_args, &uas_log);

    let csv = calls_csv(
        &dir,
        (0..CALLS).map(|_| ("+19005550123".into(), "+12025550100".into())),
    );
    let uac_log = dir.join("uac.log");
    let uac_args: Vec<String> = vec![
        "-sf".into(),
        dir.join("uac_announce.xml").display().to_string(),
        "-inf".into(),
        csv.display().to_string(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_port().to_string(),
        "-mp".into(),
        free_port().to_string(),
        "-m".into(),
        CALLS.to_string(),
        "-l".into(),
        CALLS.to_string(),
        "-nostdin".into(),
        "-trace_err".into(),
        "-error_file".into(),
        dir.join("uac_errors.log").display().to_string(),
        format!("127.0.0.1:{listen}"),
    ];
    let uac = sipp(&uac_args, &uac_log);
    wait(uac, "SIPp caller", Duration::from_secs(60), &uac_log).await;
    wait(uas, "SIPp callee", Duration::from_secs(30), &uas_log).await;

    let m = metrics(([127, 0, 0, 1], api).into()).await;
    assert_eq!(
        metric(&m, "scamguard_calls_total{action=\"warn\"}"),
        CALLS as u64,
        "{m}"
    );
    assert_eq!(
        metric(&m, "scamguard_media_sessions_started_total"),
        CALLS as u64,
        "{m}"
    );
    assert_eq!(
        metric(&m, "scamguard_media_prompts_total{outcome=\"played\"}"),
        CALLS as u64,
        "{m}"
    );
    // en.wav is 9.9 s: 495 packets of 20 ms per call.
    let echoed = metric(&m, "scamguard_media_packets_relayed_total{kind=\"rtp\"}");
    assert!(
        echoed >= (CALLS * 495 / 2) as u64,
        "{echoed} echoed packets relayed\n{m}"
    );
}

/// Issue 17: a robodialer's burst meets the challenge. SIPp places six calls at once from one
/// suspect number (the shipped example list warns +1202555016X, a fictional range: 75, between
/// `policy.challenge_at` = 70 and the block level) through the agent in this process; it presses
/// no digit, so every call must get the 183 and then 603+ with the redress URL, and nothing may
/// reach the callee. Each failure is a signal for the caller: its score rises. Velocity is off
/// here, so that the burst's rate cannot decide a call before its challenge does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_robocall_burst_fails_every_challenge_and_the_callers_score_rises() {
    const CALLS: usize = 6;
    const ROBOT: &str = "+12025550163";
    const CALLEE: &str = "+14155550100";
    let base = free_port_range(40);
    let h = crate::support::agent::Harness::start_with(&[], |c| {
        c.media.enabled = true;
        c.media.prompts_dir = root().join("prompts").display().to_string();
        c.media.port_min = base;
        c.media.port_max = base + 39;
        c.media.max_sessions = CALLS;
        c.policy.challenge_at = 70;
        c.challenge.timeout_secs = 1;
        c.signals.velocity.enabled = false;
    })
    .await;
    let score = |v: &scamguard::screening::Verdict| {
        v.reasons
            .iter()
            .filter_map(|r| {
                r.reason
                    .strip_prefix("(+")?
                    .split_once(')')?
                    .0
                    .parse::<i32>()
                    .ok()
            })
            .sum::<i32>()
    };
    let before = h.agent.screener.verdict(ROBOT, CALLEE, None, false);
    assert_eq!(before.action, scamguard::screening::Action::Challenge);
    assert!(before.reasons.iter().all(|r| r.source != "challenge"));

    let dir = workdir("challenge-burst");
    let csv = calls_csv(&dir, (0..CALLS).map(|_| (ROBOT.into(), CALLEE.into())));
    let log = dir.join("uac.log");
    let args = uac_args(
        (scenario("uac_challenge.xml"), &csv, CALLS, 20),
        &dir,
        &["-l".into(), CALLS.to_string()],
        h.sip().to_string(),
    );
    wait(
        sipp(&args, &log),
        "SIPp robodialer",
        Duration::from_secs(60),
        &log,
    )
    .await;

    assert!(
        h.down.try_recv_from(&mut [0u8; 2048]).is_err(),
        "no call reached the callee"
    );
    let m = metrics(h.agent.api_addr).await;
    for (series, want) in [
        (
            "scamguard_challenges_total{outcome=\"started\"}",
            CALLS as u64,
        ),
        (
            "scamguard_challenges_total{outcome=\"failed\"}",
            CALLS as u64,
        ),
        ("scamguard_challenges_total{outcome=\"passed\"}", 0),
    ] {
        assert_eq!(metric(&m, series), want, "{series}");
    }
    let after = h.agent.screener.verdict(ROBOT, CALLEE, None, false);
    let failed = after
        .reasons
        .iter()
        .find(|r| r.source == "challenge")
        .unwrap_or_else(|| panic!("no challenge reason: {:?}", after.reasons));
    assert!(
        failed.reason.starts_with("(+75) "),
        "capped: {}",
        failed.reason
    );
    assert!(score(&after) > score(&before), "{before:?} -> {after:?}");
    assert_eq!(after.action, scamguard::screening::Action::Block);
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), CALLS);
    assert!(log.iter().all(|l| l["action"] == "challenge"), "{log:?}");
}
