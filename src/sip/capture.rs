//! HEP3 capture (the `[hep]` section): a copy of every SIP message the agent receives and sends,
//! and of the log records the application hands in, sent over UDP to a Homer collector in the
//! format Kamailio's `siptrace` and OpenSIPS's `proto_hep` send.
//!
//! The SIP path only queues: [`Capture::sip`] takes the message's bytes (a reference count, no
//! copy), the addresses and the time, and `try_send`s them to a bounded queue. A thread of its
//! own drains the queue every few milliseconds, encodes and sends; the hot path never wakes it
//! (a futex wake per message would cost more than the copy), and never waits: a full queue
//! drops the message and counts it (`scamguard_hep_dropped_total{why="queue_full"}`).
//!
//! Each packet carries the chunks Kamailio's `sip_trace()` sends (vendor 0): IP family (0x01),
//! IP protocol (0x02), source and destination address (0x03/0x04, or 0x05/0x06 for IPv6) and
//! port (0x07/0x08), seconds and microseconds (0x09/0x0a), protocol type (0x0b: 1 for SIP, 100
//! for a log record), capture id (0x0c), the password as auth key (0x0e) when one is set, and
//! the payload (0x0f). A SIP message carries no correlation id (Homer reads the Call-ID from the
//! payload, as for `sip_trace()` without one); a log record carries the Call-ID it belongs to
//! as its correlation id (0x11), as Kamailio's `hlog()` does, so Homer shows it beside the flow.
//! Its addresses are the capture socket's and the collector's, as `hlog()` uses.
//!
//! Knows nothing of what the log records say, nor of transactions: it copies bytes.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Deserialize;

use super::Transport;
use crate::metrics::{Collect, Counter, Exposition};

/// The `[hep]` section. Off unless `collector` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HepConfig {
    /// The collector's `IP:PORT` (Homer's heplify-server listens on 9060); empty: no capture.
    pub collector: String,
    /// Chunk 0x0c: tells this agent's packets from other capture agents' in Homer.
    pub capture_id: u32,
    /// Chunk 0x0e, the collector's auth key; empty: none sent.
    pub password: String,
    /// Messages waiting for the sender at most; past it they are dropped and counted.
    pub queue: usize,
}

impl Default for HepConfig {
    fn default() -> Self {
        HepConfig {
            collector: String::new(),
            capture_id: 1,
            password: String::new(),
            queue: 10_000,
        }
    }
}

/// Most messages a queue may hold.
const MAX_QUEUE: usize = 1_000_000;

impl HepConfig {
    pub fn enabled(&self) -> bool {
        !self.collector.trim().is_empty()
    }

    /// The collector's address, when set and well formed.
    pub fn collector_addr(&self) -> Option<SocketAddr> {
        self.collector.trim().parse().ok()
    }

    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.enabled() && self.collector_addr().is_none() {
            p.push(format!(
                "hep.collector {:?} is not an address; expected IP:PORT such as 192.0.2.10:9060 (or \"\" for no capture)",
                self.collector
            ));
        }
        if self.queue == 0 || self.queue > MAX_QUEUE {
            p.push(format!(
                "hep.queue = {}: expected 1 to {MAX_QUEUE} messages",
                self.queue
            ));
        }
        if self.password.len() > 255 || self.password.chars().any(|c| !c.is_ascii_graphic()) {
            p.push(
                "hep.password: expected at most 255 printable ASCII characters without spaces"
                    .into(),
            );
        }
        p
    }
}

/// What the capture counts.
#[derive(Default)]
pub struct CaptureStats {
    pub sip: Counter,
    pub logs: Counter,
    pub queue_full: Counter,
    pub too_large: Counter,
    pub send_errors: Counter,
}

impl Collect for CaptureStats {
    fn collect(&self, out: &mut Exposition) {
        let help = "HEP3 packets sent to the collector, by kind.";
        out.counter(
            "scamguard_hep_packets_total",
            help,
            &[("kind", "sip")],
            self.sip.get(),
        );
        out.counter(
            "scamguard_hep_packets_total",
            help,
            &[("kind", "log")],
            self.logs.get(),
        );
        let help = "Messages not captured: the sender's queue was full, or the packet would exceed 65535 bytes.";
        out.counter(
            "scamguard_hep_dropped_total",
            help,
            &[("why", "queue_full")],
            self.queue_full.get(),
        );
        out.counter(
            "scamguard_hep_dropped_total",
            help,
            &[("why", "too_large")],
            self.too_large.get(),
        );
        out.counter(
            "scamguard_hep_send_errors_total",
            "HEP3 packets the socket refused to send.",
            &[],
            self.send_errors.get(),
        );
    }
}

