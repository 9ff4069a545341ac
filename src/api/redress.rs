//! Redress for wrongly blocked callers: the public listener the 603+ `Reason` URL points at
//! (`disposition.redress_url`), with a small dispute form. It is a listener of its own, apart
//! from the admin API: a carrier exposes this one to the public and keeps the admin API inside.
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /` (or `/redress`) | the form: the blocked number, a contact, a statement |
//! | `POST /` (or `/redress`) | `application/x-www-form-urlencoded`; 201 with the dispute's number once durable |
//!
//! No login. Each address (an IPv6 /64) may send `max_per_address` disputes per `window_secs`
//! (then 429), hold `max_connections_per_source` connections, and must send its request in time.
//! The form accepts no HTML: a field holding `<` or `>` or any control character (line breaks
//! in the statement become spaces) is refused with a plain answer, every field has a size cap,
//! and everything echoed back is escaped. The number must be one the numbering plan reads.
//!
//! Disputes are stored by [`crate::lists::store::Store::open_dispute`] (bounded, audited) and
//! resolved through the admin API (`handlers/disputes.rs`), which records the time to resolution
//! here ([`RedressStats`]). Knows nothing of SIP or of how a number came to be blocked.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;

use super::guard::{self, Guard};
use super::http::{full, parse_query, read_body, ResponseBody};
use super::reports::Reporter;
use super::routes::ClientAddr;
use super::server::{serve_site, Site};
use crate::lists::overlay::Live;
use crate::lists::store::{DisputeLimits, NewDispute, StoreError};
use crate::metrics::{Collect, Counter, Exposition, Histogram};

/// The `[redress]` config section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedressConfig {
    /// Serve the dispute form.
    pub enabled: bool,
    /// Listen address (public: this is what `disposition.redress_url` points at).
    pub listen: String,
    /// PEM certificate chain and key: HTTPS only (else plain HTTP, for a TLS proxy in front).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The store list a lifted dispute writes its `allow` entry to.
    pub allow_list: String,
    /// Disputes one address may send per `window_secs`; then 429 until the window ends.
    pub max_per_address: u32,
    pub window_secs: u64,
    /// Addresses whose disputes are counted at once (idle ones are forgotten first).
    pub max_sources: usize,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    /// Seconds a client has for a request's headers, and for its body.
    pub header_timeout_secs: u64,
    pub body_timeout_secs: u64,
    /// Disputes waiting for an operator at once; past it the form asks to try later.
    pub max_open: u64,
    /// Resolved disputes are deleted this long after their resolution.
    pub keep_resolved_days: u64,
}

impl Default for RedressConfig {
    fn default() -> Self {
        RedressConfig {
            enabled: false,
            listen: "127.0.0.1:8090".into(),
            tls_cert: None,
            tls_key: None,
            allow_list: "disputes".into(),
            max_per_address: 5,
            window_secs: 3_600,
            max_sources: 10_000,
            max_connections: 64,
            max_connections_per_source: 4,
            header_timeout_secs: 10,
            body_timeout_secs: 10,
            max_open: 10_000,
            keep_resolved_days: 365,
        }
    }
}

/// Caps of the form's fields, in characters, and of its body in bytes.
const MAX_NUMBER: usize = 32;
const MAX_CONTACT: usize = 200;
const MAX_STATEMENT: usize = 2_000;
const MAX_BODY: usize = 16 * 1024;

impl RedressConfig {
    /// Every problem, each naming the setting and what was expected (the TLS files are read).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if crate::lists::store::valid_list_name(&self.allow_list).is_err() {
            p.push(format!(
                "redress.allow_list {:?}: expected a list name (1-64 of A-Z a-z 0-9 - _ .)",
                self.allow_list
            ));
        }
        if !self.enabled {
            return p;
        }
        if let Err(e) = self.listen.parse::<SocketAddr>() {
            p.push(format!(
                "redress.listen {:?}: {e}; expected ip:port such as 0.0.0.0:8090",
                self.listen
            ));
        }
        if let Err(e) = self.tls() {
            p.push(e);
        }
        for (k, v) in [
            ("max_per_address", u64::from(self.max_per_address)),
            ("window_secs", self.window_secs),
            ("max_sources", self.max_sources as u64),
            ("max_connections", self.max_connections as u64),
            (
                "max_connections_per_source",
                self.max_connections_per_source as u64,
            ),
            ("header_timeout_secs", self.header_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("max_open", self.max_open),
            ("keep_resolved_days", self.keep_resolved_days),
        ] {
            if v == 0 {
                p.push(format!("redress.{k} is 0; expected a positive number"));
            }
        }
        p
    }

    fn tls(&self) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(c), Some(k)) => crate::tls::server_config(c, k)
                .map(Some)
                .map_err(|e| format!("redress.tls: {e}")),
            _ => Err("redress.tls_cert and redress.tls_key: expected both or neither".into()),
        }
    }

    /// What the store bounds disputes by.
    pub fn limits(&self) -> DisputeLimits {
        DisputeLimits {
            max_open: self.max_open,
            keep_resolved_secs: (self.keep_resolved_days.min(100 * 365) * 86_400) as i64,
        }
    }
}

/// Upper bounds of the time-to-resolution histogram, seconds: a minute to a month.
const RESOLUTION_BOUNDS: &[f64] = &[
    60.0,
    600.0,
    3_600.0,
    21_600.0,
    86_400.0,
    259_200.0,
    604_800.0,
    1_209_600.0,
    2_592_000.0,
];

/// Disputes by what became of them, refused submissions, and the time to resolution.
#[derive(Debug)]
pub struct RedressStats {
    pub opened: Counter,
    pub lifted: Counter,
    pub upheld: Counter,
    pub rate_limited: Counter,
    pub invalid: Counter,
    pub full: Counter,
    pub connections_refused: Counter,
    pub tls_failures: Counter,
    pub header_timeouts: Counter,
    /// Seconds from a dispute's opening to its resolution.
    pub resolution: Histogram,
}

impl Default for RedressStats {
    fn default() -> Self {
        RedressStats {
            opened: Counter::default(),
            lifted: Counter::default(),
            upheld: Counter::default(),
            rate_limited: Counter::default(),
            invalid: Counter::default(),
            full: Counter::default(),
            connections_refused: Counter::default(),
            tls_failures: Counter::default(),
            header_timeouts: Counter::default(),
            resolution: Histogram::new(RESOLUTION_BOUNDS),
        }
    }
}

impl Collect for RedressStats {
    fn collect(&self, out: &mut Exposition) {
        let h = "Disputes of blocked callers, by what became of them";
        for (o, c) in [
            ("opened", &self.opened),
            ("lifted", &self.lifted),
            ("upheld", &self.upheld),
        ] {
            out.counter(
                "scamguard_redress_disputes_total",
                h,
                &[("outcome", o)],
                c.get(),
            );
        }
        let h = "Dispute submissions and connections the redress form refused, by why";
        for (w, c) in [
            ("rate_limited", &self.rate_limited),
            ("invalid", &self.invalid),
            ("full", &self.full),
            ("connections", &self.connections_refused),
            ("tls", &self.tls_failures),
            ("header_timeout", &self.header_timeouts),
        ] {
            out.counter("scamguard_redress_refused_total", h, &[("why", w)], c.get());
        }
        out.histogram(
            "scamguard_redress_resolution_seconds",
            "Time from a dispute's opening to an operator's lift or uphold",
            &self.resolution,
        );
    }
}

/// What the admin API's dispute endpoints need of redress.
pub struct Disputes {
    /// `redress.allow_list`.
    pub allow_list: String,
    pub stats: Arc<RedressStats>,
}

impl Default for Disputes {
    fn default() -> Self {
        Disputes {
            allow_list: RedressConfig::default().allow_list,
            stats: Arc::default(),
        }
    }
}

/// The redress listener's state.
pub struct Redress {
    cfg: RedressConfig,
    stats: Arc<RedressStats>,
    live: Arc<Live>,
    /// Reads the number as the numbering plan does (the app's).
    numbers: Arc<dyn Reporter>,
    /// Connections per address, and submissions per address (counted as the API counts failed
    /// tokens: past `max_per_address` in a window, the address is refused for the window).
    guard: Arc<Guard>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Redress {
    /// From a section that has passed validation (the TLS files are read again).
    pub fn new(
        cfg: RedressConfig,
        stats: Arc<RedressStats>,
        live: Arc<Live>,
        numbers: Arc<dyn Reporter>,
    ) -> Result<Redress, String> {
        let tls = cfg.tls()?.map(tokio_rustls::TlsAcceptor::from);
        let limits = guard::Limits {
            max_failures: cfg.max_per_address,
            ban: Duration::from_secs(cfg.window_secs),
            max_sources: cfg.max_sources,
            max_connections: cfg.max_connections_per_source,
        };
        Ok(Redress {
            guard: Arc::new(Guard::new(limits, Instant::now())),
            tls,
            cfg,
            stats,
            live,
            numbers,
        })
    }

    /// `"https"` or `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Answer one request as the listener would (a test may call it without a socket).
    pub async fn answer_request<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<super::BoxError>,
    {
        let req = req.map(|b| {
            b.map_err(|e| std::io::Error::other(e.into()))
                .boxed_unsync()
        });
        let path = req.uri().path();
        if path != "/" && path != "/redress" {
            return page(StatusCode::NOT_FOUND, "Not found", "There is nothing here.");
        }
        match *req.method() {
            Method::GET | Method::HEAD => form(StatusCode::OK, ""),
            Method::POST => self.submit(req).await,
            _ => page(
                StatusCode::METHOD_NOT_ALLOWED,
                "Not allowed",
                "Use the form.",
            ),
        }
    }

    async fn submit(&self, req: Request<super::http::RequestBody>) -> Response<ResponseBody> {
        let addr = req.extensions().get::<ClientAddr>().map(|a| a.0);
        if let Some(ip) = addr.map(|a| a.ip()) {
            let now = Instant::now();
            // Every submission counts, good or bad: the form is no oracle to hammer.
            let refused = self
                .guard
                .refused(ip, now)
                .or_else(|| self.guard.failed(ip, now));
            if let Some(left) = refused {
                self.stats.rate_limited.inc();
                let mut r = page(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many disputes",
                    "Too many disputes came from your address. Please try again later.",
                );
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(left.as_secs().max(1)));
                return r;
            }
        }
        let within = Duration::from_secs(self.cfg.body_timeout_secs);
        let body = match read_body(req, MAX_BODY, within).await {
            Ok(b) => b,
            Err(f) => {
                self.stats.invalid.inc();
                return form(f.0, &f.1);
            }
        };
        let fields = match self.fields(&body) {
            Ok(f) => f,
            Err(why) => {
                self.stats.invalid.inc();
                return form(StatusCode::BAD_REQUEST, &why);
            }
        };
        let (live, limits) = (self.live.clone(), self.cfg.limits());
        let source = addr.map(|a| a.to_string());
        let stored = tokio::task::spawn_blocking(move || {
            let (number, contact, statement) = &fields;
            let d = NewDispute {
                number,
                contact,
                statement,
            };
            live.store
                .open_dispute(d, source.as_deref(), limits, super::handlers::now())
        })
        .await;
        match stored {
            Ok(Ok(d)) => {
                self.stats.opened.inc();
                tracing::info!(dispute = d.id, "redress: dispute opened");
                page(
                    StatusCode::CREATED,
                    "Dispute received",
                    &format!(
                        "Your dispute is number {}. An operator will review it; we will reach you at the contact you gave.",
                        d.id
                    ),
                )
            }
            Ok(Err(StoreError::Full(_))) => {
                self.stats.full.inc();
                page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Please try later",
                    "Too many disputes are waiting for review. Please try again later.",
                )
            }
            other => {
                tracing::error!(result = ?other.map(|r| r.map(|d| d.id)), "redress: cannot store a dispute");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Sorry",
                    "Your dispute could not be stored. Please try again later.",
                )
            }
        }
    }

    /// The form's three fields, checked: (number as E.164, contact, statement).
    fn fields(&self, body: &[u8]) -> Result<(String, String, String), String> {
        let text = std::str::from_utf8(body).map_err(|_| "The form is not UTF-8 text.")?;
        let q = parse_query(text);
        let get = |k: &str| {
            q.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let number = checked("number", &get("number"), MAX_NUMBER, false)?;
        let contact = checked("contact", &get("contact"), MAX_CONTACT, false)?;
        let statement = checked("statement", &get("statement"), MAX_STATEMENT, true)?;
        let e164 = self
            .numbers
            .number(&number)
            .ok_or_else(|| format!("The number {number:?} is not a phone number we can read."))?;
        Ok((e164, contact, statement))
    }
}

