//! `GET /v1/audit?since=&limit=&kind=` and `POST /v1/reload`: the admin role's endpoints,
//! reading who changed what (or who was refused) and re-reading the list files.
//!
//! Knows nothing of how the audit trail is stored or how list files are parsed; both are
//! [`crate::lists::overlay::Live`]'s.

use hyper::StatusCode;
use serde_json::json;

use super::{blocking, limit, parse_time};
use crate::api::http::{json_resp, qget, Fail, Reply};
use crate::api::State;

/// `GET /v1/audit`: records from `since` (unix seconds or RFC 3339), oldest first: the changes,
/// or with `kind=refused` the refused requests, or with `kind=all` both. Refusals are kept apart
/// by default so that the history of the lists reads as it did, however many were refused.
pub(in crate::api) async fn audit(st: &State, q: &[(String, String)]) -> Reply {
    let refused = match qget(q, "kind") {
        None | Some("changes") => Some(false),
        Some("refused") => Some(true),
        Some("all") => None,
        Some(k) => {
            return Err(Fail::new(
                StatusCode::BAD_REQUEST,
                format!("kind {k:?}: expected changes, refused or all"),
            ))
        }
    };
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
    let v = blocking(move || Ok(live.store.audit_of(since, limit, refused)?)).await?;
    Ok(json_resp(StatusCode::OK, &json!({ "records": v })))
}

/// `POST /v1/reload`: 422 naming each refused file, whose previous version stays in force.
pub(in crate::api) async fn reload(st: &State) -> Reply {
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
