//! SIPp, a real SIP peer, as load around agents started in the test process: a callee that
//! answers every call its scenario's way, and callers placing calls from a CSV at a rate until
//! told to stop. SIPp fails a call on any unexpected message or missed answer and exits non-zero
//! when any call failed, so [`Sipp::finish`] is an assertion that no call failed.
//!
//! The scenarios live in `tests/sipp/`. Knows nothing of the agent's insides.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::timeout;

use super::{free_port, root};

/// One SIPp process, killed if dropped unfinished.
pub struct Sipp {
    child: Child,
    log: PathBuf,
    what: String,
}

fn scenario(name: &str) -> String {
    root().join("tests/sipp").join(name).display().to_string()
}

fn spawn(args: Vec<String>, log: PathBuf, what: String) -> Sipp {
    let child = Command::new("sipp")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(log.with_extension("err")).unwrap(),
        ))
        .kill_on_drop(true)
        .spawn()
        .expect("SIPp is needed: apt-get install sip-tester (scripts/test and .ci/run do it)");
    Sipp { child, log, what }
}

impl Sipp {
    /// A callee on `port` running `uas` for every call, with no end of its own.
    pub fn uas(port: u16, uas: &str, dir: &Path) -> Sipp {
        let name = format!("uas-{port}");
        spawn(
            vec![
                "-sf".into(),
                scenario(uas),
                "-i".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-nostdin".into(),
                "-trace_err".into(),
                "-error_file".into(),
                dir.join(format!("{name}-errors.log")).display().to_string(),
            ],
            dir.join(format!("{name}.log")),
            name,
        )
    }

    /// A caller placing `rate` calls a second to `target` with `uac`, one per line of `csv`
    /// (over again when it runs out), until [`Sipp::finish`].
    pub fn uac(target: std::net::SocketAddr, uac: &str, csv: &Path, rate: u32, dir: &Path) -> Sipp {
        let port = free_port();
        let name = format!("uac-{port}");
        spawn(
            vec![
                "-sf".into(),
                scenario(uac),
                "-inf".into(),
                csv.display().to_string(),
                "-i".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-r".into(),
                rate.to_string(),
                "-nostdin".into(),
                "-trace_err".into(),
                "-error_file".into(),
                dir.join(format!("{name}-errors.log")).display().to_string(),
                target.to_string(),
            ],
            dir.join(format!("{name}.log")),
            name,
        )
    }

    /// Tells SIPp to place no new call and to exit once the calls under way end (SIGUSR1, by
    /// this process's id and no other), then waits for it: it must exit with success, which it
    /// does only when no call failed. Bounded only against a hang.
    pub async fn finish(mut self) -> String {
        let pid = self.child.id().expect("SIPp still running");
        let sent = std::process::Command::new("kill")
            .args(["-USR1", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(sent, "kill -USR1 {pid}");
        let Ok(status) = timeout(Duration::from_secs(60), self.child.wait()).await else {
            panic!("{} did not finish; see {}", self.what, self.log.display());
        };
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(
            status.unwrap().success(),
            "{}: a call failed; its output:\n{text}",
            self.what
        );
        text
    }
}

/// SIPp's `-inf` file `name` in `dir`: one `caller;callee;` line per call, in order.
pub fn calls_csv(dir: &Path, name: &str, calls: impl Iterator<Item = (String, String)>) -> PathBuf {
    let csv = dir.join(name);
    let mut f = std::fs::File::create(&csv).unwrap();
    writeln!(f, "SEQUENTIAL").unwrap();
    for (caller, callee) in calls {
        writeln!(f, "{caller};{callee};").unwrap();
    }
    csv
}

/// "Successful call" and "Failed call" of SIPp's final statistics screen (cumulative column).
pub fn calls_counted(out: &str) -> (u64, u64) {
    let count = |label: &str| {
        out.lines()
            .rev()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.rsplit('|').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (count("Successful call"), count("Failed call"))
}
