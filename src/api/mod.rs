//! The admin HTTP API (hyper 1): operators read and change lists, check numbers, read the audit
//! trail, reload list files; monitoring reads health, readiness and metrics.
//!
//! Every endpoint is one arm of the `match` in [`route`]:
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
//! Knows nothing of SIP. Decisions come from a [`Checker`] the app passes in; list changes go
//! through [`crate::lists::overlay::Live`].

pub mod auth;
pub mod reports;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::lists::import::{self, ImportDefaults};
use crate::lists::overlay::{Live, WriteError};
use crate::lists::store::{PageQuery, StoreError, StoredEntry};
use crate::metrics::{Collect, Counter, Exposition};
use crate::screening::EntryAction;

use auth::{Caller, Denied, Role, Tokens};
pub use reports::Reporter;

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
    /// Refuse settings that would expose the API unsafely.
    pub fn validate(&self) -> Result<SocketAddr, String> {
        let addr: SocketAddr = self.listen.parse().map_err(|e| {
            format!(
                "api.listen {:?}: {e}; expected ip:port such as 127.0.0.1:8080",
                self.listen
            )
        })?;
        let tls = self.tls()?;
        if tls.is_none() && !addr.ip().is_loopback() {
            return Err(format!(
                "api.listen {addr} is not a loopback address and api.tls_cert/tls_key are not set; \
                 set both to serve HTTPS, or listen on 127.0.0.1 or ::1"
            ));
        }
        if self.max_body_bytes == 0 || self.max_import_bytes == 0 || self.max_connections == 0 {
            return Err(
                "api.max_body_bytes, max_import_bytes and max_connections must be > 0".into(),
            );
        }
        Ok(addr)
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
    /// Assemble the state, loading the tokens file named in `cfg` (errors name file and line).
    pub fn new(
        cfg: ApiConfig,
        live: Arc<Live>,
        checker: Arc<dyn Checker>,
        collectors: Vec<Arc<dyn Collect>>,
    ) -> Result<State, String> {
        cfg.validate()?;
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

type Body = BoxBody<Bytes, std::io::Error>;

/// Serve until `shutdown` completes; connections in progress finish their current request.
pub async fn run(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(state.cfg.max_connections));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "api: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let st = state.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(acceptor) = st.tls.clone() else {
                return serve(stream, st, stop).await;
            };
            // The handshake runs here, in the connection's own task, so a slow or hostile
            // client holds one permit and never the accept loop.
            match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve(tls, st, stop).await,
                Ok(Err(e)) => {
                    st.stats.tls_handshake_failures.inc();
                    tracing::debug!(peer = %peer, error = %e, "api: TLS handshake failed");
                }
                Err(_) => {
                    st.stats.tls_handshake_failures.inc();
                    tracing::debug!(peer = %peer, "api: TLS handshake timed out");
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}

/// How long a client may take to send a request's headers, or to finish a TLS handshake.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/1.1 on one connection, plain or TLS, until the client leaves or the server stops.
async fn serve<S>(stream: S, st: Arc<State>, mut stop: tokio::sync::watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let st = st.clone();
        async move { Ok::<_, Infallible>(handle(st, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    st.stats.requests.inc();
    let resp = route(&st, req).await;
    match resp.status().as_u16() {
        401 => st.stats.unauthenticated.inc(),
        403 => st.stats.forbidden.inc(),
        _ => {}
    }
    if resp.status().is_client_error() {
        st.stats.client_errors.inc();
    } else if resp.status().is_server_error() {
        st.stats.server_errors.inc();
    }
    resp
}

/// An error reply: status, message and details.
struct Fail(StatusCode, String, Vec<String>);

impl Fail {
    fn new(code: StatusCode, msg: impl Into<String>) -> Fail {
        Fail(code, msg.into(), vec![])
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        let code = match &e {
            StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            StoreError::Full(_) => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if code.is_server_error() {
            tracing::error!(error = %e, "api: store failure");
        }
        Fail::new(code, e.to_string())
    }
}

impl From<WriteError> for Fail {
    fn from(e: WriteError) -> Fail {
        match e {
            WriteError::Rejected(details) => Fail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid entries; nothing was written".into(),
                details,
            ),
            WriteError::Store(e) => e.into(),
        }
    }
}

fn json_resp(code: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(v.to_string())));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn fail_resp(f: Fail) -> Response<Body> {
    json_resp(f.0, &json!({"error": f.1, "details": f.2}))
}

type Reply = Result<Response<Body>, Fail>;

async fn route(st: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let segs: Vec<String> = match path
        .split('/')
        .skip(1)
        .map(percent_decode)
        .collect::<Option<Vec<String>>>()
    {
        Some(s) => s,
        None => {
            return fail_resp(Fail::new(
                StatusCode::BAD_REQUEST,
                "bad percent-encoding in path",
            ))
        }
    };
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let r: Reply = match (&method, segs.as_slice()) {
        (&Method::GET, ["health"]) => Ok(json_resp(StatusCode::OK, &json!({"status": "ok"}))),
        (&Method::GET, ["ready"]) => {
            let ready = st.live.ready();
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Ok(json_resp(code, &json!({"ready": ready})))
        }
        (&Method::GET, ["metrics"]) => Ok(metrics(st)),
        (&Method::GET, ["v1", "lists"]) => match auth(st, &req, Role::Read) {
            Ok(_) => lists(st).await,
            Err(f) => Err(f),
        },
        (&Method::GET, ["v1", "lists", list, "entries"]) => match auth(st, &req, Role::Read) {
            Ok(_) => entries(st, list, &query).await,
            Err(f) => Err(f),
        },
        (&Method::POST, ["v1", "lists", list, "entries"]) => match auth(st, &req, Role::Write) {
            Ok(who) => add(st, who, list.to_string(), req).await,
            Err(f) => Err(f),
        },
        (&Method::DELETE, ["v1", "lists", list, "entries", pattern]) => {
            match auth(st, &req, Role::Write) {
                Ok(who) => remove(st, who, list, pattern).await,
                Err(f) => Err(f),
            }
        }
        (&Method::POST, ["v1", "lists", list, "import"]) => match auth(st, &req, Role::Write) {
            Ok(who) => import_list(st, who, list.to_string(), &query, req).await,
            Err(f) => Err(f),
        },
        (&Method::GET, ["v1", "lists", list, "export"]) => match auth(st, &req, Role::Read) {
            Ok(_) => export(st, list, &query),
            Err(f) => Err(f),
        },
        (&Method::GET, ["v1", "check"]) => match auth(st, &req, Role::Read) {
            Ok(_) => check(st, &query),
            Err(f) => Err(f),
        },
        (&Method::POST, ["v1", "reports"]) => match auth(st, &req, Role::Write) {
            Ok(who) => reports::post(st, who, req).await,
            Err(f) => Err(f),
        },
        (&Method::GET, ["v1", "reports"]) => match auth(st, &req, Role::Read) {
            Ok(_) => reports::get(st, &query).await,
            Err(f) => Err(f),
        },
        (&Method::GET, ["v1", "feeds", feed]) => feed_answer(st, feed, &query, &req).await,
        (&Method::GET, ["v1", "audit"]) => match auth(st, &req, Role::Admin) {
            Ok(_) => audit(st, &query).await,
            Err(f) => Err(f),
        },
        (&Method::POST, ["v1", "reload"]) => match auth(st, &req, Role::Admin) {
            Ok(_) => reload(st).await,
            Err(f) => Err(f),
        },
        (_, ["health"] | ["ready"] | ["metrics"] | ["v1", "lists"] | ["v1", "check"])
        | (_, ["v1", "audit"] | ["v1", "reload"] | ["v1", "feeds", _] | ["v1", "reports"])
        | (_, ["v1", "lists", _, "entries" | "import" | "export"])
        | (_, ["v1", "lists", _, "entries", _]) => Err(Fail::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(Fail::new(
            StatusCode::NOT_FOUND,
            format!("no endpoint {path}"),
        )),
    };
    r.unwrap_or_else(fail_resp)
}

fn auth(st: &State, req: &Request<Incoming>, need: Role) -> Result<Caller, Fail> {
    let h = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    st.tokens.authorize(h, need).map_err(|d| match d {
        Denied::Unauthenticated => {
            Fail::new(StatusCode::UNAUTHORIZED, "missing or unknown bearer token")
        }
        Denied::Forbidden => Fail::new(
            StatusCode::FORBIDDEN,
            format!("this token may not do this; role {} needed", need.as_str()),
        ),
    })
}

fn metrics(st: &State) -> Response<Body> {
    let mut e = Exposition::default();
    st.stats.collect(&mut e);
    st.live.rules.stats.collect(&mut e);
    for c in &st.collectors {
        c.collect(&mut e);
    }
    let mut r = Response::new(full(Bytes::from(e.finish())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// Run blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Fail> + Send + 'static,
) -> Result<T, Fail> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "api: blocking task failed");
        Err(Fail::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
        ))
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn lists(st: &Arc<State>) -> Reply {
    let live = st.live.clone();
    let v = blocking(move || Ok(live.lists()?)).await?;
    Ok(json_resp(StatusCode::OK, &json!({ "lists": v })))
}

fn list_name(list: &str) -> Result<(), Fail> {
    crate::lists::store::valid_list_name(list).map_err(Fail::from)
}

fn limit(st: &State, q: &[(String, String)], default: usize) -> Result<usize, Fail> {
    match qget(q, "limit") {
        None => Ok(default.min(st.cfg.max_page)),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n.min(st.cfg.max_page)),
            _ => Err(Fail::new(
                StatusCode::BAD_REQUEST,
                format!("limit {s:?}: expected a whole number >= 1"),
            )),
        },
    }
}

async fn entries(st: &Arc<State>, list: &str, q: &[(String, String)]) -> Reply {
    list_name(list)?;
    let limit = limit(st, q, 100)?;
    let prefix = qget(q, "prefix").map(str::to_string);
    let cursor = qget(q, "cursor").map(str::to_string);
    let (live, list) = (st.live.clone(), list.to_string());
    let page = blocking(move || {
        let pq = PageQuery {
            prefix: prefix.as_deref(),
            cursor: cursor.as_deref(),
            limit,
        };
        Ok(live.store.page(&list, &pq)?)
    })
    .await?;
    let next = (page.len() == limit).then(|| page.last().map(|e| e.pattern.clone()));
    Ok(json_resp(
        StatusCode::OK,
        &json!({"entries": page, "next_cursor": next.flatten()}),
    ))
}

async fn read_body(req: Request<Incoming>, cap: usize) -> Result<Bytes, Fail> {
    let too_big = || {
        Fail::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {cap} bytes"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > cap as u64 {
            return Err(too_big());
        }
    }
    match Limited::new(req.into_body(), cap).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_big()),
        Err(e) => Err(Fail::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
    }
}

