//! `GET /v1/lists`, `POST /v1/lists/{list}/import` and `GET /v1/lists/{list}/export`: the lists
//! as a whole, their counts, and whole-list CSV, FTC or plain-text transfers.
//!
//! Picks the import's defaults from the query and streams the export as the store is read;
//! parsing the formats is [`crate::lists::import`]'s and [`crate::lists::csv`]'s. Knows nothing
//! of single entries (that is [`super::entries`]).

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::{blocking, list_name, now, parse_expires};
use crate::api::auth::Caller;
use crate::api::http::{json_resp, qbool, qget, read_body, Fail, Reply, RequestBody};
use crate::api::State;
use crate::lists::import::{self, ImportDefaults};
use crate::screening::EntryAction;

/// `GET /v1/lists`: every list with its entry count, source and last load error.
pub(in crate::api) async fn all(st: &State) -> Reply {
    let live = st.live.clone();
    let v = blocking(move || Ok(live.lists()?)).await?;
    Ok(json_resp(StatusCode::OK, &json!({ "lists": v })))
}

/// The import's defaults for what a line leaves out: from the query, else by format (an FTC
/// export carries complaints, so it warns rather than blocks).
pub(in crate::api) fn import_defaults(
    format: &str,
    q: &[(String, String)],
) -> Result<ImportDefaults, Fail> {
    let ftc = format == "ftc";
    let action = match qget(q, "action") {
        None if ftc => EntryAction::Warn,
        None => EntryAction::Block,
        Some(a) => EntryAction::parse(a).ok_or_else(|| {
            Fail::new(
                StatusCode::BAD_REQUEST,
                format!("action {a:?}: expected allow, warn or block"),
            )
        })?,
    };
    let expires = match qget(q, "expires") {
        Some(s) => parse_expires(&Value::String(s.to_string()))
            .map_err(|m| Fail::new(StatusCode::BAD_REQUEST, m))?,
        None => None,
    };
    Ok(ImportDefaults {
        action,
        category: qget(q, "category")
            .unwrap_or(if ftc { "ftc-dnc" } else { "import" })
            .to_string(),
        reason: qget(q, "reason").unwrap_or("").to_string(),
        source: qget(q, "source")
            .unwrap_or(if ftc {
                "FTC DNC reported calls"
            } else {
                "import"
            })
            .to_string(),
        expires,
    })
}

/// `POST /v1/lists/{list}/import?format=&replace=`: all or nothing; 201 with what was written.
pub(in crate::api) async fn import(
    st: &State,
    who: Caller,
    list: String,
    q: &[(String, String)],
    req: Request<RequestBody>,
) -> Reply {
    list_name(&list)?;
    let format = qget(q, "format").unwrap_or("csv").to_string();
    if !["csv", "ftc", "plain"].contains(&format.as_str()) {
        return Err(Fail::new(
            StatusCode::BAD_REQUEST,
            format!("format {format:?}: expected csv, ftc or plain"),
        ));
    }
    let replace = qbool(q, "replace")?;
    let defaults = import_defaults(&format, q)?;
    let body = read_body(req, st.cfg.max_import_bytes, st.cfg.body_timeout()).await?;
    let live = st.live.clone();
    let (sum, skipped) = blocking(move || {
        let text = std::str::from_utf8(&body)
            .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, format!("body is not UTF-8: {e}")))?;
        let file = format!("import.{format}");
        let (entries, skipped) =
            import::parse_format(text, &format, &file, &defaults).map_err(|d| {
                Fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "the import has bad lines; nothing was written".into(),
                    d,
                )
            })?;
        let detail = format!("format={format}");
        let sum = live.import(who.who(), &list, entries, replace, now(), &detail)?;
        Ok((sum, skipped))
    })
    .await?;
    Ok(json_resp(
        StatusCode::CREATED,
        &json!({"list": sum.list, "written": sum.written, "replaced": sum.replaced, "skipped": skipped}),
    ))
}

/// `GET /v1/lists/{list}/export?format=csv`: streamed in chunks, so a list of millions is never
/// held in memory whole.
pub(in crate::api) fn export(st: &State, list: &str, q: &[(String, String)]) -> Reply {
    list_name(list)?;
    match qget(q, "format").unwrap_or("csv") {
        "csv" => {}
        f => {
            return Err(Fail::new(
                StatusCode::BAD_REQUEST,
                format!("format {f:?}: expected csv"),
            ))
        }
    }
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    let (live, list) = (st.live.clone(), list.to_string());
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut buf = String::from(crate::lists::csv::CSV_HEADER);
        buf.push('\n');
        let res = live.store.for_each(Some(&list), |e| {
            crate::lists::csv::csv_line(&e, &mut buf);
            if buf.len() >= 64 * 1024 {
                let chunk = Bytes::from(std::mem::take(&mut buf));
                // The client went away: stop reading the store.
                return rt.block_on(tx.send_data(chunk)).is_ok();
            }
            true
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "api: export failed part-way");
            // Aborting makes the client see a broken body rather than a short, valid-looking CSV.
            tx.abort(std::io::Error::other("export failed"));
            return;
        }
        if !buf.is_empty() {
            let _ = rt.block_on(tx.send_data(Bytes::from(buf)));
        }
    });
    let mut r = Response::new(body.boxed());
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    Ok(r)
}
