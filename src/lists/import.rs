//! Bulk import formats for the store: plain (one pattern per line) and the US FTC Do-Not-Call
//! reported-calls CSV, aggregated per reported number. The project's own CSV list format is
//! accepted too, through [`csv`](super::csv).
//!
//! Parsing is all or nothing: a file with any bad line yields every bad line (up to a cap) and no
//! entries. Knows nothing of SQLite, HTTP or how patterns are matched: the caller passes the
//! pattern check.

use std::collections::HashMap;
use std::fmt;

use crate::screening::EntryAction;

use super::store::StoredEntry;

/// Most per-line errors reported for one file; the count of the rest is still given.
pub const MAX_LINE_ERRORS: usize = 100;

/// One bad line of an import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why an import was refused: the bad lines (at most [`MAX_LINE_ERRORS`]) and how many in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub errors: Vec<LineError>,
    pub total: usize,
}

impl ImportError {
    fn push(&mut self, line: usize, message: String) {
        self.total += 1;
        if self.errors.len() < MAX_LINE_ERRORS {
            self.errors.push(LineError { line, message });
        }
    }

    /// Each line error prefixed with the file name, as operators expect (`file:line: ...`).
    pub fn lines(&self, file: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{file}:{}: {}", e.line, e.message))
            .collect();
        if self.total > self.errors.len() {
            v.push(format!(
                "{file}: {} more errors not shown",
                self.total - self.errors.len()
            ));
        }
        v
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bad lines", self.total)?;
        if let Some(e) = self.errors.first() {
            write!(f, " (first: {e})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ImportError {}

/// Defaults applied to every imported entry that the format does not carry itself.
#[derive(Debug, Clone)]
pub struct ImportDefaults {
    pub action: EntryAction,
    pub category: String,
    pub reason: String,
    pub source: String,
    pub expires: Option<i64>,
}

impl ImportDefaults {
    fn entry(&self, pattern: String) -> StoredEntry {
        StoredEntry {
            list: String::new(),
            pattern,
            action: self.action,
            category: self.category.clone(),
            reason: self.reason.clone(),
            source: self.source.clone(),
            expires: self.expires,
            created: 0,
            updated: 0,
        }
    }
}

/// Plain: one pattern per line; blank lines and `#` comments skipped. Later duplicates win.
pub fn parse_plain(
    text: &str,
    d: &ImportDefaults,
    check: &dyn Fn(&str) -> Result<(), String>,
) -> Result<Vec<StoredEntry>, ImportError> {
    let mut out = Vec::new();
    let mut err = ImportError {
        errors: vec![],
        total: 0,
    };
    for (i, line) in text.lines().enumerate() {
        let p = line.trim();
        if p.is_empty() || p.starts_with('#') {
            continue;
        }
        match check(p) {
            Ok(()) => out.push(d.entry(p.to_string())),
            Err(m) => err.push(i + 1, m),
        }
    }
    if err.total > 0 {
        Err(err)
    } else {
        Ok(out)
    }
}

/// The FTC DNC reported-calls header columns this parser needs.
const FTC_NUMBER: &str = "Company_Phone_Number";
const FTC_CREATED: &str = "Created_Date";
const FTC_VIOLATION: &str = "Violation_Date";
const FTC_SUBJECT: &str = "Subject";

#[derive(Default)]
struct FtcAgg {
    reports: u64,
    first: String,
    last: String,
    subjects: HashMap<String, u64>,
}

/// The FTC Do-Not-Call reported-calls CSV (header `Company_Phone_Number,Created_Date,
/// Violation_Date,Consumer_City,Consumer_State,Consumer_Area_Code,Subject,
/// Recorded_Message_Or_Robocall`), one entry per reported number: `+1` and the ten NANP digits,
/// with the report count, the first and last dates (violation date, or the report date when
/// absent) and the most reported subject in the reason. Rows without a number are skipped
/// (the FTC publishes some); the count is returned.
// Long on purpose: one pass over the FTC columns, field by field.
#[allow(clippy::too_many_lines)]
pub fn parse_ftc(text: &str, d: &ImportDefaults) -> Result<(Vec<StoredEntry>, u64), ImportError> {
    let mut err = ImportError {
        errors: vec![],
        total: 0,
    };
    let mut records = CsvRecords::new(text);
    let Some((_, header)) = records.next() else {
        err.push(1, "empty file: expected the FTC header line".into());
        return Err(err);
    };
    let header = match header {
        Ok(h) => h,
        Err(m) => {
            err.push(1, m);
            return Err(err);
        }
    };
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().trim_start_matches('\u{feff}') == name)
    };
    let (Some(num_c), Some(created_c)) = (col(FTC_NUMBER), col(FTC_CREATED)) else {
        err.push(
            1,
            format!("not an FTC DNC header: expected columns {FTC_NUMBER} and {FTC_CREATED}"),
        );
        return Err(err);
    };
    let viol_c = col(FTC_VIOLATION);
    let subj_c = col(FTC_SUBJECT);
    let mut agg: HashMap<String, FtcAgg> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut skipped = 0u64;
    for (line, rec) in records {
        let fields = match rec {
            Ok(f) => f,
            Err(m) => {
                err.push(line, m);
                continue;
            }
        };
        if fields.len() == 1 && fields[0].trim().is_empty() {
            continue;
        }
        if fields.len() != header.len() {
            err.push(
                line,
                format!("expected {} columns, found {}", header.len(), fields.len()),
            );
            continue;
        }
        let raw = fields[num_c].trim();
        if raw.is_empty() {
            skipped += 1;
            continue;
        }
        let Some(number) = nanp(raw) else {
            err.push(
                line,
                format!("{FTC_NUMBER} {raw:?} is not a 10-digit US number"),
            );
            continue;
        };
        let date = viol_c
            .map(|c| fields[c].trim())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| fields[created_c].trim());
        let day = date.get(..10).unwrap_or("");
        if !valid_day(day) {
            err.push(line, format!("date {date:?} is not YYYY-MM-DD[ hh:mm:ss]"));
            continue;
        }
        let a = agg.entry(number.clone()).or_insert_with(|| {
            order.push(number.clone());
            FtcAgg::default()
        });
        a.reports += 1;
        if a.first.is_empty() || day < a.first.as_str() {
            a.first = day.to_string();
        }
        if day > a.last.as_str() {
            a.last = day.to_string();
        }
        if let Some(c) = subj_c {
            let s = fields[c].trim();
            if let Err(m) = crate::screening::entry::check_text(FTC_SUBJECT, s) {
                err.push(line, m);
                continue;
            }
            // Bounded: a number's distinct subjects are few, and the map dies with the import.
            if !s.is_empty() && a.subjects.len() < 64 {
                *a.subjects.entry(s.to_string()).or_default() += 1;
            }
        }
    }
    if err.total > 0 {
        return Err(err);
    }
    let out = order
        .into_iter()
        .map(|n| {
            let a = &agg[&n];
            let top = a
                .subjects
                .iter()
                .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
                .map(|(s, _)| format!("; subject: {s}"))
                .unwrap_or_default();
            let mut e = d.entry(n);
            let mut reason = format!(
                "FTC DNC: {} report{}, first {}, last {}{top}",
                a.reports,
                if a.reports == 1 { "" } else { "s" },
                a.first,
                a.last
            );
            if !d.reason.is_empty() {
                reason = format!("{}; {reason}", d.reason);
            }
            reason.truncate(480);
            e.reason = reason;
            e
        })
        .collect();
    Ok((out, skipped))
}

/// `2025550143`, `12025550143`, `+1 (202) 555-0143` -> `+12025550143`; NANP area codes and
/// exchange codes start with 2-9.
fn nanp(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(|c| c.is_ascii_digit()).collect();
    if raw
        .chars()
        .any(|c| !(c.is_ascii_digit() || " +-().".contains(c)))
    {
        return None;
    }
    let ten = match digits.len() {
        10 => digits.as_str(),
        11 if digits.starts_with('1') => &digits[1..],
        _ => return None,
    };
    let b = ten.as_bytes();
    if b[0] < b'2' || b[3] < b'2' {
        return None;
    }
    Some(format!("+1{ten}"))
}

fn valid_day(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Parse an import body in one of the formats into validated store entries, or the per-line
/// errors (`file:line: ...`). Shared by the API and the CLI.
pub fn parse_format(
    text: &str,
    format: &str,
    file: &str,
    d: &ImportDefaults,
) -> Result<(Vec<StoredEntry>, u64), Vec<String>> {
    let check = |p: &str| crate::lists::overlay::canonical_pattern(p).map(|_| ());
    let (mut entries, skipped) = match format {
        "plain" => (parse_plain(text, d, &check).map_err(|e| e.lines(file))?, 0),
        "ftc" => parse_ftc(text, d).map_err(|e| e.lines(file))?,
        "csv" => (super::csv::parse_csv(text, file)?, 0),
        other => {
            return Err(vec![format!(
                "format {other:?}: expected csv, ftc or plain"
            )])
        }
    };
    let mut bad = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        if e.category.is_empty() {
            e.category = d.category.clone();
        }
        if let Err(m) = crate::lists::overlay::validate_entry(e) {
            bad.push(format!("{file}: entry {}: {m}", i + 1));
            if bad.len() >= MAX_LINE_ERRORS {
                break;
            }
        }
    }
    if bad.is_empty() {
        Ok((entries, skipped))
    } else {
        Err(bad)
    }
}

/// RFC 4180 records: quoted fields may hold commas, doubled quotes and line breaks. Yields the
/// 1-based line where each record starts.
pub struct CsvRecords<'a> {
    rest: &'a str,
    line: usize,
}

