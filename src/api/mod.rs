//! The admin HTTP API (hyper 1): operators read and change lists, check numbers, read the audit
//! trail, reload list files; monitoring reads health, readiness and metrics.
//!
//! Every endpoint is one arm of the `match` in `routes.rs`; [`route`] answers a request with or
//! without a socket, so tests need no port:
//!
//! | method and path | role | what |
//! | --- | --- | --- |
//! | `GET /health` | none | the process answers |
//! | `GET /ready` | none | lists loaded (503 until then) |
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
//! | `GET /v1/audit?since=&limit=` | admin | who changed what, when, before and after |
//! | `POST /v1/reload` | admin | re-read list files; per-file errors |
//!
//! Tokens and roles are in [`auth`]. Errors are JSON `{"error": "...", "details": [...]}`; bad
//! requests get a 4xx, never a panic; bodies are capped before they are read.
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
mod handlers;
mod http;
mod routes;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::lists::overlay::Live;
use crate::metrics::{Collect, Counter, Exposition};

use auth::Tokens;
pub use handlers::parse_expires;
pub use handlers::reports::{self, Reporter};
pub use http::{BoxError, ResponseBody};
pub use routes::route;
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
    /// Largest page of entries or audit records.
    pub max_page: usize,
}

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
            max_page: 1000,
        }
    }
}

impl ApiConfig {
    /// Every problem, each naming the setting and what was expected; refuses settings that
    /// would expose the API unsafely. Reads the TLS files, so that a missing or mismatched one
    /// is reported with the rest.
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
        if self.max_body_bytes == 0 || self.max_import_bytes == 0 || self.max_connections == 0 {
            p.push("api.max_body_bytes, max_import_bytes and max_connections must be > 0".into());
        }
        p
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

/// Counters of the API.
#[derive(Debug, Default)]
pub struct ApiStats {
    pub requests: Counter,
    pub client_errors: Counter,
    pub server_errors: Counter,
    pub unauthenticated: Counter,
    pub forbidden: Counter,
    pub tls_handshake_failures: Counter,
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
        let tokens = match &cfg.tokens_file {
            Some(p) => Tokens::load(p).map_err(|e| e.to_string())?,
            None => Tokens::default(),
        };
        if tokens.is_empty() {
            tracing::warn!("api: no tokens configured; only /health, /ready and /metrics answer");
        }
        Ok(State {
            cfg,
            tokens,
            live,
            checker,
            collectors,
            stats: ApiStats::default(),
            publisher: None,
            tls,
            reporter: None,
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
}
