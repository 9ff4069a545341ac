//! Lists: every list with its entries, source, load error and hits; a store list's entries,
//! searched by prefix and paged, each with its hits among the recent calls; and, for the write
//! role, adding and removing entries and importing a CSV, FTC or plain file (uploaded, or
//! pasted), shown first as a dry-run diff against the list (added, changed, removed; a refused
//! file's bad lines as the loaders name them) and written only when confirmed, by an import
//! job whose progress bar the page polls (`super::super::imports`).
//!
//! Writes go through [`crate::lists::overlay::Live`], as the API's do, so they are validated,
//! audited and enforced the same way. Knows nothing of SQL or of the file formats' details.

use hyper::{Response, StatusCode};

use super::super::html::{csrf_field, enc, esc, when};
use super::super::imports::{Job, Phase};
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
         <h2>Import</h2><form id=\"import-form\" class=\"stack card\" method=\"post\" enctype=\"multipart/form-data\" action=\"/console/lists/{l}/import\">{csrf}\
         <label>Format<select id=\"import-format\" name=\"format\"><option>csv</option><option>ftc</option><option>plain</option></select></label>\
         <label>Replace the list<select id=\"import-replace\" name=\"replace\"><option value=\"false\">no, add to it</option><option value=\"true\">yes</option></select></label>\
         <label>File<input id=\"import-file\" type=\"file\" name=\"file\" accept=\".csv,.txt,text/csv,text/plain\"></label>\
         <label>or paste its contents<textarea name=\"text\"></textarea></label>\
         <button id=\"import-dry-run\" type=\"submit\">Show what would change</button></form>"
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
/// would delete (all counted; the first [`DIFF_SHOWN`] of each kept to show).
struct Diff {
    new: Vec<StoredEntry>,
    new_count: usize,
    changed: Vec<(StoredEntry, StoredEntry)>,
    changed_count: usize,
    same: usize,
    removed: Vec<StoredEntry>,
    removed_count: usize,
}

/// `POST /console/lists/{list}/import`: an uploaded file (multipart, or pasted text) is parsed
/// by the loaders' own code and shown as a dry-run diff, staged for this operator; confirming
/// (`confirm=yes&staged=ID`) starts an import job (all or nothing, audited) whose progress the
/// page polls.
pub async fn import(cx: &Ctx<'_>, list: &str) -> Response<ResponseBody> {
    if cx.f("confirm") == Some("yes") {
        return commit(cx, list).await;
    }
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
    let Some(text) = cx.f("file").or_else(|| cx.f("text")) else {
        let n = note("error", "Choose a file (or paste its contents) to import.");
        return one_with(cx, list, n).await;
    };
    // Parsing a large file takes a while: off the async threads, like the store work.
    let (live, name, text) = (cx.st.live.clone(), list.to_string(), text.to_string());
    let fmt = format.clone();
    let parsed = blocking(move || {
        let file = format!("import.{fmt}");
        match import::parse_format(&text, &fmt, &file, &defaults) {
            Ok((entries, _)) => {
                let d = diff(&live, &name, &entries, replace)?;
                Ok(Ok((d, entries)))
            }
            Err(bad) => Ok(Err(bad)),
        }
    })
    .await;
    let body = match parsed {
        Ok(Err(bad)) => bad_lines(&bad),
        Ok(Ok((d, entries))) => {
            let staged = cx
                .st
                .console
                .imports
                .stage(&cx.who.name, list, entries, replace, &format);
            match staged {
                Some(id) => diff_html(cx, list, &d, &id, replace),
                None => note("error", "the system's random source failed"),
            }
        }
        Err(e) => note("error", &e),
    };
    one_with(cx, list, body).await
}