/// One field: present, at most `max` characters, no HTML and no control characters (a
/// statement's line breaks become spaces).
fn checked(name: &str, v: &str, max: usize, lines: bool) -> Result<String, String> {
    let v = if lines {
        v.replace("\r\n", " ").replace(['\r', '\n'], " ")
    } else {
        v.to_string()
    };
    if v.is_empty() {
        return Err(format!("The {name} is missing."));
    }
    if v.chars().count() > max {
        return Err(format!("The {name} is longer than {max} characters."));
    }
    if v.contains(['<', '>']) {
        return Err(format!("The {name} may not hold < or > (no HTML, please)."));
    }
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(format!(
            "The {name} holds a control character (U+{:04X}).",
            c as u32
        ));
    }
    Ok(v)
}

/// `s` safe inside HTML text and attribute values.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn html(code: StatusCode, title: &str, body: &str) -> Response<ResponseBody> {
    let text = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n<h1>{}</h1>\n{body}\n</body></html>\n",
        escape(title),
        escape(title)
    );
    let mut r = Response::new(full(Bytes::from(text)));
    *r.status_mut() = code;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Nothing here runs script, loads anything or may be framed.
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A page saying one thing.
fn page(code: StatusCode, title: &str, text: &str) -> Response<ResponseBody> {
    html(code, title, &format!("<p>{}</p>", escape(text)))
}

