//! `GET /v1/disputes` and `POST /v1/disputes/{id}/lift|uphold`: the operator's side of redress.
//! Disputes come in through the public form (`crate::api::redress`); here an operator reads them
//! and resolves each once. Lifting writes an `allow` entry for the number to the configured
//! store list (`redress.allow_list`) with the dispute's id as its reason, enforced at once, and
//! then marks the dispute lifted; upholding only marks it. Both are audited, and the time from
//! opening to resolution goes into the histogram of [`crate::api::redress::RedressStats`].
//!
//! Knows nothing of SQL or of how an allow entry is enforced.

use hyper::StatusCode;
use serde_json::json;

use super::{blocking, limit, now};
use crate::api::auth::Caller;
use crate::api::http::{json_resp, qget, Fail, Reply};
use crate::api::State;
use crate::lists::store::{Dispute, DisputeStatus, StoredEntry};
use crate::screening::EntryAction;

/// `GET /v1/disputes?status=open|lifted|upheld&after=ID&limit=`: oldest first.
pub(in crate::api) async fn list(st: &State, q: &[(String, String)]) -> Reply {
    let status = match qget(q, "status") {
        None | Some("all") => None,
        Some(s) => Some(DisputeStatus::parse(s).ok_or_else(|| {
            Fail::new(
                StatusCode::BAD_REQUEST,
                format!("status {s:?}: expected open, lifted, upheld or all"),
            )
        })?),
    };
    let after = match qget(q, "after") {
        None => 0,
        Some(s) => s.parse::<i64>().map_err(|_| {
            Fail::new(
                StatusCode::BAD_REQUEST,
                format!("after {s:?}: expected a dispute id"),
            )
        })?,
    };
    let limit = limit(st, q, 100)?;
    let live = st.live.clone();
    let v = blocking(move || Ok(live.store.disputes(status, after, limit)?)).await?;
    let next = (v.len() == limit).then(|| v.last().map(|d| d.id)).flatten();
    Ok(json_resp(
        StatusCode::OK,
        &json!({"disputes": v, "next_after": next}),
    ))
}

/// `POST /v1/disputes/{id}/lift` (`to` = lifted) or `/uphold` (`to` = upheld).
pub(in crate::api) async fn resolve(st: &State, who: Caller, id: &str, to: DisputeStatus) -> Reply {
    let id: i64 = id.parse().map_err(|_| {
        Fail::new(
            StatusCode::BAD_REQUEST,
            format!("dispute {id:?}: expected a dispute id"),
        )
    })?;
    let r = resolve_one(st, who, id, to).await?;
    Ok(json_resp(
        StatusCode::OK,
        &json!({"dispute": r.dispute, "entry": r.entry, "resolution_secs": r.took}),
    ))
}

/// A dispute once resolved: as it is now, the allow entry a lift wrote, and the seconds from
/// opening to resolution.
pub(in crate::api) struct Resolution {
    pub dispute: Dispute,
    pub entry: Option<StoredEntry>,
    pub took: i64,
}

/// Lift or uphold dispute `id` for `who`: the one way both the API and the console resolve a
/// dispute, so both are audited, counted and enforced alike.
pub(in crate::api) async fn resolve_one(
    st: &State,
    who: Caller,
    id: i64,
    to: DisputeStatus,
) -> Result<Resolution, Fail> {
    let (live, list) = (st.live.clone(), st.disputes.allow_list.clone());
    let (before, after, entry) = blocking(move || {
        let d = live
            .store
            .dispute(id)?
            .ok_or_else(|| Fail::new(StatusCode::NOT_FOUND, format!("no dispute {id}")))?;
        if d.status != DisputeStatus::Open {
            return Err(Fail::new(
                StatusCode::CONFLICT,
                format!("dispute {id} is {} already", d.status.as_str()),
            ));
        }
        let now = now();
        // The entry first: a lift that fails half-way leaves the dispute open (and the lift
        // can be asked again), never a dispute called lifted without its entry.
        let entry = if to == DisputeStatus::Lifted {
            let e = StoredEntry {
                list: list.clone(),
                pattern: d.number.clone(),
                action: EntryAction::Allow,
                category: "redress".into(),
                reason: format!("dispute {id}"),
                source: "redress".into(),
                expires: None,
                created: 0,
                updated: 0,
            };
            live.add(who.who(), &list, vec![e.clone()], now)?;
            Some(e)
        } else {
            None
        };
        let (before, after) = live.store.resolve_dispute(id, to, who.who(), now)?;
        Ok((before, after, entry))
    })
    .await?;
    let stats = &st.disputes.stats;
    match to {
        DisputeStatus::Lifted => stats.lifted.inc(),
        _ => stats.upheld.inc(),
    }
    let took = after.resolved.unwrap_or(before.opened) - before.opened;
    stats.resolution.observe(took.max(0) as f64);
    tracing::info!(
        dispute = id,
        status = to.as_str(),
        took_secs = took,
        "redress: dispute resolved"
    );
    Ok(Resolution {
        dispute: after,
        entry,
        took,
    })
}
