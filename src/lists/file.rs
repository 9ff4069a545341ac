//! The operator's list file format: CSV, one entry per line.
//!
//! ```text
//! # Comments start with '#'; blank lines are ignored.
//! pattern,action,category,reason,source,expires
//! +12025550143,block,scam,"Fake ""IRS"" calls, reported 40 times",ticket-123,2027-01-31
//! +1900*,warn,premium-rate,US premium-rate range,FCC,
//! ```
//!
//! - The first line that is neither a comment nor blank is the header: `pattern,action,category,
//!   reason`, optionally followed by `source` and then `expires`. Every line has that many fields.
//! - `pattern`: `+12025550143` (exact E.164), `+1900*` (prefix), `+4420790XXXXX` (fixed length,
//!   `X` = any digit), `/^\+2126\d{8}$/` (regex over `+digits`).
//! - `action`: `block`, `warn` or `allow`. `category`: one word of `a-z 0-9 - _`.
//! - `reason`: a short explanation shown in verdicts. `source`: where the entry comes from.
//!   Neither may hold a control character (a tab, a NUL...): they reach logs and SIP headers.
//! - `expires` (optional, may be empty): `2027-01-31` (the entry stops matching at 00:00 UTC that
//!   day) or an RFC 3339 date-time such as `2027-01-31T18:00:00Z`.
//! - Fields may be quoted with `"` to hold commas; `""` inside quotes is one `"`. A field does
//!   not span lines.
//!
//! Every bad line is reported as `file:line: what is wrong, what was expected`, and a file with
//! any error is refused whole so that a reload never applies half a file.
//!
//! Knows nothing of directories, reloads or how entries are indexed beyond handing them on.

use std::fmt;
use std::path::Path;

use crate::screening::entry::{check_category, check_text, Entry, EntryAction, Pattern};

/// One problem in a list file (or with the file as a whole when `line` is 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for ListError {}

/// Columns in header order; the first four are required.
pub const COLUMNS: [&str; 6] = [
    "pattern", "action", "category", "reason", "source", "expires",
];

/// Longest line accepted; anything longer is not an entry an operator wrote.
pub const MAX_LINE: usize = 4096;

/// Errors reported per file before the rest are summarised in one line.
pub const MAX_ERRORS: usize = 50;

/// Split one CSV line into fields. Unquoted fields are trimmed; quoted fields keep their
/// spaces and may hold commas, with `""` for a quote.
pub fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') || chars.peek() == Some(&'\t') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => {
                        return Err(
                            "a quoted field is not closed; expected a closing \" on the same line"
                                .into(),
                        )
                    }
                }
            }
            while chars.peek() == Some(&' ') || chars.peek() == Some(&'\t') {
                chars.next();
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => {
                    return Err(format!(
                        "{c:?} after a closing quote; expected a comma or the end of the line"
                    ))
                }
            }
        } else {
            let mut ended = true;
            for c in chars.by_ref() {
                if c == ',' {
                    ended = false;
                    break;
                }
                if c == '"' {
                    return Err(
                        "a quote inside an unquoted field; expected the whole field in quotes with \"\" for a quote"
                            .into(),
                    );
                }
                field.push(c);
            }
            fields.push(field.trim().to_string());
            if ended {
                return Ok(fields);
            }
        }
    }
}

