//! Sockets around the sans-IO [`Proxy`]: UDP receive threads (one per core by default, sharing one
//! blocking socket), a TCP listener with capped, idle-timed connections framed by Content-Length,
//! a TLS listener beside it (`[sip] tls_listen`) whose connections are served the same way once
//! their handshake is done, outbound TCP and TLS connections to peers, and the timer task that
//! drives [`Proxy::poll`].
//!
//! A TLS connection is a TCP connection with a handshake first: it takes its place in the same
//! budgets at accept or connect, before any handshake, and a handshake not done within
//! `tls_handshake_secs` closes it, so a flood of half-open handshakes takes at most its
//! source's share and never a worker. An outbound TLS connection verifies the server against
//! `tls_roots` and the host name that led to it ([`Proxy::tls_server_name`], sent as SNI), or
//! its IP address when the target was an IP literal. A client certificate checked against
//! `tls_client_roots` is handed to the core with each message as the names it proves
//! ([`Proxy::handle_verified`]). One connection per target and transport, reused.
//!
//! A TCP connection is a task, never a thread, so a slow or silent client holds no worker. It
//! holds a place in the connection budgets (`sip::conn`: the core's own, a total, a share per
//! source) from accept or connect to close, and it is closed when it idles for `tcp_idle_secs`,
//! when a message stays incomplete for `tcp_read_timeout_secs` (counted from its first byte,
//! so a byte now and then does not keep it open), or when it does not take what we write
//! within that same time.
//!
//! UDP is served by plain threads blocking in `recv_from`, not by tokio tasks: per datagram that
//! is one receive and one send system call, where a task also pays the failed receive that
//! parks it, the epoll wake-up and the hand-over between runtime threads. Under load that was
//! a large share of the proxy's CPU per call. TCP and timers stay on the runtime.
//!
//! Host names the core asks for ([`Proxy::take_queries`]) are resolved here, each in a task of
//! its own (`sip::dns`), and the answers handed back ([`Proxy::resolved`]); a TCP connection
//! that cannot be made is reported ([`Proxy::unreachable`]) so the request fails over.
//!
//! With `[hep]` on, every message read from or written to a socket is also handed to the HEP
//! capture (`sip::capture`), which only queues it. The agent's side of a message is the SIP
//! socket's bound address (a TCP connection's too), as Kamailio reports its listening socket.
//!
//! IPv6: `[sip] listen` may name several addresses (UDP and TCP on each). A datagram goes out
//! on the socket of its destination's family, or on a dual-stack `[::]` socket as an
//! IPv4-mapped address. Every peer address is handed to the core in its canonical form
//! (`::ffff:192.0.2.1` is 192.0.2.1), so that the same peer is one source whichever socket it
//! reached.
//!
//! Knows nothing of SIP semantics: it moves bytes between sockets and the core.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::capture::Capture;
use super::conn::{Budgets, Caps, Slot};
use super::core::{CertNames, ConnId, Output, Peer, Proxy};
use super::dns::Resolver;
use super::framing::Framer;
use super::tls::TlsSetup;
use super::Transport;

/// SIP over TLS for [`run_tls`]: the listener (bound by the caller to `[sip] tls_listen`), when
/// there is one, and the configs ([`super::tls::load`]).
pub struct Tls {
    pub listener: Option<TcpListener>,
    pub setup: TlsSetup,
}

struct Net {
    /// Blocking (with a read timeout so the receive threads notice shutdown), each with its
    /// bound address.
    udp: Vec<(std::net::UdpSocket, SocketAddr)>,
    rt: Handle,
    proxy: Arc<Proxy>,
    conns: DashMap<ConnId, mpsc::Sender<Bytes>>,
    /// The connection to use for each stream transport and peer address.
    by_addr: DashMap<(Transport, SocketAddr), ConnId>,
    /// For the TLS connections we open; none: TLS is not configured, and a TLS target is
    /// unreachable.
    connector: Option<tokio_rustls::TlsConnector>,
    next_id: AtomicU64,
    budgets: Arc<Budgets>,
    shutdown: watch::Receiver<bool>,
    resolver: Arc<Resolver>,
    /// The first SIP socket's address: our side of every captured stream message.
    local: SocketAddr,
    capture: Option<Arc<Capture>>,
}

impl Net {
    fn capture(&self, data: &Bytes, transport: Transport, src: SocketAddr, dst: SocketAddr) {
        if let Some(c) = &self.capture {
            c.sip(data.clone(), transport, src, dst);
        }
    }

