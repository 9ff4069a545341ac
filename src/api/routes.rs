//! From a request to a reply: the one `match` over method and path, the role each endpoint
//! needs, the refusals (recorded in the audit trail with the client's address, counted against
//! it, and a 429 once it has failed too often), and the counters every request moves.
//!
//! Takes any request body, so a test can hand it a `Request<Full<Bytes>>` and get exactly what
//! a client on the socket would; the client's address comes as a [`ClientAddr`] extension (the
//! listener adds it). Knows nothing of sockets, TLS or connections (that is
//! [`super::server`]) nor of what an endpoint does (that is [`super::handlers`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::auth::{Caller, Denied, Role};
use super::console;
use super::handlers::{
    admin, check, disputes, entries, feeds, fleet, lists, monitor, reports, signals,
};
use super::http::{
    fail_resp, json_resp, parse_query, percent_decode, BoxError, Fail, Reply, RequestBody,
    ResponseBody,
};
use super::State;
use crate::lists::store::{DisputeStatus, Who};
use crate::screening::entry::check_text;

/// The address a request came from: the listener puts it in each request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// What authorising a request and recording its refusal need of it, taken out of the request
/// so that it can be held while the refusal is written.
pub(super) struct Asker {
    method: Method,
    path: String,
    authorization: Option<HeaderValue>,
    pub(super) addr: Option<SocketAddr>,
}

impl Asker {
    fn of(req: &Request<RequestBody>) -> Asker {
        Asker {
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            authorization: req.headers().get(AUTHORIZATION).cloned(),
            addr: req.extensions().get::<ClientAddr>().map(|a| a.0),
        }
    }
}

