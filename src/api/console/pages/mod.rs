//! The console's pages, one module per page, and the one `match` that picks the page for an
//! authorised request (its role and CSRF token were checked before it gets here).
//!
//! Knows nothing of sessions or cookies beyond the [`Ctx`] it is handed.

pub(super) mod audit;
pub(super) mod check;
pub(super) mod disputes;
pub(super) mod feeds;
pub(super) mod lists;
pub(super) mod live;
pub(super) mod login;
pub(super) mod overview;
pub(super) mod reports;

use hyper::{Method, Response, StatusCode};

use super::html;
use super::Ctx;
use crate::api::http::ResponseBody;

/// The page for a request whose role the console has checked.
pub(super) async fn answer(cx: &Ctx<'_>, method: &Method, segs: &[&str]) -> Response<ResponseBody> {
    match (method, segs) {
        (&Method::GET, ["live"]) => live::page(cx),
        (&Method::GET, ["live", "stream"]) => live::stream(cx),
        (&Method::GET, ["live", seq]) => live::detail(cx, seq).await,
        (&Method::GET, ["overview"]) => overview::page(cx).await,
        (&Method::GET, ["check"]) => check::check(cx),
        (&Method::GET, ["whatif"]) => check::what_if(cx).await,
        (&Method::GET, ["lists"]) => lists::all(cx).await,
        (&Method::GET, ["lists", list]) => lists::one(cx, list).await,
        (&Method::POST, ["lists", list, "add"]) => lists::add(cx, list).await,
        (&Method::POST, ["lists", list, "remove"]) => lists::remove(cx, list).await,
        (&Method::POST, ["lists", list, "import"]) => lists::import(cx, list).await,
        (&Method::GET, ["imports", id]) => lists::progress(cx, id),
        (&Method::GET, ["reports"]) => reports::page(cx).await,
        (&Method::POST, ["reports", what]) => reports::decide(cx, what).await,
        (&Method::GET, ["disputes"]) => disputes::page(cx).await,
        (&Method::POST, ["disputes", id, what]) => disputes::resolve(cx, id, what).await,
        (&Method::GET, ["feeds"]) => feeds::page(cx).await,
        (&Method::GET, ["audit"]) => audit::page(cx).await,
        _ => html::problem(
            StatusCode::NOT_FOUND,
            Some(&cx.who),
            "No such console page.",
        ),
    }
}

/// Run blocking store work off the async threads; a failure becomes its message.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(format!("internal error: {e}")))
}

/// A page of `title` under `here`, or the error that kept it from being made.
pub(super) fn shown(
    cx: &Ctx<'_>,
    title: &str,
    here: &str,
    body: Result<String, String>,
) -> Response<ResponseBody> {
    match body {
        Ok(b) => html::html(StatusCode::OK, html::page(title, here, Some(&cx.who), &b)),
        Err(e) => html::problem(StatusCode::INTERNAL_SERVER_ERROR, Some(&cx.who), &e),
    }
}

/// A message box: an outcome (`ok`) or a refusal (`error`).
pub(super) fn note(class: &str, text: &str) -> String {
    format!(
        "<div class=\"card\"><p class=\"{class}\" id=\"outcome\">{}</p></div>",
        html::esc(text)
    )
}