/// An entry as sent by an operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryIn {
    pattern: String,
    action: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    source: String,
    /// Unix seconds, or a date `2027-01-31` / RFC 3339 date-time.
    #[serde(default)]
    expires: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<Value>),
    One(Value),
}

/// Parse an expiry: unix seconds, `YYYY-MM-DD` (00:00 UTC) or RFC 3339.
pub fn parse_expires(v: &Value) -> Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("expires {n}: expected whole unix seconds")),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => parse_time(s).map(Some),
        other => Err(format!(
            "expires {other}: expected unix seconds, YYYY-MM-DD or an RFC 3339 date-time"
        )),
    }
}

fn parse_time(s: &str) -> Result<i64, String> {
    match crate::lists::file::parse_expiry(s)? {
        Some(t) => Ok(t),
        None => Err("empty time; expected YYYY-MM-DD or an RFC 3339 date-time".into()),
    }
}

fn entry_in(v: Value, list: &str) -> Result<StoredEntry, String> {
    let e: EntryIn = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let action = EntryAction::parse(&e.action)
        .ok_or_else(|| format!("action {:?}: expected allow, warn or block", e.action))?;
    let expires = match &e.expires {
        Some(v) => parse_expires(v)?,
        None => None,
    };
    Ok(StoredEntry {
        list: list.to_string(),
        pattern: e.pattern,
        action,
        category: e.category,
        reason: e.reason,
        source: e.source,
        expires,
        created: 0,
        updated: 0,
    })
}

