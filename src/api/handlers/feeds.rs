//! `GET /v1/feeds/{feed}?since=`: a signed snapshot or increment of a feed this agent publishes
//! (docs/feeds.md), with `If-None-Match` answered by 304.
//!
//! Decides who may read (a feed's own token reads that feed only; any `read` token reads every
//! feed) and puts the publisher's answer into headers. Knows nothing of how a feed is built or
//! signed; that is [`crate::lists::feeds::Publisher`]'s.

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use hyper::{Response, StatusCode};

use super::now;
use crate::api::auth::Role;
use crate::api::http::{full, qget, Fail, Reply};
use crate::api::routes::{auth, Asker};
use crate::api::State;
use crate::lists::feeds::{SIGNATURE_HEADER, VERSION_HEADER};

pub(in crate::api) async fn answer(
    st: &State,
    feed: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    asker: &Asker,
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
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| p.feed_token_ok(feed, t)) {
        auth(st, asker, Role::Read).await?;
    }
    let since =
        match qget(query, "since") {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                Fail::new(StatusCode::BAD_REQUEST, "since: expected a version number")
            })?),
        };
    let inm = headers
        .get(IF_NONE_MATCH)
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
            r.headers_mut().insert(SIGNATURE_HEADER, hv(&a.signature));
            r
        }
        None => {
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        }
    };
    r.headers_mut()
        .insert(VERSION_HEADER, hv(&a.version.to_string()));
    r.headers_mut().insert(ETAG, hv(&a.etag));
    Ok(r)
}
