//! Disputes (issue 17): the open disputes of blocked callers, oldest first, with the number,
//! the contact, the statement and how long each has waited; for the write role, lift (an
//! `allow` entry for the number in `redress.allow_list`, enforced at once) or uphold.
//!
//! Both actions are the API's own (`handlers::disputes::resolve_one`): audited under the
//! operator's name, counted and timed in `scamguard_redress_resolution_seconds` exactly as
//! `POST /v1/disputes/{id}/lift|uphold`. Everything a caller wrote is shown escaped. Knows
//! nothing of SQL or of the public form.

use hyper::Response;

use super::super::html::{csrf_field, esc, when};
use super::super::Ctx;
use super::{blocking, note, shown};
use crate::api::auth::Role;
use crate::api::handlers::disputes::resolve_one;
use crate::api::handlers::now;
use crate::api::http::ResponseBody;
use crate::lists::store::DisputeStatus;

/// Disputes listed at most (the oldest: they have waited longest).
const SHOWN: usize = 200;

/// `GET /console/disputes`.
pub async fn page(cx: &Ctx<'_>) -> Response<ResponseBody> {
    page_with(cx, String::new()).await
}

/// "3 h 20 min": how long a dispute has waited.
fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3_599 => format!("{} min", s / 60),
        3_600..=86_399 => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

async fn page_with(cx: &Ctx<'_>, outcome: String) -> Response<ResponseBody> {
    let live = cx.st.live.clone();
    let open = blocking(move || {
        live.store
            .disputes(Some(DisputeStatus::Open), 0, SHOWN)
            .map_err(|e| e.to_string())
    })
    .await;
    let open = match open {
        Ok(v) => v,
        Err(e) => return shown(cx, "Disputes", "disputes", Err(e)),
    };
    let write = cx.who.role >= Role::Write;
    let t = now();
    let rows: String = open
        .iter()
        .map(|d| {
            let actions = if write {
                ["lift", "uphold"]
                    .iter()
                    .map(|a| {
                        format!(
                            "<form class=\"inline\" method=\"post\" action=\"/console/disputes/{}/{a}\">{}\
                             <button class=\"quiet\" type=\"submit\" id=\"{a}-{}\">{a}</button></form> ",
                            d.id,
                            csrf_field(&cx.who),
                            d.id
                        )
                    })
                    .collect::<String>()
            } else {
                String::new()
            };
            format!(
                "<tr class=\"dispute\" id=\"dispute-{}\"><td class=\"num\">{}</td><td class=\"mono\">{}</td><td>{}</td>\
                 <td class=\"wide statement\">{}</td><td title=\"{}\">{}</td><td>{actions}</td></tr>",
                d.id,
                d.id,
                esc(&d.number),
                esc(&d.contact),
                esc(&d.statement),
                esc(&when(d.opened)),
                age(t - d.opened),
            )
        })
        .collect();
    let list = &cx.st.disputes.allow_list;
    let body = format!(
        "{outcome}<div class=\"card\"><table id=\"disputes\"><thead><tr><th class=\"num\">Id</th><th>Number</th>\
         <th>Contact</th><th class=\"wide\">Statement</th><th>Waiting</th><th></th></tr></thead><tbody>{rows}</tbody></table>\
         <p class=\"muted\">Open disputes, oldest first. Lifting one adds an allow entry for its number to the list {}.</p></div>",
        esc(list)
    );
    shown(cx, "Disputes", "disputes", Ok(body))
}

/// `POST /console/disputes/{id}/{lift,uphold}`.
pub async fn resolve(cx: &Ctx<'_>, id: &str, what: &str) -> Response<ResponseBody> {
    let to = match what {
        "lift" => DisputeStatus::Lifted,
        _ => DisputeStatus::Upheld,
    };
    let Ok(n) = id.parse::<i64>() else {
        let m = format!("dispute {id:?}: expected a dispute id");
        return page_with(cx, note("error", &m)).await;
    };
    let outcome = match resolve_one(cx.st, cx.caller(), n, to).await {
        Ok(r) => note(
            "ok",
            &match r.entry {
                Some(e) => format!(
                    "Dispute {n} lifted: {} is allowed (list {}).",
                    e.pattern, e.list
                ),
                None => format!("Dispute {n} upheld: the block stays."),
            },
        ),
        Err(f) => note("error", &f.1),
    };
    page_with(cx, outcome).await
}