async fn add(st: &Arc<State>, who: Caller, list: String, req: Request<Incoming>) -> Reply {
    list_name(&list)?;
    let body = read_body(req, st.cfg.max_body_bytes).await?;
    let parsed: OneOrMany = serde_json::from_slice(&body)
        .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))?;
    let (items, many) = match parsed {
        OneOrMany::Many(v) => (v, true),
        OneOrMany::One(v) => (vec![v], false),
    };
    if items.is_empty() {
        return Err(Fail::new(
            StatusCode::BAD_REQUEST,
            "empty array: nothing to add",
        ));
    }
    let mut good = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for (i, v) in items.into_iter().enumerate() {
        match entry_in(v, &list) {
            Ok(e) => good.push(e),
            Err(m) => bad.push(format!("entry {}: {m}", i + 1)),
        }
    }
    if !bad.is_empty() {
        return Err(Fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid entries; nothing was written".into(),
            bad,
        ));
    }
    let live = st.live.clone();
    let changes = blocking(move || Ok(live.add(&who.name, &list, good, now())?)).await?;
    let out: Vec<&StoredEntry> = changes
        .iter()
        .filter_map(|c| match c {
            crate::lists::store::Change::Added(e) => Some(e),
            crate::lists::store::Change::Updated { after, .. } => Some(after),
            crate::lists::store::Change::Removed(_) => None,
        })
        .collect();
    let body = if many {
        json!({ "entries": out })
    } else {
        json!(out.first())
    };
    Ok(json_resp(StatusCode::CREATED, &body))
}

