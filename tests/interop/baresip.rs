//! baresip as a real user agent: the Debian package's binary (`baresip-core`) with a config
//! folder the test writes (one account, SIP on loopback ports of its choosing, a DNS server of
//! the test's own, the CA file to trust for TLS, a 440 Hz sine as its microphone and a null
//! loudspeaker), driven over its `ctrl_tcp` control port: commands (`dial`, `hangup`) as
//! netstrings of JSON, and its events (`CALL_ESTABLISHED`, `CALL_RTPESTAB` when the first RTP
//! packet of the call arrives, `CALL_CLOSED` with the reason) read back the same way. Each
//! instance is stopped by its PID.
//!
//! baresip must be installed (`baresip-core`; `.ci/run` and `scripts/test` install it): without
//! it the test fails, it never skips. Knows nothing of scamguard.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::support::{free_port, WAIT};

/// How long a call's step may take: a call crosses two proxies and a DNS lookup, and the
/// callee answers on its own; only a guard against a hang.
const STEP: Duration = Duration::from_secs(30);

/// One running baresip.
pub struct Baresip {
    pub name: String,
    child: Child,
    dir: tempfile::TempDir,
    ctl: OwnedWriteHalf,
    events: UnboundedReceiver<Value>,
    /// Events read but not yet asked for.
    seen: VecDeque<Value>,
    token: u64,
}

/// The account line (baresip's `accounts` file) of `aor` (`sip:user@domain`): answering by
/// itself when `answer`, registering every 10 minutes unless `register` is false, and sending
/// everything to `outbound` when given (e.g. `sip:127.0.0.1:5061;transport=tls`).
pub fn account(aor: &str, answer: bool, register: bool, outbound: Option<&str>) -> String {
    let mut a = format!("<{aor}>");
    if answer {
        a.push_str(";answermode=auto");
    }
    a.push_str(if register { ";regint=600" } else { ";regint=0" });
    if let Some(o) = outbound {
        a.push_str(&format!(";outbound=\"{o}\""));
    }
    a
}