    /// The UDP socket to send to `to` on, and the address to give it: one bound in `to`'s
    /// family, else a dual-stack `[::]` one (IPv4 as a mapped address), else the first (whose
    /// send then fails and is counted).
    fn udp_for(&self, to: SocketAddr) -> (&(std::net::UdpSocket, SocketAddr), SocketAddr) {
        if let Some(s) = self.udp.iter().find(|(_, l)| l.is_ipv6() == to.is_ipv6()) {
            return (s, to);
        }
        match (to, self.udp.iter().find(|(_, l)| l.ip().is_unspecified())) {
            (SocketAddr::V4(v4), Some(s)) => {
                let mapped = SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port());
                (s, mapped)
            }
            _ => (&self.udp[0], to),
        }
    }
}

/// `a` with an IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Resolves when `rx` says stop (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Serve SIP on `udp` and `tcp` (normally bound to the same address) until `shutdown` turns
/// true, copying every message to `capture` when given. Transactions still in flight are
/// abandoned at shutdown.
pub async fn run(
    udp: UdpSocket,
    tcp: TcpListener,
    proxy: Arc<Proxy>,
    capture: Option<Arc<Capture>>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    run_tls(udp, tcp, None, proxy, capture, shutdown).await
}

/// Accept on `l`, or never when there is no listener.
async fn accept_on(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Accept on whichever of `ls` has a connection first (never, when there are none).
async fn accept_any(ls: &[TcpListener]) -> std::io::Result<(TcpStream, SocketAddr)> {
    std::future::poll_fn(|cx| {
        for l in ls {
            if let std::task::Poll::Ready(r) = l.poll_accept(cx) {
                return std::task::Poll::Ready(r);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// [`run`], with SIP over TLS too: a listener when `tls` has one, and TLS connections to
/// targets that ask for it.
pub async fn run_tls(
    udp: UdpSocket,
    tcp: TcpListener,
    tls: Option<Tls>,
    proxy: Arc<Proxy>,
    capture: Option<Arc<Capture>>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    run_all(vec![(udp, tcp)], tls, proxy, capture, shutdown).await
}

/// A UDP socket as the receive threads use it: blocking with a read timeout, and the receive
/// buffer `[sip] udp_recv_buffer_bytes` asks for.
fn blocking_udp(udp: UdpSocket, cfg: &super::SipConfig) -> std::io::Result<std::net::UdpSocket> {
    let udp = udp.into_std()?;
    if cfg.udp_recv_buffer_bytes > 0 {
        let sock = socket2::SockRef::from(&udp);
        sock.set_recv_buffer_size(cfg.udp_recv_buffer_bytes)?;
        let got = sock.recv_buffer_size()?;
        // Linux reports twice what it grants (bookkeeping included) and caps at rmem_max.
        if got < cfg.udp_recv_buffer_bytes {
            tracing::warn!(
                asked = cfg.udp_recv_buffer_bytes,
                got,
                "UDP receive buffer smaller than configured: raise net.core.rmem_max"
            );
        }
    }
    udp.set_nonblocking(false)?;
    udp.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(udp)
}

/// [`run_tls`] on several UDP sockets and TCP listeners (one pair per `[sip] listen` address,
/// all on one port), at least one.
pub async fn run_all(
    socks: Vec<(UdpSocket, TcpListener)>,
    tls: Option<Tls>,
    proxy: Arc<Proxy>,
    capture: Option<Arc<Capture>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let cfg = proxy.config().clone();
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for (u, t) in socks {
        let u = blocking_udp(u, &cfg)?;
        let local = u.local_addr()?;
        udp.push((u, local));
        tcp.push(t);
    }
    let Some(&(_, local)) = udp.first() else {
        return Err(std::io::Error::other("no SIP socket to serve"));
    };
    let net = Arc::new(Net {
        udp,
        rt: Handle::current(),
        proxy,
        conns: DashMap::new(),
        by_addr: DashMap::new(),
        next_id: AtomicU64::new(1),
        budgets: Budgets::new(caps(&cfg)),
        shutdown: shutdown.clone(),
        resolver: Arc::new(Resolver::new(&cfg.dns)),
        connector: tls
            .as_ref()
            .map(|t| tokio_rustls::TlsConnector::from(t.setup.client.clone())),
        local,
        capture,
    });
    let (tls_listener, acceptor) = match tls {
        Some(Tls {
            listener: Some(l),
            setup: TlsSetup {
                server: Some(server),
                ..
            },
        }) => (Some(l), Some(tokio_rustls::TlsAcceptor::from(server))),
        _ => (None, None),
    };
    let mut tasks = JoinSet::new();
    let threads = spawn_udp_workers(&net, cfg.udp_workers, &shutdown)?;
    tasks.spawn(timer_task(
        net.clone(),
        Duration::from_millis(cfg.tick_ms.max(1)),
        shutdown.clone(),
    ));
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            // Finished connections leave their result in the set until taken: take them, or
            // a flood of short connections grows it without bound.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            acc = accept_any(&tcp) => match acc.map(|(s, p)| (s, canonical(p))) {
                Ok((stream, peer)) => match net.budgets.take(peer.ip()) {
                    Ok(slot) => {
                        tasks.spawn(serve_conn(net.clone(), stream, peer, slot, shutdown.clone()));
                    }
                    // Closed at once: a refused connection costs nothing more.
                    Err(why) => net.proxy.stats().tcp_refused(why),
                },
                // Out of descriptors, most likely: the error repeats at once, so wait a
                // moment rather than spin on it.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            acc = accept_on(tls_listener.as_ref()) => match (acc.map(|(s, p)| (s, canonical(p))), &acceptor) {
                (Ok((stream, peer)), Some(acceptor)) => match net.budgets.take(peer.ip()) {
                    Ok(slot) => {
                        let conn = serve_tls(net.clone(), acceptor.clone(), stream, peer, slot);
                        tasks.spawn(conn);
                    }
                    Err(why) => net.proxy.stats().tcp_refused(why),
                },
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
    tasks.shutdown().await;
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    Ok(())
}

/// The UDP receive threads: `workers` per socket (0: one per core).
fn spawn_udp_workers(
    net: &Arc<Net>,
    workers: usize,
    shutdown: &watch::Receiver<bool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let workers = if workers > 0 {
        workers
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    };
    let mut threads = Vec::new();
    for (s, (sock, local)) in net.udp.iter().enumerate() {
        for i in 0..workers {
            let (net2, rx) = (net.clone(), shutdown.clone());
            let (sock, local) = (sock.try_clone()?, *local);
            let name = match s {
                0 => format!("sip-udp-{i}"),
                _ => format!("sip-udp{s}-{i}"),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || udp_worker(&net2, &sock, local, &rx))?,
            );
        }
    }
    Ok(threads)
}

/// The connection budgets `[sip]` asks for. The core's budget covers the next hop, the
/// allowed targets and the trusted peers, by address, whichever side connects.
fn caps(cfg: &super::SipConfig) -> Caps {
    let core = cfg
        .next_hop
        .iter()
        .chain(&cfg.allowed_targets)
        .filter_map(|h| h.addr().map(|a| a.ip()))
        .chain(cfg.trusted_peers.iter().copied())
        .collect();
    Caps {
        core,
        max_core: cfg.max_tcp_core_connections,
        max_total: cfg.max_tcp_connections,
        max_per_source: cfg.max_tcp_connections_per_source,
    }
}

fn udp_worker(
    net: &Arc<Net>,
    sock: &std::net::UdpSocket,
    local: SocketAddr,
    shutdown: &watch::Receiver<bool>,
) {
    // The hook runs on this plain thread and may start work on the runtime (media sessions,
    // report writes): give it the runtime's context, as the async receive loop had.
    let _rt = net.rt.enter();
    let mut buf = vec![0u8; 65536];
    loop {
        if *shutdown.borrow() || shutdown.has_changed().is_err() {
            return;
        }
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok((n, src)) => (n, canonical(src)),
            // Timeouts (to look at `shutdown`) and ICMP errors of earlier sends.
            Err(_) => continue,
        };
        let peer = Peer {
            transport: Transport::Udp,
            addr: src,
            conn: None,
        };
        let data = Bytes::copy_from_slice(&buf[..n]);
        let now = Instant::now();
        net.capture(&data, Transport::Udp, src, local);
        let outs = net.proxy.handle(data, peer, now);
        dispatch(net, outs);
        let stats = net.proxy.stats();
        stats.udp_handle.observe(now.elapsed().as_secs_f64());
    }
}

async fn timer_task(net: Arc<Net>, tick: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut iv = tokio::time::interval(tick);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            _ = iv.tick() => {
                let now = Instant::now();
                let outs = net.proxy.poll(now);
                dispatch(&net, outs);
                net.proxy.stats().timer_tick.observe(now.elapsed().as_secs_f64());
            }
        }
    }
}

/// Send what the core produced. Never waits: UDP sends on loopback or a LAN return at once,
/// TCP messages are queued to the connection's writer task.
fn dispatch(net: &Arc<Net>, outs: Vec<Output>) {
    for name in net.proxy.take_queries() {
        let net2 = net.clone();
        net.rt.spawn(async move {
            let answer = net2.resolver.resolve(&name).await;
            match &answer {
                super::core::Resolved::Failed { why, .. } => tracing::warn!(
                    "DNS: cannot resolve {name} ({why}); requests to it are answered 503"
                ),
                super::core::Resolved::TimedOut => tracing::warn!(
                    "DNS: no answer for {name} in time; requests to it are answered 504"
                ),
                super::core::Resolved::Found { .. } => {}
            }
            let outs = net2.proxy.resolved(&name, answer, Instant::now());
            dispatch(&net2, outs);
        });
    }
    for o in outs {
        match o.to.transport {
            Transport::Udp => {
                let ((sock, local), to) = net.udp_for(o.to.addr);
                net.capture(&o.data, o.to.transport, *local, o.to.addr);
                if sock.send_to(&o.data, to).is_err() {
                    net.proxy.stats().send_errors.inc();
                }
            }
            t @ (Transport::Tcp | Transport::Tls) => {
                net.capture(&o.data, o.to.transport, net.local, o.to.addr);
                let id =
                    o.to.conn
                        .filter(|id| net.conns.contains_key(id))
                        .or_else(|| net.by_addr.get(&(t, o.to.addr)).map(|r| *r));
                let tx = id.and_then(|id| net.conns.get(&id).map(|s| s.clone()));
                match tx {
                    Some(tx) => {
                        if tx.try_send(o.data).is_err() {
                            net.proxy.stats().send_errors.inc();
                        }
                    }
                    None => {
                        open_outbound(net, t, o.to.addr, o.data);
                    }
                }
            }
        }
    }
}

/// Register a connection id for `addr` at once (so a burst of messages shares one connection),
/// then connect in the background and serve it.
fn open_outbound(net: &Arc<Net>, t: Transport, addr: SocketAddr, first: Bytes) {
    let slot = match net.budgets.take(addr.ip()) {
        Ok(slot) => slot,
        Err(why) => return net.proxy.stats().tcp_refused(why),
    };
    let id = net.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(256);
    let _ = tx.try_send(first);
    net.conns.insert(id, tx);
    net.by_addr.insert((t, addr), id);
    let net = net.clone();
    let rt = net.rt.clone();
    rt.spawn(async move {
        let connected =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await;
        let shutdown = net.shutdown.clone();
        let stream = match connected {
            Ok(Ok(stream)) => Some(stream),
            _ => None,
        };
        // Each stays open for responses and further requests; it ends by idleness.
        match (stream, t) {
            (Some(stream), Transport::Tls) => {
                if let Some(tls) = connect_tls(&net, stream, addr).await {
                    let at = (t, addr);
                    return serve_registered(net, tls, at, id, slot, shutdown, rx, None).await;
                }
            }
            (Some(stream), _) => {
                let _ = stream.set_nodelay(true);
                let at = (t, addr);
                return serve_registered(net, stream, at, id, slot, shutdown, rx, None).await;
            }
            (None, _) => {}
        }
        net.proxy.stats().send_errors.inc();
        net.conns.remove(&id);
        net.by_addr.remove_if(&(t, addr), |_, v| *v == id);
        // What was queued for the connection: its requests try their next address.
        let mut rx = rx;
        rx.close();
        while let Ok(b) = rx.try_recv() {
            let outs = net.proxy.unreachable(b, Instant::now());
            dispatch(&net, outs);
        }
    });
}

/// The TLS handshake of a connection we opened to `addr`, verifying the server by the name
/// the core routed by (or by the address). `None`: no TLS configured, or the handshake failed
/// or did not finish in time (counted).
async fn connect_tls(
    net: &Arc<Net>,
    stream: TcpStream,
    addr: SocketAddr,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = net.connector.as_ref()?;
    let _ = stream.set_nodelay(true);
    let name = net
        .proxy
        .tls_server_name(addr)
        .and_then(|n| ServerName::try_from(n).ok())
        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
    let shown = name.to_str().into_owned();
    let hs = Duration::from_secs(net.proxy.config().tls_handshake_secs.max(1));
    match tokio::time::timeout(hs, connector.connect(name, stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            net.proxy.stats().tls_handshake_failures.inc();
            tracing::warn!("SIP TLS: handshake with {addr} as {shown} failed: {e}");
            None
        }
        Err(_) => {
            net.proxy.stats().tls_handshake_failures.inc();
            tracing::warn!("SIP TLS: no handshake from {addr} in time");
            None
        }
    }
}

async fn serve_conn(
    net: Arc<Net>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let id = net.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(256);
    net.conns.insert(id, tx);
    let at = (Transport::Tcp, peer);
    net.by_addr.insert(at, id);
    serve_registered(net, stream, at, id, slot, shutdown, rx, None).await;
}

/// An accepted TLS connection: the handshake within `tls_handshake_secs` (the slot is held
/// meanwhile; no worker is), then served like TCP, with the names its client certificate
/// proves, if it showed one.
async fn serve_tls(
    net: Arc<Net>,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
) {
    let _ = stream.set_nodelay(true);
    let hs = Duration::from_secs(net.proxy.config().tls_handshake_secs.max(1));
    let tls = match tokio::time::timeout(hs, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            net.proxy.stats().tls_handshake_failures.inc();
            tracing::debug!("SIP TLS: handshake from {peer} failed: {e}");
            return;
        }
        Err(_) => {
            net.proxy.stats().tls_handshake_failures.inc();
            return;
        }
    };
    // rustls has checked the chain against `tls_client_roots`; what it names is the core's
    // to judge.
    let names: Option<CertNames> = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| super::tls::cert_names(c).into());
    let id = net.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(256);
    net.conns.insert(id, tx);
    let at = (Transport::Tls, peer);
    net.by_addr.insert(at, id);
    let shutdown = net.shutdown.clone();
    serve_registered(net, tls, at, id, slot, shutdown, rx, names).await;
}

