//! Check and what-if: a number's verdict as `/v1/check` gives it, and a change (one more entry,
//! or other thresholds) previewed over the recent calls: how many the change would turn, and
//! which, each decided again by the engine with and without it.
//!
//! Both are questions: nothing is written and no call is counted, so they need only the read
//! role. Knows nothing of how the app decides; it asks the [`Checker`] and the [`Desk`].
//!
//! [`Checker`]: crate::api::Checker
//! [`Desk`]: super::super::Desk

use hyper::{Response, StatusCode};
use serde_json::Value;

use super::super::html::{action_badge, esc, when};
use super::super::{Change, Ctx};
use super::{blocking, shown};
use crate::api::http::ResponseBody;
use crate::screening::{Action, Entry, EntryAction, Pattern};

/// The most changed calls listed under a what-if (all are counted).
const SHOWN: usize = 100;

fn check_form(cx: &Ctx<'_>) -> String {
    let v = |k: &str| esc(cx.q(k).unwrap_or(""));
    format!(
        "<form class=\"filters card\" method=\"get\" action=\"/console/check\">\
         <label>Caller<input id=\"check-caller\" name=\"caller\" value=\"{}\" placeholder=\"+12025550143\" required></label>\
         <label>Callee<input name=\"callee\" value=\"{}\"></label>\
         <label>Display name<input name=\"display\" value=\"{}\"></label>\
         <button id=\"check\" type=\"submit\">Check</button></form>",
        v("caller"),
        v("callee"),
        v("display")
    )
}

fn whatif_form(cx: &Ctx<'_>) -> String {
    let (warn_at, block_at) = cx
        .st
        .console
        .desk
        .as_ref()
        .map_or((50, 100), |d| d.thresholds());
    let v = |k: &str, d: &str| esc(cx.q(k).unwrap_or(d));
    format!(
        "<h2>What if</h2><div class=\"grid\">\
         <form class=\"stack card\" method=\"get\" action=\"/console/whatif\">\
         <input type=\"hidden\" name=\"kind\" value=\"entry\">\
         <label>Pattern<input id=\"whatif-pattern\" name=\"pattern\" value=\"{}\" placeholder=\"+1202555*\" required></label>\
         <label>Action<select name=\"action\"><option>block</option><option>warn</option><option>allow</option></select></label>\
         <button id=\"whatif-entry\" type=\"submit\">Preview this entry</button></form>\
         <form class=\"stack card\" method=\"get\" action=\"/console/whatif\">\
         <input type=\"hidden\" name=\"kind\" value=\"thresholds\">\
         <label>warn_at<input name=\"warn_at\" value=\"{}\" inputmode=\"numeric\"></label>\
         <label>block_at<input name=\"block_at\" value=\"{}\" inputmode=\"numeric\"></label>\
         <button id=\"whatif-thresholds\" type=\"submit\">Preview these thresholds</button></form></div>",
        v("pattern", ""),
        v("warn_at", &warn_at.to_string()),
        v("block_at", &block_at.to_string()),
    )
}

/// `GET /console/check?caller=&callee=&display=`.
pub fn check(cx: &Ctx<'_>) -> Response<ResponseBody> {
    let mut body = check_form(cx);
    if let Some(caller) = cx.q("caller") {
        let v = cx.st.checker.check(caller, cx.q("callee"), cx.q("display"));
        body.push_str(&verdict_html(&v));
    }
    body.push_str(&whatif_form(cx));
    shown(cx, "Check & what-if", "check", Ok(body))
}

fn verdict_html(v: &Value) -> String {
    let action = v["action"].as_str().unwrap_or("?");
    let reasons: String = v["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let s = |k: &str| esc(r[k].as_str().unwrap_or(""));
            format!(
                "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td></tr>",
                s("list"),
                s("entry"),
                s("category"),
                s("reason")
            )
        })
        .collect();
    format!(
        "<div class=\"card\" id=\"verdict\"><p>Verdict for <span class=\"mono\">{}</span>: \
         <span class=\"action action-{a}\">{a}</span></p>\
         <table><thead><tr><th>List or signal</th><th>Entry</th><th>Category</th><th>Why</th></tr></thead>\
         <tbody>{reasons}</tbody></table></div>",
        esc(v["caller"].as_str().unwrap_or("")),
        a = esc(action),
    )
}

