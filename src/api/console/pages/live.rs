//! Live verdicts: the tail of recent calls with filters, its Server-Sent Events stream, and one
//! call's detail (every reason with its score, the list entry behind a list reason, the STIR
//! result and the exact answer sent).
//!
//! The stream reads the ring a few times a second from where it last stopped, so the SIP path
//! never wakes it; it ends when the client leaves or the session expires. Knows nothing of how
//! rows are made.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::super::html::{self, action_badge, enc, esc, when};
use super::super::recent::Row;
use super::super::Ctx;
use crate::api::http::ResponseBody;
use crate::screening::Action;

/// Rows the page shows when it opens.
const FIRST_ROWS: usize = 50;
/// How often the stream looks for new rows.
const POLL: Duration = Duration::from_millis(250);
/// A comment line this often keeps proxies from closing a quiet stream.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The tail's filters, from the query.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub caller: Option<String>,
    pub callee: Option<String>,
    pub action: Option<Action>,
    /// A list, a signal or `policy` the verdict cites.
    pub reason: Option<String>,
    pub source: Option<String>,
}

impl Filter {
    pub fn of(cx: &Ctx<'_>) -> Filter {
        let s = |k: &str| cx.q(k).map(|v| v.trim().to_string());
        Filter {
            caller: s("caller"),
            callee: s("callee"),
            action: cx.q("action").and_then(|a| match a {
                "block" => Some(Action::Block),
                "challenge" => Some(Action::Challenge),
                "warn" => Some(Action::Warn),
                "pass" => Some(Action::Pass),
                _ => None,
            }),
            reason: s("reason"),
            source: s("source"),
        }
    }

    pub fn matches(&self, r: &Row) -> bool {
        self.caller
            .as_ref()
            .map_or(true, |c| r.caller.contains(c.as_str()))
            && self
                .callee
                .as_ref()
                .map_or(true, |c| r.callee.contains(c.as_str()))
            && self.action.map_or(true, |a| r.action == a)
            && self.reason.as_ref().map_or(true, |n| r.cites(n))
            && self
                .source
                .as_ref()
                .map_or(true, |s| r.source.contains(s.as_str()))
    }

    /// The filters as a query string, for the stream's URL.
    fn query(&self) -> String {
        let mut q = Vec::new();
        for (k, v) in [
            ("caller", &self.caller),
            ("callee", &self.callee),
            ("reason", &self.reason),
            ("source", &self.source),
        ] {
            if let Some(v) = v {
                q.push(format!("{k}={}", enc(v)));
            }
        }
        if let Some(a) = self.action {
            q.push(format!("action={}", a.as_str()));
        }
        q.join("&")
    }
}

/// One row of the tail.
pub fn row_html(r: &Row) -> String {
    let secs = (r.time_ms / 1000) as i64;
    let why = r
        .reasons
        .iter()
        .map(|x| x.source.name())
        .filter(|n| *n != "policy")
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "<tr id=\"call-{seq}\" class=\"call\"><td class=\"mono\">{t}</td><td>{a}</td>\
         <td class=\"mono\"><a href=\"/console/live/{seq}\">{caller}</a></td>\
         <td class=\"mono\">{callee}</td><td>{why}</td><td class=\"mono wide\">{src}</td></tr>",
        seq = r.seq,
        t = esc(&when(secs)),
        a = action_badge(r.action),
        caller = esc(&r.caller),
        callee = esc(&r.callee),
        why = esc(&why),
        src = esc(&r.source),
    )
}

fn select(name: &str, current: Option<&str>, options: &[&str]) -> String {
    let opts: String = options
        .iter()
        .map(|o| {
            let sel = if Some(*o) == current { " selected" } else { "" };
            let label = if o.is_empty() { "any" } else { o };
            format!("<option value=\"{o}\"{sel}>{label}</option>")
        })
        .collect();
    format!("<select name=\"{name}\">{opts}</select>")
}