async fn remove(st: &Arc<State>, who: Caller, list: &str, pattern: &str) -> Reply {
    list_name(list)?;
    let (live, list, pattern) = (st.live.clone(), list.to_string(), pattern.to_string());
    let gone = blocking(move || Ok(live.remove(&who.name, &list, &pattern, now())?)).await?;
    match gone {
        Some(e) => Ok(json_resp(StatusCode::OK, &json!({ "removed": e }))),
        None => Err(Fail::new(
            StatusCode::NOT_FOUND,
            "no such entry in this list",
        )),
    }
}

fn qbool(q: &[(String, String)], k: &str) -> Result<bool, Fail> {
    match qget(q, k) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(v) => Err(Fail::new(
            StatusCode::BAD_REQUEST,
            format!("{k}={v:?}: expected true or false"),
        )),
    }
}

async fn import_list(
    st: &Arc<State>,
    who: Caller,
    list: String,
    q: &[(String, String)],
    req: Request<Incoming>,
) -> Reply {
    list_name(&list)?;
    let format = qget(q, "format").unwrap_or("csv").to_string();
    if !["csv", "ftc", "plain"].contains(&format.as_str()) {
        return Err(Fail::new(
            StatusCode::BAD_REQUEST,
            format!("format {format:?}: expected csv, ftc or plain"),
        ));
    }
    let replace = qbool(q, "replace")?;
    let action = match qget(q, "action") {
        None => {
            if format == "ftc" {
                EntryAction::Warn
            } else {
                EntryAction::Block
            }
        }
        Some(a) => EntryAction::parse(a).ok_or_else(|| {
            Fail::new(
                StatusCode::BAD_REQUEST,
                format!("action {a:?}: expected allow, warn or block"),
            )
        })?,
    };
    let expires = match qget(q, "expires") {
        Some(s) => parse_expires(&Value::String(s.to_string()))
            .map_err(|m| Fail::new(StatusCode::BAD_REQUEST, m))?,
        None => None,
    };
    let defaults = ImportDefaults {
        action,
        category: qget(q, "category")
            .unwrap_or(if format == "ftc" { "ftc-dnc" } else { "import" })
            .to_string(),
        reason: qget(q, "reason").unwrap_or("").to_string(),
        source: qget(q, "source")
            .unwrap_or(if format == "ftc" {
                "FTC DNC reported calls"
            } else {
                "import"
            })
            .to_string(),
        expires,
    };
    let body = read_body(req, st.cfg.max_import_bytes).await?;
    let live = st.live.clone();
    let (sum, skipped) = blocking(move || {
        let text = std::str::from_utf8(&body)
            .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, format!("body is not UTF-8: {e}")))?;
        let file = format!("import.{format}");
        let (entries, skipped) =
            import::parse_format(text, &format, &file, &defaults).map_err(|d| {
                Fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "the import has bad lines; nothing was written".into(),
                    d,
                )
            })?;
        let detail = format!("format={format}");
        let sum = live.import(&who.name, &list, entries, replace, now(), &detail)?;
        Ok((sum, skipped))
    })
    .await?;
    Ok(json_resp(
        StatusCode::CREATED,
        &json!({"list": sum.list, "written": sum.written, "replaced": sum.replaced, "skipped": skipped}),
    ))
}

