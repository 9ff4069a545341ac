//! The admin HTTP API (hyper 1): operators read and change lists, check numbers, read the audit
//! trail, reload list files; monitoring reads health, readiness and metrics.
//!
//! Every endpoint is one arm of the `match` in `routes.rs`; [`route`] answers a request with or
//! without a socket, so tests need no port:
//!
//! | method and path | role | what |
//! | --- | --- | --- |
//! | `GET /health` | none | the process answers |
//! | `GET /ready` | none | lists loaded and every [`Ready`] check passing (503 with `reasons`) |
//! | `GET /metrics` | none | Prometheus text of every collector passed in |
//! | `GET /v1/lists` | read | lists with entry counts, source (file, store, feed), last load error |
//! | `GET /v1/lists/{list}/entries?prefix=&limit=&cursor=` | read | one page of a store list |
//! | `POST /v1/lists/{list}/entries` | write | one entry object or an array; 201 once durable and enforced |
//! | `DELETE /v1/lists/{list}/entries/{pattern}` | write | remove one entry (pattern URL-encoded) |
//! | `POST /v1/lists/{list}/import?format=csv\|ftc\|plain&replace=&action=&category=&reason=` | write | all or nothing |
//! | `GET /v1/lists/{list}/export?format=csv` | read | the list in the project's CSV format |
//! | `GET /v1/check?caller=&callee=&display=` | read | the verdict JSON of `scamguard check` |
//! | `POST /v1/reports` | write | callers' reports (one object or an array); 201 once durable ([`reports`]) |
//! | `GET /v1/reports?caller=&limit=` | read | the stored reports against a caller and its promotion |
//! | `GET /v1/signals/velocity/suggest` | read | caller velocity thresholds suggested from the traffic seen |
//! | `GET /v1/feeds/{feed}?since=` | read, or the feed's own token | a signed feed snapshot or increment (docs/feeds.md) |
//! | `GET /v1/audit?since=&limit=&kind=` | admin | who changed what, when, from where, before and after; `kind=refused`: refused requests |
//! | `POST /v1/reload` | admin | re-read list files; per-file errors |
//! | `GET /v1/disputes?status=&after=&limit=` | read | disputes of blocked callers from the redress form |
//! | `POST /v1/disputes/{id}/lift` | write | lift the block: an `allow` entry (reason: the dispute's id) in `redress.allow_list` |
//! | `POST /v1/disputes/{id}/uphold` | write | the block stands |
//!
//! The redress form itself is a listener of its own, for the public ([`redress`]).
//!
//! The web console is served under `/console` by the same listener ([`console`]), with the same
//! tokens and roles behind its own login, sessions and CSRF tokens.
//!
//! Tokens and roles are in [`auth`]. Errors are JSON `{"error": "...", "details": [...]}`; bad
//! requests get a 4xx, never a panic; bodies are capped before they are read and must arrive in
//! time (408); text with a control character is refused (400) wherever it would be stored.
//! Refused requests are recorded in the audit trail with the client's address, and an address
//! that keeps sending wrong tokens, or holds too many connections, is refused by the guard
//! (`guard.rs`) without touching anyone else.
//!
//! With `tls_cert` and `tls_key` set the listener speaks HTTPS only (rustls) and may be bound to
//! any address; without them it must be loopback, so tokens never cross a network in clear. A
//! client whose TLS handshake fails (plain HTTP, an old protocol, a timeout) is counted in
//! `scamguard_api_tls_handshake_failures_total` and dropped; the server goes on.
//!
//! The listener is `server.rs`; what each endpoint does is in `handlers/`, one file per
//! resource; replies, body caps and query parsing are `http.rs`. This file holds the config,
//! the state handlers share and the traits the app implements.
//!
//! Knows nothing of SIP. Decisions come from a [`Checker`] the app passes in; list changes go
//! through [`crate::lists::overlay::Live`].

