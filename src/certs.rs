//! STIR certificates: fetching `x5u` chains over HTTP or HTTPS with a hard timeout, checking them
//! against the trust anchors (a folder of PEM files) and caching the results, plus a folder of
//! pre-loaded certificates for offline work.
//!
//! The hot path only calls [`CertCache::lookup`], which never waits: a cached answer comes back
//! at once; a miss returns "pending", queues the URL for the background [`CertFetcher`] and lets
//! the call go on unattested (or on a trusted peer's `verstat`), so a cold cache never stalls
//! other calls.
//!
//! Two different trusts are at work. The STIR chain a URL serves is checked against
//! `anchors_dir` (the STI-PA's roots); the HTTPS server that serves it is authenticated
//! against `https_roots` (web CAs: by default the system folder `/etc/ssl/certs`). One timeout
//! covers connect, TLS handshake, request and body.
//! With a fleet, a chain fetched by one agent serves the others ([`SharedCerts`], which the app
//! backs with the fleet's Redis): the fetcher asks the shared store before the URL and offers it
//! what it fetched. Each agent still checks every chain against its own anchors; the shared
//! store saves fetches, it is not trusted. Both steps are the fetcher's, so no call waits on them.
//! Knows nothing of PASSporTs, SIP, verdicts or Redis; the checks themselves are the pure
//! `screening::signals::certchain`.

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::sync::{mpsc, Semaphore};

use crate::metrics::{Collect, Counter, Exposition, Gauge};
use crate::screening::signals::certchain::{pem_chain, verify_chain, Anchors, TrustedCert};
use crate::screening::signals::stir::{CertLookup, CertState};

/// `[certs]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CertsConfig {
    /// Folder of trust-anchor PEM files (`*.pem`, `*.crt`).
    pub anchors_dir: Option<String>,
    /// Folder of pre-loaded chains: PEM files with a `x5u: <url>` line before the certificates.
    pub preload_dir: Option<String>,
    /// Folder of CA PEM files (`*.pem`, `*.crt`) that authenticate `https://` x5u servers.
    /// Unset: [`SYSTEM_ROOTS`] when it holds any; if it does not, https URLs fail (and say why).
    pub https_roots: Option<String>,
    /// Hard limit for one fetch: connect, TLS handshake, request and body.
    pub fetch_timeout_ms: u64,
    /// How long a fetched chain is used before it is fetched again (meanwhile the old one
    /// still answers).
    pub ttl_secs: u64,
    /// How long a failed fetch is remembered (so one bad URL costs one fetch per period).
    pub failure_ttl_secs: u64,
    pub max_entries: usize,
    pub max_body_bytes: usize,
    /// URLs waiting for a fetch; beyond it a miss is retried by a later call.
    pub queue: usize,
    pub concurrent_fetches: usize,
}

impl Default for CertsConfig {
    fn default() -> Self {
        CertsConfig {
            anchors_dir: None,
            preload_dir: None,
            https_roots: None,
            fetch_timeout_ms: 2_000,
            ttl_secs: 3_600,
            failure_ttl_secs: 60,
            max_entries: 10_000,
            max_body_bytes: 64 * 1024,
            queue: 256,
            concurrent_fetches: 8,
        }
    }
}

/// Where Debian, Ubuntu and Alpine's `ca-certificates` put the system's web CAs.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs";