/// The loaders' messages for a refused file, one bad line each (`import.csv:3: ...`).
fn bad_lines(bad: &[String]) -> String {
    let items: String = bad
        .iter()
        .map(|b| format!("<li class=\"mono\">{}</li>", esc(b)))
        .collect();
    format!(
        "<div class=\"card\" id=\"import-errors\"><p class=\"error\" id=\"outcome\">Nothing was written: \
         the file has bad lines.</p><ul>{items}</ul></div>"
    )
}

/// `confirm=yes&staged=ID`: the staged upload becomes a job running off the async threads.
async fn commit(cx: &Ctx<'_>, list: &str) -> Response<ResponseBody> {
    let imports = &cx.st.console.imports;
    let staged = cx
        .f("staged")
        .and_then(|id| imports.take(&cx.who.name, list, id));
    let Some(staged) = staged else {
        let n = note(
            "error",
            "This dry run has expired or was confirmed already: upload the file again.",
        );
        return one_with(cx, list, n).await;
    };
    let total = staged.entries.len() as u64;
    let (id, job) = match imports.start(&cx.who.name, list, total) {
        Ok(j) => j,
        Err(e) => return one_with(cx, list, note("error", &e)).await,
    };
    let (live, who) = (cx.st.live.clone(), cx.caller());
    tokio::task::spawn_blocking(move || {
        let j = job.clone();
        let r = live.import_with_progress(
            who.who(),
            &staged.list,
            staged.entries,
            staged.replace,
            now(),
            &format!("format={}; console", staged.format),
            &mut |n| {
                j.set_written(n);
                if n >= j.total {
                    j.set_phase(Phase::Enforcing);
                }
            },
        );
        job.set_phase(match r {
            Ok(s) => Phase::Done(format!(
                "Imported into {}: {} written, {} replaced.",
                s.list, s.written, s.replaced
            )),
            Err(e) => Phase::Failed(format!("Nothing was written: {e}")),
        });
    });
    let started = progress_html(&id, &cx.st.console.imports.job(&cx.who.name, &id));
    one_with(cx, list, started).await
}

/// `GET /console/imports/{id}`: the job's progress bar; it asks again until the job ends.
pub fn progress(cx: &Ctx<'_>, id: &str) -> Response<ResponseBody> {
    let job = cx.st.console.imports.job(&cx.who.name, id);
    let frag = progress_html(id, &job);
    if cx.htmx {
        return super::super::html::html(StatusCode::OK, frag);
    }
    shown(cx, "Import", "lists", Ok(frag))
}

fn progress_html(id: &str, job: &Option<std::sync::Arc<Job>>) -> String {
    let Some(job) = job else {
        return note(
            "error",
            "No such import (finished imports are kept 15 minutes).",
        );
    };
    let pct = job.percent();
    let (state, poll) = match job.phase() {
        Phase::Writing => (
            format!("Writing: {} of {} entries.", job.written(), job.total),
            true,
        ),
        Phase::Enforcing => ("Written; compiling the list.".to_string(), true),
        Phase::Done(m) => (m, false),
        Phase::Failed(m) => (m, false),
    };
    let poll = if poll {
        format!(
            " hx-get=\"/console/imports/{}\" hx-trigger=\"load delay:300ms\" hx-swap=\"outerHTML\"",
            enc(id)
        )
    } else {
        String::new()
    };
    format!(
        "<div class=\"card\" id=\"import-progress\" data-job=\"{}\"{poll}><p>Import into <strong>{}</strong></p>\
         <progress id=\"import-bar\" max=\"100\" value=\"{pct}\">{pct}%</progress> <span id=\"import-percent\">{pct}%</span>\
         <p id=\"import-state\">{}</p>{}</div>",
        esc(id),
        esc(&job.list),
        esc(&state),
        if poll.is_empty() {
            format!(
                "<p><a id=\"import-list\" href=\"/console/lists/{}\">Show the list as it is now</a></p>",
                enc(&job.list)
            )
        } else {
            String::new()
        }
    )
}