pub mod auth;
pub mod console;
mod guard;
mod handlers;
mod http;
pub mod redress;
mod routes;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::lists::overlay::Live;
use crate::metrics::{Collect, Counter, Exposition};

use auth::Tokens;
pub use handlers::fleet::FleetView;
pub use handlers::parse_expires;
pub use handlers::reports::{self, Reporter};
pub use http::{BoxError, ResponseBody};
pub use routes::{route, ClientAddr};
pub use server::run;

/// The `[api]` config section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address; must be loopback unless `tls_cert` and `tls_key` are set.
    pub listen: String,
    /// PEM certificate chain (server certificate first). With `tls_key`: HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// File of `name role token` lines. Without it only health, readiness and metrics answer.
    pub tokens_file: Option<PathBuf>,
    /// Largest JSON request body.
    pub max_body_bytes: usize,
    /// Largest import body.
    pub max_import_bytes: usize,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// Connections one client address (an IPv6 /64) may hold at once; more are closed at once.
    pub max_connections_per_source: usize,
    /// Seconds a client has to send a request's headers (and to finish a TLS handshake); an
    /// idle connection is closed after this long.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a whole request body; then 408 and the connection closes.
    pub body_timeout_secs: u64,
    /// Wrong or missing tokens from one address within `auth_ban_secs` before the address is
    /// refused (429) for `auth_ban_secs`; 0 never refuses.
    pub max_auth_failures: u32,
    pub auth_ban_secs: u64,
    /// Addresses whose failed tokens are remembered at once (the oldest are forgotten first).
    pub max_auth_sources: usize,
    /// Largest page of entries or audit records.
    pub max_page: usize,
    /// Serve the web console under `/console` (same tokens and roles as the API).
    pub console: bool,
    /// How long a console login lasts, in seconds.
    pub session_secs: u64,
    /// Console sessions kept at once; past it the one closest to its end is dropped.
    pub max_sessions: usize,
    /// Screened calls kept in memory for the console's live tail, overview and what-if.
    pub recent_calls: usize,
}

/// Most calls the console's history may hold: 512 MB of memory.
const MAX_RECENT_CALLS: usize = 1_000_000;

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8080".into(),
            tokens_file: None,
            tls_cert: None,
            tls_key: None,
            max_body_bytes: 1 << 20,
            max_import_bytes: 256 << 20,
            max_connections: 64,
            max_connections_per_source: 16,
            header_timeout_secs: 10,
            body_timeout_secs: 60,
            max_auth_failures: 10,
            auth_ban_secs: 300,
            max_auth_sources: 4096,
            max_page: 1000,
            console: true,
            session_secs: 8 * 3600,
            max_sessions: 256,
            recent_calls: 10_000,
        }
    }
}

impl ApiConfig {
    /// Every problem, each naming the setting and what was expected; refuses settings that
    /// would expose the API unsafely. Reads the TLS files and the tokens file, so that a missing,
    /// mismatched or malformed one is reported with the rest (`file:line: message`), by the
    /// same checks that [`State::new`] makes when the agent starts.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        let listen = self.listen.parse::<SocketAddr>();
        if let Err(e) = &listen {
            p.push(format!(
                "api.listen {:?}: {e}; expected ip:port such as 127.0.0.1:8080",
                self.listen
            ));
        }
        match self.tls() {
            Err(e) => p.push(e),
            Ok(None) => match listen {
                Ok(addr) if !addr.ip().is_loopback() => p.push(format!(
                    "api.listen {addr} is not a loopback address and api.tls_cert/tls_key are not set; \
                     set both to serve HTTPS, or listen on 127.0.0.1 or ::1"
                )),
                _ => {}
            },
            Ok(Some(_)) => {}
        }
        if let Err(e) = self.tokens() {
            p.push(e);
        }
        for (k, v) in [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_import_bytes", self.max_import_bytes as u64),
            ("max_connections", self.max_connections as u64),
            (
                "max_connections_per_source",
                self.max_connections_per_source as u64,
            ),
            ("header_timeout_secs", self.header_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("auth_ban_secs", self.auth_ban_secs),
            ("max_auth_sources", self.max_auth_sources as u64),
            ("session_secs", self.session_secs),
            ("max_sessions", self.max_sessions as u64),
            ("recent_calls", self.recent_calls as u64),
        ] {
            if v == 0 {
                p.push(format!("api.{k} is 0; expected a positive number"));
            }
        }
        // The console's ring takes `recent_calls` × 512 bytes at start (api::console::Recent).
        if self.recent_calls > MAX_RECENT_CALLS {
            p.push(format!(
                "api.recent_calls is {}; expected at most {MAX_RECENT_CALLS} (the console keeps \
                 512 bytes a call in memory from the start)",
                self.recent_calls
            ));
        }
        p
    }