impl Baresip {
    /// Start `name` with `account`, resolving names through `dns`, trusting `cafile` for TLS.
    pub async fn start(name: &str, account: &str, dns: SocketAddr, cafile: &Path) -> Baresip {
        assert!(
            Path::new("/usr/bin/baresip").exists(),
            "baresip is not installed (apt-get install baresip-core): the interop tests need it"
        );
        let dir = tempfile::tempdir().unwrap();
        let ctl_port = free_port();
        // SIP on port 0: every transport (UDP, TCP, TLS) takes a port of its own; the account's
        // Contact says which. ausine makes 48 kHz stereo only: the resampler does the rest.
        let config = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t127.0.0.1:0\n\
             net_interface\t\t127.0.0.1\n\
             dns_server\t\t{dns}\n\
             sip_cafile\t\t{ca}\n\
             audio_player\t\taubridge,{name}-speaker\n\
             audio_alert\t\taubridge,{name}-ringer\n\
             audio_source\t\tausine,440\n\
             ausrc_srate\t\t48000\n\
             auplay_srate\t\t48000\n\
             ausrc_channels\t\t2\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\n\
             module\t\t\tausine.so\n\
             module\t\t\taubridge.so\n\
             module_app\t\taccount.so\n\
             module_app\t\tmenu.so\n\
             module_app\t\tctrl_tcp.so\n\
             ctrl_tcp_listen\t\t127.0.0.1:{ctl_port}\n",
            ca = cafile.display()
        );
        std::fs::write(dir.path().join("config"), config).unwrap();
        std::fs::write(dir.path().join("accounts"), format!("{account}\n")).unwrap();
        std::fs::write(dir.path().join("contacts"), "").unwrap();
        let log = std::fs::File::create(dir.path().join("baresip.log")).unwrap();
        let mut child = Command::new("/usr/bin/baresip")
            .arg("-f")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip starts");
        let end = Instant::now() + WAIT;
        let stream = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", ctl_port)).await {
                break s;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.path().join("baresip.log"));
                panic!(
                    "{name}: baresip exited ({status}):\n{}",
                    log.unwrap_or_default()
                );
            }
            assert!(Instant::now() < end, "{name}: no control port");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (mut rd, ctl) = stream.into_split();
        let (tx, events) = unbounded_channel();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = rd.read(&mut chunk).await {
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                // Netstrings: "<length>:<bytes>,".
                while let Some(colon) = buf.iter().position(|&b| b == b':') {
                    let Some(len) = std::str::from_utf8(&buf[..colon])
                        .ok()
                        .and_then(|l| l.parse::<usize>().ok())
                    else {
                        return;
                    };
                    if buf.len() < colon + 1 + len + 1 {
                        break;
                    }
                    let v: Value = serde_json::from_slice(&buf[colon + 1..colon + 1 + len])
                        .expect("baresip's control port speaks JSON");
                    buf.drain(..colon + 1 + len + 1);
                    // RTCP reports come every few hundred milliseconds: noise here.
                    if v["type"] != "CALL_RTCP" && tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Baresip {
            name: name.to_string(),
            child,
            dir,
            ctl,
            events,
            seen: VecDeque::new(),
            token: 0,
        }
    }

    /// Run a command (`dial`, `hangup`, ...) and return its answer once it is given.
    pub async fn command(&mut self, command: &str, params: &str) -> Value {
        self.token += 1;
        let token = format!("t{}", self.token);
        let body = json!({"command": command, "params": params, "token": token}).to_string();
        let msg = format!("{}:{body},", body.len());
        self.ctl.write_all(msg.as_bytes()).await.unwrap();
        let answer = self
            .wait(&format!("the answer to {command}"), |v| {
                v["response"] == true && v["token"] == token.as_str()
            })
            .await;
        assert_eq!(
            answer["ok"], true,
            "{}: {command} {params}: {answer}",
            self.name
        );
        answer
    }

    /// The next event of `kind` (e.g. `CALL_ESTABLISHED`), waiting for it if need be; other
    /// events stay for later questions.
    pub async fn event(&mut self, kind: &str) -> Value {
        self.wait(kind, |v| v["event"] == true && v["type"] == kind)
            .await
    }

    /// The next event of `kind` about the call `id` (baresip's call id, the SIP Call-ID):
    /// events of an earlier call never stand in for this one's.
    pub async fn call_event(&mut self, kind: &str, id: &str) -> Value {
        self.wait(&format!("{kind} of call {id}"), |v| {
            v["event"] == true && v["type"] == kind && v["id"] == id
        })
        .await
    }

    /// Whether an event about a call with `who` (part of its peer's URI) has arrived by now
    /// and not been asked for (not waiting for one).
    pub fn has_heard_from(&mut self, who: &str) -> bool {
        while let Ok(v) = self.events.try_recv() {
            self.seen.push_back(v);
        }
        self.seen
            .iter()
            .any(|v| v["peeruri"].as_str().is_some_and(|u| u.contains(who)))
    }

    async fn wait(&mut self, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&pick) {
            return self.seen.remove(i).unwrap();
        }
        let end = tokio::time::Instant::now() + STEP;
        loop {
            let v = tokio::time::timeout_at(end, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{}: never saw {what}; events: {:?}\n{}",
                        self.name,
                        self.seen,
                        self.log()
                    )
                })
                .unwrap_or_else(|| panic!("{}: control port closed\n{}", self.name, self.log()));
            if pick(&v) {
                return v;
            }
            self.seen.push_back(v);
        }
    }

    /// The last lines of its output, for a failure's message (its status line repeats a lot).
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("baresip.log"))
            .unwrap_or_default()
            .replace('\r', "\n");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('['))
            .collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
