//! Store entries in the project's CSV list format, both ways: the six-column export and the
//! import through the file loader's own parser, so that what `lists export` or the admin API
//! writes, `lists import` and a lists directory read back unchanged.
//!
//! The format itself (columns, quoting, expiry dates) is defined once, in [`file`](super::file);
//! this module only maps it onto [`StoredEntry`]. It is its own module so that the CLI, the
//! importer and the API share it without depending on one another. Knows nothing of SQLite,
//! HTTP or how patterns are matched.

use super::file;
use super::store::StoredEntry;

/// The six columns of the list format, as a header line.
pub const CSV_HEADER: &str = "pattern,action,category,reason,source,expires";

/// Append one entry as a CSV line (with newline) in the list format.
pub fn csv_line(e: &StoredEntry, out: &mut String) {
    let expires = e.expires.map(file::format_expiry).unwrap_or_default();
    out.push_str(&file::quote_csv(&e.pattern));
    out.push(',');
    out.push_str(e.action.as_str());
    out.push(',');
    out.push_str(&file::quote_csv(&e.category));
    out.push(',');
    out.push_str(&file::quote_csv(&e.reason));
    out.push(',');
    out.push_str(&file::quote_csv(&e.source));
    out.push(',');
    out.push_str(&expires);
    out.push('\n');
}

/// Parse text in the list format with the file loader's parser: every entry, or every error as
/// `file:line: ...`.
pub fn parse_csv(text: &str, name: &str) -> Result<Vec<StoredEntry>, Vec<String>> {
    let mut out = Vec::new();
    file::parse_list(name, text, |_, e| {
        out.push(StoredEntry {
            list: String::new(),
            pattern: e.pattern.to_string(),
            action: e.action,
            category: e.category,
            reason: e.reason,
            source: e.source,
            expires: e.expires,
            created: 0,
            updated: 0,
        })
    })
    .map_err(|errs| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    Ok(out)
}