impl<'a> CsvRecords<'a> {
    pub fn new(text: &'a str) -> Self {
        CsvRecords {
            rest: text,
            line: 1,
        }
    }
}

impl Iterator for CsvRecords<'_> {
    type Item = (usize, Result<Vec<String>, String>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let start = self.line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut chars = self.rest.char_indices().peekable();
        let mut in_quotes = false;
        let mut at_field_start = true;
        let mut bad: Option<String> = None;
        let mut end = self.rest.len();
        while let Some((i, c)) = chars.next() {
            if in_quotes {
                match c {
                    '"' if chars.peek().map(|x| x.1) == Some('"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => in_quotes = false,
                    '\n' => {
                        self.line += 1;
                        field.push(c);
                    }
                    _ => field.push(c),
                }
                continue;
            }
            match c {
                '"' if at_field_start => {
                    in_quotes = true;
                    at_field_start = false;
                }
                '"' => {
                    bad.get_or_insert_with(|| "stray quote inside an unquoted field".into());
                }
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    at_field_start = true;
                }
                '\r' if chars.peek().map(|x| x.1) == Some('\n') => {}
                '\n' => {
                    end = i + 1;
                    self.line += 1;
                    break;
                }
                _ => {
                    field.push(c);
                    at_field_start = false;
                }
            }
        }
        if in_quotes {
            bad = Some("unterminated quoted field".into());
        }
        fields.push(field);
        self.rest = &self.rest[end.min(self.rest.len())..];
        Some((start, bad.map_or(Ok(fields), Err)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ImportDefaults {
        ImportDefaults {
            action: EntryAction::Warn,
            category: "ftc".into(),
            reason: String::new(),
            source: "import".into(),
            expires: None,
        }
    }

    fn e164(p: &str) -> Result<(), String> {
        let ok = p.starts_with('+') && p.len() > 2 && p[1..].bytes().all(|b| b.is_ascii_digit());
        if ok {
            Ok(())
        } else {
            Err(format!("bad pattern {p:?}"))
        }
    }

    #[test]
    fn csv_records() {
        let t = "a,\"b,c\",\"d\"\"e\"\r\n\"multi\nline\",x\nlast";
        let got: Vec<_> = CsvRecords::new(t).collect();
        assert_eq!(
            got,
            vec![
                (1, Ok(vec!["a".into(), "b,c".into(), "d\"e".into()])),
                (2, Ok(vec!["multi\nline".into(), "x".into()])),
                (4, Ok(vec!["last".into()])),
            ]
        );
        let bad: Vec<_> = CsvRecords::new("a,b\"c\n\"open").collect();
        assert!(bad[0].1.is_err() && bad[1].1.is_err());
    }

    #[test]
    fn nanp_numbers() {
        for (raw, want) in [
            ("2025550143", Some("+12025550143")),
            ("12025550143", Some("+12025550143")),
            ("+1 (202) 555-0143", Some("+12025550143")),
            ("1025550143", None),
            ("2021550143", None),
            ("555014", None),
            ("20255501ab", None),
        ] {
            assert_eq!(nanp(raw).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn plain_all_or_nothing() {
        let ok = parse_plain("# c\n+12025550143\n\n +442079460018 \n", &defaults(), &e164).unwrap();
        assert_eq!(
            ok.iter().map(|e| e.pattern.as_str()).collect::<Vec<_>>(),
            ["+12025550143", "+442079460018"]
        );
        let err = parse_plain("+1202\nnope\n+1\n", &defaults(), &e164).unwrap_err();
        assert_eq!(err.total, 2);
        assert_eq!(
            err.lines("x.txt"),
            [
                "x.txt:2: bad pattern \"nope\"",
                "x.txt:3: bad pattern \"+1\""
            ]
        );
    }

    const HEADER: &str = "Company_Phone_Number,Created_Date,Violation_Date,Consumer_City,Consumer_State,Consumer_Area_Code,Subject,Recorded_Message_Or_Robocall\n";

    #[test]
    fn ftc_aggregates_per_number() {
        let t = format!(
            "{HEADER}4342481967,2026-09-23 00:02:35,2026-09-22 18:22:00,SACRAMENTO,California,510,\"Reducing your debt (credit cards, mortgage, student loans)\",\n\
             4342481967,2026-09-24 00:03:35,,X,California,510,\"Reducing your debt (credit cards, mortgage, student loans)\",Y\n\
             4342481967,2026-09-25 00:00:00,2026-09-20 10:00:00,,Texas,512,Other,Y\n\
             ,2026-09-25 00:00:00,,,Texas,512,Other,Y\n\
             2025550101,2026-09-22 00:28:21,2026-09-21 19:12:00,Ballwin,Illinois,309,Other,\n"
        );
        let (v, skipped) = parse_ftc(&t, &defaults()).unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].pattern, "+14342481967");
        assert_eq!(
            v[0].reason,
            "FTC DNC: 3 reports, first 2026-09-20, last 2026-09-24; subject: Reducing your debt (credit cards, mortgage, student loans)"
        );
        assert_eq!(
            (v[0].action, v[0].category.as_str()),
            (EntryAction::Warn, "ftc")
        );
        assert_eq!(
            v[1].reason,
            "FTC DNC: 1 report, first 2026-09-21, last 2026-09-21; subject: Other"
        );
    }

    #[test]
    fn ftc_refuses_bad_rows_whole() {
        let t = format!(
            "{HEADER}4342481967,2026-09-23 00:02:35,,,,510,Other,\n\
             12345,2026-09-23 00:02:35,,,,510,Other,\n\
             4342481967,yesterday,,,,510,Other,\n\
             4342481967,2026-09-23,,,,510\n\
             4342481967,2026-09-23 00:02:35,,,,510,\"Debt\u{0}relief\",\n"
        );
        let err = parse_ftc(&t, &defaults()).unwrap_err();
        let lines: Vec<usize> = err.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
        assert_eq!(
            err.errors[3].message,
            "Subject holds a control character (U+0000); expected printable text"
        );
        assert!(parse_ftc("number,date\n1,2\n", &defaults()).is_err());
    }
}