    /// What the guard allows.
    fn limits(&self) -> guard::Limits {
        guard::Limits {
            max_failures: self.max_auth_failures,
            ban: Duration::from_secs(self.auth_ban_secs),
            max_sources: self.max_auth_sources,
            max_connections: self.max_connections_per_source,
        }
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }

    /// The tokens of `tokens_file`, read and checked now (a missing file, or a bad line named
    /// `file:line: ...`); none without the setting.
    pub fn tokens(&self) -> Result<Tokens, String> {
        match &self.tokens_file {
            Some(p) => Tokens::load(p).map_err(|e| format!("api.tokens_file: {e}")),
            None => Ok(Tokens::default()),
        }
    }

    /// The TLS server config from `tls_cert` and `tls_key`, read and checked now (a missing,
    /// unreadable or mismatched file is an error naming it); `None` for plain HTTP.
    pub fn tls(&self) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(c), Some(k)) => crate::tls::server_config(c, k)
                .map(Some)
                .map_err(|e| format!("api.tls: {e}")),
            (Some(_), None) => {
                Err("api.tls_cert is set without api.tls_key; expected both or neither".into())
            }
            (None, Some(_)) => {
                Err("api.tls_key is set without api.tls_cert; expected both or neither".into())
            }
        }
    }
}

/// The decision of `scamguard check`, made by the app (the API knows nothing of how).
pub trait Checker: Send + Sync {
    fn check(&self, caller: &str, callee: Option<&str>, display: Option<&str>) -> Value;

    /// Velocity's caller thresholds suggested from the traffic seen so far, as JSON; `None`
    /// where there is no live traffic (a checker over the rules alone answers 404).
    fn velocity_suggestion(&self) -> Option<Value> {
        None
    }
}

/// What `/ready` must hear from besides the lists (the app's view of its next hop, say).
pub trait Ready: Send + Sync {
    /// Why calls should not be sent to this agent now, or `None` when nothing stands in the way.
    fn not_ready(&self) -> Option<String>;
}

/// Counters of the API.
#[derive(Debug, Default)]
pub struct ApiStats {
    pub requests: Counter,
    pub client_errors: Counter,
    pub server_errors: Counter,
    pub unauthenticated: Counter,
    pub forbidden: Counter,
    /// 429: the address is refused for too many wrong tokens.
    pub rate_limited: Counter,
    pub tls_handshake_failures: Counter,
    /// Connections closed at once: their address held `max_connections_per_source` already.
    pub connections_refused: Counter,
    /// Connections closed because the headers, or a body, did not arrive in time.
    pub header_timeouts: Counter,
    pub body_timeouts: Counter,
    /// Refused requests not recorded in the audit trail, over the recording budget.
    pub refusals_unrecorded: Counter,
}