fn diff(
    live: &crate::lists::overlay::Live,
    list: &str,
    entries: &[StoredEntry],
    replace: bool,
) -> Result<Diff, String> {
    let mut d = Diff {
        new: Vec::new(),
        new_count: 0,
        changed: Vec::new(),
        changed_count: 0,
        same: 0,
        removed: Vec::new(),
        removed_count: 0,
    };
    let mut keys = std::collections::HashSet::new();
    for e in entries {
        let key = canonical_pattern(&e.pattern).unwrap_or_else(|_| e.pattern.clone());
        match live.store.get(list, &key).map_err(|e| e.to_string())? {
            None => {
                d.new_count += 1;
                if d.new.len() < DIFF_SHOWN {
                    d.new.push(e.clone());
                }
            }
            Some(old)
                if old.action == e.action
                    && old.category == e.category
                    && old.reason == e.reason
                    && old.expires == e.expires =>
            {
                d.same += 1
            }
            Some(old) => {
                d.changed_count += 1;
                if d.changed.len() < DIFF_SHOWN {
                    d.changed.push((old, e.clone()));
                }
            }
        }
        if replace {
            keys.insert(key);
        }
    }
    if replace {
        // Every entry of the list not in the file goes: read page by page (the store's cap
        // bounds the list).
        let mut cursor: Option<String> = None;
        loop {
            let q = PageQuery {
                prefix: None,
                cursor: cursor.as_deref(),
                limit: 1_000,
            };
            let page = live.store.page(list, &q).map_err(|e| e.to_string())?;
            let last = page.last().map(|e| e.pattern.clone());
            for e in page {
                if !keys.contains(&e.pattern) {
                    d.removed_count += 1;
                    if d.removed.len() < DIFF_SHOWN {
                        d.removed.push(e);
                    }
                }
            }
            match last {
                Some(l) => cursor = Some(l),
                None => break,
            }
        }
    }
    Ok(d)
}

fn diff_html(cx: &Ctx<'_>, list: &str, d: &Diff, staged: &str, replace: bool) -> String {
    let line = |sign: &str, class: &str, e: &StoredEntry| {
        let what = match class {
            "added" => "added",
            "changed-from" => "changed, was",
            "changed-to" => "changed, now",
            _ => "removed",
        };
        format!(
            "<tr class=\"{class}\"><td class=\"mono\">{sign}</td><td>{what}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.pattern),
            e.action.as_str(),
            esc(&e.category),
            esc(&e.reason)
        )
    };
    let mut rows: String = d.new.iter().map(|e| line("+", "added", e)).collect();
    for (old, new) in &d.changed {
        rows.push_str(&line("-", "changed-from", old));
        rows.push_str(&line("+", "changed-to", new));
    }
    for e in &d.removed {
        rows.push_str(&line("-", "removed", e));
    }
    let more = if d.new_count + d.changed_count + d.removed_count
        > d.new.len() + d.changed.len() + d.removed.len()
    {
        format!("<p class=\"muted\">The first {DIFF_SHOWN} of each kind are shown.</p>")
    } else {
        String::new()
    };
    format!(
        "<div class=\"card\" id=\"import-diff\"><p>Dry run: <strong id=\"diff-added\">{}</strong> added, \
         <strong id=\"diff-changed\">{}</strong> changed, <strong id=\"diff-removed\">{}</strong> removed, \
         {} unchanged{}. Nothing has been written yet.</p>\
         <table><tbody>{rows}</tbody></table>{more}\
         <form method=\"post\" action=\"/console/lists/{}/import\">{}\
         <input type=\"hidden\" name=\"confirm\" value=\"yes\"><input type=\"hidden\" name=\"staged\" value=\"{}\">\
         <button id=\"import-commit\" type=\"submit\">Write these changes</button></form></div>",
        d.new_count,
        d.changed_count,
        d.removed_count,
        d.same,
        if replace { " (the list is replaced)" } else { "" },
        enc(list),
        csrf_field(&cx.who),
        esc(staged),
    )
}