/// The form, with `problem` (escaped) above it when a submission was refused.
fn form(code: StatusCode, problem: &str) -> Response<ResponseBody> {
    let problem = if problem.is_empty() {
        String::new()
    } else {
        format!("<p><strong>{}</strong></p>\n", escape(problem))
    };
    let body = format!(
        "{problem}<p>If your calls were refused as suspected scam calls and you believe that is wrong, tell us here. An operator reviews every dispute.</p>\n\
         <form method=\"post\" action=\"\">\n\
         <p><label>Your phone number <input name=\"number\" maxlength=\"{MAX_NUMBER}\" required></label></p>\n\
         <p><label>How to reach you (e-mail or phone) <input name=\"contact\" maxlength=\"{MAX_CONTACT}\" required></label></p>\n\
         <p><label>What happened <textarea name=\"statement\" maxlength=\"{MAX_STATEMENT}\" rows=\"6\" cols=\"60\" required></textarea></label></p>\n\
         <p><button type=\"submit\">Send</button></p>\n</form>"
    );
    html(code, "Dispute a blocked call", &body)
}

impl Site for Redress {
    fn max_connections(&self) -> usize {
        self.cfg.max_connections
    }
    fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.header_timeout_secs)
    }
    fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }
    fn tls(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.tls.clone()
    }
    fn connection_refused(&self) {
        self.stats.connections_refused.inc();
    }
    fn tls_failed(&self) {
        self.stats.tls_failures.inc();
    }
    fn header_timed_out(&self) {
        self.stats.header_timeouts.inc();
    }
    fn answer(
        &self,
        req: Request<hyper::body::Incoming>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send {
        self.answer_request(req)
    }
}

