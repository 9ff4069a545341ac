//! How long the decision log keeps the destinations of protected subscribers' outbound calls
//! (`[callback] destination_retention`): the log file is cut into periods, and once a closed
//! period's oldest outbound line is older than the retention, the destinations in that file are
//! redacted.
//!
//! - **Rotation.** With a retention, the decision-log writer renames its file at every period's
//!   end (a UTC day; half the retention when that is shorter) to `<file>.<period>` (for example
//!   `decisions.jsonl.2026-12-05`) and opens a new one, so the file it appends to never holds a
//!   line older than the retention. A file left from before a restart is renamed for the period
//!   it was last written in.
//! - **Redaction.** A thread of its own, off the SIP path and off the writer's, looks every
//!   eighth of the retention (at most a minute) at the files beside the log whose names extend
//!   its name (`<file>.*`, `<file>-*`: the agent's periods and a `logrotate` setup's copies,
//!   numbered or dated). A file whose oldest unredacted outbound line has reached the
//!   retention is rewritten once, whole, with every outbound line's `callee` (the destination,
//!   hashed or not) and its reasons' `entry` (a listed number names it too) replaced by
//!   `"redacted"`; inbound lines, and every other field, stay byte for byte. So a destination
//!   is kept at most the retention and one look, and a file is read again only when it changes.
//! - **What it cannot reach** it says: compressed copies (`.gz`, `.xz`, ...) are warned about
//!   once each when they are older than the retention (`logrotate`'s `maxage`, or
//!   `delaycompress` with a retention under a day, must bound them), and a log sent to stdout
//!   or to a HEP collector is kept as long as whatever reads it keeps it.
//!
//! Knows nothing of SIP or of how a call was decided: only the log's lines.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metrics::Counter;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const DAY: Duration = Duration::from_secs(86_400);

/// What a redacted destination and entry read as.
pub const REDACTED: &str = "redacted";

/// `"30d"`, `"12h"`, `"90m"`, `"45s"`: a whole positive number and its unit; `""` is no limit.
/// The error says what was expected, for `scamguard validate`.
pub fn parse_retention(s: &str) -> Result<Option<Duration>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let bad = || {
        format!(
            "{s:?}: expected a whole number of seconds, minutes, hours or days, such as \"30d\", \
             \"12h\", \"90m\" or \"45s\" (at least 1s, at most 3650d), or \"\" for no limit"
        )
    };
    let (digits, unit) = t.split_at(t.len() - 1);
    let n: u64 = digits
        .parse()
        .ok()
        .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(bad)?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .filter(|s| (1..=3650 * 86_400).contains(s))
    .ok_or_else(bad)?;
    Ok(Some(Duration::from_secs(secs)))
}

/// The log's periods for a retention: a UTC day, or half the retention when that is shorter (so
/// the file being written never holds a line older than the retention).
pub fn period_for(retention: Duration) -> Duration {
    (retention / 2).clamp(Duration::from_millis(500), DAY)
}

/// The start of the period `t` falls in, periods being counted from the Unix epoch (a day's
/// periods start at UTC midnight).
pub fn period_start(t: SystemTime, period: Duration) -> SystemTime {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let p = period.as_millis().max(1) as u64;
    UNIX_EPOCH + Duration::from_millis(ms - ms % p)
}

