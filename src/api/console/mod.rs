//! The web console, served under `/console` by the admin listener: what an operator sees of the
//! agent (live verdicts, an overview, check and what-if, lists, reports, feeds, audit) and the
//! few things they steer (entries, imports, reports, disputes).
//!
//! Pages are HTML rendered here; htmx and its Server-Sent Events extension (vendored, see
//! `assets/README.md`) swap the live tail in without any script of ours, so the CSP allows no
//! inline script at all.
//!
//! Access is the API's: the same tokens and roles. `POST /console/login` exchanges a token for
//! a session cookie ([`session`]); every page and action checks its role here, on the server,
//! and every write carries the session's CSRF token (and a cross-site `Origin` is refused). A
//! wrong token at the login form counts against the address like a wrong bearer token
//! (`guard.rs`: 429 past the limit) and is audited as a refused request. Over a non-loopback
//! address the listener speaks HTTPS only, so the console does too, and its cookie is `Secure`.
//!
//! | path | role | what |
//! | --- | --- | --- |
//! | `GET /console/login`, `POST /console/login`, `POST /console/logout` | none | the session |
//! | `GET /console/assets/{file}` | none | htmx, its SSE extension, the stylesheet |
//! | `GET /console/live?caller=&callee=&action=&reason=&source=` | read | the live tail; `/console/live/stream` is its event stream, `/console/live/{seq}` a call's detail |
//! | `GET /console/overview` | read | calls by action, top blocked callers, campaigns, wangiri, freshness |
//! | `GET /console/check`, `GET /console/whatif` | read | a number's verdict; a change previewed over the recent calls |
//! | `GET /console/lists`, `GET /console/lists/{list}` | read | lists, hit counters, entries |
//! | `POST /console/lists/{list}/add`, `/remove`, `/import` | write | entries; an import (a file uploaded as `multipart/form-data`, or pasted) is a dry-run diff until confirmed |
//! | `GET /console/imports/{id}` | write | a confirmed import's progress bar, polled by htmx until it ends |
//! | `GET /console/reports`, `POST /console/reports/{promote,dismiss,allow}` | read, write | reported callers and the operator's decision |
//! | `GET /console/disputes`, `POST /console/disputes/{id}/{lift,uphold}` | read, write | open disputes of blocked callers and the operator's decision (the API's own) |
//! | `GET /console/feeds` | read | publishers and subscriptions |
//! | `GET /console/audit` | admin | who changed what, before and after |
//!
//! Knows nothing of SIP or of how a call is decided: the app hands in a [`Desk`] for the recent
//! calls and the decisions the console asks for.

mod html;
mod imports;
mod multipart;
mod pages;
pub mod recent;
mod session;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::header::{HeaderValue, COOKIE, HOST, ORIGIN, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};

use super::auth::Role;
use super::http::{parse_query, read_body, Reply, RequestBody, ResponseBody};
use super::routes::{record_refusal, Asker, Refusal};
use super::State;
use crate::screening::{Action, Entry};

pub use recent::{Facts, Recent, Row};
use session::{Session, Sessions};

/// What the console asks of the app: the recent calls and the decisions it cannot make alone.
pub trait Desk: Send + Sync {
    /// The ring the app fills as it screens calls.
    fn recent(&self) -> Arc<Recent>;
    /// Decide `rows` again as questions, with the rules in force and then with `change`, at
    /// the time each call came; the rows whose action would differ, with both actions.
    fn what_if(&self, rows: &[Arc<Row>], change: &Change) -> Vec<Changed>;
    /// The entry in force now that wins for `caller`, and its list: what a verdict citing
    /// that list matched.
    fn entry(&self, caller: &str) -> Option<(String, Entry)>;
    /// Calls whose verdict cited each list or signal, since the agent started.
    fn hits(&self) -> Vec<(String, u64)>;
    /// The policy's `warn_at` and `block_at`.
    fn thresholds(&self) -> (i32, i32);
    /// Subscribed feeds, one line each.
    fn subscriptions(&self) -> Vec<crate::lists::feeds::FeedStatus>;
}