/// Quote a field for writing when it needs it.
pub fn quote_csv(field: &str) -> String {
    if field.contains([',', '"', '#']) || field.starts_with(' ') || field.ends_with(' ') {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Format an entry as one line of the six-column format (no newline).
pub fn format_entry(e: &Entry) -> String {
    let expires = e.expires.map(format_expiry).unwrap_or_default();
    format!(
        "{},{},{},{},{},{}",
        quote_csv(&e.pattern.to_string()),
        e.action,
        quote_csv(&e.category),
        quote_csv(&e.reason),
        quote_csv(&e.source),
        expires
    )
}

/// Unix seconds as RFC 3339 (UTC).
pub fn format_expiry(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Parse an `expires` field: `YYYY-MM-DD` (00:00 UTC that day) or RFC 3339. Empty is `None`.
pub fn parse_expiry(s: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let date_fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &date_fmt) {
        return Ok(Some(d.midnight().assume_utc().unix_timestamp()));
    }
    match time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        Ok(t) => Ok(Some(t.unix_timestamp())),
        Err(_) => Err(format!(
            "expires {s:?} is not a date; expected YYYY-MM-DD or an RFC 3339 date-time like 2027-01-31T18:00:00Z"
        )),
    }
}

/// Parse one data line against the header's column count.
fn parse_line(fields: &[&str], columns: usize) -> Result<Entry, String> {
    if fields.len() != columns {
        return Err(format!(
            "{} fields; expected {columns} ({})",
            fields.len(),
            COLUMNS[..columns].join(",")
        ));
    }
    let pattern = Pattern::parse(fields[0]).map_err(|e| e.to_string())?;
    let action = EntryAction::parse(fields[1]).ok_or_else(|| {
        format!(
            "action {:?} is not one of block, warn, allow",
            fields[1].trim()
        )
    })?;
    let category = fields[2].trim();
    check_category(category)?;
    let reason = fields[3].trim();
    if reason.is_empty() {
        return Err("reason is empty; expected a short explanation shown in verdicts".into());
    }
    check_text("reason", reason)?;
    let source = fields.get(4).map(|s| s.trim()).unwrap_or("");
    check_text("source", source)?;
    let expires = match fields.get(5) {
        Some(s) => parse_expiry(s)?,
        None => None,
    };
    Ok(Entry {
        pattern,
        action,
        category: category.to_string(),
        reason: reason.to_string(),
        source: source.to_string(),
        expires,
    })
}

fn header_columns(fields: &[String]) -> Option<usize> {
    let n = fields.len();
    if !(4..=6).contains(&n) {
        return None;
    }
    fields
        .iter()
        .zip(COLUMNS)
        .all(|(f, c)| f.trim().eq_ignore_ascii_case(c))
        .then_some(n)
}

/// Parse a list's text, handing each good entry to `sink` with its line number. `file` is only
/// used in messages. Returns the entry count, or every error (the caller must then discard what
/// the sink received: a file with an error is refused whole).
pub fn parse_list(
    file: &str,
    text: &str,
    mut sink: impl FnMut(usize, Entry),
) -> Result<usize, Vec<ListError>> {
    let mut errors = Vec::new();
    let mut more = 0usize;
    let mut report = |line: usize, message: String, errors: &mut Vec<ListError>| {
        if errors.len() < MAX_ERRORS {
            errors.push(ListError {
                file: file.to_string(),
                line,
                message,
            });
        } else {
            more += 1;
        }
    };
    let mut columns: Option<usize> = None;
    let mut count = 0usize;
    let mut fast: Vec<&str> = Vec::with_capacity(8);
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() > MAX_LINE {
            report(
                line_no,
                format!(
                    "line is {} bytes long; expected at most {MAX_LINE}",
                    line.len()
                ),
                &mut errors,
            );
            continue;
        }
        if let Some(cols) = columns {
            if !line.contains('"') {
                // No quotes: the fields are the comma-separated pieces, trimmed, exactly as
                // `split_csv` reads them, without allocating a string per field.
                fast.clear();
                fast.extend(line.split(',').map(str::trim));
                match parse_line(&fast, cols) {
                    Ok(e) => {
                        count += 1;
                        sink(line_no, e);
                    }
                    Err(msg) => report(line_no, msg, &mut errors),
                }
                continue;
            }
        }
        let fields = match split_csv(line) {
            Ok(f) => f,
            Err(e) => {
                report(line_no, e, &mut errors);
                continue;
            }
        };
        let Some(cols) = columns else {
            match header_columns(&fields) {
                Some(n) => columns = Some(n),
                None => {
                    report(
                        line_no,
                        format!(
                            "header {line:?} is not a list header; expected pattern,action,category,reason optionally followed by ,source and ,expires"
                        ),
                        &mut errors,
                    );
                    // Without a header no line can be read; one message is enough.
                    break;
                }
            }
            continue;
        };
        let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
        match parse_line(&refs, cols) {
            Ok(e) => {
                count += 1;
                sink(line_no, e);
            }
            Err(msg) => report(line_no, msg, &mut errors),
        }
    }
    if columns.is_none() && errors.is_empty() {
        report(
            0,
            "no header line; expected pattern,action,category,reason as the first line that is not a comment".into(),
            &mut errors,
        );
    }
    if more > 0 {
        errors.push(ListError {
            file: file.to_string(),
            line: 0,
            message: format!("{more} more errors not shown"),
        });
    }
    if errors.is_empty() {
        Ok(count)
    } else {
        Err(errors)
    }
}

