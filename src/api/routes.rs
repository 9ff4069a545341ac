//! From a request to a reply: the one `match` over method and path, the role each endpoint
//! needs, and the counters every request moves.
//!
//! Takes any request body, so a test can hand it a `Request<Full<Bytes>>` and get exactly what
//! a client on the socket would. Knows nothing of sockets, TLS or connections (that is
//! [`super::server`]) nor of what an endpoint does (that is [`super::handlers`]).

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderMap, AUTHORIZATION};
use hyper::{Method, Request, Response, StatusCode};

use super::auth::{Caller, Denied, Role};
use super::handlers::{admin, check, entries, feeds, lists, monitor, reports, signals};
use super::http::{
    fail_resp, parse_query, percent_decode, BoxError, Fail, Reply, RequestBody, ResponseBody,
};
use super::State;

/// Answer one request as the listener would, counting it in [`super::ApiStats`]. Errors are
/// JSON replies (4xx for the client's mistakes); this never fails and never panics on input.
pub async fn route<B>(st: &State, req: Request<B>) -> Response<ResponseBody>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    st.stats.requests.inc();
    let req = req.map(|b| b.map_err(std::io::Error::other).boxed_unsync());
    let resp = dispatch(st, req).await.unwrap_or_else(fail_resp);
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
    match (&method, segs.as_slice()) {
        (&Method::GET, ["health"]) => Ok(monitor::health()),
        (&Method::GET, ["ready"]) => Ok(monitor::ready(st)),
        (&Method::GET, ["metrics"]) => Ok(monitor::metrics(st)),
        (&Method::GET, ["v1", "lists"]) => {
            auth(st, req.headers(), Role::Read)?;
            lists::all(st).await
        }
        (&Method::GET, ["v1", "lists", list, "entries"]) => {
            auth(st, req.headers(), Role::Read)?;
            entries::page(st, list, &query).await
        }
        (&Method::POST, ["v1", "lists", list, "entries"]) => {
            let who = auth(st, req.headers(), Role::Write)?;
            entries::add(st, who, list.to_string(), req).await
        }
        (&Method::DELETE, ["v1", "lists", list, "entries", pattern]) => {
            let who = auth(st, req.headers(), Role::Write)?;
            entries::remove(st, who, list, pattern).await
        }
        (&Method::POST, ["v1", "lists", list, "import"]) => {
            let who = auth(st, req.headers(), Role::Write)?;
            lists::import(st, who, list.to_string(), &query, req).await
        }
        (&Method::GET, ["v1", "lists", list, "export"]) => {
            auth(st, req.headers(), Role::Read)?;
            lists::export(st, list, &query)
        }
        (&Method::GET, ["v1", "check"]) => {
            auth(st, req.headers(), Role::Read)?;
            check::check(st, &query)
        }
        (&Method::POST, ["v1", "reports"]) => {
            let who = auth(st, req.headers(), Role::Write)?;
            reports::post(st, who, req).await
        }
        (&Method::GET, ["v1", "reports"]) => {
            auth(st, req.headers(), Role::Read)?;
            reports::get(st, &query).await
        }
        (&Method::GET, ["v1", "signals", "velocity", "suggest"]) => {
            auth(st, req.headers(), Role::Read)?;
            signals::velocity_suggest(st)
        }
        // A feed's own token is checked by the handler; only without one is a role needed.
        (&Method::GET, ["v1", "feeds", feed]) => {
            feeds::answer(st, feed, &query, req.headers()).await
        }
        (&Method::GET, ["v1", "audit"]) => {
            auth(st, req.headers(), Role::Admin)?;
            admin::audit(st, &query).await
        }
        (&Method::POST, ["v1", "reload"]) => {
            auth(st, req.headers(), Role::Admin)?;
            admin::reload(st).await
        }
        (_, ["health"] | ["ready"] | ["metrics"] | ["v1", "lists"] | ["v1", "check"])
        | (_, ["v1", "audit"] | ["v1", "reload"] | ["v1", "feeds", _] | ["v1", "reports"])
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

/// The caller behind the `Authorization` header, if its role is at least `need`.
pub(super) fn auth(st: &State, headers: &HeaderMap, need: Role) -> Result<Caller, Fail> {
    let h = headers.get(AUTHORIZATION).map(|v| v.as_bytes());
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
