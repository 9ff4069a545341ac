//! The composition root: the only module that knows every other one.
//!
//! [`start`] loads the lists, builds the screening hook, binds the SIP sockets (UDP and TCP on one
//! port) and starts every server task; it returns an [`Agent`] handle with the bound addresses,
//! which is what the integration tests use on `127.0.0.1:0`. [`run`] is the binary's entry point:
//! a multi-threaded runtime, [`start`], then wait for Ctrl-C or SIGTERM (stop) and SIGHUP (reload
//! the lists).
//!
//! `app` translates between the wire and the decisions: `sip` never sees a list and `screening`
//! never sees a header.

mod clock;
pub mod config;
mod decision_log;
mod disposition;
pub mod engine;
mod feeds;
mod screener;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use self::clock::now_ms;
pub use self::decision_log::{DecisionLog, Record};
pub use self::disposition::{BlockResponse, DispositionConfig};
pub use self::screener::{CallStats, Screener};
pub use crate::lists::report_desk::{Promoted, ReportDesk, ReportStats, REPORTS_LIST};

use self::config::Config;
use crate::api;
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
    /// Where the admin API is served.
    pub api_addr: SocketAddr,
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
/// follows it; if that TCP port is taken, try again with another.
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).await?;
        let local = udp.local_addr()?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port pair")))
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
// Long on purpose: the start-up order (store before lists, lists before the hook, sockets last) reads best as one sequence; splitting it is next in docs/design.md.
#[allow(clippy::too_many_lines)]
pub async fn start(config: Config) -> Result<Agent, AppError> {
    // A store that cannot be opened or checked must never act as an empty blocklist.
    let store = Arc::new(Store::open(&config.store).map_err(|e| {
        AppError(format!(
            "store {}: {e}; refusing to start",
            config.store.data_dir.display()
        ))
    })?);
    let store_rules = Arc::new(
        StoreRules::load(&store).map_err(|e| AppError(format!("store: {e}; refusing to start")))?,
    );
    let feeds = feeds::open(&config)?;
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
        store.clone(),
        store_rules.clone(),
        Some(feeds::with_files(files.clone(), &feeds)),
    ));
    let (log, log_writer) = DecisionLog::start(&config.log.decisions)
        .map_err(|e| AppError(format!("decision log: {e}")))?;
    let media = if config.media.enabled {
        let engine =
            MediaEngine::new(config.media.clone()).map_err(|e| AppError(format!("media: {e}")))?;
        Some(Arc::new(engine))
    } else {
        None
    };
    let (certs, fetcher) = crate::certs::CertCache::from_config(config.certs.clone())
        .map_err(|e| AppError(format!("certs: {e}")))?;
    let engine = engine::build(&config, certs.clone())?;
    // Reports inside the window are counted again before the first call is screened.
    let reports = Arc::new(
        ReportDesk::open(
            &config.signals.reports,
            engine.signals.reports_shared(),
            live.clone(),
        )
        .map_err(|e| AppError(format!("reports: {e}; refusing to start")))?,
    );
    let screener = Arc::new(Screener {
        lists: lists.clone(),
        store: store_rules.clone(),
        feeds: feeds.rules.clone(),
        engine,
        disposition: config.disposition.clone(),
        log,
        stats: Arc::new(CallStats::default()),
        media: media.clone(),
        clock: Default::default(),
        reports: reports.clone(),
    });

    let (udp, tcp) = bind_pair(config.sip.listen).await.map_err(|e| {
        AppError(format!(
            "cannot listen for SIP on {}: {e}",
            config.sip.listen
        ))
    })?;
    let sip_addr = udp
        .local_addr()
        .map_err(|e| AppError(format!("SIP socket: {e}")))?;
    let proxy = Arc::new(Proxy::new(
        config.sip.clone(),
        sip_addr,
        screener.clone(),
        Arc::new(SipStats::default()),
    ));
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    let mut collectors: Vec<Arc<dyn Collect>> = vec![
        screener.stats.clone(),
        screener.log.stats.clone(),
        files.clone(),
        proxy.stats().clone(),
        store_rules.clone(),
        certs.stats(),
        reports.stats.clone(),
    ];
    if let Some(m) = &media {
        collectors.push(m.stats());
    }
    collectors.extend(feeds.collectors());
    let mut api_state = api::State::new(
        config.api.clone(),
        live.clone(),
        screener.clone(),
        collectors,
    )
    .map_err(|e| AppError(format!("api: {e}")))?;
    api_state.publisher = feeds.publisher.clone();
    let api_scheme = api_state.scheme();
    api_state.reporter = Some(screener.clone());
    let api_state = Arc::new(api_state);
    let api_listener = TcpListener::bind(&config.api.listen).await.map_err(|e| {
        AppError(format!(
            "cannot listen for the API on {}: {e}",
            config.api.listen
        ))
    })?;
    let api_addr = api_listener
        .local_addr()
        .map_err(|e| AppError(format!("API socket: {e}")))?;
    let mut stop = rx.clone();
    tasks.spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = api::run(api_listener, api_state, stopped).await {
            tracing::error!("API server stopped: {e}");
        }
    });
    let mut stop = rx.clone();
    tasks.spawn(fetcher.run(async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    let mut stop = rx.clone();
    let s = screener.clone();
    tasks.spawn(async move {
        // Frees idle velocity, wangiri and report slots; the tables are capped regardless.
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
    });
    let mut stop = rx.clone();
    let sweep = std::time::Duration::from_secs(config.store.sweep_interval_secs.max(1));
    tasks.spawn(reports.run(sweep, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    let mut stop = rx.clone();
    tasks.spawn(live.clone().run_maintenance(sweep, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    if let Some(f) = feeds.rules.clone() {
        let mut stop = rx.clone();
        tasks.spawn(f.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    let p = proxy.clone();
    tasks.spawn(async move {
        if let Err(e) = crate::sip::run(udp, tcp, p, rx).await {
            tracing::error!("SIP server stopped: {e}");
        }
    });
    let snapshot = lists.snapshot();
    tracing::info!(
        "scamguard ready: SIP on udp+tcp {sip_addr}, API on {api_scheme}://{api_addr}, next hop {}, {} file lists with {} entries",
        config
            .sip
            .next_hop
            .map_or_else(|| "none".to_string(), |a| a.to_string()),
        snapshot.lists.len(),
        snapshot.index.stats().entries()
    );
    Ok(Agent {
        sip_addr,
        api_addr,
        lists,
        files,
        live,
        _watcher: watcher,
        screener,
        proxy,
        media,
        shutdown,
        tasks,
        log_writer: Some(log_writer),
    })
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
    let (certs, _fetcher) = crate::certs::CertCache::from_config(config.certs.clone())
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
