//! Lists: every list with its entries, source, load error and hits; a store list's entries,
//! searched by prefix and paged, each with its hits among the recent calls; and, for the write
//! role, adding and removing entries and importing a CSV, FTC or plain file, shown first as a
//! dry-run diff against the list and written only when confirmed.
//!
//! Writes go through [`crate::lists::overlay::Live`], as the API's do, so they are validated,
//! audited and enforced the same way. Knows nothing of SQL or of the file formats' details.

use hyper::{Response, StatusCode};

use super::super::html::{csrf_field, enc, esc, when};
use super::super::Ctx;
use super::{blocking, note, shown};
use crate::api::auth::Role;
use crate::api::handlers::lists::import_defaults;
use crate::api::handlers::{now, parse_expires};
use crate::api::http::ResponseBody;
use crate::lists::import;
use crate::lists::overlay::canonical_pattern;
use crate::lists::store::{PageQuery, StoredEntry};
use crate::screening::EntryAction;

/// Entries on one page.
const PAGE: usize = 50;
/// Lines of an import's diff shown before it is confirmed (all are counted).
const DIFF_SHOWN: usize = 50;

/// `GET /console/lists`.
pub async fn all(cx: &Ctx<'_>) -> Response<ResponseBody> {
    let live = cx.st.live.clone();
    let hits = cx
        .st
        .console
        .desk
        .as_ref()
        .map(|d| d.hits())
        .unwrap_or_default();
    let body = blocking(move || live.lists().map_err(|e| e.to_string()))
        .await
        .map(|lists| {
            let rows: String = lists
                .iter()
                .map(|l| {
                    let n = hits.iter().find(|(k, _)| *k == l.name).map_or(0, |h| h.1);
                    let name = if l.source == "store" {
                        format!(
                            "<a href=\"/console/lists/{}\">{}</a>",
                            enc(&l.name),
                            esc(&l.name)
                        )
                    } else {
                        esc(&l.name)
                    };
                    format!(
                        "<tr><td>{name}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{n}</td><td class=\"error\">{}</td></tr>",
                        esc(&l.source),
                        l.entries,
                        esc(l.error.as_deref().unwrap_or(""))
                    )
                })
                .collect();
            format!(
                "<div class=\"card\"><table id=\"lists\"><thead><tr><th>List</th><th>Source</th>\
                 <th class=\"num\">Entries</th><th class=\"num\">Hits since start</th><th>Last load error</th></tr></thead>\
                 <tbody>{rows}</tbody></table></div>"
            )
        });
    shown(cx, "Lists", "lists", body)
}

/// `GET /console/lists/{list}?prefix=&cursor=`.
pub async fn one(cx: &Ctx<'_>, list: &str) -> Response<ResponseBody> {
    one_with(cx, list, String::new()).await
}

async fn one_with(cx: &Ctx<'_>, list: &str, outcome: String) -> Response<ResponseBody> {
    if let Err(e) = crate::lists::store::valid_list_name(list) {
        return super::super::html::problem(StatusCode::BAD_REQUEST, Some(&cx.who), &e.to_string());
    }
    let prefix = cx.q("prefix").map(str::to_string);
    let cursor = cx.q("cursor").map(str::to_string);
    let (live, name) = (cx.st.live.clone(), list.to_string());
    let page = blocking(move || {
        let q = PageQuery {
            prefix: prefix.as_deref(),
            cursor: cursor.as_deref(),
            limit: PAGE,
        };
        live.store.page(&name, &q).map_err(|e| e.to_string())
    })
    .await;
    let page = match page {
        Ok(p) => p,
        Err(e) => return shown(cx, list, "lists", Err(e)),
    };
    let recent = cx
        .st
        .console
        .desk
        .as_ref()
        .map(|d| d.recent().newest_first())
        .unwrap_or_default();
    let hits = |pattern: &str| {
        recent
            .iter()
            .filter(|r| {
                r.reasons
                    .iter()
                    .any(|x| x.source.name() == list && x.entry == pattern)
            })
            .count()
    };
    let write = cx.who.role >= Role::Write;
    let rows: String = page
        .iter()
        .map(|e| {
            let remove = if write {
                format!(
                    "<form class=\"inline\" method=\"post\" action=\"/console/lists/{}/remove\">{}\
                     <input type=\"hidden\" name=\"pattern\" value=\"{}\">\
                     <button class=\"danger\" type=\"submit\">Remove</button></form>",
                    enc(list),
                    csrf_field(&cx.who),
                    esc(&e.pattern)
                )
            } else {
                String::new()
            };
            format!(
                "<tr class=\"entry\"><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td class=\"wide\">{}</td>\
                 <td class=\"wide\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{remove}</td></tr>",
                esc(&e.pattern),
                e.action.as_str(),
                esc(&e.category),
                esc(&e.reason),
                esc(&e.source),
                e.expires.map_or_else(|| "never".into(), |t| esc(&when(t))),
                hits(&e.pattern),
            )
        })
        .collect();
    let next = (page.len() == PAGE)
        .then(|| page.last())
        .flatten()
        .map(|e| {
            format!(
                "<a href=\"/console/lists/{}?prefix={}&cursor={}\">Next page</a>",
                enc(list),
                enc(cx.q("prefix").unwrap_or("")),
                enc(&e.pattern)
            )
        })
        .unwrap_or_default();
    let mut body = outcome;
    body.push_str(&format!(
        "<form class=\"filters card\" method=\"get\" action=\"/console/lists/{}\">\
         <label>Pattern starts with<input name=\"prefix\" value=\"{}\"></label><button type=\"submit\">Search</button></form>\
         <div class=\"card\"><table id=\"entries\"><thead><tr><th>Pattern</th><th>Action</th><th>Category</th>\
         <th class=\"wide\">Reason</th><th class=\"wide\">Source</th><th>Expires</th><th class=\"num\">Recent hits</th><th></th></tr></thead>\
         <tbody>{rows}</tbody></table>{next}</div>",
        enc(list),
        esc(cx.q("prefix").unwrap_or("")),
    ));
    if write {
        body.push_str(&write_forms(cx, list));
    }
    shown(cx, &format!("List {list}"), "lists", Ok(body))
}