/// The name a period's file gets: `<file>.2026-12-05` for a day, else with the time as well
/// (`<file>.2026-12-05T13-04-05.500`).
pub fn rotated_name(live: &Path, start: SystemTime, period: Duration) -> PathBuf {
    let t = OffsetDateTime::from(start);
    let d = t.date();
    let mut stamp = format!("{}-{:02}-{:02}", d.year(), d.month() as u8, d.day());
    if period < DAY {
        stamp.push_str(&format!(
            "T{:02}-{:02}-{:02}.{:03}",
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ));
    }
    let mut name = live.as_os_str().to_owned();
    name.push(format!(".{stamp}"));
    let first = PathBuf::from(name);
    // A period already rotated (a clock set back, a restart at its very end) keeps its file.
    (1..)
        .map(|i| {
            if i == 1 {
                first.clone()
            } else {
                let mut n = first.as_os_str().to_owned();
                n.push(format!(".{i}"));
                PathBuf::from(n)
            }
        })
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// A line with its outbound destination redacted; `None` when there is nothing to redact (an
/// inbound line, one already redacted, or one that is not the log's JSON, which is left as it
/// is rather than guessed at).
pub fn redact_line(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("outbound") != Some(&serde_json::Value::Bool(true)) || !unredacted(&v) {
        return None;
    }
    // The line is edited as text so that everything else stays byte for byte. A key inside a
    // JSON string has its quotes escaped, so `"callee":"` can only be the field itself.
    let mut out = replace_strings(line, "\"callee\":");
    out = replace_strings(&out, "\"entry\":");
    let check: serde_json::Value = serde_json::from_str(&out).ok()?;
    (!unredacted(&check)).then_some(out)
}

/// Does an outbound line still name its destination?
fn unredacted(v: &serde_json::Value) -> bool {
    let callee = v.get("callee").and_then(|c| c.as_str());
    let entries = v
        .get("reasons")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("entry").and_then(|e| e.as_str()));
    callee.is_some_and(|c| c != REDACTED) || entries.into_iter().any(|e| e != REDACTED)
}

