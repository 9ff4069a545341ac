//! The login form: an API token in, a session cookie out. The form carries a random value that
//! must match a cookie set with it (a login from another site cannot know it); a wrong token
//! counts against the address in the API's guard and is audited as a refused request.
//!
//! Knows nothing of the pages behind the login.

use std::time::Instant;

use hyper::header::{HeaderValue, SET_COOKIE};
use hyper::{Response, StatusCode};

use crate::api::auth::{Denied, Role};
use crate::api::console::html::{self, esc};
use crate::api::console::session::{self, same};
use crate::api::http::{qget, ResponseBody};
use crate::api::routes::{record_refusal, Asker, Refusal};
use crate::api::State;

/// How long a login form stays usable.
const FORM_SECS: u64 = 600;

fn set(r: &mut Response<ResponseBody>, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(SET_COOKIE, v);
    }
}

/// The form, with `msg` above it when a login failed.
pub fn form(st: &State, msg: Option<(StatusCode, &str)>) -> Response<ResponseBody> {
    let Some(token) = st.console.sessions.login_token() else {
        return html::problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "no random numbers from the system",
        );
    };
    let (code, note) = match msg {
        Some((c, m)) => (c, format!("<p class=\"error\">{}</p>", esc(m))),
        None => (StatusCode::OK, String::new()),
    };
    let body = format!(
        "<div class=\"card login\">{note}\
         <form method=\"post\" action=\"/console/login\" class=\"stack\">\
         <input type=\"hidden\" name=\"login\" value=\"{token}\">\
         <label>API token<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button id=\"login\" type=\"submit\">Log in</button></form>\
         <p class=\"muted\">Use a token of the agent's tokens file (<code>api.tokens_file</code>). \
         Its role decides what you may see and change.</p></div>"
    );
    let mut r = html::html(code, html::page("Log in", "", None, &body));
    let secure = st.scheme() == "https";
    set(
        &mut r,
        &session::set_cookie(session::LOGIN_COOKIE, &token, FORM_SECS, secure),
    );
    r
}

/// `POST /console/login`: a session for a known token; a refusal counted and audited for any
/// other.
pub async fn submit(
    st: &State,
    asker: &Asker,
    form_in: &[(String, String)],
    double: Option<&str>,
) -> Response<ResponseBody> {
    let now = Instant::now();
    let ip = asker.addr.map(|a| a.ip());
    // A refused address is not even told whether this token would have worked.
    if let Some(left) = ip.and_then(|ip| st.guard.refused(ip, now)) {
        let msg = format!(
            "Too many wrong tokens from this address; try again in {} s.",
            left.as_secs().max(1)
        );
        return form(st, Some((StatusCode::TOO_MANY_REQUESTS, &msg)));
    }
    let sent = qget(form_in, "login").unwrap_or("");
    if !double.is_some_and(|d| !d.is_empty() && same(d, sent)) {
        return form(
            st,
            Some((
                StatusCode::FORBIDDEN,
                "The login form expired or came from elsewhere; try again.",
            )),
        );
    }
    let token = qget(form_in, "token").unwrap_or("").trim();
    let header = format!("Bearer {token}");
    let caller = match st.tokens.authorize(Some(header.as_bytes()), Role::Read) {
        Ok(c) => c,
        Err(Denied::Unauthenticated | Denied::Forbidden) => {
            let banned = ip.and_then(|ip| st.guard.failed(ip, now));
            let r = Refusal {
                status: StatusCode::UNAUTHORIZED,
                why: if token.is_empty() {
                    "console login without a token"
                } else {
                    "console login with an unknown token"
                }
                .into(),
                name: String::new(),
                banned,
            };
            record_refusal(st, asker, r, now).await;
            return form(st, Some((StatusCode::UNAUTHORIZED, "Unknown token.")));
        }
    };
    let Some((id, _)) = st.console.sessions.open(&caller.name, caller.role, now) else {
        return html::problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "no random numbers from the system",
        );
    };
    tracing::info!(name = %caller.name, source = ?asker.addr, "console: logged in");
    let secure = st.scheme() == "https";
    let mut r = html::redirect("/console/live");
    let ttl = st.console.sessions.ttl().as_secs();
    set(
        &mut r,
        &session::set_cookie(session::COOKIE, &id, ttl, secure),
    );
    set(
        &mut r,
        &session::set_cookie(session::LOGIN_COOKIE, "", 0, secure),
    );
    r
}