impl Collect for ApiStats {
    fn collect(&self, out: &mut Exposition) {
        let h = "Admin API requests by outcome";
        out.counter(
            "scamguard_api_requests_total",
            h,
            &[("outcome", "all")],
            self.requests.get(),
        );
        for (k, c) in [
            ("client_error", &self.client_errors),
            ("server_error", &self.server_errors),
            ("unauthenticated", &self.unauthenticated),
            ("forbidden", &self.forbidden),
            ("rate_limited", &self.rate_limited),
        ] {
            out.counter(
                "scamguard_api_requests_total",
                h,
                &[("outcome", k)],
                c.get(),
            );
        }
        out.counter(
            "scamguard_api_tls_handshake_failures_total",
            "Admin API connections dropped because their TLS handshake failed or timed out",
            &[],
            self.tls_handshake_failures.get(),
        );
        out.counter(
            "scamguard_api_connections_refused_total",
            "Admin API connections closed at once: their address held max_connections_per_source",
            &[],
            self.connections_refused.get(),
        );
        for (part, c) in [
            ("header", &self.header_timeouts),
            ("body", &self.body_timeouts),
        ] {
            out.counter(
                "scamguard_api_read_timeouts_total",
                "Admin API requests whose headers or body did not arrive in time",
                &[("part", part)],
                c.get(),
            );
        }
        out.counter(
            "scamguard_api_refusals_unrecorded_total",
            "Refused admin API requests not written to the audit trail, over its budget",
            &[],
            self.refusals_unrecorded.get(),
        );
    }
}

impl Collect for guard::Guard {
    fn collect(&self, out: &mut Exposition) {
        let (refused, remembered) = self.sizes(Instant::now());
        out.gauge(
            "scamguard_api_refused_sources",
            "Client addresses refused (429) for too many wrong or missing tokens",
            &[],
            refused as i64,
        );
        out.gauge(
            "scamguard_api_auth_failure_sources",
            "Client addresses whose wrong or missing tokens are remembered",
            &[],
            remembered as i64,
        );
    }
}

/// Everything a request handler may touch.
pub struct State {
    pub cfg: ApiConfig,
    pub tokens: Tokens,
    pub live: Arc<Live>,
    pub checker: Arc<dyn Checker>,
    pub collectors: Vec<Arc<dyn Collect>>,
    pub stats: ApiStats,
    /// Signed feeds this agent publishes (`GET /v1/feeds/{feed}`), when configured.
    pub publisher: Option<Arc<crate::lists::feeds::Publisher>>,
    /// Set when the API serves HTTPS.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Where `POST /v1/reports` goes; without it the endpoint answers 404.
    pub reporter: Option<Arc<dyn Reporter>>,
    /// What else `/ready` waits on.
    pub ready: Vec<Arc<dyn Ready>>,
    /// The fleet this agent belongs to (`GET /v1/fleet`); without it the endpoint answers 404.
    pub fleet: Option<Arc<dyn FleetView>>,
    /// Failed tokens and connections by client address.
    guard: Arc<guard::Guard>,
    /// Where a lifted dispute's allow entry goes, and the redress counters.
    pub disputes: redress::Disputes,
    /// The web console's sessions and the app's view of recent calls.
    pub console: console::Console,
}

impl State {
    /// Assemble the state from a validated `cfg`, loading the TLS files and the tokens file it
    /// names: the errors left are those of files (they name file and line).
    pub fn new(
        cfg: ApiConfig,
        live: Arc<Live>,
        checker: Arc<dyn Checker>,
        collectors: Vec<Arc<dyn Collect>>,
    ) -> Result<State, String> {
        let tls = cfg.tls()?.map(tokio_rustls::TlsAcceptor::from);
        let tokens = cfg.tokens()?;
        if tokens.is_empty() {
            tracing::warn!("api: no tokens configured; only /health, /ready and /metrics answer");
        }
        Ok(State {
            tokens,
            live,
            checker,
            collectors,
            stats: ApiStats::default(),
            publisher: None,
            tls,
            reporter: None,
            ready: Vec::new(),
            fleet: None,
            guard: Arc::new(guard::Guard::new(cfg.limits(), Instant::now())),
            disputes: redress::Disputes::default(),
            console: console::Console::new(Duration::from_secs(cfg.session_secs), cfg.max_sessions),
            cfg,
        })
    }

