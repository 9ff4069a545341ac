//! `POST /v1/reports` and `GET /v1/reports?caller=`: callers' reports from other systems (a
//! carrier's "report this call" button, a consumer app) and the evidence behind a promotion.
//!
//! This checks what a client sent (numbers, fields, time inside the window) and answers in
//! JSON; storing, counting and promoting are the app's, behind [`Reporter`]. Knows nothing of
//! SIP or SQLite.

use std::sync::Arc;

use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, limit, now, parse_time, OneOrMany};
use crate::api::auth::Caller;
use crate::api::http::{json_resp, qget, read_body, refuse_controls, Fail, Reply, RequestBody};
use crate::api::State;
use crate::lists::store::{StoreError, StoredReport, Who};
use crate::screening::entry::check_category;
use crate::screening::signals::report_book::{Promotion, Report, ReportSource};

/// Callers' reports, taken by the app: the API only checks and relays them.
pub trait Reporter: Send + Sync {
    /// `text` as the E.164 number the agent screens, or `None` when it is not a number.
    fn number(&self, text: &str) -> Option<String>;
    /// The times a report may carry; `None` when reports are turned off.
    fn limits(&self) -> Option<Limits>;
    /// Store the reports durably (all or none), then count them; the promotions they brought,
    /// by caller. Blocks on the disk.
    fn report(
        &self,
        who: Who<'_>,
        reports: &[Report],
        now: i64,
    ) -> Result<Vec<(String, Promotion)>, StoreError>;
    /// Stored reports against `caller` inside the window, newest first, and its promotion in
    /// force. Blocks on the disk.
    fn evidence(
        &self,
        caller: &str,
        limit: usize,
        now: i64,
    ) -> Result<(Vec<StoredReport>, Option<Promotion>), StoreError>;
}

/// The times a report may carry, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Reports older than this count for nothing and are refused.
    pub window: i64,
    /// A report may be at most this far ahead of the agent's clock.
    pub ahead: i64,
}

/// Most reports in one request; larger batches are split by the client.
pub const MAX_PER_REQUEST: usize = 1000;

/// A report as a client sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportIn {
    caller: String,
    callee: String,
    category: String,
    /// Who reported: a subscriber's number or an opaque id of the client's. Distinct reporters,
    /// not requests, promote a caller.
    reporter: String,
    /// Unix seconds or an RFC 3339 date-time; now when absent.
    #[serde(default)]
    time: Option<Value>,
}

fn reporter_of(st: &State) -> Result<(Arc<dyn Reporter>, Limits), Fail> {
    let r = st
        .reporter
        .clone()
        .ok_or_else(|| Fail::new(StatusCode::NOT_FOUND, "this agent takes no reports"))?;
    let limits = r.limits().ok_or_else(|| {
        Fail::new(
            StatusCode::NOT_FOUND,
            "reports are turned off in this agent's config (signals.reports.enabled)",
        )
    })?;
    Ok((r, limits))
}

fn number(r: &dyn Reporter, field: &str, text: &str) -> Result<String, String> {
    r.number(text).ok_or_else(|| {
        format!("{field} {text:?} is not a phone number; expected E.164 such as +12025550143")
    })
}

