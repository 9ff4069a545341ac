//! SIPp, a real SIP peer, as caller and callee around the real `scamguard` binary started with the
//! shipped config and lists: a blocked call, a warned call whose forwarded INVITE is checked at the
//! callee for the tag and the verdict header, and a passed call with ACK and BYE.
//!
//! The scenarios live in `tests/sipp/`. SIPp fails a call on any unexpected message or failed
//! check, and exits non-zero when any call failed, so the exit status is the assertion.

use std::io::Write;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_udp_port() -> u16 {
    // The agent takes UDP and TCP on the same port, so both must be free. The port is released
    // before the peer binds it; a collision shows up as a bind error, not a silent pass.
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the agent with the shipped config and lists, placed on the given ports, and wait until
/// it answers an OPTIONS.
fn start_agent(listen: u16, next_hop: u16, log: &Path) -> Running {
    start_agent_with(
        &root().join("config/scamguard.toml"),
        listen,
        next_hop,
        0,
        log,
    )
}

/// As [`start_agent`] with another config file and the admin API on `api` (0: any port).
fn start_agent_with(config: &Path, listen: u16, next_hop: u16, api: u16, log: &Path) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_scamguard"))
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
        .spawn()
        .expect("start scamguard");
    let agent = Running(child);
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = probe.local_addr().unwrap().port();
    let options = format!(
        "OPTIONS sip:127.0.0.1:{listen} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKprobe\r\n\
         Max-Forwards: 0\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1:{listen}>\r\n\
         Call-ID: probe@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        probe
            .send_to(options.as_bytes(), ("127.0.0.1", listen))
            .unwrap();
        if let Ok((n, _)) = probe.recv_from(&mut buf) {
            assert!(buf[..n].starts_with(b"SIP/2.0 "), "not a SIP answer");
            return agent;
        }
    }
    panic!(
        "scamguard did not answer OPTIONS within 30 s; see {}",
        log.display()
    );
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
        .spawn()
        .expect("SIPp is needed: apt-get install sip-tester (scripts/test does it)")
}

fn wait(mut child: Child, what: &str, limit: Duration, log: &Path) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            assert!(
                status.success(),
                "{what} failed ({status}); its output:\n{text}"
            );
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} did not finish within {limit:?}; its output:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scamguard-sipp-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One SIPp run: `calls` calls from `caller(i)` to `callee` through the agent, optionally with a
/// SIPp callee behind it running `uas`. SIPp places 10 calls a second: from one number that is a
/// burst the velocity signal warns and blocks, so a scenario about another verdict varies the
/// caller.
fn run_calls(
    name: &str,
    transport: &str,
    uac: &str,
    uas: Option<&str>,
    caller: impl Fn(usize) -> String,
    callee: &str,
) {
    const CALLS: usize = 20;
    let dir = workdir(name);
    let listen = free_udp_port();
    let uas_port = free_udp_port();
    let _agent = start_agent(listen, uas_port, &dir.join("agent.log"));

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

    let csv = dir.join("calls.csv");
    let mut f = std::fs::File::create(&csv).unwrap();
    writeln!(f, "SEQUENTIAL").unwrap();
    for i in 0..CALLS {
        writeln!(f, "{};{callee};", caller(i)).unwrap();
    }
    drop(f);
    let uac_log = dir.join("uac.log");
    let args: Vec<String> = vec![
        "-sf".into(),
        scenario(uac),
        "-inf".into(),
        csv.display().to_string(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_udp_port().to_string(),
        "-t".into(),
        transport.into(),
        "-m".into(),
        CALLS.to_string(),
        "-r".into(),
        "10".into(),
        "-nostdin".into(),
        "-trace_err".into(),
        "-error_file".into(),
        dir.join("uac_errors.log").display().to_string(),
        format!("127.0.0.1:{listen}"),
    ];
    let uac_child = sipp(&args, &uac_log);
    wait(uac_child, "SIPp caller", Duration::from_secs(60), &uac_log);
    if let Some((child, log)) = uas_child {
        wait(child, "SIPp callee", Duration::from_secs(30), &log);
    }
}

#[test]
fn sipp_blocked_call_gets_603_with_redress_reason() {
    run_calls(
        "block",
        "u1",
        "uac_block.xml",
        None,
        |_| "+12025550143".into(),
        "+12025550100",
    );
}

#[test]
fn sipp_blocked_call_over_tcp() {
    run_calls(
        "block-tcp",
        "t1",
        "uac_block.xml",
        None,
        |_| "+12025550143".into(),
        "+12025550100",
    );
}

#[test]
fn sipp_warned_call_is_tagged_at_the_callee() {
    run_calls(
        "warn",
        "u1",
        "uac_call.xml",
        Some("uas_warn.xml"),
        |i| format!("+1900555{:04}", 2600 + i),
        "+12025550100",
    );
}

#[test]
fn sipp_passed_call_with_ack_and_bye() {
    run_calls(
        "pass",
        "u1",
        "uac_call.xml",
        Some("uas_pass.xml"),
        |i| format!("+1415555{:04}", 2600 + i),
        "+12025550100",
    );
}

/// A free TCP port for the admin API (released before the agent binds it; a collision is a
/// start-up error, not a silent pass).
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 20 free UDP ports starting at a multiple of 100, so that one regular expression
/// (`NNN[01][0-9]`) matches exactly the range.
fn free_media_range() -> (u16, String) {
    loop {
        let base = 100 * (200 + fastrand::u16(..400));
        let held: Vec<_> = (base..base + 20)
            .map_while(|p| UdpSocket::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == 20 {
            return (base, format!("{}[01][0-9]", base / 100));
        }
    }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn metric(text: &str, series: &str) -> u64 {
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
#[test]
fn sipp_warned_call_hears_the_announcement() {
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

    let listen = free_udp_port();
    let uas_port = free_udp_port();
    let api = free_tcp_port();
    let _agent = start_agent_with(&config_path, listen, uas_port, api, &dir.join("agent.log"));

    let uas_log = dir.join("uas.log");
    let uas_args: Vec<String> = vec![
        "-sf".into(),
        dir.join("uas_announce.xml").display().to_string(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        uas_port.to_string(),
        "-mp".into(),
        free_udp_port().to_string(),
        "-rtp_echo".into(),
        "-m".into(),
        CALLS.to_string(),
        "-nostdin".into(),
        "-trace_err".into(),
        "-error_file".into(),
        dir.join("uas_errors.log").display().to_string(),
    ];
    let uas = sipp(&uas_args, &uas_log);

    let csv = dir.join("calls.csv");
    let mut f = std::fs::File::create(&csv).unwrap();
    writeln!(f, "SEQUENTIAL").unwrap();
    for _ in 0..CALLS {
        writeln!(f, "+19005550123;+12025550100;").unwrap();
    }
    drop(f);
    let uac_log = dir.join("uac.log");
    let uac_args: Vec<String> = vec![
        "-sf".into(),
        dir.join("uac_announce.xml").display().to_string(),
        "-inf".into(),
        csv.display().to_string(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_udp_port().to_string(),
        "-mp".into(),
        free_udp_port().to_string(),
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
    wait(uac, "SIPp caller", Duration::from_secs(60), &uac_log);
    wait(uas, "SIPp callee", Duration::from_secs(30), &uas_log);

    let m = http_get(api, "/metrics");
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
