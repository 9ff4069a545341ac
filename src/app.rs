//! The composition root: the only module that knows every other one.
//!
//! [`start`] reads top to bottom as its five steps: open the rules (store, list files, feeds),
//! build the screening hook over them, bind the SIP sockets (UDP and TCP on one port), bind the
//! API, and serve every task. It returns an [`Agent`] handle with the bound addresses, which is
//! what the integration tests use on `127.0.0.1:0`. [`run`] is the binary's entry point:
//! a multi-threaded runtime, [`start`], then wait for Ctrl-C or SIGTERM (stop) and SIGHUP (reload
//! the lists).
//!
//! `app` translates between the wire and the decisions: `sip` never sees a list and `screening`
//! never sees a header.

mod callback;
mod challenge;
mod clock;
pub mod config;
mod console;
mod decision_log;
mod disposition;
pub mod engine;
mod feeds;
pub mod fleet;
pub mod health;
mod held;
mod retention;
mod screener;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use self::callback::{BlockAs, CallbackConfig};
pub use self::challenge::ChallengeConfig;
pub use self::clock::now_ms;
pub use self::decision_log::{DecisionLog, Record};
pub use self::disposition::{BlockResponse, DispositionConfig};
pub use self::screener::{CallStats, Screener};
pub use crate::lists::report_desk::{Promoted, ReportDesk, ReportStats, REPORTS_LIST};

use self::config::Config;
use crate::api;
use crate::certs::{CertCache, CertFetcher};
use crate::lists::overlay::{Live, StoreRules};
use crate::lists::store::Store;
use crate::lists::watch::{watch_lists, ListFiles, WatchHandle};
use crate::lists::ListSet;
use crate::media::MediaEngine;
use crate::metrics::Collect;
use crate::sip::{Proxy, SipStats};

/// Why the agent could not start or run.
#[derive(Debug)]
pub struct AppError(pub String);

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AppError {}

/// A running agent.
pub struct Agent {
    /// Where SIP is served (UDP and TCP).
    pub sip_addr: SocketAddr,
    /// Where SIP over TLS is served, when `[sip] tls_listen` is set.
    pub sip_tls_addr: Option<SocketAddr>,
    /// Where the admin API is served.
    pub api_addr: SocketAddr,
    /// Where the redress form is served, when `[redress]` is enabled.
    pub redress_addr: Option<SocketAddr>,
    pub lists: Arc<ListSet>,
    pub files: Arc<ListFiles>,
    pub live: Arc<Live>,
    _watcher: Option<WatchHandle>,
    pub screener: Arc<Screener>,
    pub proxy: Arc<Proxy>,
    media: Option<Arc<MediaEngine>>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    log_writer: Option<std::thread::JoinHandle<()>>,
}