impl CertsConfig {
    /// Every problem with the folders and limits, each naming the key and the folder.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(d) = &self.anchors_dir {
            if let Err(e) = load_anchors(Path::new(d)) {
                p.push(format!("certs.anchors_dir: {e}"));
            }
        }
        if let Some(d) = &self.https_roots {
            if let Err(e) = crate::tls::read_roots(Path::new(d)) {
                p.push(format!("certs.https_roots: {e}"));
            }
        }
        if self.fetch_timeout_ms == 0 || self.max_body_bytes == 0 {
            p.push("certs.fetch_timeout_ms and certs.max_body_bytes must be > 0".into());
        }
        p
    }

    /// The TLS client for https x5u URLs, or why there is none. An explicitly configured
    /// folder that cannot be used is an error; the system folder missing only disables https.
    fn https_client(&self) -> Result<Result<tokio_rustls::TlsConnector, String>, String> {
        let (dir, explicit) = match &self.https_roots {
            Some(d) => (d.as_str(), true),
            None => (SYSTEM_ROOTS, false),
        };
        let built = crate::tls::read_roots(Path::new(dir)).and_then(|(roots, skipped)| {
            if skipped > 0 {
                tracing::debug!(%dir, skipped, "certs: CA certificates webpki cannot use");
            }
            crate::tls::client_config(roots)
        });
        match built {
            Ok(c) => Ok(Ok(tokio_rustls::TlsConnector::from(c))),
            Err(e) if explicit => Err(format!("certs.https_roots: {e}")),
            Err(e) => Ok(Err(format!(
                "https x5u needs CA roots: set certs.https_roots ({e})"
            ))),
        }
    }
}

/// A future a [`SharedCerts`] returns.
pub type Shared<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Chains shared between the agents of a fleet, by URL. Each call bounds its own time and
/// answers `None` (or does nothing) when the store cannot be reached: the fetcher then fetches
/// the URL itself, as a lone agent would.
pub trait SharedCerts: Send + Sync {
    /// The PEM chain another agent fetched from `url`, and for how many more ms it is good.
    fn get<'a>(&'a self, url: &'a str) -> Shared<'a, Option<(Vec<u8>, u64)>>;
    /// Offers the PEM chain fetched from `url`, good for `ttl_ms`.
    fn put<'a>(&'a self, url: &'a str, pem: &'a [u8], ttl_ms: u64) -> Shared<'a, ()>;
}

/// Certificate cache counters.
#[derive(Debug, Default)]
pub struct CertStats {
    pub hits: Counter,
    pub misses: Counter,
    pub fetches: Counter,
    pub fetch_failures: Counter,
    pub queue_full: Counter,
    pub entries: Gauge,
    /// Chains taken from the fleet's shared store instead of fetched.
    pub from_fleet: Counter,
}

impl Collect for CertStats {
    fn collect(&self, out: &mut Exposition) {
        let h = "STIR certificate cache lookups by result";
        out.counter(
            "scamguard_cert_lookups_total",
            h,
            &[("result", "hit")],
            self.hits.get(),
        );
        out.counter(
            "scamguard_cert_lookups_total",
            h,
            &[("result", "miss")],
            self.misses.get(),
        );
        let f = "x5u fetches by result";
        out.counter(
            "scamguard_cert_fetches_total",
            f,
            &[("result", "ok")],
            self.fetches.get() - self.fetch_failures.get().min(self.fetches.get()),
        );
        out.counter(
            "scamguard_cert_fetches_total",
            f,
            &[("result", "error")],
            self.fetch_failures.get(),
        );
        out.counter(
            "scamguard_cert_queue_full_total",
            "cache misses not queued because the fetch queue was full",
            &[],
            self.queue_full.get(),
        );
        out.counter(
            "scamguard_cert_from_fleet_total",
            "x5u chains another agent of the fleet had fetched, taken from the fleet's store instead of fetched",
            &[],
            self.from_fleet.get(),
        );
        out.gauge(
            "scamguard_cert_cache_entries",
            "STIR certificate cache entries",
            &[],
            self.entries.get(),
        );
    }
}

enum Slot {
    Ready {
        cert: Arc<TrustedCert>,
        until: Option<Instant>,
    },
    Pending {
        since: Instant,
    },
    Failed {
        why: String,
        until: Instant,
    },
}

/// The certificate cache; cheap to share (`Arc`), `lookup` never blocks on I/O.
pub struct CertCache {
    cfg: CertsConfig,
    anchors: Anchors,
    slots: Mutex<HashMap<String, Slot>>,
    /// The client for https URLs, or why https URLs fail.
    https: Result<tokio_rustls::TlsConnector, String>,
    queue: mpsc::Sender<String>,
    stats: Arc<CertStats>,
    /// The fleet's shared store of chains, when there is a fleet.
    shared: OnceLock<Arc<dyn SharedCerts>>,
}