fn write_forms(cx: &Ctx<'_>, list: &str) -> String {
    let csrf = csrf_field(&cx.who);
    let l = enc(list);
    format!(
        "<h2>Add an entry</h2><form id=\"add-form\" class=\"filters card\" method=\"post\" action=\"/console/lists/{l}/add\">{csrf}\
         <label>Pattern<input id=\"add-pattern\" name=\"pattern\" required placeholder=\"+12025550143\"></label>\
         <label>Action<select name=\"action\"><option>block</option><option>warn</option><option>allow</option></select></label>\
         <label>Category<input name=\"category\" placeholder=\"scam\"></label>\
         <label>Reason<input name=\"reason\"></label><label>Source<input name=\"source\"></label>\
         <label>Expires<input name=\"expires\" placeholder=\"2027-01-31\"></label>\
         <button id=\"add\" type=\"submit\">Add</button></form>\
         <h2>Import</h2><form class=\"stack card\" method=\"post\" action=\"/console/lists/{l}/import\">{csrf}\
         <label>Format<select name=\"format\"><option>csv</option><option>ftc</option><option>plain</option></select></label>\
         <label>Replace the list<select name=\"replace\"><option value=\"false\">no, add to it</option><option value=\"true\">yes</option></select></label>\
         <label>File contents<textarea name=\"text\" required></textarea></label>\
         <button type=\"submit\">Show what would change</button></form>"
    )
}

/// `POST /console/lists/{list}/add`.
pub async fn add(cx: &Ctx<'_>, list: &str) -> Response<ResponseBody> {
    let f = |k: &str| cx.f(k).unwrap_or("").trim().to_string();
    let outcome = match entry_of(cx, list) {
        Err(e) => note("error", &e),
        Ok(entry) => {
            let (live, who, name) = (cx.st.live.clone(), cx.caller(), list.to_string());
            let r = blocking(move || {
                live.add(who.who(), &name, vec![entry], now())
                    .map_err(|e| e.to_string())
            })
            .await;
            match r {
                Ok(_) => note("ok", &format!("Added {} to {list}.", f("pattern"))),
                Err(e) => note("error", &e),
            }
        }
    };
    one_with(cx, list, outcome).await
}

fn entry_of(cx: &Ctx<'_>, list: &str) -> Result<StoredEntry, String> {
    let f = |k: &str| cx.f(k).unwrap_or("").trim().to_string();
    let action = EntryAction::parse(&f("action"))
        .ok_or_else(|| format!("action {:?}: expected allow, warn or block", f("action")))?;
    let expires = parse_expires(&serde_json::Value::String(f("expires")))?;
    for (k, v) in &cx.form {
        crate::screening::entry::check_text(k, v)?;
    }
    Ok(StoredEntry {
        list: list.to_string(),
        pattern: f("pattern"),
        action,
        category: f("category"),
        reason: f("reason"),
        source: if f("source").is_empty() {
            format!("console ({})", cx.who.name)
        } else {
            f("source")
        },
        expires,
        created: 0,
        updated: 0,
    })
}

/// `POST /console/lists/{list}/remove`.
pub async fn remove(cx: &Ctx<'_>, list: &str) -> Response<ResponseBody> {
    let pattern = cx.f("pattern").unwrap_or("").to_string();
    let (live, who, name, p) = (
        cx.st.live.clone(),
        cx.caller(),
        list.to_string(),
        pattern.clone(),
    );
    let r = blocking(move || {
        live.remove(who.who(), &name, &p, now())
            .map_err(|e| e.to_string())
    })
    .await;
    let outcome = match r {
        Ok(Some(_)) => note("ok", &format!("Removed {pattern} from {list}.")),
        Ok(None) => note("error", &format!("{list} has no entry {pattern}.")),
        Err(e) => note("error", &e),
    };
    one_with(cx, list, outcome).await
}