/// A change to preview over the recent calls.
#[derive(Debug, Clone)]
pub enum Change {
    /// One more entry, as if it were on a list.
    Entry(Entry),
    /// Other score thresholds for the default policy (tenants keep theirs).
    Thresholds { warn_at: i32, block_at: i32 },
}

/// A recent call whose verdict the change would turn.
#[derive(Debug, Clone)]
pub struct Changed {
    pub row: Arc<Row>,
    pub before: Action,
    pub after: Action,
}

/// The console's state inside the API's [`State`].
pub struct Console {
    sessions: Sessions,
    /// List imports waiting for confirmation, and running.
    imports: imports::Imports,
    /// Set by the app; without it the live tail, overview and what-if say there are no calls.
    pub desk: Option<Arc<dyn Desk>>,
}

impl Console {
    pub fn new(session_ttl: Duration, max_sessions: usize) -> Console {
        Console {
            sessions: Sessions::new(session_ttl, max_sessions),
            imports: imports::Imports::default(),
            desk: None,
        }
    }
}

/// Everything a console handler gets: the session, the query and (for a POST) the form.
pub(super) struct Ctx<'a> {
    pub st: &'a State,
    pub who: Session,
    pub asker: &'a Asker,
    pub query: &'a [(String, String)],
    pub form: Vec<(String, String)>,
    /// Asked by htmx for a fragment (`HX-Request`), not by the browser for a page.
    pub htmx: bool,
}

impl Ctx<'_> {
    pub fn q(&self, k: &str) -> Option<&str> {
        super::http::qget(self.query, k).filter(|v| !v.trim().is_empty())
    }
    pub fn f(&self, k: &str) -> Option<&str> {
        super::http::qget(&self.form, k).filter(|v| !v.trim().is_empty())
    }
    /// The operator as the audit trail names them: the token's name and the address.
    pub fn caller(&self) -> super::auth::Caller {
        super::auth::Caller {
            name: self.who.name.clone(),
            role: self.who.role,
            source: self.asker.addr.map(|a| a.to_string()),
        }
    }
}

/// The role each console page or action needs; `None` for a path that is not the console's.
fn need(method: &Method, segs: &[&str]) -> Option<Role> {
    let read = Role::Read;
    let write = Role::Write;
    match (method, segs) {
        (&Method::GET, ["live"] | ["live", "stream"] | ["live", _]) => Some(read),
        (&Method::GET, ["overview"] | ["check"] | ["whatif"] | ["feeds"]) => Some(read),
        (&Method::GET, ["lists"] | ["lists", _] | ["reports"] | ["disputes"]) => Some(read),
        (&Method::POST, ["lists", _, "add" | "remove" | "import"]) => Some(write),
        (&Method::GET, ["imports", _]) => Some(write),
        (&Method::POST, ["reports", "promote" | "dismiss" | "allow"]) => Some(write),
        (&Method::POST, ["disputes", _, "lift" | "uphold"]) => Some(write),
        (&Method::GET, ["audit"]) => Some(Role::Admin),
        _ => None,
    }
}