/// One queued capture.
enum Item {
    Sip {
        data: Bytes,
        transport: Transport,
        src: SocketAddr,
        dst: SocketAddr,
        at: SystemTime,
    },
    Log {
        correlation: String,
        data: Vec<u8>,
        at: SystemTime,
    },
}

/// The queue's sending side, shared by the transport and the application.
pub struct Capture {
    tx: SyncSender<Item>,
    pub stats: Arc<CaptureStats>,
}

/// The queue's draining side: [`Drain::spawn`] starts the sender thread.
pub struct Drain {
    rx: Receiver<Item>,
    sock: UdpSocket,
    capture_id: u32,
    password: Vec<u8>,
    stats: Arc<CaptureStats>,
}

/// How long the sender sleeps between drains (see the module doc: the hot path never wakes it).
const DRAIN_EVERY: Duration = Duration::from_millis(5);

impl Capture {
    /// The queue and a socket bound towards the collector; `None` when `[hep]` is off. The
    /// sender does not run until [`Drain::spawn`].
    pub fn new(cfg: &HepConfig) -> std::io::Result<Option<(Arc<Capture>, Drain)>> {
        let Some(to) = cfg.collector_addr().filter(|_| cfg.enabled()) else {
            return Ok(None);
        };
        let any: IpAddr = if to.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let sock = UdpSocket::bind((any, 0))?;
        // Connected, so its local address is the one the collector sees (`hlog()`'s source).
        sock.connect(to)?;
        let (tx, rx) = sync_channel(cfg.queue.clamp(1, MAX_QUEUE));
        let stats = Arc::new(CaptureStats::default());
        let drain = Drain {
            rx,
            sock,
            capture_id: cfg.capture_id,
            password: cfg.password.as_bytes().to_vec(),
            stats: stats.clone(),
        };
        Ok(Some((Arc::new(Capture { tx, stats }), drain)))
    }

    /// Queue a SIP message that went from `src` to `dst`; never waits.
    pub fn sip(&self, data: Bytes, transport: Transport, src: SocketAddr, dst: SocketAddr) {
        self.put(Item::Sip {
            data,
            transport,
            src,
            dst,
            at: SystemTime::now(),
        });
    }

    /// Queue a log record (protocol type 100) of the dialog `correlation` (its Call-ID), made
    /// at `at`; never waits.
    pub fn log(&self, correlation: &str, data: Vec<u8>, at: SystemTime) {
        self.put(Item::Log {
            correlation: correlation.to_string(),
            data,
            at,
        });
    }

    fn put(&self, item: Item) {
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.queue_full.inc()
            }
        }
    }
}

impl Drain {
    /// Start the sender thread. It ends once every [`Capture`] is dropped and the queue is
    /// empty.
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("hep-capture".into())
            .spawn(move || self.run())
    }

    fn run(self) {
        let mut buf = Vec::with_capacity(4096);
        loop {
            let gone = loop {
                match self.rx.try_recv() {
                    Ok(item) => self.send(&mut buf, &item),
                    Err(TryRecvError::Empty) => break false,
                    Err(TryRecvError::Disconnected) => break true,
                }
            };
            if gone {
                return;
            }
            std::thread::sleep(DRAIN_EVERY);
        }
    }

    fn send(&self, buf: &mut Vec<u8>, item: &Item) {
        let (p, counter) = match item {
            Item::Sip {
                data,
                transport,
                src,
                dst,
                at,
            } => (
                Packet {
                    proto: match transport {
                        Transport::Udp => IPPROTO_UDP,
                        // As Kamailio's siptrace: TLS is carried by TCP.
                        Transport::Tcp | Transport::Tls => IPPROTO_TCP,
                    },
                    src: *src,
                    dst: *dst,
                    at: *at,
                    kind: KIND_SIP,
                    correlation: None,
                    payload: data,
                },
                &self.stats.sip,
            ),
            Item::Log {
                correlation,
                data,
                at,
            } => {
                let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
                (
                    Packet {
                        proto: IPPROTO_UDP,
                        src: self.sock.local_addr().unwrap_or(unspecified),
                        dst: self.sock.peer_addr().unwrap_or(unspecified),
                        at: *at,
                        kind: KIND_LOG,
                        correlation: Some(correlation.as_bytes()),
                        payload: data,
                    },
                    &self.stats.logs,
                )
            }
        };
        if !encode(buf, &p, self.capture_id, &self.password) {
            self.stats.too_large.inc();
            return;
        }
        match self.sock.send(buf) {
            Ok(_) => counter.inc(),
            Err(_) => self.stats.send_errors.inc(),
        }
    }
}