/// Answer one request as the listener would, counting it in [`super::ApiStats`]. Errors are
/// JSON replies (4xx for the client's mistakes); this never fails and never panics on input.
pub async fn route<B>(st: &State, req: Request<B>) -> Response<ResponseBody>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    st.stats.requests.inc();
    let req = req.map(|b| b.map_err(std::io::Error::other).boxed_unsync());
    let mut resp = dispatch(st, req).await.unwrap_or_else(fail_resp);
    match resp.status().as_u16() {
        401 => st.stats.unauthenticated.inc(),
        403 => st.stats.forbidden.inc(),
        429 => st.stats.rate_limited.inc(),
        408 => {
            // The body did not come in time: the rest of it must not be read as a request.
            st.stats.body_timeouts.inc();
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    if resp.status().is_client_error() {
        st.stats.client_errors.inc();
    } else if resp.status().is_server_error() {
        st.stats.server_errors.inc();
    }
    resp
}

/// Every endpoint of the module doc's table, one arm each, with the role it needs.
async fn dispatch(st: &State, req: Request<RequestBody>) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let segs: Vec<String> = path
        .split('/')
        .skip(1)
        .map(percent_decode)
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| Fail::new(StatusCode::BAD_REQUEST, "bad percent-encoding in path"))?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let asker = Asker::of(&req);
    let open = matches!(segs.as_slice(), ["health"] | ["ready"] | ["metrics"]);
    if !open {
        if let Some(r) = refused(st, &asker) {
            return Ok(r);
        }
    }
    // Query values become stored fields (an import's reason, source, category): no control
    // character gets that far.
    for (k, v) in &query {
        check_text(&format!("query parameter {k}"), v)
            .map_err(|m| Fail::new(StatusCode::BAD_REQUEST, m))?;
    }
    match (&method, segs.as_slice()) {
        (&Method::GET, ["health"]) => Ok(monitor::health()),
        (&Method::GET, ["ready"]) => Ok(monitor::ready(st)),
        (&Method::GET, ["metrics"]) => Ok(monitor::metrics(st)),
        (&Method::GET, ["v1", "lists"]) => {
            auth(st, &asker, Role::Read).await?;
            lists::all(st).await
        }
        (&Method::GET, ["v1", "lists", list, "entries"]) => {
            auth(st, &asker, Role::Read).await?;
            entries::page(st, list, &query).await
        }
        (&Method::POST, ["v1", "lists", list, "entries"]) => {
            let who = auth(st, &asker, Role::Write).await?;
            entries::add(st, who, list.to_string(), req).await
        }
        (&Method::DELETE, ["v1", "lists", list, "entries", pattern]) => {
            let who = auth(st, &asker, Role::Write).await?;
            entries::remove(st, who, list, pattern).await
        }
        (&Method::POST, ["v1", "lists", list, "import"]) => {
            let who = auth(st, &asker, Role::Write).await?;
            lists::import(st, who, list.to_string(), &query, req).await
        }
        (&Method::GET, ["v1", "lists", list, "export"]) => {
            auth(st, &asker, Role::Read).await?;
            lists::export(st, list, &query)
        }
        (&Method::GET, ["v1", "check"]) => {
            auth(st, &asker, Role::Read).await?;
            check::check(st, &query)
        }
        (&Method::POST, ["v1", "reports"]) => {
            let who = auth(st, &asker, Role::Write).await?;
            reports::post(st, who, req).await
        }
        (&Method::GET, ["v1", "reports"]) => {
            auth(st, &asker, Role::Read).await?;
            reports::get(st, &query).await
        }
        (&Method::GET, ["v1", "signals", "velocity", "suggest"]) => {
            auth(st, &asker, Role::Read).await?;
            signals::velocity_suggest(st)
        }
        // A feed's own token is checked by the handler; only without one is a role needed.
        (&Method::GET, ["v1", "feeds", feed]) => {
            feeds::answer(st, feed, &query, req.headers(), &asker).await
        }
        (&Method::GET, ["v1", "fleet"]) => {
            auth(st, &asker, Role::Read).await?;
            fleet::fleet(st)
        }
        (&Method::GET, ["v1", "audit"]) => {
            auth(st, &asker, Role::Admin).await?;
            admin::audit(st, &query).await
        }
        (&Method::POST, ["v1", "reload"]) => {
            auth(st, &asker, Role::Admin).await?;
            admin::reload(st).await
        }
        (_, ["v1", "disputes", rest @ ..]) => disputes_route(st, &asker, rest, &query).await,
        // The console checks its own sessions, roles and CSRF tokens.
        (_, ["console", rest @ ..]) => console::route(st, req, rest, &query, &asker).await,
        (_, ["health"] | ["ready"] | ["metrics"] | ["v1", "lists"] | ["v1", "check"])
        | (_, ["v1", "audit"] | ["v1", "reload"] | ["v1", "feeds", _] | ["v1", "reports"])
        | (_, ["v1", "fleet"])
        | (_, ["v1", "lists", _, "entries" | "import" | "export"])
        | (_, ["v1", "lists", _, "entries", _])
        | (_, ["v1", "signals", "velocity", "suggest"]) => Err(Fail::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(Fail::new(
            StatusCode::NOT_FOUND,
            format!("no endpoint {path}"),
        )),
    }
}

/// `/v1/disputes`, `/v1/disputes/{id}/lift|uphold`: the operator's side of redress.
async fn disputes_route(
    st: &State,
    asker: &Asker,
    rest: &[&str],
    query: &[(String, String)],
) -> Reply {
    let method = &asker.method;
    match (method, rest) {
        (&Method::GET, []) => {
            auth(st, asker, Role::Read).await?;
            disputes::list(st, query).await
        }
        (&Method::POST, [id, "lift"]) => {
            let who = auth(st, asker, Role::Write).await?;
            disputes::resolve(st, who, id, DisputeStatus::Lifted).await
        }
        (&Method::POST, [id, "uphold"]) => {
            let who = auth(st, asker, Role::Write).await?;
            disputes::resolve(st, who, id, DisputeStatus::Upheld).await
        }
        (_, [] | [_, "lift" | "uphold"]) => Err(Fail::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {}", asker.path),
        )),
        _ => Err(Fail::new(
            StatusCode::NOT_FOUND,
            format!("no endpoint {}", asker.path),
        )),
    }
}

