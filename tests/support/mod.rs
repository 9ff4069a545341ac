//! What every integration test binary (`tests/*/main.rs`) shares, included in each as `support`:
//! the bound on waiting ([`WAIT`], [`eventually`]), free ports, a way to run a test alone in a
//! process of its own ([`alone`]), one HTTP client and one `/metrics` reader ([`http`]), one
//! `sip::Hook` for the bare proxy ([`hook`]), a party's RTP and prompt checks ([`rtp`]), and the
//! harnesses of the whole agent ([`agent`]), of the admin API alone ([`api`]), of STIR/SHAKEN
//! certificates ([`stir_pki`]) and of SIPp as load ([`sipp`]), a HEP3 decoder for a test
//! collector ([`hep`]), a DNS server of the test's own ([`dns`]) and a test CA for SIP over TLS
//! ([`pki`]).
//!
//! The tests of one binary run in parallel threads of one process: nothing here keeps state a
//! test could see from another, except the port ranges handed out, which are kept apart so.
//! Knows nothing of the agent's insides: only its public API, its config and the wire.
#![allow(dead_code)]

pub mod agent;
pub mod api;
pub mod dns;
pub mod hep;
pub mod hook;
pub mod http;
pub mod pki;
pub mod rtp;
pub mod sipp;
pub mod stir_pki;
pub mod webdriver;

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// How long a test waits for one message or answer: only a guard against a hang, nothing is
/// measured by it.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long [`eventually`] keeps asking. Generous, since a loaded machine (another test of the
/// binary, a build) can be slow; only a guard against a hang, nothing is measured by it.
const PATIENCE: Duration = Duration::from_secs(60);

/// The repository, where the shipped config, lists and prompts are.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Wait until `f` holds, asking again every few milliseconds; fails the test, naming `what`, if
/// it never does. The way a test waits for work the agent does in the background (a fetch, a
/// reload, a timer, a count): never a fixed sleep.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + PATIENCE;
    while !f().await {
        assert!(Instant::now() < end, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port of 127.0.0.1 free now for UDP and for TCP at once (the agent and SIPp take both on one
/// port). It is released before the caller's program binds it: a collision shows up as a bind
/// error or a failed call, never as a silent pass.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The first of `n` consecutive UDP ports of 127.0.0.1 (n <= 100) for a media engine, none bound
/// now, starting at a multiple of 100 (so that one pattern, `NNN[01][0-9]`, matches exactly 20).
///
/// Each call in this process gets a range of its own, from a cursor that starts at a random
/// place (other processes running the same tests pick elsewhere). The ranges lie in 26000..32700:
/// below the kernel's ephemeral ports (32768 and up), where every socket bound to port 0 lands,
/// and clear of the fixed ranges of the media engine tests (21000..25300).
pub fn free_port_range(n: u16) -> u16 {
    const FIRST: u16 = 260;
    const SLOTS: u16 = 67;
    static NEXT: AtomicU16 = AtomicU16::new(u16::MAX);
    assert!((1..=100).contains(&n));
    let _ = NEXT.compare_exchange(
        u16::MAX,
        fastrand::u16(..SLOTS),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SLOTS {
        let base = 100 * (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SLOTS);
        let held: Vec<_> = (base..base + n)
            .map_while(|p| UdpSocket::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == usize::from(n) {
            return base;
        }
    }
    panic!("no free range of {n} UDP ports in 26000..32700");
}

/// The name libtest gives test `name` written in the module at `module` (`module_path!()`): the
/// module path without the crate, e.g. `media_leak::five_hundred_sessions`.
pub fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_, path)) => format!("{path}::{name}"),
        None => name.to_string(),
    }
}

/// Whether to run the body of test `name` of `module` (`module_path!()`) here. For a test that
/// measures the whole process (its open file descriptors), which the other tests of the binary,
/// threads of the same process, would disturb: the test starts this binary again with only
/// itself selected, fails unless that run passed it, and returns false; in that run it returns
/// true.
pub fn alone(module: &str, name: &str) -> bool {
    const ENV: &str = "SCAMGUARD_TEST_ALONE";
    let name = test_name(module, name);
    if std::env::var(ENV).is_ok_and(|v| v == name) {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &name, "--test-threads=1"])
        .env(ENV, &name)
        .output()
        .expect("this test binary runs again");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("test result: ok. 1 passed"),
        "{name}, run alone, failed ({}):\n{text}",
        out.status
    );
    false
}
