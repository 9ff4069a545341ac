//! Reports: reported callers grouped, with their distinct reporters, categories and whether a
//! promotion or an operator's allow is in force; for the write role, the decision on each:
//! promote (a block entry in the `reports` list), allow (an allow entry in the `allowed` list,
//! which wins over any block of the same number) or dismiss (the stored reports and any
//! promotion removed). Every decision is written to the audit trail with the operator's name.
//!
//! The report book in memory keeps counting dismissed reports until they leave the window, so a
//! dismissed caller reported again may be promoted again; an allow is what stops that.
//! Knows nothing of how reports arrive or are counted.

use hyper::Response;

use super::super::html::{csrf_field, esc, when};
use super::super::Ctx;
use super::{blocking, note, shown};
use crate::api::auth::Role;
use crate::api::handlers::now;
use crate::api::http::ResponseBody;
use crate::lists::report_desk::REPORTS_LIST;
use crate::lists::store::StoredEntry;
use crate::screening::EntryAction;

/// The store list an operator's allow goes to.
pub const ALLOWED_LIST: &str = "allowed";
/// Callers listed at most.
const SHOWN: usize = 200;

/// `GET /console/reports`.
pub async fn page(cx: &Ctx<'_>) -> Response<ResponseBody> {
    page_with(cx, String::new()).await
}

async fn page_with(cx: &Ctx<'_>, outcome: String) -> Response<ResponseBody> {
    let Some(limits) = cx.st.reporter.as_ref().and_then(|r| r.limits()) else {
        let body = format!(
            "{outcome}{}",
            note("muted", "Reports are turned off (signals.reports.enabled).")
        );
        return shown(cx, "Reports", "reports", Ok(body));
    };
    let live = cx.st.live.clone();
    let since = now() - limits.window;
    let groups = blocking(move || {
        let groups = live
            .store
            .report_groups(since, SHOWN)
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let promoted = live
                .store
                .get(REPORTS_LIST, &g.caller)
                .map_err(|e| e.to_string())?;
            let allowed = live
                .store
                .get(ALLOWED_LIST, &g.caller)
                .map_err(|e| e.to_string())?;
            out.push((g, promoted, allowed));
        }
        Ok(out)
    })
    .await;
    let groups = match groups {
        Ok(g) => g,
        Err(e) => return shown(cx, "Reports", "reports", Err(e)),
    };
    let write = cx.who.role >= Role::Write;
    let rows: String = groups
        .iter()
        .map(|(g, promoted, allowed)| {
            let state = match (allowed, promoted) {
                (Some(_), _) => "allowed by an operator".to_string(),
                (None, Some(p)) => format!("{} by {}", p.action.as_str(), esc(&p.source)),
                (None, None) => "waiting".to_string(),
            };
            let actions = if write {
                ["promote", "allow", "dismiss"]
                    .iter()
                    .map(|a| {
                        format!(
                            "<form class=\"inline\" method=\"post\" action=\"/console/reports/{a}\">{}\
                             <input type=\"hidden\" name=\"caller\" value=\"{}\">\
                             <button class=\"quiet\" type=\"submit\" name=\"do\" value=\"{a}\">{a}</button></form> ",
                            csrf_field(&cx.who),
                            esc(&g.caller)
                        )
                    })
                    .collect::<String>()
            } else {
                String::new()
            };
            format!(
                "<tr class=\"reported\"><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td>{}</td><td class=\"wide\">{}</td><td class=\"state\">{state}</td><td>{actions}</td></tr>",
                esc(&g.caller),
                g.reporters,
                g.reports,
                esc(&g.categories),
                esc(&when(g.last)),
            )
        })
        .collect();
    let body = format!(
        "{outcome}<div class=\"card\"><table id=\"reports\"><thead><tr><th>Caller</th>\
         <th class=\"num\">Reporters</th><th class=\"num\">Reports</th><th>Categories</th>\
         <th class=\"wide\">Last report (UTC)</th><th>State</th><th></th></tr></thead><tbody>{rows}</tbody></table>\
         <p class=\"muted\">Reports of the last {} s, most reporters first.</p></div>",
        limits.window
    );
    shown(cx, "Reports", "reports", Ok(body))
}

/// `POST /console/reports/{promote,allow,dismiss}` with `caller`.
pub async fn decide(cx: &Ctx<'_>, what: &str) -> Response<ResponseBody> {
    let Some(raw) = cx.f("caller") else {
        return page_with(cx, note("error", "caller is required")).await;
    };
    let caller = match cx.st.reporter.as_ref().and_then(|r| r.number(raw)) {
        Some(c) => c,
        None => {
            let m = format!("{raw:?} is not a phone number");
            return page_with(cx, note("error", &m)).await;
        }
    };
    let (live, who) = (cx.st.live.clone(), cx.caller());
    let name = cx.who.name.clone();
    let what_ = what.to_string();
    let c = caller.clone();
    let r = blocking(move || {
        let t = now();
        let entry = |list: &str, action: EntryAction, reason: String| StoredEntry {
            list: list.into(),
            pattern: c.clone(),
            action,
            category: "reported".into(),
            reason,
            source: format!("console ({name})"),
            expires: None,
            created: t,
            updated: t,
        };
        match what_.as_str() {
            "promote" => {
                let e = entry(
                    REPORTS_LIST,
                    EntryAction::Block,
                    "promoted by an operator from callers' reports".into(),
                );
                live.add(who.who(), REPORTS_LIST, vec![e], t)
                    .map(|_| format!("{c} is now blocked (list {REPORTS_LIST})."))
                    .map_err(|e| e.to_string())
            }
            "allow" => {
                let e = entry(
                    ALLOWED_LIST,
                    EntryAction::Allow,
                    "allowed by an operator despite callers' reports".into(),
                );
                live.add(who.who(), ALLOWED_LIST, vec![e], t)
                    .map(|_| format!("{c} is now allowed (list {ALLOWED_LIST})."))
                    .map_err(|e| e.to_string())
            }
            "dismiss" => {
                let n = live
                    .store
                    .dismiss_reports(who.who(), &c, t)
                    .map_err(|e| e.to_string())?;
                let unpromoted = live
                    .remove(who.who(), REPORTS_LIST, &c, t)
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "{n} reports against {c} dismissed{}.",
                    if unpromoted.is_some() {
                        ", and its promotion removed"
                    } else {
                        ""
                    }
                ))
            }
            other => Err(format!("{other:?}: expected promote, allow or dismiss")),
        }
    })
    .await;
    let outcome = match r {
        Ok(m) => note("ok", &m),
        Err(e) => note("error", &e),
    };
    page_with(cx, outcome).await
}
