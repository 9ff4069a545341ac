//! Overview: the last hour at a glance, read from the recent calls: calls by action (in ten-
//! minute steps), top blocked callers, campaigns grouped by number block, impersonated brand
//! and source peer, wangiri bursts, and the freshness of lists and feeds.
//!
//! Everything here is counted from the ring the app keeps; when the ring holds less than the
//! hour, the page says from when it counts. Knows nothing of how calls were decided.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::Response;

use super::super::html::{esc, when};
use super::super::recent::Row;
use super::super::Ctx;
use super::{blocking, shown};
use crate::api::handlers::now;
use crate::api::http::ResponseBody;
use crate::screening::Action;

/// Lines in each top list.
const TOP: usize = 10;

/// `items` counted by key, most first, at most [`TOP`].
fn top(items: impl Iterator<Item = String>) -> Vec<(String, usize)> {
    let mut m: HashMap<String, usize> = HashMap::new();
    for k in items {
        *m.entry(k).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(TOP);
    v
}

fn table(id: &str, head: &str, rows: &[(String, usize)]) -> String {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    let body: String = if rows.is_empty() {
        "<tr><td class=\"muted\" colspan=\"3\">none</td></tr>".into()
    } else {
        rows.iter()
            .map(|(k, n)| {
                let w = (n * 10 / max) * 10;
                format!(
                    "<tr><td class=\"mono\">{}</td><td class=\"num\">{n}</td>\
                     <td><div class=\"bar\"><span class=\"w{w}\"></span></div></td></tr>",
                    esc(k)
                )
            })
            .collect()
    };
    format!(
        "<div class=\"card\"><h2>{head}</h2><table id=\"{id}\"><tbody>{body}</tbody></table></div>"
    )
}

/// The thousand-block of a number: all but its last three digits, then `xxx`.
fn block_of(n: &str) -> String {
    if n.starts_with('+') && n.len() > 6 {
        format!("{}xxx", &n[..n.len() - 3])
    } else {
        n.to_string()
    }
}

fn by_action(rows: &[Arc<Row>], from_ms: u64) -> String {
    const STEP: u64 = 600_000;
    let mut buckets = [[0usize; 4]; 6];
    for r in rows {
        let i = ((r.time_ms.saturating_sub(from_ms)) / STEP).min(5) as usize;
        let a = match r.action {
            Action::Block => 0,
            Action::Challenge => 1,
            Action::Warn => 2,
            Action::Pass => 3,
        };
        buckets[i][a] += 1;
    }
    let total = |a: usize| buckets.iter().map(|b| b[a]).sum::<usize>();
    let lines: String = buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&when(((from_ms + i as u64 * STEP) / 1000) as i64)),
                b[0],
                b[1],
                b[2],
                b[3]
            )
        })
        .collect();
    format!(
        "<div class=\"card\"><h2>Calls by action, last hour</h2><table id=\"by-action\"><thead><tr><th>From (UTC)</th>\
         <th class=\"num\">Block</th><th class=\"num\">Challenge</th><th class=\"num\">Warn</th><th class=\"num\">Pass</th></tr></thead>\
         <tbody>{lines}<tr><th>Total</th><th class=\"num\" id=\"total-block\">{}</th><th class=\"num\">{}</th>\
         <th class=\"num\">{}</th><th class=\"num\">{}</th></tr></tbody></table></div>",
        total(0),
        total(1),
        total(2),
        total(3)
    )
}

/// `GET /console/overview`.
pub async fn page(cx: &Ctx<'_>) -> Response<ResponseBody> {
    let now_s = now();
    let from_ms = ((now_s - 3600).max(0) as u64) * 1000;
    let (rows, cap, subs) = match &cx.st.console.desk {
        Some(d) => {
            let recent = d.recent();
            let rows: Vec<Arc<Row>> = recent
                .newest_first()
                .into_iter()
                .filter(|r| r.time_ms >= from_ms)
                .collect();
            (rows, recent.cap(), d.subscriptions())
        }
        None => (Vec::new(), 0, Vec::new()),
    };
    let flagged = || rows.iter().filter(|r| r.action != Action::Pass);
    let blocked = top(rows
        .iter()
        .filter(|r| r.action == Action::Block)
        .map(|r| r.caller.clone()));
    let blocks = top(flagged().map(|r| block_of(&r.caller)));
    let brands = top(flagged().flat_map(|r| {
        r.reasons
            .iter()
            .filter(|x| x.source.name() == "brand")
            .map(|x| x.entry.clone())
            .collect::<Vec<_>>()
    }));
    let peers = top(flagged().map(|r| r.source.split(':').next().unwrap_or("").to_string()));
    let wangiri = top(rows
        .iter()
        .filter(|r| r.cites("wangiri"))
        .map(|r| block_of(&r.caller)));
    let covered = if rows.len() >= cap && cap > 0 {
        format!(
            "<p class=\"muted\">Counted from the last {cap} calls the agent keeps, since {}.</p>",
            esc(&when((rows.last().map_or(0, |r| r.time_ms) / 1000) as i64))
        )
    } else {
        String::new()
    };
    let live = cx.st.live.clone();
    let lists = blocking(move || live.lists().map_err(|e| e.to_string())).await;
    let lists = match lists {
        Ok(l) => l,
        Err(e) => return shown(cx, "Overview", "overview", Err(e)),
    };
    let fresh: String = lists
        .iter()
        .map(|l| {
            let state = match &l.error {
                Some(e) => format!("<span class=\"error\">{}</span>", esc(e)),
                None => "<span class=\"ok\">loaded</span>".into(),
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{state}</td></tr>",
                esc(&l.name),
                esc(&l.source),
                l.entries
            )
        })
        .chain(subs.iter().map(|s| {
            let state = match s.last_success {
                Some(t) => format!("updated {} s ago", now_s - t),
                None => "<span class=\"error\">never updated</span>".into(),
            };
            format!(
                "<tr><td>{}</td><td>feed</td><td class=\"num\">{}</td><td>{state}</td></tr>",
                esc(&s.name),
                s.entries
            )
        }))
        .collect();
    let body = format!(
        "{covered}<div class=\"grid\">{}{}</div><div class=\"grid\">{}{}{}{}</div>\
         <div class=\"card\"><h2>Lists and feeds</h2><table id=\"freshness\"><thead><tr><th>Name</th><th>Source</th>\
         <th class=\"num\">Entries</th><th>State</th></tr></thead><tbody>{fresh}</tbody></table></div>",
        by_action(&rows, from_ms),
        table("top-blocked", "Top blocked callers", &blocked),
        table("by-block", "Campaigns by number block", &blocks),
        table("by-brand", "Campaigns by impersonated brand", &brands),
        table("by-peer", "Campaigns by source peer", &peers),
        table("wangiri", "Wangiri bursts (by number block)", &wangiri),
    );
    shown(cx, "Overview", "overview", Ok(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_tops() {
        assert_eq!(block_of("+12025550143"), "+12025550xxx");
        assert_eq!(block_of("anonymous"), "anonymous");
        let t = top(["a", "b", "a", "c", "a", "b"].iter().map(|s| s.to_string()));
        assert_eq!(t, [("a".into(), 3), ("b".into(), 2), ("c".into(), 1)]);
    }
}