/// The list name a file gives: its stem, which must be a plain word so it can label metrics and
/// verdicts.
pub fn list_name(path: &Path) -> Result<String, String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| "file name is not UTF-8; expected a name like scams.csv".to_string())?;
    if stem.is_empty()
        || stem.len() > 64
        || !stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "list name {stem:?} is not a plain word; expected letters, digits, '-', '_' or '.' (at most 64)"
        ));
    }
    if crate::screening::Source::Policy == stem {
        return Err(format!(
            "list name {stem:?} is reserved for policy reasons; expected another file name"
        ));
    }
    Ok(stem.to_string())
}

/// Text of a file, with a non-UTF-8 byte reported at its line.
pub fn decode(file: &str, bytes: Vec<u8>) -> Result<String, ListError> {
    String::from_utf8(bytes).map_err(|e| {
        let upto = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..upto].iter().filter(|&&b| b == b'\n').count() + 1;
        ListError {
            file: file.to_string(),
            line,
            message: "not valid UTF-8; expected a UTF-8 text file".into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<(usize, String)>, Vec<String>> {
        let mut out = Vec::new();
        parse_list("x.csv", text, |l, e| out.push((l, format_entry(&e))))
            .map(|_| out)
            .map_err(|es| es.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn splits_csv_fields() {
        let cases: &[(&str, Result<&[&str], ()>)] = &[
            ("a,b,c", Ok(&["a", "b", "c"])),
            (" a , b ,c ", Ok(&["a", "b", "c"])),
            (r#""a, b",c"#, Ok(&["a, b", "c"])),
            (r#""say ""hi""",x"#, Ok(&[r#"say "hi""#, "x"])),
            ("a,,", Ok(&["a", "", ""])),
            (r#""open,b"#, Err(())),
            (r#""a"b,c"#, Err(())),
            (r#"a"b,c"#, Err(())),
        ];
        for (line, want) in cases {
            let got = split_csv(line);
            match want {
                Ok(w) => assert_eq!(
                    got.as_deref().ok(),
                    Some(
                        w.iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .as_slice()
                    ),
                    "{line}"
                ),
                Err(()) => assert!(got.is_err(), "{line}"),
            }
        }
    }

    #[test]
    fn parses_a_good_file() {
        let text = "# comment\n\n\u{feff}pattern,action,category,reason,source,expires\n\
            +12025550143,block,scam,\"Fake \"\"IRS\"\", reported\",t-1,2027-01-31\n\
            +1900*, WARN ,premium-rate,US premium rate,FCC,\n\
            +120255501XX,allow,example,ok,,2027-01-31T18:00:00+01:00\n";
        let got = parse(text).unwrap();
        assert_eq!(
            got,
            vec![
                (4, "+12025550143,block,scam,\"Fake \"\"IRS\"\", reported\",t-1,2027-01-31T00:00:00Z".to_string()),
                (5, "+1900*,warn,premium-rate,US premium rate,FCC,".to_string()),
                (6, "+120255501XX,allow,example,ok,,2027-01-31T17:00:00Z".to_string()),
            ]
        );
        let four = parse("pattern,action,category,reason\n+1900*,warn,p,r\n").unwrap();
        assert_eq!(four.len(), 1);
    }

    #[test]
    fn reports_each_bad_line() {
        let text = "pattern,action,category,reason,source,expires\n\
            +12025550143,blok,scam,r,s,\n\
            12025550143,block,scam,r,s,\n\
            +12025550143,block,Scam Calls,r,s,\n\
            +12025550143,block,scam,,s,\n\
            +12025550143,block,scam,r,s,2027-13-01\n\
            +12025550143,block,scam,r\n\
            +12025550143,block,scam,\"r,s,\n\
            /.*/,block,scam,r,s,\n\
            +12025550143,block,scam,r,s,\n";
        let errs = parse(text).unwrap_err();
        assert_eq!(errs.len(), 8, "{errs:#?}");
        assert_eq!(
            errs[0],
            "x.csv:2: action \"blok\" is not one of block, warn, allow"
        );
        assert!(
            errs[1].starts_with("x.csv:3: number \"12025550143\" has no leading +"),
            "{}",
            errs[1]
        );
        assert!(
            errs[2].starts_with("x.csv:4: category \"Scam Calls\""),
            "{}",
            errs[2]
        );
        assert!(
            errs[3].starts_with("x.csv:5: reason is empty"),
            "{}",
            errs[3]
        );
        assert!(
            errs[4].starts_with("x.csv:6: expires \"2027-13-01\" is not a date"),
            "{}",
            errs[4]
        );
        assert_eq!(
            errs[5],
            "x.csv:7: 4 fields; expected 6 (pattern,action,category,reason,source,expires)"
        );
        assert!(
            errs[6].starts_with("x.csv:8: a quoted field is not closed"),
            "{}",
            errs[6]
        );
        assert!(
            errs[7].starts_with("x.csv:9: regex /.*/ matches numbers of every length"),
            "{}",
            errs[7]
        );
    }

    #[test]
    fn control_characters_are_refused_with_file_and_line() {
        // A NUL, a tab and a DEL, in quoted and unquoted fields, in the reason and the source.
        let text = "pattern,action,category,reason,source\n\
            +12025550143,block,scam,\"a\u{0}b\",s\n\
            +12025550144,block,scam,r,\"x\ty\"\n\
            +12025550145,block,scam,r\u{7f},s\n\
            +12025550146,block,scam,fine,s\n";
        let errs = parse(text).unwrap_err();
        assert_eq!(
            errs,
            [
                "x.csv:2: reason holds a control character (U+0000); expected printable text",
                "x.csv:3: source holds a control character (U+0009); expected printable text",
                "x.csv:4: reason holds a control character (U+007F); expected printable text",
            ]
        );
    }

    #[test]
    fn header_problems() {
        let e = parse("+12025550143,block,scam,r\n").unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("x.csv:1: header"), "{}", e[0]);
        let e = parse("# only comments\n").unwrap_err();
        assert!(e[0].starts_with("x.csv: no header line"), "{}", e[0]);
        assert!(parse("pattern,action,category\n").is_err());
        assert!(parse("pattern,action,category,reason,expires\n").is_err());
    }

    #[test]
    fn caps_error_count() {
        let mut text = String::from("pattern,action,category,reason\n");
        for _ in 0..200 {
            text.push_str("bad,block,scam,r\n");
        }
        let e = parse(&text).unwrap_err();
        assert_eq!(e.len(), MAX_ERRORS + 1);
        assert_eq!(e[MAX_ERRORS], "x.csv: 150 more errors not shown");
    }

    #[test]
    fn names_and_encoding() {
        assert_eq!(
            list_name(Path::new("dir/premium-rate.csv")).unwrap(),
            "premium-rate"
        );
        assert!(list_name(Path::new("dir/my list.csv")).is_err());
        assert!(list_name(Path::new("dir/policy.csv")).is_err());
        let e = decode("x.csv", b"pattern\n+1,\xff\n".to_vec()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.csv:2: not valid UTF-8; expected a UTF-8 text file"
        );
    }
}