/// The background worker that fetches queued `x5u` URLs. Run it on the runtime.
pub struct CertFetcher {
    cache: Arc<CertCache>,
    rx: mpsc::Receiver<String>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Reads every `*.pem`/`*.crt` in `dir` as trust anchors; an error names the file.
pub fn load_anchors(dir: &Path) -> Result<Anchors, String> {
    let mut anchors = Anchors::default();
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    for f in files {
        if !matches!(f.extension().and_then(|e| e.to_str()), Some("pem" | "crt")) {
            continue;
        }
        let text = fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        anchors.add_pem(&text, &f.display().to_string())?;
    }
    if anchors.is_empty() {
        return Err(format!(
            "{}: no trust anchors (*.pem, *.crt) found",
            dir.display()
        ));
    }
    Ok(anchors)
}

impl CertCache {
    /// A cache over `anchors`, and the fetcher that fills it. If `https_roots` cannot be
    /// used, https URLs fail with the reason ([`CertCache::from_config`] refuses instead).
    pub fn new(cfg: CertsConfig, anchors: Anchors) -> (Arc<CertCache>, CertFetcher) {
        let https = cfg.https_client().unwrap_or_else(Err);
        CertCache::with_https(cfg, anchors, https)
    }

    fn with_https(
        cfg: CertsConfig,
        anchors: Anchors,
        https: Result<tokio_rustls::TlsConnector, String>,
    ) -> (Arc<CertCache>, CertFetcher) {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let cache = Arc::new(CertCache {
            cfg,
            anchors,
            slots: Mutex::new(HashMap::new()),
            https,
            queue: tx,
            stats: Arc::new(CertStats::default()),
            shared: OnceLock::new(),
        });
        (cache.clone(), CertFetcher { cache, rx })
    }

    /// Builds the cache from config: anchors from `anchors_dir`, chains from `preload_dir`,
    /// HTTPS roots from `https_roots`.
    pub fn from_config(cfg: CertsConfig) -> Result<(Arc<CertCache>, CertFetcher), String> {
        let anchors = match &cfg.anchors_dir {
            Some(d) => load_anchors(Path::new(d))?,
            None => Anchors::default(),
        };
        let https = cfg.https_client()?;
        if let Err(why) = &https {
            tracing::warn!("certs: {why}");
        }
        let preload = cfg.preload_dir.clone();
        let (cache, fetcher) = CertCache::with_https(cfg, anchors, https);
        if let Some(d) = preload {
            cache.preload_dir(Path::new(&d))?;
        }
        Ok((cache, fetcher))
    }

    pub fn stats(&self) -> Arc<CertStats> {
        self.stats.clone()
    }

    /// Shares fetched chains with a fleet from now on (once; later calls change nothing).
    pub fn share_with(&self, shared: Arc<dyn SharedCerts>) {
        let _ = self.shared.set(shared);
    }

    /// A chain from the fleet's store, checked here like a fetched one; `None` when the store
    /// has none (or cannot be reached), or has one that does not check out.
    async fn chain_of_the_fleet(&self, url: &str) -> Option<CertState> {
        let (pem, left_ms) = self.shared.get()?.get(url).await?;
        let chain = pem_chain(&pem).ok()?;
        let cert = verify_chain(&chain, &self.anchors, unix_now()).ok()?;
        let cert = Arc::new(cert);
        let ttl = Duration::from_secs(self.cfg.ttl_secs).min(Duration::from_millis(left_ms));
        self.store(
            url,
            Slot::Ready {
                cert: cert.clone(),
                until: Some(Instant::now() + ttl),
            },
        );
        self.stats.from_fleet.inc();
        Some(CertState::Ready(cert))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self, url: &str, slot: Slot) {
        let mut slots = self.lock();
        if !slots.contains_key(url) && slots.len() >= self.cfg.max_entries.max(1) {
            // Full: drop something stale, else anything not pre-loaded. Rare (a cap of
            // thousands of signing certificates), so a scan is fine here.
            let now = Instant::now();
            let victim = slots
                .iter()
                .find(|(_, s)| match s {
                    Slot::Ready { until: Some(u), .. } => *u <= now,
                    Slot::Failed { until, .. } => *until <= now,
                    _ => false,
                })
                .or_else(|| {
                    slots
                        .iter()
                        .find(|(_, s)| !matches!(s, Slot::Ready { until: None, .. }))
                })
                .map(|(k, _)| k.clone());
            if let Some(k) = victim {
                slots.remove(&k);
            }
        }
        slots.insert(url.to_string(), slot);
        self.stats.entries.set(slots.len() as i64);
    }