    /// `"https"` or `"http"`: what a client must speak to the listener.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_exposed_listener() {
        let c = |l: &str| {
            ApiConfig {
                listen: l.into(),
                ..ApiConfig::default()
            }
            .validate()
        };
        assert_eq!(c("127.0.0.1:0"), Vec::<String>::new());
        assert_eq!(c("[::1]:8080"), Vec::<String>::new());
        let p = c("0.0.0.0:8080");
        assert!(p.len() == 1 && p[0].contains("not a loopback"), "{p:?}");
        assert_eq!(c("10.1.2.3:8080").len(), 1);
        let p = c("localhost");
        assert!(
            p.len() == 1 && p[0].starts_with("api.listen \"localhost\""),
            "{p:?}"
        );
    }

    #[test]
    fn tls_allows_any_address_and_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["api.example".to_string()]).unwrap();
        let cert = dir.path().join("api.crt");
        let key = dir.path().join("api.key");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        let missing = dir.path().join("gone.key");
        let c = |l: &str, cert: Option<&PathBuf>, key: Option<&PathBuf>| {
            ApiConfig {
                listen: l.into(),
                tls_cert: cert.cloned(),
                tls_key: key.cloned(),
                ..ApiConfig::default()
            }
            .validate()
        };
        assert_eq!(
            c("0.0.0.0:8443", Some(&cert), Some(&key)),
            Vec::<String>::new()
        );
        assert_eq!(
            c("127.0.0.1:0", Some(&cert), Some(&key)),
            Vec::<String>::new()
        );
        // (listen, cert, key, what the error must say)
        let cases = [
            ("0.0.0.0:8443", Some(&cert), None, "without api.tls_key"),
            ("127.0.0.1:0", None, Some(&key), "without api.tls_cert"),
            ("0.0.0.0:8443", Some(&cert), Some(&missing), "gone.key"),
            (
                "0.0.0.0:8443",
                Some(&key),
                Some(&key),
                "api.key: no certificate",
            ),
        ];
        for (listen, cert, key, want) in cases {
            let e = c(listen, cert, key);
            assert!(
                e.len() == 1 && e[0].contains(want),
                "{listen} {cert:?} {key:?}: {e:?}"
            );
        }
    }

    #[test]
    fn a_missing_or_malformed_tokens_file_is_a_config_problem() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("tokens");
        std::fs::write(&good, "ops admin aaaaaaaaaaaaaaaaaaaa\n").unwrap();
        let bad = dir.path().join("bad-tokens");
        std::fs::write(&bad, "# ops\nops root aaaaaaaaaaaaaaaaaaaa\n").unwrap();
        let c = |f: &PathBuf| ApiConfig {
            tokens_file: Some(f.clone()),
            ..ApiConfig::default()
        };
        assert_eq!(c(&good).validate(), Vec::<String>::new());
        let p = c(&bad).validate();
        let want = format!(
            "api.tokens_file: {}:2: role \"root\" unknown",
            bad.display()
        );
        assert!(p.len() == 1 && p[0].starts_with(&want), "{p:?}");
        let p = c(&dir.path().join("gone")).validate();
        assert!(p.len() == 1 && p[0].contains("gone"), "{p:?}");
        // The agent's start makes the same check, with the same words.
        let live = Arc::new(Live::new(
            Arc::new(
                crate::lists::store::Store::open(&crate::lists::store::StoreConfig {
                    data_dir: dir.path().join("data"),
                    ..Default::default()
                })
                .unwrap(),
            ),
            Arc::default(),
            None,
        ));
        struct No;
        impl Checker for No {
            fn check(&self, _: &str, _: Option<&str>, _: Option<&str>) -> Value {
                Value::Null
            }
        }
        let e = State::new(c(&bad), live, Arc::new(No), vec![])
            .err()
            .unwrap();
        assert!(e.starts_with(&want), "{e}");
    }
}
