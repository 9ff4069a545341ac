//! Kamailio as the enterprise's registrar and proxy: the Debian package's binary, started by the
//! test with a minimal config it writes (registrar with the location table in memory, tm and rr,
//! UDP on one free loopback port, `pbx.test` its domain), in the foreground (`-DD -E`) with a
//! runtime folder of its own, its log in that folder, and stopped by its PID. `kamcmd` over the
//! config's own control socket is how the test sees who is registered.
//!
//! Kamailio must be installed (`kamailio`; `.ci/run` and `scripts/test` install it): without it
//! the test fails, it never skips. Knows nothing of scamguard.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, WAIT};

/// A Kamailio serving `domain` on UDP 127.0.0.1:`port` until dropped.
pub struct Kamailio {
    child: Child,
    pub port: u16,
    ctl: PathBuf,
    dir: tempfile::TempDir,
}

/// The smallest registrar and proxy that does the job: REGISTER saved in memory, a new INVITE
/// Record-Routed and sent to the callee's registered contact, in-dialog requests loose-routed.
fn config(port: u16, domain: &str, ctl: &Path) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
disable_tcp=yes
listen=udp:127.0.0.1:{port}
alias="{domain}"
auto_aliases=no
use_dns_cache=no
dns=no
rev_dns=no
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "kex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "ctl.so"
modparam("usrloc", "db_mode", 0)
modparam("ctl", "binrpc", "unix:{ctl}")
request_route {{
    xlog("L_INFO", "request $rm $ru from $si:$sp\n");
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("REGISTER")) {{ save("location"); exit; }}
    if (is_method("INVITE")) {{ record_route(); }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    t_relay();
}}
"#,
        ctl = ctl.display()
    )
}

impl Kamailio {
    /// Start it for `domain` and wait until its control socket answers.
    pub fn start(domain: &str) -> Kamailio {
        let bin = ["/usr/sbin/kamailio", "/usr/bin/kamailio"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect(
                "kamailio is not installed (apt-get install kamailio): the interop tests need it",
            );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let ctl = dir.path().join("kamailio_ctl");
        let cfg = dir.path().join("kamailio.cfg");
        std::fs::write(&cfg, config(port, domain, &ctl)).unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let log = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
        let child = Command::new(bin)
            .args(["-DD", "-E", "-m", "64", "-M", "8"])
            .arg("-f")
            .arg(&cfg)
            .arg("-Y")
            .arg(&run)
            .arg("-w")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kamailio starts");
        let mut k = Kamailio {
            child,
            port,
            ctl,
            dir,
        };
        let end = Instant::now() + WAIT;
        while k.rpc(&["core.version"]).is_none() {
            if let Ok(Some(status)) = k.child.try_wait() {
                panic!("kamailio exited ({status}):\n{}", k.log());
            }
            assert!(
                Instant::now() < end,
                "kamailio never answered:\n{}",
                k.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        k
    }

    /// A `kamcmd` command over the control socket; `None` when it fails.
    pub fn rpc(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("kamcmd")
            .arg("-s")
            .arg(format!("unix:{}", self.ctl.display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("kamcmd runs (package kamailio)");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether `user` has a contact in the location table (`ul.dump`), and which.
    pub fn contact_of(&self, user: &str) -> Option<String> {
        let dump = self.rpc(&["ul.dump"])?;
        let mut lines = dump.lines().map(str::trim);
        lines.find(|l| *l == format!("AoR: {user}"))?;
        lines
            .find_map(|l| l.strip_prefix("Address: "))
            .map(str::to_string)
    }

    /// Its log so far, for a failure's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM, so that the main process stops the workers it forked; SIGKILL would leave
        // them running.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + WAIT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