fn export(st: &Arc<State>, list: &str, q: &[(String, String)]) -> Reply {
    list_name(list)?;
    match qget(q, "format").unwrap_or("csv") {
        "csv" => {}
        f => {
            return Err(Fail::new(
                StatusCode::BAD_REQUEST,
                format!("format {f:?}: expected csv"),
            ))
        }
    }
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    let (live, list) = (st.live.clone(), list.to_string());
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut buf = String::from(crate::lists::csv::CSV_HEADER);
        buf.push('\n');
        let res = live.store.for_each(Some(&list), |e| {
            crate::lists::csv::csv_line(&e, &mut buf);
            if buf.len() >= 64 * 1024 {
                let chunk = Bytes::from(std::mem::take(&mut buf));
                // The client went away: stop reading the store.
                return rt.block_on(tx.send_data(chunk)).is_ok();
            }
            true
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "api: export failed part-way");
            // Aborting makes the client see a broken body rather than a short, valid-looking CSV.
            tx.abort(std::io::Error::other("export failed"));
            return;
        }
        if !buf.is_empty() {
            let _ = rt.block_on(tx.send_data(Bytes::from(buf)));
        }
    });
    let mut r = Response::new(body.boxed());
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    Ok(r)
}

fn check(st: &State, q: &[(String, String)]) -> Reply {
    let caller = qget(q, "caller")
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| {
            Fail::new(
                StatusCode::BAD_REQUEST,
                "caller is required: /v1/check?caller=+12025550143",
            )
        })?;
    let v = st
        .checker
        .check(caller, qget(q, "callee"), qget(q, "display"));
    Ok(json_resp(StatusCode::OK, &v))
}

async fn audit(st: &Arc<State>, q: &[(String, String)]) -> Reply {
    let since = match qget(q, "since") {
        None => 0,
        Some(s) => s.parse::<i64>().or_else(|_| parse_time(s)).map_err(|_| {
            Fail::new(
                StatusCode::BAD_REQUEST,
                format!("since {s:?}: expected unix seconds or an RFC 3339 date-time"),
            )
        })?,
    };
    let limit = limit(st, q, 100)?;
    let live = st.live.clone();
    let v = blocking(move || Ok(live.store.audit(since, limit)?)).await?;
    Ok(json_resp(StatusCode::OK, &json!({ "records": v })))
}

