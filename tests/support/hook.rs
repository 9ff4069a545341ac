//! The bare proxy's tests' one `sip::Hook`, and the proxy served on 127.0.0.1 with it. The hook
//! answers every new call with the disposition it was given (a plain pass unless told), records
//! each call and each call event, and hands every SDP body back unchanged: the proxy is under
//! test, not the application. Knows nothing of screening.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use scamguard::sip::transport::{run_tls, Tls};
use scamguard::sip::{
    run, CallEvent, CallRef, Disposition, Hook, NewCall, Proxy, SdpDirection, SdpKind, SipConfig,
    SipStats,
};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

/// (Call-ID, From user, first P-Asserted-Identity URI) of each decided call.
pub type Seen = (String, Option<String>, Option<String>);

pub struct TestHook {
    decision: Disposition,
    pub calls: Mutex<Vec<Seen>>,
    /// (Call-ID, whether the proxy said its source is a trusted peer) of each decided call.
    pub trusted: Mutex<Vec<(String, bool)>>,
    pub events: Mutex<Vec<(String, CallEvent)>>,
}

impl TestHook {
    /// A hook that forwards every call untouched, not staying in the dialog.
    pub fn passing() -> Arc<TestHook> {
        TestHook::answering(Disposition::pass())
    }

    /// A hook that answers every call with `decision`. An anchored forward without an offer
    /// takes the call's own SDP as its rewritten offer, as an application that anchors the
    /// media but changes nothing would.
    pub fn answering(decision: Disposition) -> Arc<TestHook> {
        Arc::new(TestHook {
            decision,
            calls: Mutex::default(),
            trusted: Mutex::default(),
            events: Mutex::default(),
        })
    }

    /// How many calls were decided.
    pub fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// The events recorded so far.
    pub fn events(&self) -> Vec<(String, CallEvent)> {
        self.events.lock().unwrap().clone()
    }

    /// How many `event`s were recorded.
    pub fn count(&self, event: CallEvent) -> usize {
        self.events().iter().filter(|(_, e)| *e == event).count()
    }
}

impl Hook for TestHook {
    fn new_call(&self, call: &NewCall<'_>, _: Instant) -> Disposition {
        let from_user = call
            .from
            .as_ref()
            .and_then(|f| f.uri.user.map(str::to_owned));
        let pai = call.asserted.first().map(|a| a.uri.raw.to_string());
        self.calls
            .lock()
            .unwrap()
            .push((call.call_id.to_string(), from_user, pai));
        self.trusted
            .lock()
            .unwrap()
            .push((call.call_id.to_string(), call.trusted));
        let mut d = self.decision.clone();
        if let Disposition::Forward {
            anchor_media: true,
            offer: offer @ None,
            ..
        } = &mut d
        {
            *offer = call.sdp().map(<[u8]>::to_vec);
        }
        d
    }

    fn call_event(&self, call: &CallRef<'_>, event: CallEvent, _: Instant) {
        self.events
            .lock()
            .unwrap()
            .push((call.call_id.to_string(), event));
    }

    fn rewrite_sdp(
        &self,
        _: &CallRef<'_>,
        _: SdpDirection,
        _: SdpKind,
        body: &[u8],
        _: Instant,
    ) -> Option<Vec<u8>> {
        Some(body.to_vec())
    }
}

/// The proxy served over UDP and TCP on one port of 127.0.0.1 until dropped.
pub struct Server {
    pub addr: SocketAddr,
    /// The TLS listener, when started with [`Server::start_tls`].
    pub tls_addr: Option<SocketAddr>,
    pub proxy: Arc<Proxy>,
    _stop: watch::Sender<bool>,
}

impl Server {
    /// Serve `hook` with the default config as `configure` changes it (the next hop, timers);
    /// `listen` is the bound address.
    pub async fn start(hook: Arc<TestHook>, configure: impl FnOnce(&mut SipConfig)) -> Server {
        Server::serve(hook, configure, false).await
    }

    /// [`Server::start`] with a TLS listener on another port of 127.0.0.1 too; `configure`
    /// names the certificate, key and roots (`sip::tls::load` reads them).
    pub async fn start_tls(hook: Arc<TestHook>, configure: impl FnOnce(&mut SipConfig)) -> Server {
        Server::serve(hook, configure, true).await
    }

    async fn serve(
        hook: Arc<TestHook>,
        configure: impl FnOnce(&mut SipConfig),
        tls: bool,
    ) -> Server {
        // UDP and TCP on the same port; retry if the TCP side of a free UDP port is taken.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let mut cfg = SipConfig::default();
        configure(&mut cfg);
        cfg.listen = addr.into();
        let (stop, rx) = watch::channel(false);
        if !tls {
            let proxy = Arc::new(Proxy::new(cfg, addr, hook, Arc::new(SipStats::default())));
            tokio::spawn(run(udp, tcp, proxy.clone(), None, rx));
            return Server {
                addr,
                tls_addr: None,
                proxy,
                _stop: stop,
            };
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_addr = listener.local_addr().unwrap();
        cfg.tls_listen = Some(tls_addr);
        let problems = cfg.validate();
        assert!(problems.is_empty(), "{problems:?}");
        let setup = scamguard::sip::tls::load(&cfg).unwrap();
        let proxy = Arc::new(
            Proxy::new(cfg, addr, hook, Arc::new(SipStats::default()))
                .with_tls_port(tls_addr.port()),
        );
        let tls = Tls {
            listener: Some(listener),
            setup,
        };
        tokio::spawn(run_tls(udp, tcp, Some(tls), proxy.clone(), None, rx));
        Server {
            addr,
            tls_addr: Some(tls_addr),
            proxy,
            _stop: stop,
        }
    }
}
