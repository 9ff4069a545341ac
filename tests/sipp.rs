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
    // The port is released before the peer binds it; a collision shows up as a bind error, not a
    // silent pass.
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    let child = Command::new(env!("CARGO_BIN_EXE_scamguard"))
        .current_dir(root())
        .args(["run", "--config", "config/scamguard.toml"])
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--next-hop", &format!("127.0.0.1:{next_hop}")])
        .args(["--api", "127.0.0.1:0", "--lists", "blocklists"])
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

/// One SIPp run: `calls` calls from `caller` to `callee` through the agent, optionally with a SIPp
/// callee behind it running `uas`.
fn run_calls(
    name: &str,
    transport: &str,
    uac: &str,
    uas: Option<&str>,
    caller: &str,
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
    for _ in 0..CALLS {
        writeln!(f, "{caller};{callee};").unwrap();
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
        "+12025550143",
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
        "+12025550143",
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
        "+19005550123",
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
        "+14155552671",
        "+12025550100",
    );
}
