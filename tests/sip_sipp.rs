//! Real peers: SIPp's built-in caller (`uac`, over UDP or TCP) and callee (`uas`, UDP) scenarios
//! place calls through the proxy: INVITE, 180, 200, ACK and BYE must all get through (with Record-Route,
//! so ACK and BYE come back through us), and the hook must hear of each call.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scamguard::sip::{
    run, CallEvent, CallRef, Disposition, Hook, NewCall, Proxy, SdpDirection, SdpKind, SipConfig,
    SipStats,
};
use tokio::net::{TcpListener, UdpSocket};
use tokio::process::Command;
use tokio::sync::watch;

#[derive(Default)]
struct Count {
    calls: AtomicUsize,
    answered: AtomicUsize,
    ended: AtomicUsize,
}

impl Hook for Count {
    fn new_call(&self, _: &NewCall<'_>, _: std::time::Instant) -> Disposition {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Disposition::Forward {
            display_name: Some("Checked".into()),
            headers: vec!["X-Screened: yes".into()],
            record_route: true,
            anchor_media: false,
            offer: None,
            tag: None,
        }
    }
    fn call_event(&self, _: &CallRef<'_>, event: CallEvent, _: std::time::Instant) {
        match event {
            CallEvent::Answered => self.answered.fetch_add(1, Ordering::Relaxed),
            CallEvent::Ended => self.ended.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
    fn rewrite_sdp(
        &self,
        _: &CallRef<'_>,
        _: SdpDirection,
        _: SdpKind,
        _: &[u8],
        _: std::time::Instant,
    ) -> Option<Vec<u8>> {
        None
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free for UDP and for TCP at once: SIPp's caller binds `-p` on its own transport, and a
/// port only checked for UDP was sometimes taken for TCP (about 1 run in 5).
fn free_port_pair() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Until SIPp holds `port` for UDP (its callee is up). Bounded only against a hang.
async fn bound(port: u16) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(
            std::time::Instant::now() < end,
            "SIPp never bound port {port}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_calls_pass_through_udp() {
    calls_through("u1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_calls_pass_through_tcp_caller() {
    calls_through("t1").await;
}

/// `caller_transport`: SIPp's `-t` value for the caller (the callee always uses UDP).
async fn calls_through(caller_transport: &str) {
    let uas_port = free_udp_port();
    let uas_addr: SocketAddr = format!("127.0.0.1:{uas_port}").parse().unwrap();
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let hook = Arc::new(Count::default());
    let cfg = SipConfig {
        listen: addr,
        next_hop: Some(uas_addr),
        ..SipConfig::default()
    };
    let proxy = Arc::new(Proxy::new(
        cfg,
        addr,
        hook.clone(),
        Arc::new(SipStats::default()),
    ));
    let (_stop, rx) = watch::channel(false);
    tokio::spawn(run(udp, tcp, proxy.clone(), rx));

    let dir =
        std::env::temp_dir().join(format!("sg-sipp-{}-{caller_transport}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut uas = Command::new("sipp")
        .args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &uas_port.to_string(),
            "-nostdin",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp is installed (apt-get install sip-tester)");
    bound(uas_port).await;
    let calls = 10;
    let uac = Command::new("sipp")
        .args([
            "-sn",
            "uac",
            &addr.to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            &free_port_pair().to_string(),
            "-m",
            &calls.to_string(),
            "-r",
            "20",
            "-d",
            "100",
            "-timeout",
            "30",
            "-timeout_error",
            "-nostdin",
            "-t",
            caller_transport,
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let _ = uas.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        uac.status.success(),
        "sipp uac: {:?} {}",
        uac.status,
        String::from_utf8_lossy(&uac.stderr)
    );
    assert_eq!(hook.calls.load(Ordering::Relaxed), calls);
    assert_eq!(hook.answered.load(Ordering::Relaxed), calls);
    assert_eq!(
        hook.ended.load(Ordering::Relaxed),
        calls,
        "BYE came back through the proxy"
    );
}