/// Bind UDP and TCP on the same address. With port 0 the UDP port is chosen first and TCP
/// follows it; if that TCP port is taken, try again with another. `v6only` is `IPV6_V6ONLY`
/// for an IPv6 address.
fn bind_pair(addr: SocketAddr, v6only: bool) -> std::io::Result<(UdpSocket, TcpListener)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = |ty, proto| -> std::io::Result<Socket> {
        let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
        if addr.is_ipv6() {
            s.set_only_v6(v6only)?;
        }
        s.set_nonblocking(true)?;
        Ok(s)
    };
    let mut last = None;
    for _ in 0..16 {
        let udp = sock(Type::DGRAM, Protocol::UDP)?;
        udp.bind(&addr.into())?;
        let local = udp.local_addr()?;
        let tcp = sock(Type::STREAM, Protocol::TCP)?;
        // As tokio's TcpListener::bind: a restart is not refused for the old connections'
        // TIME_WAIT.
        tcp.set_reuse_address(true)?;
        match tcp.bind(&local).and_then(|()| tcp.listen(1024)) {
            Ok(()) => {
                let udp = UdpSocket::from_std(std::net::UdpSocket::from(udp))?;
                let tcp = TcpListener::from_std(std::net::TcpListener::from(tcp))?;
                return Ok((udp, tcp));
            }
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port pair")))
}

/// UDP and TCP on every `[sip] listen` address, all on one port (with port 0: the one the
/// first address got). A lone `[::]` is bound dual-stack (`IPV6_V6ONLY` off, whatever the
/// system's `net.ipv6.bindv6only` says), so that one socket serves both families as the
/// operator asked; beside an IPv4 address it is bound IPv6-only, or the two would collide on
/// the port. A specific IPv6 address is IPv6-only either way.
fn bind_sip_sockets(
    listen: &crate::sip::config::Listen,
) -> Result<Vec<(UdpSocket, TcpListener)>, AppError> {
    let addrs = &listen.0;
    let any_v4 = addrs.iter().any(|a| a.is_ipv4());
    let bind = |a: SocketAddr| {
        // Dual-stack only for a lone `[::]`.
        let v6only = !a.ip().is_unspecified() || any_v4;
        bind_pair(a, v6only).map_err(|e| AppError(format!("cannot listen for SIP on {a}: {e}")))
    };
    let mut last = None;
    for _ in 0..16 {
        let first = bind(listen.first())?;
        let port = first
            .0
            .local_addr()
            .map_err(|e| AppError(format!("SIP socket: {e}")))?
            .port();
        let mut all = vec![first];
        let rest = addrs
            .iter()
            .skip(1)
            .map(|a| bind(SocketAddr::new(a.ip(), port)));
        match rest.collect::<Result<Vec<_>, _>>() {
            Ok(more) => {
                all.extend(more);
                return Ok(all);
            }
            // Port 0: the port the first got is taken on another address; try another.
            Err(e) if listen.first().port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| AppError("no free SIP port on every listen address".into())))
}

impl Agent {
    /// Re-read the list files; the errors of refused files are returned and logged.
    pub fn reload(&self) -> Vec<crate::lists::ListError> {
        self.files.reload_now()
    }

    /// Stop every task and wait for them; queued decision-log lines are written.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        // The proxy holds the hook, which holds the log sender; the writer ends with them.
        if let Some(m) = &self.media {
            m.shutdown().await;
        }
        let Agent {
            screener,
            proxy,
            log_writer,
            ..
        } = self;
        drop(proxy);
        drop(screener);
        if let Some(h) = log_writer {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

/// Load, bind and start everything; returns once the agent answers SIP. `config` has passed
/// [`Config::validate_for_run`] (the binary checks it once, when it loads the file); what can
/// still fail is what the config text cannot promise: files, the store, sockets.
///
/// The order matters: the store before the lists, the lists before the hook, the hook before
/// the sockets, and SIP served last.
pub async fn start(config: Config) -> Result<Agent, AppError> {
    let rules = open_rules(&config)?;
    let (screening, fetcher) = build_screening(&config, &rules)?;
    let sip = bind_sip(&config, screening.screener.clone()).await?;
    let api = bind_api(&config, &rules, &screening, &sip.proxy).await?;
    let (sip_addr, api_addr, api_scheme) = (sip.addr, api.addr, api.state.scheme());
    let sip_tls_addr = sip.tls_addr;
    let redress_addr = api.redress.as_ref().map(|r| r.0);
    let proxy = sip.proxy.clone();
    let (shutdown, tasks) = serve(&config, &rules, &screening, fetcher, sip, api);
    log_ready(
        &config,
        &rules.lists,
        (sip_addr, sip_tls_addr),
        api_scheme,
        api_addr,
    );
    Ok(Agent {
        sip_addr,
        sip_tls_addr,
        api_addr,
        redress_addr,
        lists: rules.lists,
        files: rules.files,
        live: rules.live,
        _watcher: rules.watcher,
        screener: screening.screener,
        proxy,
        media: screening.media,
        shutdown,
        tasks,
        log_writer: Some(screening.log_writer),
    })
}

/// The rules calls are screened against: the store's lists, the list files (watched for
/// changes), partners' feeds, and the live overlay of API edits over them.
struct Rules {
    store: Arc<StoreRules>,
    feeds: feeds::Feeds,
    lists: Arc<ListSet>,
    files: Arc<ListFiles>,
    watcher: Option<WatchHandle>,
    live: Arc<Live>,
}

/// Start, step 1: the rules, the store first. A store that cannot be opened or checked must
/// never act as an empty blocklist, so it stops the start; a list file that does not load is
/// reported and the others are used.
fn open_rules(config: &Config) -> Result<Rules, AppError> {
    let store = Arc::new(Store::open(&config.store).map_err(|e| {
        AppError(format!(
            "store {}: {e}; refusing to start",
            config.store.data_dir.display()
        ))
    })?);
    let store_rules = Arc::new(
        StoreRules::load(&store).map_err(|e| AppError(format!("store: {e}; refusing to start")))?,
    );
    let feeds = feeds::open(config)?;
    let lists = Arc::new(ListSet::new(config.lists.clone()));
    let files = Arc::new(ListFiles::new(lists.clone()));
    files.reload_now();
    let watcher = match watch_lists(files.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "lists directory not watched ({e}); reload with SIGHUP or POST /v1/reload"
            );
            None
        }
    };
    let live = Arc::new(Live::new(
        store,
        store_rules.clone(),
        Some(feeds::with_files(files.clone(), &feeds)),
    ));
    Ok(Rules {
        store: store_rules,
        feeds,
        lists,
        files,
        watcher,
        live,
    })
}

/// What screens a call, and what it writes to and keeps alive.
struct Screening {
    screener: Arc<Screener>,
    log_writer: std::thread::JoinHandle<()>,
    media: Option<Arc<MediaEngine>>,
    certs: Arc<CertCache>,
    reports: Arc<ReportDesk>,
    /// Present when `[fleet]` shares counts with other agents.
    fleet: Option<fleet::Shared>,
    /// Present when `[hep]` names a collector: the SIP transport and the decision log copy to it.
    hep: Option<Arc<crate::sip::Capture>>,
}

/// Start, step 2: the hook over the rules, with the decision log, the media engine, the
/// certificate cache and the report desk. Also returns the certificate fetcher, which [`serve`]
/// runs.
fn build_screening(config: &Config, rules: &Rules) -> Result<(Screening, CertFetcher), AppError> {
    let hep = match crate::sip::Capture::new(&config.hep) {
        Ok(Some((capture, drain))) => {
            drain.spawn().map_err(|e| AppError(format!("hep: {e}")))?;
            tracing::info!("HEP3 capture to {}", config.hep.collector);
            Some(capture)
        }
        Ok(None) => None,
        Err(e) => return Err(AppError(format!("hep: {}: {e}", config.hep.collector))),
    };
    let (log, log_writer) = DecisionLog::start(
        &config.log.decisions,
        hep.clone(),
        config.callback.retention(),
    )
    .map_err(|e| AppError(format!("decision log: {e}")))?;
    let media = if config.media.enabled {
        let engine =
            MediaEngine::new(config.media.clone()).map_err(|e| AppError(format!("media: {e}")))?;
        Some(Arc::new(engine))
    } else {
        None
    };
    let (certs, fetcher) = CertCache::from_config(config.certs.clone())
        .map_err(|e| AppError(format!("certs: {e}")))?;
    let mut engine = engine::build(config, certs.clone())?;
    let fleet = config
        .fleet
        .enabled
        .then(|| fleet::Shared::enable(&config.fleet, &mut engine.signals));
    if fleet.is_some() {
        certs.share_with(Arc::new(fleet::CertStore::new(
            &config.fleet,
            &config.certs,
        )));
    }
    // Reports inside the window are counted again before the first call is screened.
    let reports = Arc::new(
        ReportDesk::open(
            &config.signals.reports,
            engine.signals.reports_shared(),
            rules.live.clone(),
        )
        .map_err(|e| AppError(format!("reports: {e}; refusing to start")))?,
    );
    let callback = callback::Callback::new(&config.callback, &config.policy)?.map(Arc::new);
    let screener = Arc::new(Screener {
        callback,
        challenges: Arc::new(challenge::Challenge::new(&config.challenge)),
        lists: rules.lists.clone(),
        store: rules.store.clone(),
        feeds: rules.feeds.rules.clone(),
        engine,
        disposition: config.disposition.clone(),
        log,
        stats: Arc::new(CallStats::default()),
        media: media.clone(),
        clock: Default::default(),
        reports: reports.clone(),
        next_hop: Arc::new(health::NextHopWatch::new(
            config.health.clone(),
            config.sip.next_hop.as_ref().map(ToString::to_string),
        )),
        recent: config
            .api
            .console
            .then(|| Arc::new(api::console::Recent::new(config.api.recent_calls))),
    });
    let screening = Screening {
        screener,
        log_writer,
        media,
        certs,
        reports,
        fleet,
        hep,
    };
    Ok((screening, fetcher))
}

/// The SIP side, bound but not yet served.
struct Sip {
    /// The first listen address's.
    addr: SocketAddr,
    /// One pair per listen address.
    socks: Vec<(UdpSocket, TcpListener)>,
    /// SIP over TLS: the listener when there is one, and the configs.
    tls: crate::sip::transport::Tls,
    tls_addr: Option<SocketAddr>,
    proxy: Arc<Proxy>,
}

/// Start, step 3: UDP and TCP on the SIP port, and the proxy in front of the hook.
async fn bind_sip(config: &Config, hook: Arc<Screener>) -> Result<Sip, AppError> {
    let socks = bind_sip_sockets(&config.sip.listen)?;
    let addr = socks[0]
        .0
        .local_addr()
        .map_err(|e| AppError(format!("SIP socket: {e}")))?;
    // The configs are read even without a listener: a sips: target may turn up in any call.
    let setup = crate::sip::tls::load(&config.sip).map_err(AppError)?;
    let listener = match config.sip.tls_listen {
        Some(l) => Some(
            TcpListener::bind(l)
                .await
                .map_err(|e| AppError(format!("cannot listen for SIP over TLS on {l}: {e}")))?,
        ),
        None => None,
    };
    let tls_addr = match &listener {
        Some(l) => Some(
            l.local_addr()
                .map_err(|e| AppError(format!("SIP TLS socket: {e}")))?,
        ),
        None => None,
    };
    let mut proxy = Proxy::new(
        config.sip.clone(),
        addr,
        hook,
        Arc::new(SipStats::default()),
    );
    if let Some(t) = tls_addr {
        proxy = proxy.with_tls_port(t.port());
    }
    Ok(Sip {
        addr,
        socks,
        tls: crate::sip::transport::Tls { listener, setup },
        tls_addr,
        proxy: Arc::new(proxy),
    })
}

/// The admin API and the redress form (when enabled), bound but not yet served.
struct Api {
    addr: SocketAddr,
    listener: TcpListener,
    state: Arc<api::State>,
    redress: Option<(SocketAddr, TcpListener, Arc<api::redress::Redress>)>,
}

/// Start, step 4: the API's state (every collector `/metrics` renders, the feed publisher, the
/// report intake) and its listener. The store rules are not among the collectors: the API
/// renders its own [`Live`]'s, which are the same ones.
async fn bind_api(
    config: &Config,
    rules: &Rules,
    screening: &Screening,
    proxy: &Proxy,
) -> Result<Api, AppError> {
    let screener = &screening.screener;
    let mut collectors: Vec<Arc<dyn Collect>> = vec![
        screener.stats.clone(),
        screener.log.stats.clone(),
        rules.files.clone(),
        proxy.stats().clone(),
        screening.certs.stats(),
        screening.reports.stats.clone(),
    ];
    if let Some(m) = &screening.media {
        collectors.push(m.stats());
    }
    if let Some(f) = &screening.fleet {
        collectors.push(f.stats.clone());
        collectors.push(f.edits.clone());
    }
    if let Some(cb) = &screener.callback {
        collectors.push(cb.stats.clone());
    }
    collectors.push(screener.challenges.stats.clone());
    if let Some(h) = &screening.hep {
        collectors.push(h.stats.clone());
    }
    let redress_stats = Arc::new(api::redress::RedressStats::default());
    collectors.push(redress_stats.clone());
    collectors.extend(rules.feeds.collectors());
    let mut state = api::State::new(
        config.api.clone(),
        rules.live.clone(),
        screener.clone(),
        collectors,
    )
    .map_err(|e| AppError(format!("api: {e}")))?;
    state.publisher = rules.feeds.publisher.clone();
    state.reporter = Some(screener.clone());
    state.ready.push(screener.next_hop.clone());
    if let Some(recent) = &screener.recent {
        state.console.desk = Some(Arc::new(console::ConsoleDesk {
            screener: screener.clone(),
            recent: recent.clone(),
            feeds: rules.feeds.rules.clone(),
        }));
    }
    state.disputes = api::redress::Disputes {
        allow_list: config.redress.allow_list.clone(),
        stats: redress_stats.clone(),
    };
    if let Some(f) = &screening.fleet {
        state.fleet = Some(f.edits.clone());
    }
    let (listener, addr) = listen("the API", &config.api.listen).await?;
    let redress = if config.redress.enabled {
        let r = api::redress::Redress::new(
            config.redress.clone(),
            redress_stats,
            rules.live.clone(),
            screener.clone(),
        )
        .map_err(|e| AppError(format!("redress: {e}")))?;
        let (l, a) = listen("the redress form", &config.redress.listen).await?;
        tracing::info!("redress form on {}://{a}", r.scheme());
        Some((a, l, Arc::new(r)))
    } else {
        None
    };
    Ok(Api {
        addr,
        listener,
        state: Arc::new(state),
        redress,
    })
}

/// A TCP listener on `addr`, and the address it got.
async fn listen(what: &str, addr: &str) -> Result<(TcpListener, SocketAddr), AppError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| AppError(format!("cannot listen for {what} on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| AppError(format!("{what}: socket: {e}")))?;
    Ok((listener, local))
}

/// Start, step 5: every task, SIP last: the API, the certificate fetcher, the signals' sweep,
/// the report desk, the store's upkeep and the feeds' pollers. Returns the switch that stops
/// them and the set to wait on.
fn serve(
    config: &Config,
    rules: &Rules,
    screening: &Screening,
    fetcher: CertFetcher,
    sip: Sip,
    api: Api,
) -> (watch::Sender<bool>, JoinSet<()>) {
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let stop = stopped(rx.clone());
    if let Some((_, listener, redress)) = api.redress {
        let stop = stopped(rx.clone());
        tasks.spawn(async move {
            if let Err(e) = api::redress::run(listener, redress, stop).await {
                tracing::error!("redress form stopped: {e}");
            }
        });
    }
    tasks.spawn(async move {
        if let Err(e) = api::run(api.listener, api.state, stop).await {
            tracing::error!("API server stopped: {e}");
        }
    });
    tasks.spawn(fetcher.run(stopped(rx.clone())));
    tasks.spawn(sweep_signals(screening.screener.clone(), rx.clone()));
    if config.signals.velocity.enabled && config.policy.log_only.iter().any(|n| n == "velocity") {
        tasks.spawn(suggest_thresholds(screening.screener.clone(), rx.clone()));
    }
    let sweep = std::time::Duration::from_secs(config.store.sweep_interval_secs.max(1));
    tasks.spawn(screening.reports.clone().run(sweep, stopped(rx.clone())));
    tasks.spawn(
        rules
            .live
            .clone()
            .run_maintenance(sweep, stopped(rx.clone())),
    );
    if let Some(f) = rules.feeds.rules.clone() {
        tasks.spawn(f.run(stopped(rx.clone())));
    }
    if let Some(f) = &screening.fleet {
        let runner = f.runner(&config.fleet, sip.addr.port());
        tasks.spawn(runner.run(screening.screener.clone(), stopped(rx.clone())));
        let mut edits = f.edit_runner(&config.fleet, sip.addr.port(), rules.live.clone());
        if screening.reports.enabled() {
            let relay = Arc::new(fleet::Relay::new(config.signals.reports.queue));
            screening.reports.share(relay.clone());
            edits = edits.with_reports(relay, screening.reports.clone());
        }
        tasks.spawn(edits.run(stopped(rx.clone())));
    }
    let hep = screening.hep.clone();
    tasks.spawn(async move {
        let tls = Some(sip.tls);
        if let Err(e) = crate::sip::transport::run_all(sip.socks, tls, sip.proxy, hep, rx).await {
            tracing::error!("SIP server stopped: {e}");
        }
    });
    (shutdown, tasks)
}

/// Completes once the agent is told to stop: the end every task is handed.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Every few seconds, until stopped: free idle velocity, wangiri and report slots (the tables
/// are capped regardless) and take the clock's anchor again.
async fn sweep_signals(s: Arc<Screener>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                s.engine.signals.sweep(now_ms());
                s.clock.reanchor();
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// The log-only period's deliverable: velocity thresholds fitted to this carrier's own traffic,
/// logged every 15 minutes while velocity runs log-only.
async fn suggest_thresholds(s: Arc<Screener>, mut stop: watch::Receiver<bool>) {
    let every = std::time::Duration::from_secs(15 * 60);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let v = s.engine.signals.velocity().suggested_thresholds();
                tracing::info!("velocity is log-only; thresholds suggested {v}");
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// The one line that says the agent is up, and where.
fn log_ready(
    config: &Config,
    lists: &ListSet,
    (sip_addr, tls_addr): (SocketAddr, Option<SocketAddr>),
    api_scheme: &str,
    api_addr: SocketAddr,
) {
    let snapshot = lists.snapshot();
    let tls = tls_addr.map_or_else(String::new, |a| format!(" and tls {a}"));
    tracing::info!(
        "scamguard ready: SIP on udp+tcp {sip_addr}{tls}, API on {api_scheme}://{api_addr}, next hop {}, {} file lists with {} entries",
        config
            .sip
            .next_hop
            .as_ref()
            .map_or_else(|| "none".to_string(), |a| a.to_string()),
        snapshot.lists.len(),
        snapshot.index.stats().entries()
    );
}

/// The verdict `scamguard check` prints: the proxy's own decision function over the same lists
/// (files and store) and signals, without sockets. A question is never counted as a call.
/// `config` has passed [`Config::validate`].
pub fn check(
    config: &Config,
    caller: &str,
    callee: &str,
    display: Option<&str>,
    anonymous: bool,
) -> Result<crate::screening::Verdict, AppError> {
    let store = Store::open(&config.store)
        .map_err(|e| AppError(format!("store {}: {e}", config.store.data_dir.display())))?;
    let store_rules = StoreRules::load(&store).map_err(|e| AppError(format!("store: {e}")))?;
    let (lists, errors) = ListSet::open(config.lists.clone());
    // The proxy runs with the files that load and reports the rest; check does the same, so
    // its answer is the one a call would get.
    for e in &errors {
        eprintln!("{e} (file not loaded)");
    }
    let (certs, _fetcher) = CertCache::from_config(config.certs.clone())
        .map_err(|e| AppError(format!("certs: {e}")))?;
    let engine = engine::build(config, certs)?;
    // Feeds' last good entries, as saved: what the running agent enforces between polls.
    let feeds = feeds::open(config)?;
    let question = crate::screening::Call::question(caller, callee, display, anonymous);
    Ok(screener::verdict_in_force(
        &engine,
        &lists,
        &store_rules,
        feeds.rules.as_deref(),
        &question,
        now_ms(),
    ))
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Diagnostics go to stderr so that stdout can carry the decision log.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Run the agent until Ctrl-C or SIGTERM; SIGHUP reloads the lists.
pub fn run(config: Config) -> Result<(), AppError> {
    init_tracing(&config.log.level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("scamguard")
        .build()
        .map_err(|e| AppError(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async move {
        let agent = start(config).await?;
        wait_for_signals(&agent).await?;
        tracing::info!("scamguard stopping");
        agent.stop().await;
        Ok(())
    })
}

#[cfg(unix)]
async fn wait_for_signals(agent: &Agent) -> Result<(), AppError> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |k| signal(k).map_err(|e| AppError(format!("cannot install signal handler: {e}")));
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut hup = sig(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                let files = agent.files.clone();
                let errors = tokio::task::spawn_blocking(move || files.reload_now()).await.unwrap_or_default();
                tracing::info!("SIGHUP: lists reloaded, {} file(s) refused", errors.len());
            }
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_agent: &Agent) -> Result<(), AppError> {
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| AppError(format!("cannot wait for Ctrl-C: {e}")))
}