async fn reload(st: &Arc<State>) -> Reply {
    let live = st.live.clone();
    let errors = blocking(move || Ok(live.reload())).await?;
    if errors.is_empty() {
        Ok(json_resp(
            StatusCode::OK,
            &json!({"status": "reloaded", "errors": []}),
        ))
    } else {
        Err(Fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "some list files were refused; their previous versions stay active".into(),
            errors,
        ))
    }
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// `GET /v1/feeds/{feed}[?since=V]`: a signed snapshot or increment (see docs/feeds.md). A
/// feed's own token reads that feed only; any `read` token reads every feed.
async fn feed_answer(
    st: &Arc<State>,
    feed: &str,
    query: &[(String, String)],
    req: &Request<Incoming>,
) -> Reply {
    let Some(p) = st.publisher.clone() else {
        return Err(Fail::new(
            StatusCode::NOT_FOUND,
            "this agent publishes no feeds",
        ));
    };
    if p.feed(feed).is_none() {
        return Err(Fail::new(
            StatusCode::NOT_FOUND,
            format!("no feed {feed:?}"),
        ));
    }
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| p.feed_token_ok(feed, t)) {
        auth(st, req, Role::Read)?;
    }
    let since =
        match qget(query, "since") {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                Fail::new(StatusCode::BAD_REQUEST, "since: expected a version number")
            })?),
        };
    let inm = req
        .headers()
        .get(hyper::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let name = feed.to_string();
    let a = tokio::task::spawn_blocking(move || p.answer(&name, since, inm.as_deref(), now()))
        .await
        .map_err(|e| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            tracing::error!(error = %e, "api: feed answer failed");
            Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e)
        })?
        .ok_or_else(|| Fail::new(StatusCode::NOT_FOUND, format!("no feed {feed:?}")))?;
    let hv = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""));
    let mut r = match a.body {
        Some(b) => {
            let mut r = Response::new(full(b));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r.headers_mut()
                .insert(crate::lists::feeds::SIGNATURE_HEADER, hv(&a.signature));
            r
        }
        None => {
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        }
    };
    r.headers_mut().insert(
        crate::lists::feeds::VERSION_HEADER,
        hv(&a.version.to_string()),
    );
    r.headers_mut().insert(hyper::header::ETAG, hv(&a.etag));
    Ok(r)
}

fn qget<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

/// `a=1&b=x%2By` -> pairs; `+` means space (form encoding). Undecodable pairs are dropped.
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .take(32)
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((
                percent_decode(&k.replace('+', " "))?,
                percent_decode(&v.replace('+', " "))?,
            ))
        })
        .collect()
}

/// Decode `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(h).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_path_decoding() {
        assert_eq!(percent_decode("%2B1202%2A").as_deref(), Some("+1202*"));
        assert_eq!(percent_decode("+1202*").as_deref(), Some("+1202*"));
        assert_eq!(percent_decode("%2").as_deref(), None);
        assert_eq!(percent_decode("%zz").as_deref(), None);
        assert_eq!(percent_decode("%ff").as_deref(), None);
        let q = parse_query("caller=%2B12025550143&display=IRS+Dept&x&bad=%g1");
        assert_eq!(
            q,
            [
                ("caller".to_string(), "+12025550143".to_string()),
                ("display".to_string(), "IRS Dept".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn expiry_forms() {
        for (v, want) in [
            (json!(null), Ok(None)),
            (json!(1800000000), Ok(Some(1800000000))),
            (json!("2027-01-31"), Ok(Some(1801353600))),
            (json!("2027-01-31T18:00:00Z"), Ok(Some(1801418400))),
            (json!(""), Ok(None)),
        ] {
            assert_eq!(parse_expires(&v), want, "{v}");
        }
        for v in [json!("tomorrow"), json!(1.5), json!(true)] {
            assert!(parse_expires(&v).is_err(), "{v}");
        }
    }

    #[test]
    fn refuses_exposed_listener() {
        let c = |l: &str| {
            ApiConfig {
                listen: l.into(),
                ..ApiConfig::default()
            }
            .validate()
        };
        assert!(c("127.0.0.1:0").is_ok());
        assert!(c("[::1]:8080").is_ok());
        assert!(c("0.0.0.0:8080").unwrap_err().contains("not a loopback"));
        assert!(c("10.1.2.3:8080").is_err());
        assert!(c("localhost").is_err());
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
        assert!(c("0.0.0.0:8443", Some(&cert), Some(&key)).is_ok());
        assert!(c("127.0.0.1:0", Some(&cert), Some(&key)).is_ok());
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
            let e = c(listen, cert, key).unwrap_err();
            assert!(e.contains(want), "{listen} {cert:?} {key:?}: {e}");
        }
    }
}
