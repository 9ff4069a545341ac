//! Feeds: the feeds this agent publishes (with the version a subscriber gets now) and the
//! partners' feeds it subscribes to (version, last success, last error, signature state,
//! entries), so an operator sees at a glance whether every feed is fresh.
//!
//! Knows nothing of fetching or signing; it reads the publisher and the app's subscriptions.

use hyper::Response;

use super::super::html::{esc, when};
use super::super::Ctx;
use super::{blocking, shown};
use crate::api::handlers::now;
use crate::api::http::ResponseBody;

/// `GET /console/feeds`.
pub async fn page(cx: &Ctx<'_>) -> Response<ResponseBody> {
    let published = match cx.st.publisher.clone() {
        None => Ok(Vec::new()),
        Some(p) => {
            blocking(move || {
                p.feeds()
                    .iter()
                    .map(|f| -> Result<_, String> {
                        let (version, last) = p.freshness(&f.list).map_err(|e| e.to_string())?;
                        Ok((f.name.clone(), f.list.clone(), version, last))
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .await
        }
    };
    let published = match published {
        Ok(p) => p,
        Err(e) => return shown(cx, "Feeds", "feeds", Err(e)),
    };
    let pubs: String = published
        .iter()
        .map(|(name, list, version, last)| {
            format!(
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{version}</td><td class=\"num\">{last}</td></tr>",
                esc(name),
                esc(list)
            )
        })
        .collect();
    let subs = cx
        .st
        .console
        .desk
        .as_ref()
        .map(|d| d.subscriptions())
        .unwrap_or_default();
    let t = now();
    let subs: String = subs
        .iter()
        .map(|s| {
            let age = s.last_success.map_or_else(
                || "never".into(),
                |at| format!("{} ({} s ago)", when(at), t - at),
            );
            let failing = match (s.last_error_at, s.last_success) {
                (Some(e), Some(ok)) => e > ok,
                (Some(_), None) => true,
                _ => false,
            };
            let signature = match &s.last_error {
                Some(e) if failing && e.to_ascii_lowercase().contains("signature") => "refused",
                _ if s.last_success.is_some() => "verified",
                _ => "not yet checked",
            };
            format!(
                "<tr><td>{}</td><td class=\"mono wide\">{}</td><td class=\"num\">{}</td><td>{}</td>\
                 <td class=\"{}\">{}</td><td>{signature}</td><td class=\"num\">{}</td></tr>",
                esc(&s.name),
                esc(&s.url),
                s.version,
                esc(&age),
                if failing { "error" } else { "muted" },
                esc(s.last_error.as_deref().unwrap_or("-")),
                s.entries
            )
        })
        .collect();
    let body = format!(
        "<h2>Published</h2><div class=\"card\"><table id=\"published\"><thead><tr><th>Feed</th><th>List</th>\
         <th class=\"num\">Version now</th><th class=\"num\">Last change (audit id)</th></tr></thead><tbody>{pubs}</tbody></table></div>\
         <h2>Subscribed</h2><div class=\"card\"><table id=\"subscribed\"><thead><tr><th>Feed</th><th class=\"wide\">URL</th>\
         <th class=\"num\">Version</th><th>Last success</th><th>Last error</th><th>Signature</th>\
         <th class=\"num\">Entries</th></tr></thead><tbody>{subs}</tbody></table></div>"
    );
    shown(cx, "Feeds", "feeds", Ok(body))
}
