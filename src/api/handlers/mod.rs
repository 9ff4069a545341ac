//! What each endpoint does, one module per resource, and the few helpers they share: running
//! store work off the async threads, the clock, list names, page limits and time values.
//!
//! A handler is called once its route has matched and its caller been authorized; it knows
//! nothing of paths, tokens or connections, only its query, its body and the [`State`].

pub(super) mod admin;
pub(super) mod check;
pub(super) mod disputes;
pub(super) mod entries;
pub(super) mod feeds;
pub mod fleet;
pub(super) mod lists;
pub(super) mod monitor;
pub mod reports;
pub(super) mod signals;

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::http::{qget, Fail};
use super::State;

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

pub(in crate::api) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn list_name(list: &str) -> Result<(), Fail> {
    crate::lists::store::valid_list_name(list).map_err(Fail::from)
}

/// The `limit` query parameter, `default` without it; never above the configured page size.
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

/// A body of one object or an array of them.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