    /// Reads pre-loaded chains: each `*.pem` file names its URL on a line `x5u: <url>` before
    /// the certificates (RFC 7468 allows text there). Chains are checked like fetched ones.
    pub fn preload_dir(&self, dir: &Path) -> Result<usize, String> {
        let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut n = 0;
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                continue;
            }
            let name = path.display().to_string();
            let text = fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
            let url = text
                .lines()
                .take_while(|l| !l.starts_with("-----BEGIN"))
                .find_map(|l| l.trim().strip_prefix("x5u:").map(|u| u.trim().to_string()))
                .ok_or_else(|| {
                    format!("{name}:1: expected a line `x5u: <url>` before the certificates")
                })?;
            self.preload(&url, text.as_bytes())
                .map_err(|e| format!("{name}: {e}"))?;
            n += 1;
        }
        Ok(n)
    }

    /// Adds a chain for `url` that never expires from the cache (it is still date-checked).
    pub fn preload(&self, url: &str, pem: &[u8]) -> Result<(), String> {
        let chain = pem_chain(pem).map_err(|e| e.to_string())?;
        let cert = verify_chain(&chain, &self.anchors, unix_now()).map_err(|e| e.to_string())?;
        self.store(
            url,
            Slot::Ready {
                cert: Arc::new(cert),
                until: None,
            },
        );
        Ok(())
    }

    /// Fetches `url` now and caches the result; for warming the cache and for tests.
    pub async fn fetch_now(&self, url: &str) -> CertState {
        if let Some(state) = self.chain_of_the_fleet(url).await {
            return state;
        }
        let https = self.https.as_ref().map_err(String::as_str);
        let mut fetched = None;
        let result = fetch_chain(url, &self.cfg, https).await.and_then(|pem| {
            let chain = pem_chain(&pem).map_err(|e| e.to_string())?;
            let cert =
                verify_chain(&chain, &self.anchors, unix_now()).map_err(|e| e.to_string())?;
            fetched = Some(pem);
            Ok(cert)
        });
        // Only a chain that checked out is offered to the fleet (each agent checks it again).
        if let (Some(shared), Some(pem)) = (self.shared.get(), &fetched) {
            shared
                .put(url, pem, self.cfg.ttl_secs.saturating_mul(1000))
                .await;
        }
        // Counted once the result is stored: `ok` (fetches minus failures) must not show a
        // fetch still in flight as a success.
        match result {
            Ok(cert) => {
                let cert = Arc::new(cert);
                let until = Instant::now() + Duration::from_secs(self.cfg.ttl_secs);
                self.store(
                    url,
                    Slot::Ready {
                        cert: cert.clone(),
                        until: Some(until),
                    },
                );
                self.stats.fetches.inc();
                CertState::Ready(cert)
            }
            Err(why) => {
                self.stats.fetch_failures.inc();
                tracing::warn!(%url, %why, "x5u certificate rejected");
                let until = Instant::now() + Duration::from_secs(self.cfg.failure_ttl_secs);
                self.store(
                    url,
                    Slot::Failed {
                        why: why.clone(),
                        until,
                    },
                );
                self.stats.fetches.inc();
                CertState::Failed(why)
            }
        }
    }
}