fn filter_form(f: &Filter) -> String {
    let v = |x: &Option<String>| esc(x.as_deref().unwrap_or(""));
    format!(
        "<form class=\"filters card\" method=\"get\" action=\"/console/live\">\
         <label>Caller<input name=\"caller\" value=\"{}\"></label>\
         <label>Callee<input name=\"callee\" value=\"{}\"></label>\
         <label>Action{}</label>\
         <label>List or signal<input name=\"reason\" value=\"{}\" placeholder=\"e.g. wangiri\"></label>\
         <label>Source<input name=\"source\" value=\"{}\"></label>\
         <button type=\"submit\">Filter</button></form>",
        v(&f.caller),
        v(&f.callee),
        select(
            "action",
            f.action.map(|a| a.as_str()),
            &["", "block", "challenge", "warn", "pass"]
        ),
        v(&f.reason),
        v(&f.source),
    )
}

/// `GET /console/live`: the filters, the newest matching calls, and the stream that adds more.
pub fn page(cx: &Ctx<'_>) -> Response<ResponseBody> {
    let f = Filter::of(cx);
    let Some(desk) = &cx.st.console.desk else {
        let body =
            "<div class=\"card\"><p class=\"muted\">This listener screens no calls.</p></div>";
        return html::html(
            StatusCode::OK,
            html::page("Live verdicts", "live", Some(&cx.who), body),
        );
    };
    let recent = desk.recent();
    let next = recent.next_seq();
    let rows: String = recent
        .newest_first()
        .iter()
        .filter(|r| f.matches(r))
        .take(FIRST_ROWS)
        .map(|r| row_html(r))
        .collect();
    let q = f.query();
    let stream = if q.is_empty() {
        format!("/console/live/stream?after={next}")
    } else {
        format!("/console/live/stream?after={next}&{q}")
    };
    let body = format!(
        "{}<div class=\"card\"><table><thead><tr><th>Time (UTC)</th><th>Action</th><th>Caller</th>\
         <th>Callee</th><th>Why</th><th class=\"wide\">Source</th></tr></thead>\
         <tbody id=\"rows\" hx-ext=\"sse\" sse-connect=\"{}\" sse-swap=\"call\" hx-swap=\"afterbegin\">{rows}</tbody>\
         </table><p class=\"muted\">Newest first; new calls appear as they are screened. \
         The agent keeps the last {} calls.</p></div>",
        filter_form(&f),
        esc(&stream),
        recent.cap(),
    );
    html::html(
        StatusCode::OK,
        html::page("Live verdicts", "live", Some(&cx.who), &body),
    )
}