/// The change the query asks for, or why it is not one.
fn change_of(cx: &Ctx<'_>) -> Result<Change, String> {
    match cx.q("kind") {
        Some("entry") => {
            let text = cx.q("pattern").ok_or("give a pattern")?;
            let pattern = Pattern::parse(text.trim()).map_err(|e| format!("pattern: {e}"))?;
            let action = cx.q("action").unwrap_or("block");
            let action = EntryAction::parse(action)
                .ok_or_else(|| format!("action {action:?}: expected allow, warn or block"))?;
            Ok(Change::Entry(Entry {
                pattern,
                action,
                category: "what-if".into(),
                reason: "the entry previewed".into(),
                source: "console".into(),
                expires: None,
            }))
        }
        Some("thresholds") => {
            let n = |k: &str| -> Result<i32, String> {
                cx.q(k)
                    .ok_or(format!("give {k}"))?
                    .trim()
                    .parse::<i32>()
                    .map_err(|_| format!("{k}: expected a whole number"))
            };
            let (warn_at, block_at) = (n("warn_at")?, n("block_at")?);
            if warn_at <= 0 || block_at < warn_at {
                return Err(format!(
                    "need 0 < warn_at <= block_at, got {warn_at} and {block_at}"
                ));
            }
            Ok(Change::Thresholds { warn_at, block_at })
        }
        _ => Err("kind: expected entry or thresholds".into()),
    }
}

/// `GET /console/whatif?kind=entry&pattern=&action=` or `?kind=thresholds&warn_at=&block_at=`.
pub async fn what_if(cx: &Ctx<'_>) -> Response<ResponseBody> {
    let mut body = check_form(cx);
    body.push_str(&whatif_form(cx));
    let change = match change_of(cx) {
        Ok(c) => c,
        Err(e) => {
            body.push_str(&super::note("error", &e));
            let mut r = shown(cx, "Check & what-if", "check", Ok(body));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
    };
    let Some(desk) = cx.st.console.desk.clone() else {
        body.push_str(&super::note("muted", "This listener screens no calls."));
        return shown(cx, "Check & what-if", "check", Ok(body));
    };
    // Deciding thousands of calls twice is work for a blocking thread, not the event loop.
    let result = blocking(move || {
        let rows = desk.recent().newest_first();
        let changed = desk.what_if(&rows, &change);
        Ok((rows.len(), changed))
    })
    .await;
    let (total, changed) = match result {
        Ok(x) => x,
        Err(e) => return shown(cx, "Check & what-if", "check", Err(e)),
    };
    let count = |a: Action| changed.iter().filter(|c| c.after == a).count();
    let list: String = changed
        .iter()
        .take(SHOWN)
        .map(|c| {
            format!(
                "<tr class=\"changed\"><td class=\"mono\">{}</td><td class=\"mono\"><a href=\"/console/live/{}\">{}</a></td>\
                 <td class=\"mono\">{}</td><td>{} → {}</td></tr>",
                esc(&when((c.row.time_ms / 1000) as i64)),
                c.row.seq,
                esc(&c.row.caller),
                esc(&c.row.callee),
                action_badge(c.before),
                action_badge(c.after),
            )
        })
        .collect();
    body.push_str(&format!(
        "<div class=\"card\" id=\"whatif-result\"><p><strong id=\"whatif-count\">{}</strong> of the \
         {total} recent calls would change ({} to block, {} to challenge, {} to warn, {} to pass).</p>\
         <table><thead><tr><th>Time (UTC)</th><th>Caller</th><th>Callee</th><th>Now → with the change</th></tr></thead>\
         <tbody>{list}</tbody></table><p class=\"muted\">Each call is decided again by the engine as a \
         question (at its own time, counting nothing), once with the rules in force and once with the \
         change.</p></div>",
        changed.len(),
        count(Action::Block),
        count(Action::Challenge),
        count(Action::Warn),
        count(Action::Pass),
    ));
    shown(cx, "Check & what-if", "check", Ok(body))
}