/// Every console path, as the module doc's table lists it: answers the request or says why
/// not, as a page.
pub(super) async fn route(
    st: &State,
    req: Request<RequestBody>,
    segs: &[&str],
    query: &[(String, String)],
    asker: &Asker,
) -> Reply {
    if !st.cfg.console {
        return Err(super::http::Fail::new(
            StatusCode::NOT_FOUND,
            "the console is turned off (api.console)",
        ));
    }
    let method = req.method().clone();
    let htmx = req.headers().contains_key("hx-request");
    match (&method, segs) {
        (&Method::GET, []) => return Ok(html::redirect("/console/live")),
        (&Method::GET, ["assets", name]) => {
            return Ok(html::asset(name).unwrap_or_else(|| not_found(None)))
        }
        (&Method::GET, ["login"]) => return Ok(pages::login::form(st, None)),
        (&Method::POST, ["login"]) => {
            let double = req
                .headers()
                .get(COOKIE)
                .and_then(|v| v.to_str().ok())
                .and_then(|c| session::cookie(c, session::LOGIN_COOKIE))
                .map(str::to_string);
            let Some(form) = read_form(st, req).await? else {
                return Ok(cross_site(None));
            };
            return Ok(pages::login::submit(st, asker, &form, double.as_deref()).await);
        }
        _ => {}
    }
    let now = Instant::now();
    let id = req
        .headers()
        .get(COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::cookie(c, session::COOKIE))
        .map(str::to_string);
    let who = id.as_deref().and_then(|i| st.console.sessions.get(i, now));
    let Some(who) = who else {
        // A browser is sent to the login form; a script's write is told plainly.
        return Ok(if method == Method::GET {
            html::redirect("/console/login")
        } else {
            html::problem(StatusCode::UNAUTHORIZED, None, "log in first")
        });
    };
    if (&method, segs) == (&Method::POST, &["logout"][..]) {
        let form = read_form(st, req).await?;
        if !form.as_deref().is_some_and(|f| csrf_ok(&who, f)) {
            return Ok(refuse(st, asker, &who, "missing or wrong CSRF token").await);
        }
        if let Some(i) = &id {
            st.console.sessions.close(i);
        }
        return Ok(logged_out(st));
    }
    let Some(role) = need(&method, segs) else {
        return Ok(not_found(Some(&who)));
    };
    if who.role < role {
        let why = format!("role {} needed", role.as_str());
        return Ok(refuse(st, asker, &who, &why).await);
    }
    let form = if method == Method::POST {
        let Some(form) = read_form(st, req).await? else {
            return Ok(refuse(st, asker, &who, "cross-site request").await);
        };
        if !csrf_ok(&who, &form) {
            return Ok(refuse(st, asker, &who, "missing or wrong CSRF token").await);
        }
        form
    } else {
        Vec::new()
    };
    let cx = Ctx {
        st,
        who,
        asker,
        query,
        form,
        htmx,
    };
    Ok(pages::answer(&cx, &method, segs).await)
}

/// The form of a POST (urlencoded, or `multipart/form-data` for a file), or `None` when the
/// browser says it comes from another site.
async fn read_form(
    st: &State,
    req: Request<RequestBody>,
) -> Result<Option<Vec<(String, String)>>, super::http::Fail> {
    let host = req.headers().get(HOST).and_then(|v| v.to_str().ok());
    let origin = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
    if let (Some(o), Some(h)) = (origin, host) {
        let o = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"))
            .unwrap_or(o);
        if o != h {
            return Ok(None);
        }
    }
    if req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v == "cross-site")
    {
        return Ok(None);
    }
    let boundary = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(multipart::boundary);
    let body = read_body(req, st.cfg.max_import_bytes, st.cfg.body_timeout()).await?;
    if let Some(b) = boundary {
        return multipart::parse(&body, &b)
            .map(Some)
            .map_err(|e| super::http::Fail::new(StatusCode::BAD_REQUEST, e));
    }
    let text = String::from_utf8_lossy(&body);
    Ok(Some(parse_query(&text)))
}

fn csrf_ok(who: &Session, form: &[(String, String)]) -> bool {
    super::http::qget(form, "csrf").is_some_and(|t| session::same(t, &who.csrf))
}

/// 403, recorded in the audit trail like the API's refusals.
async fn refuse(st: &State, asker: &Asker, who: &Session, why: &str) -> Response<ResponseBody> {
    let r = Refusal {
        status: StatusCode::FORBIDDEN,
        why: why.to_string(),
        name: who.name.clone(),
        banned: None,
    };
    record_refusal(st, asker, r, Instant::now()).await;
    html::problem(
        StatusCode::FORBIDDEN,
        Some(who),
        &format!("Refused: {why}."),
    )
}

fn cross_site(who: Option<&Session>) -> Response<ResponseBody> {
    html::problem(StatusCode::FORBIDDEN, who, "Refused: cross-site request.")
}

fn not_found(who: Option<&Session>) -> Response<ResponseBody> {
    html::problem(StatusCode::NOT_FOUND, who, "No such console page.")
}

fn logged_out(st: &State) -> Response<ResponseBody> {
    let mut r = html::redirect("/console/login");
    let c = session::set_cookie(session::COOKIE, "", 0, st.scheme() == "https");
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}