/// `GET /console/live/stream?after=&...`: `call` events, one table row each, for every
/// matching call from `after` on.
pub fn stream(cx: &Ctx<'_>) -> Response<ResponseBody> {
    let Some(desk) = cx.st.console.desk.clone() else {
        return html::problem(StatusCode::NOT_FOUND, Some(&cx.who), "no calls here");
    };
    let f = Filter::of(cx);
    let recent = desk.recent();
    let mut after = cx
        .q("after")
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or_else(|| recent.next_seq());
    let expires = cx.who.expires;
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(8);
    tokio::spawn(async move {
        let mut quiet = Instant::now();
        // The ring is read from `after` on; rows the filter refuses are skipped, not resent.
        loop {
            if Instant::now() >= expires {
                break;
            }
            let rows = recent.since(after, 200);
            let mut out = String::new();
            for r in &rows {
                after = r.seq + 1;
                if f.matches(r) {
                    out.push_str("event: call\ndata: ");
                    out.push_str(&row_html(r));
                    out.push_str("\n\n");
                }
            }
            if out.is_empty() && quiet.elapsed() >= KEEPALIVE {
                out.push_str(": still here\n\n");
            }
            if !out.is_empty() {
                quiet = Instant::now();
                if tx.send_data(Bytes::from(out)).await.is_err() {
                    break;
                }
            }
            if rows.len() < 200 {
                tokio::time::sleep(POLL).await;
            }
        }
    });
    let mut r = Response::new(body.boxed());
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The score a reason's text begins with (`(+50) ...`, `(log-only +50) ...`), and the rest.
pub fn score_of(text: &str) -> (Option<String>, &str) {
    if let Some(rest) = text.strip_prefix('(') {
        if let Some((score, tail)) = rest.split_once(") ") {
            return (Some(score.to_string()), tail);
        }
    }
    (None, text)
}

/// `GET /console/live/{seq}`: one call in full.
pub async fn detail(cx: &Ctx<'_>, seq: &str) -> Response<ResponseBody> {
    let row = cx
        .st
        .console
        .desk
        .as_ref()
        .zip(seq.parse::<u64>().ok())
        .and_then(|(d, s)| d.recent().get(s));
    let Some(r) = row else {
        return html::problem(
            StatusCode::NOT_FOUND,
            Some(&cx.who),
            "This call is no longer among the recent calls.",
        );
    };
    let reasons: String = r
        .reasons
        .iter()
        .map(|x| {
            let (score, text) = score_of(&x.reason);
            format!(
                "<tr class=\"reason\"><td>{}</td><td class=\"num\">{}</td><td class=\"mono\">{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                esc(x.source.name()),
                esc(score.as_deref().unwrap_or("")),
                esc(&x.entry),
                esc(&x.category),
                esc(text)
            )
        })
        .collect();
    let entry = entry_html(cx, &r).await;
    let body = format!(
        "<div class=\"card\"><dl class=\"kv\">\
         <dt>Time (UTC)</dt><dd>{}</dd><dt>Action</dt><dd id=\"action\">{}</dd>\
         <dt>Caller</dt><dd class=\"mono\">{}</dd><dt>Display name</dt><dd>{}</dd>\
         <dt>Callee</dt><dd class=\"mono\">{}</dd><dt>Source</dt><dd class=\"mono\">{}</dd>\
         <dt>Call-ID</dt><dd class=\"mono\">{}</dd><dt>STIR/SHAKEN</dt><dd id=\"stir\">{}</dd>\
         <dt>Answer sent</dt><dd id=\"answer\" class=\"mono\">{}</dd>\
         <dt>Decided in</dt><dd>{} µs</dd>{}</dl></div>\
         <h2>Reasons</h2><div class=\"card\"><table id=\"reasons\"><thead><tr><th>List or signal</th>\
         <th class=\"num\">Score</th><th>Entry</th><th>Category</th><th>Why</th></tr></thead>\
         <tbody>{reasons}</tbody></table></div>{entry}",
        esc(&when((r.time_ms / 1000) as i64)),
        action_badge(r.action),
        esc(&r.caller),
        esc(r.display_name.as_deref().unwrap_or("-")),
        esc(&r.callee),
        esc(&r.source),
        esc(&r.call_id),
        esc(&r.stir),
        esc(&r.answer),
        r.decision_us,
        r.note
            .as_deref()
            .map(|n| format!("<dt>Note</dt><dd>{}</dd>", esc(n)))
            .unwrap_or_default(),
    );
    html::html(
        StatusCode::OK,
        html::page("Call detail", "live", Some(&cx.who), &body),
    )
}

/// The entry in force behind a list reason: its list (file, store or feed), source and expiry.
async fn entry_html(cx: &Ctx<'_>, r: &Arc<Row>) -> String {
    let Some(desk) = &cx.st.console.desk else {
        return String::new();
    };
    let Some((list, e)) = desk.entry(&r.caller) else {
        return String::new();
    };
    if !r.cites(&list) {
        return String::new();
    }
    let live = cx.st.live.clone();
    let name = list.clone();
    let kind = tokio::task::spawn_blocking(move || {
        live.lists()
            .ok()
            .and_then(|v| v.into_iter().find(|l| l.name == name))
            .map(|l| l.source)
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| "list".into());
    format!(
        "<h2>List entry</h2><div class=\"card\"><dl class=\"kv\" id=\"entry\">\
         <dt>List</dt><dd>{} ({})</dd><dt>Pattern</dt><dd class=\"mono\">{}</dd>\
         <dt>Action</dt><dd>{}</dd><dt>Category</dt><dd>{}</dd><dt>Reason</dt><dd>{}</dd>\
         <dt>Source</dt><dd>{}</dd><dt>Expires</dt><dd>{}</dd></dl>\
         <p class=\"muted\">The entry as it stands now.</p></div>",
        esc(&list),
        esc(&kind),
        esc(&e.pattern.to_string()),
        esc(e.action.as_str()),
        esc(&e.category),
        esc(&e.reason),
        esc(if e.source.is_empty() { "-" } else { &e.source }),
        e.expires
            .map_or_else(|| "never".to_string(), |t| esc(&when(t))),
    )
}