fn report_in(
    v: Value,
    r: &dyn Reporter,
    Limits { window, ahead }: Limits,
    now: i64,
) -> Result<Report, String> {
    let i: ReportIn = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let caller = number(r, "caller", &i.caller)?;
    let callee = number(r, "callee", &i.callee)?;
    let category = i.category.trim().to_ascii_lowercase();
    check_category(&category)?;
    let reporter = i.reporter.trim();
    if reporter.is_empty() || reporter.len() > 128 || reporter.chars().any(char::is_control) {
        return Err(format!(
            "reporter {:?}: expected an id of 1-128 printable characters",
            i.reporter
        ));
    }
    // A reporter written as a number is the same person as a callee who answers 607.
    let reporter = if reporter.starts_with('+') {
        number(r, "reporter", reporter)?
    } else {
        reporter.to_string()
    };
    if reporter == caller {
        return Err("reporter is the caller: a caller cannot report itself".into());
    }
    let at = match &i.time {
        None | Some(Value::Null) => now,
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("time {n}: expected whole unix seconds"))?,
        Some(Value::String(s)) => parse_time(s).map_err(|e| format!("time {s:?}: {e}"))?,
        Some(other) => {
            return Err(format!(
                "time {other}: expected unix seconds or an RFC 3339 date-time"
            ))
        }
    };
    if at <= now - window {
        return Err(format!(
            "time {at} is older than the report window ({window} s): it would count for nothing"
        ));
    }
    if at > now + ahead {
        return Err(format!(
            "time {at} is more than {ahead} s ahead of this agent's clock ({now})"
        ));
    }
    Ok(Report {
        caller,
        callee: Some(callee),
        category,
        reporter,
        at,
        source: ReportSource::Api,
    })
}

fn promotion_json(caller: &str, p: &Promotion) -> Value {
    json!({
        "caller": caller,
        "action": p.action.as_str(),
        "expires": p.expires,
        "reporters": p.reporters,
        "evidence": p.evidence,
    })
}

/// `POST /v1/reports`: one report object or an array; all or nothing; 201 once stored.
pub(in crate::api) async fn post(st: &State, who: Caller, req: Request<RequestBody>) -> Reply {
    let (reporter, limits) = reporter_of(st)?;
    let body = read_body(req, st.cfg.max_body_bytes, st.cfg.body_timeout()).await?;
    let parsed: OneOrMany = serde_json::from_slice(&body)
        .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))?;
    let items = match parsed {
        OneOrMany::Many(v) => v,
        OneOrMany::One(v) => vec![v],
    };
    if items.is_empty() {
        return Err(Fail::new(
            StatusCode::BAD_REQUEST,
            "empty array: nothing to report",
        ));
    }
    if items.len() > MAX_PER_REQUEST {
        return Err(Fail::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} reports in one request; at most {MAX_PER_REQUEST}",
                items.len()
            ),
        ));
    }
    for (i, v) in items.iter().enumerate() {
        refuse_controls(v, &format!("report {}", i + 1))?;
    }
    let t = now();
    let mut good = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for (i, v) in items.into_iter().enumerate() {
        match report_in(v, reporter.as_ref(), limits, t) {
            Ok(r) => good.push(r),
            Err(m) => bad.push(format!("report {}: {m}", i + 1)),
        }
    }
    if !bad.is_empty() {
        return Err(Fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid reports; nothing was written".into(),
            bad,
        ));
    }
    let n = good.len();
    let promoted = blocking(move || Ok(reporter.report(who.who(), &good, t)?)).await?;
    let promotions: Vec<Value> = promoted.iter().map(|(c, p)| promotion_json(c, p)).collect();
    Ok(json_resp(
        StatusCode::CREATED,
        &json!({"accepted": n, "promotions": promotions}),
    ))
}

/// `GET /v1/reports?caller=&limit=`: the stored reports against a caller and its promotion.
pub(in crate::api) async fn get(st: &State, q: &[(String, String)]) -> Reply {
    let (reporter, _) = reporter_of(st)?;
    let raw = qget(q, "caller")
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| {
            Fail::new(
                StatusCode::BAD_REQUEST,
                "caller is required: /v1/reports?caller=+12025550143",
            )
        })?;
    let caller = number(reporter.as_ref(), "caller", raw)
        .map_err(|m| Fail::new(StatusCode::BAD_REQUEST, m))?;
    let limit = limit(st, q, 100)?;
    let c = caller.clone();
    let (reports, promotion) = blocking(move || Ok(reporter.evidence(&c, limit, now())?)).await?;
    Ok(json_resp(
        StatusCode::OK,
        &json!({
            "caller": caller,
            "promotion": promotion.map(|p| promotion_json(&caller, &p)),
            "reports": reports,
        }),
    ))
}
