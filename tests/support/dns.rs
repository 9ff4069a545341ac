//! A DNS server of the test's own: `dnsmasq` on a free loopback port (no daemon, its own empty
//! config, `--no-resolv --no-hosts`, `.test` answered only from the NAPTR, SRV and A records the
//! test gives it), and the `[dns]` section that points the proxy at it. Shared by the host-name,
//! TLS and interop tests. dnsmasq must be installed (`dnsmasq-base`; `.ci/run` and `scripts/test`
//! install it): without it the test fails, it never skips. Knows nothing of SIP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scamguard::sip::DnsConfig;

use super::WAIT;

/// A dnsmasq serving `records` (its own command-line options) on a loopback port until dropped.
pub struct Dns {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Dns {
    pub fn start(records: &[String]) -> Dns {
        let port = crate::support::free_port();
        Dns::start_on(port, records)
    }

    /// [`Dns::start`] on a port chosen by the caller (to start it again where it was).
    pub fn start_on(port: u16, records: &[String]) -> Dns {
        let dir = tempfile::tempdir().unwrap();
        // Its own (empty) config file, so that no /etc/dnsmasq.conf is read.
        let conf: PathBuf = dir.path().join("dnsmasq.conf");
        std::fs::write(&conf, "").unwrap();
        let bin = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("dnsmasq is not installed (apt-get install dnsmasq-base): these tests need it");
        let child = Command::new(bin)
            .arg(format!("--conf-file={}", conf.display()))
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--local=/test/",
                "--local-ttl=1",
                "--pid-file=",
            ])
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-facility={}",
                dir.path().join("log").display()
            ))
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dnsmasq starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Ready once it holds the port.
        let t0 = std::time::Instant::now();
        while std::net::UdpSocket::bind(addr).is_ok() {
            assert!(t0.elapsed() < WAIT, "dnsmasq did not bind {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Dns {
            child,
            addr,
            _dir: dir,
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn dns_config(server: SocketAddr) -> DnsConfig {
    DnsConfig {
        servers: vec![server],
        timeout_ms: 500,
        attempts: 1,
        park_ms: 4000,
        ..DnsConfig::default()
    }
}