impl CertLookup for CertCache {
    fn lookup(&self, x5u: &str) -> CertState {
        let now = Instant::now();
        let retry = Duration::from_millis(self.cfg.fetch_timeout_ms.saturating_mul(2).max(1));
        let mut slots = self.lock();
        match slots.get_mut(x5u) {
            Some(Slot::Ready { cert, until }) => {
                self.stats.hits.inc();
                let cert = cert.clone();
                if until.is_some_and(|u| u <= now) {
                    // Stale: keep answering with it while one refresh is under way, so an
                    // expiring entry never turns busy calls into "pending".
                    *until = Some(now + retry);
                    if self.queue.try_send(x5u.to_string()).is_err() {
                        self.stats.queue_full.inc();
                    }
                }
                return CertState::Ready(cert);
            }
            Some(Slot::Failed { why, until }) if *until > now => {
                self.stats.hits.inc();
                return CertState::Failed(why.clone());
            }
            // A fetch is under way (it ends within the timeout; a slot older than that
            // belongs to a lost fetch and is retried below).
            Some(Slot::Pending { since }) if now.duration_since(*since) < retry => {
                return CertState::Pending;
            }
            _ => {}
        }
        drop(slots);
        self.stats.misses.inc();
        // Marked pending before the URL is queued: a fetch that finishes at once stores its
        // result over this mark, never the other way round (a late mark would hide a fetched
        // certificate as "pending" until the retry interval ran out).
        self.store(x5u, Slot::Pending { since: now });
        if self.queue.try_send(x5u.to_string()).is_err() {
            // The next call with this URL tries again; nothing waits here.
            self.stats.queue_full.inc();
            let mut slots = self.lock();
            if matches!(slots.get(x5u), Some(Slot::Pending { .. })) {
                slots.remove(x5u);
                self.stats.entries.set(slots.len() as i64);
            }
        }
        CertState::Pending
    }
}

impl CertFetcher {
    /// Fetches queued URLs, a few at a time, until `shutdown` resolves or the cache is gone.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let limit = Arc::new(Semaphore::new(self.cache.cfg.concurrent_fetches.max(1)));
        tokio::pin!(shutdown);
        loop {
            let url = tokio::select! {
                _ = &mut shutdown => return,
                u = self.rx.recv() => match u { Some(u) => u, None => return },
            };
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let cache = self.cache.clone();
            tokio::spawn(async move {
                cache.fetch_now(&url).await;
                drop(permit);
            });
        }
    }
}

/// GET `url` (http, or https through `https`) within the configured time and size limits.
async fn fetch_chain(
    url: &str,
    cfg: &CertsConfig,
    https: Result<&tokio_rustls::TlsConnector, &str>,
) -> Result<Vec<u8>, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad x5u {url:?}: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => None,
        Some("https") => Some(https.map_err(str::to_string)?.clone()),
        _ => return Err(format!("unsupported x5u scheme in {url:?}")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("no host in {url:?}"))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_else(|| host.clone());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let max = cfg.max_body_bytes;
    let work = async move {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect {authority}: {e}"))?;
        match tls {
            None => get(stream, &authority, path, max).await,
            Some(connector) => {
                // The name the server's certificate must carry: a DNS name or an IP address.
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| format!("x5u host {host:?}: {e}"))?;
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| format!("TLS {authority}: {e}"))?;
                get(stream, &authority, path, max).await
            }
        }
    };
    match tokio::time::timeout(Duration::from_millis(cfg.fetch_timeout_ms), work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "fetch of {url} timed out after {} ms",
            cfg.fetch_timeout_ms
        )),
    }
}

/// One HTTP/1.1 GET over an open connection, plain or TLS; the body capped at `max` bytes.
async fn get<S>(stream: S, authority: &str, path: String, max: usize) -> Result<Vec<u8>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http {authority}: {e}"))?;
    // The connection task ends when the sender is dropped, including on timeout.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "application/pem-certificate-chain")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("http {authority}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {} from {authority}", resp.status().as_u16()));
    }
    let body = Limited::new(resp.into_body(), max)
        .collect()
        .await
        .map_err(|e| format!("body from {authority}: {e}"))?;
    Ok(body.to_bytes().to_vec())
}