/// Serve the form until `shutdown` completes.
pub async fn run(
    listener: tokio::net::TcpListener,
    redress: Arc<Redress>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_site(listener, redress, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_refuse_html_controls_and_long_text() {
        let ok = checked("statement", "line one\r\nline two\nthree", 100, true).unwrap();
        assert_eq!(ok, "line one line two three");
        // (field, value, max, what the refusal says)
        let cases = [
            ("number", "", 32, "The number is missing."),
            ("contact", "<script>", 200, "may not hold < or >"),
            ("contact", "a\u{0}b", 200, "control character (U+0000)"),
            ("number", "+1\r\n202", 32, "control character (U+000D)"),
            (
                "statement",
                &"x".repeat(11),
                10,
                "longer than 10 characters",
            ),
        ];
        for (name, v, max, want) in cases {
            let e = checked(name, v, max, name == "statement").unwrap_err();
            assert!(e.contains(want), "{v:?}: {e}");
        }
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn config_defaults_validate_and_name_problems() {
        assert!(RedressConfig::default().validate().is_empty());
        let c: RedressConfig = toml::from_str(
            "enabled = true\nlisten = \"nowhere\"\nallow_list = \"a b\"\nmax_per_address = 0\n",
        )
        .unwrap();
        let p = c.validate();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("redress.allow_list \"a b\""));
        assert!(p[1].starts_with("redress.listen \"nowhere\""));
        assert_eq!(
            p[2],
            "redress.max_per_address is 0; expected a positive number"
        );
        assert!(toml::from_str::<RedressConfig>("enable = true").is_err());
    }
}
