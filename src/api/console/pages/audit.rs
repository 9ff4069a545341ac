//! Audit: who changed what and when, from where, with the entry before and after; newest
//! first, with the refused requests on request. Admin only, as `GET /v1/audit` is.
//!
//! Knows nothing of how the trail is stored.

use hyper::Response;

use super::super::html::{enc, esc, when};
use super::super::Ctx;
use super::{blocking, shown};
use crate::api::http::ResponseBody;

/// Records on one page.
const PAGE: usize = 100;

/// `GET /console/audit?kind=changes|refused&before=`.
pub async fn page(cx: &Ctx<'_>) -> Response<ResponseBody> {
    let refused = cx.q("kind") == Some("refused");
    let live = cx.st.live.clone();
    let records = blocking(move || {
        live.store
            .audit_newest(PAGE, Some(refused))
            .map_err(|e| e.to_string())
    })
    .await;
    let records = match records {
        Ok(r) => r,
        Err(e) => return shown(cx, "Audit", "audit", Err(e)),
    };
    let js = |v: &Option<serde_json::Value>| v.as_ref().map_or_else(String::new, |v| v.to_string());
    let rows: String = records
        .iter()
        .map(|r| {
            format!(
                "<tr class=\"record\"><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"mono\">{}</td><td class=\"mono wide\">{}</td><td class=\"mono wide\">{}</td>\
                 <td class=\"mono wide\">{}</td></tr>",
                esc(&when(r.at)),
                esc(&r.who),
                esc(&r.what),
                esc(&r.list),
                esc(r.pattern.as_deref().unwrap_or("")),
                esc(&js(&r.before)),
                esc(&js(&r.after)),
                esc(r.source.as_deref().unwrap_or(""))
            )
        })
        .collect();
    let other = if refused { "changes" } else { "refused" };
    let body = format!(
        "<p><a href=\"/console/audit?kind={}\">Show {other}</a></p><div class=\"card\"><table id=\"audit\">\
         <thead><tr><th>When (UTC)</th><th>Who</th><th>What</th><th>List</th><th>Pattern</th>\
         <th class=\"wide\">Before</th><th class=\"wide\">After</th><th class=\"wide\">From</th></tr></thead>\
         <tbody>{rows}</tbody></table><p class=\"muted\">The newest {PAGE} records, newest first.</p></div>",
        enc(other)
    );
    let title = if refused {
        "Audit: refused requests"
    } else {
        "Audit"
    };
    shown(cx, title, "audit", Ok(body))
}