/// A 429 for a client address refused for its failed tokens: nothing it sends is looked at,
/// so a refused address learns nothing more about any token.
fn refused(st: &State, asker: &Asker) -> Option<Response<ResponseBody>> {
    let left = st.guard.refused(asker.addr?.ip(), Instant::now())?;
    let secs = left.as_secs().max(1);
    let mut r = json_resp(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({
            "error": format!("too many wrong or missing tokens from this address; try again in {secs} s"),
            "details": [],
        }),
    );
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    Some(r)
}

/// The caller behind the `Authorization` header, if its role is at least `need`. A refusal is
/// recorded in the audit trail with the client's address, and a wrong or missing token counts
/// against that address.
pub(super) async fn auth(st: &State, asker: &Asker, need: Role) -> Result<Caller, Fail> {
    let h = asker.authorization.as_ref().map(HeaderValue::as_bytes);
    let addr = asker.addr;
    let denied = match st.tokens.authorize(h, need) {
        Ok(mut c) => {
            c.source = addr.map(|a| a.to_string());
            return Ok(c);
        }
        Err(d) => d,
    };
    let now = Instant::now();
    let (fail, why, name, banned) = match denied {
        Denied::Unauthenticated => (
            Fail::new(StatusCode::UNAUTHORIZED, "missing or unknown bearer token"),
            if h.is_some() {
                "unknown token"
            } else {
                "missing token"
            }
            .to_string(),
            String::new(),
            addr.and_then(|a| st.guard.failed(a.ip(), now)),
        ),
        Denied::Forbidden => (
            Fail::new(
                StatusCode::FORBIDDEN,
                format!("this token may not do this; role {} needed", need.as_str()),
            ),
            format!("role {} needed", need.as_str()),
            // Any known token has at least the read role.
            st.tokens
                .authorize(h, Role::Read)
                .map(|c| c.name)
                .unwrap_or_default(),
            None,
        ),
    };
    if let Some(ban) = banned {
        tracing::warn!(
            source = %addr.map(|a| a.ip().to_string()).unwrap_or_default(),
            "api: too many wrong or missing tokens; address refused for {} s",
            ban.as_secs()
        );
    }
    let refusal = Refusal {
        status: fail.0,
        why,
        name,
        banned,
    };
    record_refusal(st, asker, refusal, now).await;
    Err(fail)
}

/// A refused request, for the audit trail.
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) why: String,
    /// The token's name when it was known (a role too low).
    pub(super) name: String,
    /// Set when this refusal got the address refused, for so long.
    pub(super) banned: Option<Duration>,
}

/// Write one refused request to the audit trail, within the recording budget (past it the
/// refusal is only counted, and the next record says how many were not written).
pub(super) async fn record_refusal(st: &State, asker: &Asker, r: Refusal, now: Instant) {
    let unrecorded = match st.guard.may_record(now) {
        Ok(n) => n,
        Err(()) => {
            st.stats.refusals_unrecorded.inc();
            return;
        }
    };
    let mut detail = json!({
        "method": asker.method.as_str(),
        "path": asker.path,
        "status": r.status.as_u16(),
        "why": r.why,
    });
    if let Some(b) = r.banned {
        detail["refused_for_secs"] = json!(b.as_secs());
    }
    if unrecorded > 0 {
        detail["unrecorded_before"] = json!(unrecorded);
    }
    let store = st.live.store.clone();
    let source = asker.addr.map(|a| a.to_string());
    let name = r.name;
    let at = super::handlers::now();
    let r = tokio::task::spawn_blocking(move || {
        let who = Who {
            name: &name,
            source: source.as_deref(),
        };
        store.audit_refused(&[(at, who, detail)])
    })
    .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "api: cannot record a refused request"),
        Err(e) => tracing::error!(error = %e, "api: cannot record a refused request"),
    }
}