/// Every `key` followed by a JSON string: the string replaced by `"redacted"`.
fn replace_strings(line: &str, key: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find(key) {
        let after = i + key.len();
        out.push_str(&rest[..after]);
        rest = &rest[after..];
        if let Some(end) = json_string_end(rest) {
            out.push('"');
            out.push_str(REDACTED);
            out.push('"');
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// The byte after the JSON string `s` starts with, if it starts with one.
fn json_string_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The time of the oldest outbound line of a file that still names its destination.
fn oldest_unredacted(path: &Path) -> std::io::Result<Option<SystemTime>> {
    let mut oldest: Option<SystemTime> = None;
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        // Most lines are inbound: skip them without parsing.
        if !line.contains("\"outbound\":true") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v.get("outbound") != Some(&serde_json::Value::Bool(true)) || !unredacted(&v) {
            continue;
        }
        // A line without a readable time counts as the oldest possible: redacting it early is
        // the safe side of a retention.
        let t = v
            .get("time")
            .and_then(|t| t.as_str())
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .map_or(UNIX_EPOCH, SystemTime::from);
        oldest = Some(oldest.map_or(t, |o| o.min(t)));
    }
    Ok(oldest)
}

/// Rewrite `path` with every outbound destination redacted, through a temporary file beside it
/// that replaces it only if nobody changed it meanwhile. Returns the lines redacted.
fn redact_file(path: &Path, seen: &Seen) -> std::io::Result<u64> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.redacting"));
    let mut n = 0;
    {
        let mut out = BufWriter::new(File::create(&tmp)?);
        for line in BufReader::new(File::open(path)?).lines() {
            let line = line?;
            match line
                .contains("\"outbound\":true")
                .then(|| redact_line(&line))
                .flatten()
            {
                Some(r) => {
                    n += 1;
                    out.write_all(r.as_bytes())?;
                }
                None => out.write_all(line.as_bytes())?,
            }
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    let now = fs::metadata(path)?;
    if Seen::of(&now) != *seen {
        let _ = fs::remove_file(&tmp);
        return Err(std::io::Error::other("changed while it was redacted"));
    }
    fs::set_permissions(&tmp, now.permissions())?;
    fs::rename(&tmp, path)?;
    Ok(n)
}

/// What a file looked like when it was last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
}

impl Seen {
    fn of(m: &fs::Metadata) -> Seen {
        Seen {
            len: m.len(),
            modified: m.modified().ok(),
        }
    }
}

/// Compressed copies cannot be edited in place.
fn compressed(name: &str) -> bool {
    [".gz", ".xz", ".bz2", ".zst", ".lz4", ".Z", ".lzma", ".zip"]
        .iter()
        .any(|e| name.ends_with(e))
}

/// The redaction of one log's files; [`Sweeper::sweep`] is one look.
pub struct Sweeper {
    live: PathBuf,
    retention: Duration,
    /// Per file beside the log: how it looked when read, and when its oldest destination is
    /// due (`None`: it names none).
    known: HashMap<String, (Seen, Option<SystemTime>)>,
    warned: HashSet<String>,
}

impl Sweeper {
    pub fn new(live: PathBuf, retention: Duration) -> Sweeper {
        Sweeper {
            live,
            retention,
            known: HashMap::new(),
            warned: HashSet::new(),
        }
    }

    /// How often to look: an eighth of the retention, from a quarter second to a minute.
    pub fn every(&self) -> Duration {
        (self.retention / 8).clamp(Duration::from_millis(250), Duration::from_secs(60))
    }

    /// Redact every file beside the log that is due at `now`; returns the lines redacted.
    pub fn sweep(&mut self, now: SystemTime) -> u64 {
        let dir = match self.live.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(base) = self
            .live
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            return 0;
        };
        let Ok(entries) = fs::read_dir(&dir) else {
            return 0;
        };
        let mut here = HashSet::new();
        let mut redacted = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name.len() > base.len()
                && name.starts_with(&base)
                && matches!(name.as_bytes()[base.len()], b'.' | b'-');
            let Ok(meta) = e.metadata() else { continue };
            if !ours || !meta.is_file() {
                continue;
            }
            here.insert(name.clone());
            redacted += self.look(&dir.join(&name), &name, &meta, now);
        }
        self.known.retain(|k, _| here.contains(k));
        self.warned.retain(|k| here.contains(k));
        redacted
    }

    /// One file beside the log.
    fn look(&mut self, path: &Path, name: &str, meta: &fs::Metadata, now: SystemTime) -> u64 {
        let seen = Seen::of(meta);
        if compressed(name) {
            let old = seen.modified.is_some_and(|m| m + self.retention <= now);
            if old && self.warned.insert(name.to_string()) {
                tracing::warn!(
                    "{}: a compressed copy of the decision log older than \
                     callback.destination_retention; its destinations cannot be redacted in \
                     place: bound such copies with logrotate's maxage",
                    path.display()
                );
            }
            return 0;
        }
        let due = match self.known.get(name) {
            Some((s, due)) if *s == seen => *due,
            _ => match oldest_unredacted(path) {
                Ok(oldest) => {
                    let due = oldest.map(|t| t + self.retention);
                    self.known.insert(name.to_string(), (seen, due));
                    due
                }
                Err(e) => {
                    tracing::warn!("{}: {e}", path.display());
                    return 0;
                }
            },
        };
        if !due.is_some_and(|d| d <= now) {
            return 0;
        }
        match redact_file(path, &seen) {
            Ok(n) => {
                if let Ok(m) = fs::metadata(path) {
                    self.known.insert(name.to_string(), (Seen::of(&m), None));
                }
                n
            }
            Err(e) => {
                // Looked at again next time.
                self.known.remove(name);
                tracing::warn!("{}: destinations not redacted yet: {e}", path.display());
                0
            }
        }
    }

    /// Look every [`Sweeper::every`] until `stop` is dropped (the log's writer ended),
    /// counting the lines redacted.
    pub fn run(mut self, stop: &Receiver<()>, redacted: &Counter) {
        loop {
            redacted.add(self.sweep(SystemTime::now()));
            match stop.recv_timeout(self.every()) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions_are_a_number_and_a_unit() {
        let d = |s| parse_retention(s).unwrap().map(|d| d.as_secs());
        assert_eq!(d("30d"), Some(30 * 86_400));
        assert_eq!(d("12h"), Some(12 * 3600));
        assert_eq!(d("90m"), Some(5400));
        assert_eq!(d(" 3s "), Some(3));
        assert_eq!(d(""), None);
        for bad in [
            "30",
            "d",
            "0d",
            "-1d",
            "+1d",
            "1.5d",
            "30x",
            "1w",
            "99999999999999999d",
            "3651d",
        ] {
            let e = parse_retention(bad).unwrap_err();
            assert!(
                e.contains("expected a whole number") && e.contains(bad),
                "{e}"
            );
        }
    }

    #[test]
    fn periods_are_a_day_or_half_the_retention() {
        assert_eq!(period_for(Duration::from_secs(30 * 86_400)), DAY);
        assert_eq!(period_for(Duration::from_secs(4)), Duration::from_secs(2));
        let t = UNIX_EPOCH + Duration::from_secs(1_764_939_845); // 2025-12-05T13:04:05Z
        let day = period_start(t, DAY);
        assert_eq!(day, UNIX_EPOCH + Duration::from_secs(1_764_892_800));
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("decisions.jsonl");
        assert_eq!(
            rotated_name(&live, day, DAY),
            dir.path().join("decisions.jsonl.2025-12-05")
        );
        let two = Duration::from_secs(2);
        assert_eq!(
            rotated_name(&live, period_start(t, two), two),
            dir.path().join("decisions.jsonl.2025-12-05T13-04-04.000")
        );
        fs::write(dir.path().join("decisions.jsonl.2025-12-05"), "").unwrap();
        assert_eq!(
            rotated_name(&live, day, DAY),
            dir.path().join("decisions.jsonl.2025-12-05.2"),
            "a period's file is never overwritten"
        );
    }

    const OUT: &str = r#"{"time":"2026-12-05T10:00:00Z","call_id":"c\"callee\":\"x","caller":"+14155550100","callee":"hmac-sha256:00ff","action":"block","reasons":[{"list":"callback","entry":"+12025550177","category":"callback-tech-support","reason":"a \"entry\":\"y\" text"}],"decision_us":7,"source":"127.0.0.1:5060","outbound":true}"#;
    const IN: &str = r#"{"time":"2026-12-05T09:00:00Z","call_id":"i1","caller":"+12025550143","callee":"+12025550100","action":"block","reasons":[{"list":"example","entry":"+12025550143","category":"example","reason":"r"}],"decision_us":7,"source":"127.0.0.1:5080"}"#;

    #[test]
    fn an_outbound_line_loses_its_destination_and_nothing_else() {
        let r = redact_line(OUT).unwrap();
        assert_eq!(
            r,
            OUT.replace("\"hmac-sha256:00ff\"", "\"redacted\"")
                .replace("\"+12025550177\"", "\"redacted\"")
        );
        assert!(
            r.contains(r#""call_id":"c\"callee\":\"x""#),
            "strings are not keys"
        );
        assert!(r.contains(r#""reason":"a \"entry\":\"y\" text""#));
        assert_eq!(redact_line(&r), None, "already redacted");
        assert_eq!(
            redact_line(IN),
            None,
            "inbound lines are not the retention's"
        );
        assert_eq!(redact_line("not json \"outbound\":true"), None);
    }

    #[test]
    fn a_file_is_redacted_once_its_oldest_destination_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("decisions.jsonl");
        let rotated = dir.path().join("decisions.jsonl.2026-12-05");
        let copy = dir.path().join("decisions.jsonl-20261205");
        let gz = dir.path().join("decisions.jsonl.2.gz");
        let other = dir.path().join("other.jsonl");
        let text = format!("{IN}\n{OUT}\n{IN}\n");
        for p in [&live, &rotated, &copy, &gz, &other] {
            fs::write(p, &text).unwrap();
        }
        let at = |s: &str| SystemTime::from(OffsetDateTime::parse(s, &Rfc3339).unwrap());
        let mut s = Sweeper::new(live.clone(), Duration::from_secs(3600));
        assert_eq!(s.sweep(at("2026-12-05T10:59:59Z")), 0, "not due yet");
        assert_eq!(fs::read_to_string(&rotated).unwrap(), text);
        assert_eq!(s.sweep(at("2026-12-05T11:00:00Z")), 2, "both copies");
        let want = format!("{IN}\n{}\n{IN}\n", redact_line(OUT).unwrap());
        assert_eq!(fs::read_to_string(&rotated).unwrap(), want);
        assert_eq!(fs::read_to_string(&copy).unwrap(), want);
        for p in [&live, &gz, &other] {
            assert_eq!(fs::read_to_string(p).unwrap(), text, "{}", p.display());
        }
        assert_eq!(
            s.sweep(at("2026-12-06T00:00:00Z")),
            0,
            "nothing left to redact"
        );
        // A copy that changes is read again.
        fs::write(&copy, format!("{want}{OUT}\n")).unwrap();
        assert_eq!(s.sweep(at("2026-12-06T00:00:00Z")), 1);
        assert!(!fs::read_to_string(&copy)
            .unwrap()
            .contains("+12025550177\""));
        assert!(fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".redacting")));
    }
}
