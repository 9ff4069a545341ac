//! `GET`, `POST /v1/lists/{list}/entries` and `DELETE /v1/lists/{list}/entries/{pattern}`: one
//! store list's entries, a page, a few or one at a time.
//!
//! Checks what an operator sent and answers in JSON; the writes, their audit and their
//! enforcement are [`crate::lists::overlay::Live`]'s. Knows nothing of SQL or of list files.

use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, limit, list_name, now, parse_expires, OneOrMany};
use crate::api::auth::Caller;
use crate::api::http::{json_resp, qget, read_body, refuse_controls, Fail, Reply, RequestBody};
use crate::api::State;
use crate::lists::store::{Change, PageQuery, StoredEntry};
use crate::screening::EntryAction;

/// `GET /v1/lists/{list}/entries?prefix=&limit=&cursor=`: one page, in pattern order.
pub(in crate::api) async fn page(st: &State, list: &str, q: &[(String, String)]) -> Reply {
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

/// `POST /v1/lists/{list}/entries`: one object or an array, all or nothing; 201 once durable
/// and enforced, answering in the shape it was asked.
pub(in crate::api) async fn add(
    st: &State,
    who: Caller,
    list: String,
    req: Request<RequestBody>,
) -> Reply {
    list_name(&list)?;
    let body = read_body(req, st.cfg.max_body_bytes, st.cfg.body_timeout()).await?;
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
    for (i, v) in items.iter().enumerate() {
        refuse_controls(v, &format!("entry {}", i + 1))?;
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
    let changes = blocking(move || Ok(live.add(who.who(), &list, good, now())?)).await?;
    let out: Vec<&StoredEntry> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Added(e) => Some(e),
            Change::Updated { after, .. } => Some(after),
            Change::Removed(_) => None,
        })
        .collect();
    let body = if many {
        json!({ "entries": out })
    } else {
        json!(out.first())
    };
    Ok(json_resp(StatusCode::CREATED, &body))
}

/// `DELETE /v1/lists/{list}/entries/{pattern}`: 404 when the list has no such entry.
pub(in crate::api) async fn remove(st: &State, who: Caller, list: &str, pattern: &str) -> Reply {
    list_name(list)?;
    let (live, list, pattern) = (st.live.clone(), list.to_string(), pattern.to_string());
    let gone = blocking(move || Ok(live.remove(who.who(), &list, &pattern, now())?)).await?;
    match gone {
        Some(e) => Ok(json_resp(StatusCode::OK, &json!({ "removed": e }))),
        None => Err(Fail::new(
            StatusCode::NOT_FOUND,
            "no such entry in this list",
        )),
    }
}