/// What an import would do to a list: entries new, changed and the same, and those a replace
/// would delete.
struct Diff {
    new: Vec<StoredEntry>,
    changed: Vec<(StoredEntry, StoredEntry)>,
    same: usize,
    deleted: u64,
}

/// `POST /console/lists/{list}/import`: without `confirm`, the diff and a form to confirm it;
/// with it, the import itself (all or nothing, audited).
pub async fn import(cx: &Ctx<'_>, list: &str) -> Response<ResponseBody> {
    let format = cx.f("format").unwrap_or("csv").to_string();
    if !["csv", "ftc", "plain"].contains(&format.as_str()) {
        let n = note(
            "error",
            &format!("format {format:?}: expected csv, ftc or plain"),
        );
        return one_with(cx, list, n).await;
    }
    let replace = cx.f("replace") == Some("true");
    let defaults = match import_defaults(&format, &cx.form) {
        Ok(d) => d,
        Err(e) => return one_with(cx, list, note("error", &e.1)).await,
    };
    let text = cx.f("text").unwrap_or("").to_string();
    let entries = match import::parse_format(&text, &format, &format!("import.{format}"), &defaults)
    {
        Ok((e, _)) => e,
        Err(d) => {
            let msg = format!("Nothing was written; bad lines: {}", d.join("; "));
            return one_with(cx, list, note("error", &msg)).await;
        }
    };
    let (live, name) = (cx.st.live.clone(), list.to_string());
    if cx.f("confirm") == Some("yes") {
        let who = cx.caller();
        let r = blocking(move || {
            live.import(
                who.who(),
                &name,
                entries,
                replace,
                now(),
                &format!("format={format}; console"),
            )
            .map_err(|e| e.to_string())
        })
        .await;
        let n = match r {
            Ok(s) => note(
                "ok",
                &format!("Imported: {} written, {} replaced.", s.written, s.replaced),
            ),
            Err(e) => note("error", &e),
        };
        return one_with(cx, list, n).await;
    }
    let diff = blocking(move || diff(&live, &name, entries, replace)).await;
    let body = match diff {
        Ok(d) => diff_html(cx, list, &d, &text, replace),
        Err(e) => note("error", &e),
    };
    one_with(cx, list, body).await
}

fn diff(
    live: &crate::lists::overlay::Live,
    list: &str,
    entries: Vec<StoredEntry>,
    replace: bool,
) -> Result<Diff, String> {
    let mut d = Diff {
        new: Vec::new(),
        changed: Vec::new(),
        same: 0,
        deleted: 0,
    };
    for e in entries {
        let key = canonical_pattern(&e.pattern).unwrap_or_else(|_| e.pattern.clone());
        match live.store.get(list, &key).map_err(|e| e.to_string())? {
            None => d.new.push(e),
            Some(old)
                if old.action == e.action
                    && old.category == e.category
                    && old.reason == e.reason
                    && old.expires == e.expires =>
            {
                d.same += 1
            }
            Some(old) => d.changed.push((old, e)),
        }
    }
    if replace {
        let had = live
            .store
            .lists()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|(n, _)| n == list)
            .map_or(0, |(_, n)| n);
        d.deleted = had.saturating_sub((d.same + d.changed.len()) as u64);
    }
    Ok(d)
}

fn diff_html(cx: &Ctx<'_>, list: &str, d: &Diff, text: &str, replace: bool) -> String {
    let line = |sign: &str, e: &StoredEntry| {
        format!(
            "<tr><td class=\"mono\">{sign}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.pattern),
            e.action.as_str(),
            esc(&e.category),
            esc(&e.reason)
        )
    };
    let mut rows: Vec<String> = d.new.iter().map(|e| line("+", e)).collect();
    for (old, new) in &d.changed {
        rows.push(line("-", old));
        rows.push(line("+", new));
    }
    let shown: String = rows.iter().take(DIFF_SHOWN).cloned().collect();
    format!(
        "<div class=\"card\" id=\"import-diff\"><p>Dry run: <strong>{}</strong> new, <strong>{}</strong> changed, \
         {} unchanged{}. Nothing has been written yet.</p>\
         <table><tbody>{shown}</tbody></table>\
         <form method=\"post\" action=\"/console/lists/{}/import\">{}\
         <input type=\"hidden\" name=\"format\" value=\"{}\"><input type=\"hidden\" name=\"replace\" value=\"{replace}\">\
         <input type=\"hidden\" name=\"confirm\" value=\"yes\"><input type=\"hidden\" name=\"text\" value=\"{}\">\
         <button type=\"submit\">Write these changes</button></form></div>",
        d.new.len(),
        d.changed.len(),
        d.same,
        if replace {
            format!(", and {} entries of the list deleted", d.deleted)
        } else {
            String::new()
        },
        enc(list),
        csrf_field(&cx.who),
        esc(cx.f("format").unwrap_or("csv")),
        esc(text),
    )
}