/// Chunk 0x0b: the payload is a SIP message.
pub const KIND_SIP: u8 = 1;
/// Chunk 0x0b: the payload is a log record.
pub const KIND_LOG: u8 = 100;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// Chunk 0x01: Linux's `AF_INET` and `AF_INET6`, as Kamailio and OpenSIPS send them.
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// One packet to encode.
pub struct Packet<'a> {
    /// Chunk 0x02: 17 (UDP) or 6 (TCP).
    pub proto: u8,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub at: SystemTime,
    /// Chunk 0x0b: [`KIND_SIP`] or [`KIND_LOG`].
    pub kind: u8,
    pub correlation: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Both addresses in one family: IPv4 unless either is a true IPv6 address (an IPv4-mapped
/// one counts as IPv4), then both as IPv6.
fn one_family(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let v6 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    match (v4(a), v4(b)) {
        (x @ IpAddr::V4(_), y @ IpAddr::V4(_)) => (x, y),
        (x, y) => (v6(x), v6(y)),
    }
}

/// Encode `p` as one HEP3 packet into `buf` (cleared first); `false` when it would exceed the
/// 65535 bytes its length field can say.
pub fn encode(buf: &mut Vec<u8>, p: &Packet<'_>, capture_id: u32, password: &[u8]) -> bool {
    fn chunk(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
        buf.extend_from_slice(&0u16.to_be_bytes());
        buf.extend_from_slice(&kind.to_be_bytes());
        // Callers keep every chunk under 65535 bytes: the whole packet is checked below.
        buf.extend_from_slice(&((6 + data.len()).min(usize::from(u16::MAX)) as u16).to_be_bytes());
        buf.extend_from_slice(data);
    }
    let fixed = 200 + password.len() + p.correlation.map_or(0, <[u8]>::len);
    if fixed + p.payload.len() > usize::from(u16::MAX) {
        return false;
    }
    buf.clear();
    buf.extend_from_slice(b"HEP3\0\0");
    let (src, dst) = one_family(p.src.ip(), p.dst.ip());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            chunk(buf, 0x01, &[AF_INET]);
            chunk(buf, 0x02, &[p.proto]);
            chunk(buf, 0x03, &s.octets());
            chunk(buf, 0x04, &d.octets());
        }
        (s, d) => {
            let o = |ip: IpAddr| match ip {
                IpAddr::V6(v6) => v6.octets(),
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            };
            chunk(buf, 0x01, &[AF_INET6]);
            chunk(buf, 0x02, &[p.proto]);
            chunk(buf, 0x05, &o(s));
            chunk(buf, 0x06, &o(d));
        }
    }
    chunk(buf, 0x07, &p.src.port().to_be_bytes());
    chunk(buf, 0x08, &p.dst.port().to_be_bytes());
    let since =
        p.at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
    // HEP3 times are 32 bits: good until 2106.
    chunk(buf, 0x09, &(since.as_secs() as u32).to_be_bytes());
    chunk(buf, 0x0a, &since.subsec_micros().to_be_bytes());
    chunk(buf, 0x0b, &[p.kind]);
    chunk(buf, 0x0c, &capture_id.to_be_bytes());
    if let Some(c) = p.correlation.filter(|c| !c.is_empty()) {
        chunk(buf, 0x11, c);
    }
    if !password.is_empty() {
        chunk(buf, 0x0e, password);
    }
    chunk(buf, 0x0f, p.payload);
    let len = buf.len() as u16;
    buf[4..6].copy_from_slice(&len.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(b: &[u8]) -> Vec<(u16, Vec<u8>)> {
        assert_eq!(&b[..4], b"HEP3");
        assert_eq!(usize::from(u16::from_be_bytes([b[4], b[5]])), b.len());
        let mut out = Vec::new();
        let mut i = 6;
        while i < b.len() {
            let kind = u16::from_be_bytes([b[i + 2], b[i + 3]]);
            let len = usize::from(u16::from_be_bytes([b[i + 4], b[i + 5]]));
            out.push((kind, b[i + 6..i + len].to_vec()));
            i += len;
        }
        assert_eq!(i, b.len());
        out
    }

    #[test]
    fn encodes_kamailios_chunks_in_network_order() {
        let mut buf = Vec::new();
        let p = Packet {
            proto: IPPROTO_UDP,
            src: "192.0.2.1:5060".parse().unwrap(),
            dst: "[::ffff:198.51.100.7]:5080".parse().unwrap(),
            at: SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            kind: KIND_LOG,
            correlation: Some(b"abc@host"),
            payload: b"{}",
        };
        assert!(encode(&mut buf, &p, 0x0102_0304, b"pw"));
        let c = chunks(&buf);
        let want: Vec<(u16, Vec<u8>)> = vec![
            (0x01, vec![2]),
            (0x02, vec![17]),
            (0x03, vec![192, 0, 2, 1]),
            (0x04, vec![198, 51, 100, 7]),
            (0x07, 5060u16.to_be_bytes().to_vec()),
            (0x08, 5080u16.to_be_bytes().to_vec()),
            (0x09, 1_700_000_000u32.to_be_bytes().to_vec()),
            (0x0a, 123_456u32.to_be_bytes().to_vec()),
            (0x0b, vec![100]),
            (0x0c, vec![1, 2, 3, 4]),
            (0x11, b"abc@host".to_vec()),
            (0x0e, b"pw".to_vec()),
            (0x0f, b"{}".to_vec()),
        ];
        assert_eq!(c, want);
    }

    #[test]
    fn a_true_ipv6_address_makes_both_ipv6_and_oversize_is_refused() {
        let mut buf = Vec::new();
        let mut p = Packet {
            proto: IPPROTO_TCP,
            src: "[2001:db8::1]:5060".parse().unwrap(),
            dst: "192.0.2.9:5061".parse().unwrap(),
            at: SystemTime::UNIX_EPOCH,
            kind: KIND_SIP,
            correlation: None,
            payload: b"OPTIONS",
        };
        assert!(encode(&mut buf, &p, 1, b""));
        let c = chunks(&buf);
        assert_eq!(c[0], (0x01, vec![10]));
        assert_eq!(c[1], (0x02, vec![6]));
        assert_eq!(c[2].0, 0x05);
        assert_eq!(
            c[3],
            (
                0x06,
                "::ffff:192.0.2.9"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets()
                    .to_vec()
            )
        );
        assert!(c.iter().all(|(k, _)| *k != 0x11 && *k != 0x0e));
        let big = vec![b'x'; 65_500];
        p.payload = &big;
        assert!(!encode(&mut buf, &p, 1, b""));
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let cfg = HepConfig {
            collector: "127.0.0.1:9".into(),
            queue: 3,
            ..HepConfig::default()
        };
        let (cap, drain) = Capture::new(&cfg).unwrap().unwrap();
        let a: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        // No sender running: a blocking queue would hang on the fourth.
        for _ in 0..10 {
            cap.sip(Bytes::from_static(b"OPTIONS"), Transport::Udp, a, a);
        }
        assert_eq!(cap.stats.queue_full.get(), 7);
        assert_eq!(drain.rx.try_iter().count(), 3);
    }

    #[test]
    fn config_is_checked() {
        assert!(HepConfig::default().validate().is_empty());
        assert!(!HepConfig::default().enabled());
        let bad = HepConfig {
            collector: "homer:9060".into(),
            queue: 0,
            password: "two words".into(),
            ..HepConfig::default()
        };
        let p = bad.validate();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("hep.collector \"homer:9060\""));
    }
}