/// Read, frame and hand on a connection's messages until it closes, idles, stalls in a
/// message, or stops taking what we write; then forget it and give its slot back.
#[allow(clippy::too_many_arguments)]
async fn serve_registered<S>(
    net: Arc<Net>,
    stream: S,
    (transport, peer): (Transport, SocketAddr),
    id: ConnId,
    _slot: Slot,
    mut shutdown: watch::Receiver<bool>,
    mut rx: mpsc::Receiver<Bytes>,
    names: Option<CertNames>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let stats = net.proxy.stats().clone();
    stats.tcp_connections.inc();
    let cfg = net.proxy.config();
    let idle = Duration::from_secs(cfg.tcp_idle_secs.max(1));
    let stall = Duration::from_secs(cfg.tcp_read_timeout_secs.max(1));
    let (mut rd, mut wr) = tokio::io::split(stream);
    // A peer that does not read fills its socket buffer and then this queue (whose overflow
    // is dropped and counted in `dispatch`); past `stall` the writer gives up and the
    // connection closes.
    let mut writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            match tokio::time::timeout(stall, wr.write_all(&b)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
    });
    let mut framer = Framer::new(cfg.max_message_size);
    let mut buf = vec![0u8; 16384];
    // When the message now buffered began to arrive.
    let mut partial: Option<Instant> = None;
    'conn: loop {
        let wait = partial.map_or(idle, |t| {
            (t + stall).saturating_duration_since(Instant::now())
        });
        let n = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            _ = &mut writer => break,
            r = tokio::time::timeout(wait, rd.read(&mut buf)) => match r {
                Ok(Ok(n)) if n > 0 => n,
                Err(_) if partial.is_some() => {
                    stats.tcp_read_timeouts.inc();
                    break;
                }
                _ => break,
            },
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_message() {
                Ok(Some(m)) => {
                    partial = None;
                    let p = Peer {
                        transport,
                        addr: peer,
                        conn: Some(id),
                    };
                    net.capture(&m, transport, peer, net.local);
                    let outs = net
                        .proxy
                        .handle_verified(m, p, names.as_ref(), Instant::now());
                    dispatch(&net, outs);
                }
                Ok(None) => break,
                Err(_) => {
                    stats.malformed(super::msg::Problem::TooLarge);
                    break 'conn;
                }
            }
        }
        if framer.buffered() > 0 && partial.is_none() {
            partial = Some(Instant::now());
        }
    }
    net.conns.remove(&id);
    net.by_addr.remove_if(&(transport, peer), |_, v| *v == id);
    stats.tcp_connections.dec();
    writer.abort();
}
