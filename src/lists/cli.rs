//! `scamguard lists add|remove|import|export|stats`: operators working on the store directly,
//! without the agent's API. `main.rs` only parses the arguments into [`ListsCmd`] and calls
//! [`run`]. A running agent notices these writes at its next maintenance pass (it watches the
//! store's data version).
//!
//! The CSV list format itself lives in [`csv`](super::csv), shared with the importer and the
//! admin API. Knows nothing of HTTP or SIP.

use std::io::Write;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use crate::screening::EntryAction;

use super::csv::{csv_line, CSV_HEADER};
use super::file;
use super::import::{self, ImportDefaults};
use super::overlay::{canonical_pattern, validate_entry};
use super::store::{Store, StoreConfig, StoredEntry};

/// Import file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The project's list format (`pattern,action,category,reason[,source[,expires]]`).
    Csv,
    /// The US FTC Do-Not-Call reported-calls CSV, one entry per reported number.
    Ftc,
    /// One pattern per line.
    Plain,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ftc => "ftc",
            Format::Plain => "plain",
        }
    }
}

/// `scamguard lists ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ListsCmd {
    /// Add (or replace) one entry.
    Add {
        list: String,
        pattern: String,
        #[arg(long, default_value = "block")]
        action: String,
        #[arg(long, default_value = "operator")]
        category: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long, default_value = "cli")]
        source: String,
        /// `YYYY-MM-DD` or an RFC 3339 date-time.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Remove one entry.
    Remove { list: String, pattern: String },
    /// Import a file as one transaction: all of it, or nothing.
    Import {
        list: String,
        file: PathBuf,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// Delete the list's current entries in the same transaction.
        #[arg(long)]
        replace: bool,
        /// Action for formats that carry none (plain: block, ftc: warn).
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Write a list in the list format (to a file, or standard output).
    Export {
        list: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Lists and entry counts.
    Stats,
}

/// A CLI failure: the message to print; the process exits non-zero.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

fn err(e: impl std::fmt::Display) -> CliError {
    CliError(e.to_string())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn who() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// Entries past which a progress bar is worth drawing.
const PROGRESS_FROM: u64 = 50_000;

fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    if len < PROGRESS_FROM {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
    ) {
        b.set_style(style);
    }
    b.set_message(what.to_string());
    b
}

/// Run one `lists` subcommand against the store; what to print on success goes to `out`.
// Long on purpose: one arm per `lists` subcommand; each arm is short.
#[allow(clippy::too_many_lines)]
pub fn run(cmd: &ListsCmd, cfg: &StoreConfig, out: &mut dyn Write) -> Result<(), CliError> {
    let store = Store::open(cfg).map_err(err)?;
    match cmd {
        ListsCmd::Add {
            list,
            pattern,
            action,
            category,
            reason,
            source,
            expires,
        } => {
            let action = EntryAction::parse(action).ok_or_else(|| {
                CliError(format!(
                    "--action {action:?}: expected allow, warn or block"
                ))
            })?;
            let expires = match expires {
                Some(s) => file::parse_expiry(s).map_err(CliError)?,
                None => None,
            };
            let mut e = StoredEntry {
                list: list.clone(),
                pattern: pattern.clone(),
                action,
                category: category.clone(),
                reason: reason.clone(),
                source: source.clone(),
                expires,
                created: 0,
                updated: 0,
            };
            validate_entry(&mut e).map_err(CliError)?;
            let ch = store.upsert(&who(), list, &[e], now()).map_err(err)?;
            let verb = match ch.first() {
                Some(super::store::Change::Updated { .. }) => "updated",
                _ => "added",
            };
            writeln!(out, "{verb} {pattern} in {list}").map_err(err)?;
        }
        ListsCmd::Remove { list, pattern } => {
            let key = canonical_pattern(pattern).unwrap_or_else(|_| pattern.trim().to_string());
            match store.remove(&who(), list, &key, now()).map_err(err)? {
                Some(_) => writeln!(out, "removed {key} from {list}").map_err(err)?,
                None => return Err(CliError(format!("{key} is not in list {list}"))),
            }
        }
        ListsCmd::Import {
            list,
            file: path,
            format,
            replace,
            action,
            category,
            reason,
        } => {
            let action = match action {
                Some(a) => EntryAction::parse(a).ok_or_else(|| {
                    CliError(format!("--action {a:?}: expected allow, warn or block"))
                })?,
                None if *format == Format::Ftc => EntryAction::Warn,
                None => EntryAction::Block,
            };
            let d = ImportDefaults {
                action,
                category: category.clone().unwrap_or_else(|| {
                    if *format == Format::Ftc {
                        "ftc-dnc"
                    } else {
                        "import"
                    }
                    .into()
                }),
                reason: reason.clone(),
                source: path.display().to_string(),
                expires: None,
            };
            let bytes =
                std::fs::read(path).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
            let name = path.display().to_string();
            let text = file::decode(&name, bytes).map_err(err)?;
            let (entries, skipped) = import::parse_format(&text, format.as_str(), &name, &d)
                .map_err(|lines| {
                    CliError(format!(
                        "{name}: refused whole, nothing was written:\n{}",
                        lines.join("\n")
                    ))
                })?;
            let pb = bar(entries.len() as u64, "importing");
            let detail = format!("format={} file={name}", format.as_str());
            let sum = store
                .import(&who(), list, entries, *replace, now(), &detail, |n| {
                    pb.set_position(n)
                })
                .map_err(err)?;
            pb.finish_and_clear();
            writeln!(
                out,
                "imported {} entries into {list}{}{}",
                sum.written,
                if *replace {
                    format!(" (replacing {})", sum.replaced)
                } else {
                    String::new()
                },
                if skipped > 0 {
                    format!("; {skipped} rows without a number skipped")
                } else {
                    String::new()
                }
            )
            .map_err(err)?;
        }
        ListsCmd::Export { list, output } => {
            let count = store
                .lists()
                .map_err(err)?
                .into_iter()
                .find(|(n, _)| n == list)
                .map(|(_, c)| c)
                .ok_or_else(|| CliError(format!("no list {list:?} in the store")))?;
            let mut sink: Box<dyn Write> = match output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .map_err(|e| CliError(format!("{}: {e}", p.display())))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let pb = bar(count, "exporting");
            let mut buf = format!("{CSV_HEADER}\n");
            let mut n = 0u64;
            let mut io_err = None;
            store
                .for_each(Some(list), |e| {
                    csv_line(&e, &mut buf);
                    n += 1;
                    if buf.len() > 64 * 1024 {
                        if let Err(e) = sink.write_all(buf.as_bytes()) {
                            io_err = Some(e);
                            return false;
                        }
                        buf.clear();
                        pb.set_position(n);
                    }
                    true
                })
                .map_err(err)?;
            if let Some(e) = io_err {
                return Err(err(e));
            }
            sink.write_all(buf.as_bytes()).map_err(err)?;
            sink.flush().map_err(err)?;
            pb.finish_and_clear();
            if output.is_some() {
                writeln!(out, "exported {n} entries of {list}").map_err(err)?;
            }
        }
        ListsCmd::Stats => {
            writeln!(out, "store {}", store.path().display()).map_err(err)?;
            for (name, n) in store.lists().map_err(err)? {
                writeln!(out, "{name}\t{n}").map_err(err)?;
            }
            writeln!(out, "total\t{}", store.total()).map_err(err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::csv::parse_csv;

    fn run_s(cmd: ListsCmd, cfg: &StoreConfig) -> Result<String, String> {
        let mut out = Vec::new();
        run(&cmd, cfg, &mut out).map_err(|e| e.0)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn add_import_export_stats_remove() {
        let d = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            data_dir: d.path().join("data"),
            ..StoreConfig::default()
        };
        let add = |p: &str, a: &str| ListsCmd::Add {
            list: "ops".into(),
            pattern: p.into(),
            action: a.into(),
            category: "scam".into(),
            reason: "said \"IRS\", twice".into(),
            source: "ticket-1".into(),
            expires: Some("2030-01-01".into()),
        };
        assert_eq!(
            run_s(add("+4420790xxxxx", "block"), &cfg).unwrap(),
            "added +4420790xxxxx in ops\n"
        );
        assert!(run_s(add("+4420790xxxxx", "warn"), &cfg)
            .unwrap()
            .starts_with("updated"));
        let e = run_s(add("4420", "block"), &cfg).unwrap_err();
        assert!(e.contains("has no leading +"), "{e}");
        assert!(run_s(add("+1", "nuke"), &cfg)
            .unwrap_err()
            .contains("--action"));

        let f = d.path().join("in.csv");
        std::fs::write(&f, "pattern,action,category,reason\n+12025550143,block,scam,r1\n+1900*,warn,premium-rate,r2\n").unwrap();
        let imp = |path: &PathBuf, format| ListsCmd::Import {
            list: "ops".into(),
            file: path.clone(),
            format,
            replace: false,
            action: None,
            category: None,
            reason: String::new(),
        };
        assert_eq!(
            run_s(imp(&f, Format::Csv), &cfg).unwrap(),
            "imported 2 entries into ops\n"
        );
        let bad = d.path().join("bad.txt");
        std::fs::write(&bad, "+12025550100\nnope\n").unwrap();
        let e = run_s(imp(&bad, Format::Plain), &cfg).unwrap_err();
        assert!(e.contains("bad.txt:2: pattern \"nope\""), "{e}");

        let outf = d.path().join("out.csv");
        run_s(
            ListsCmd::Export {
                list: "ops".into(),
                output: Some(outf.clone()),
            },
            &cfg,
        )
        .unwrap();
        let text = std::fs::read_to_string(&outf).unwrap();
        assert_eq!(
            text,
            "pattern,action,category,reason,source,expires\n\
             +12025550143,block,scam,r1,,\n\
             +1900*,warn,premium-rate,r2,,\n\
             +4420790XXXXX,warn,scam,\"said \"\"IRS\"\", twice\",ticket-1,2030-01-01T00:00:00Z\n"
        );
        // What was exported imports back unchanged.
        assert_eq!(parse_csv(&text, "out.csv").unwrap().len(), 3);
        assert_eq!(
            run_s(ListsCmd::Stats, &cfg)
                .unwrap()
                .lines()
                .skip(1)
                .collect::<Vec<_>>(),
            ["ops\t3", "total\t3"]
        );
        assert_eq!(
            run_s(
                ListsCmd::Remove {
                    list: "ops".into(),
                    pattern: "+4420790xxxxx".into()
                },
                &cfg
            )
            .unwrap(),
            "removed +4420790XXXXX from ops\n"
        );
        assert!(run_s(
            ListsCmd::Remove {
                list: "ops".into(),
                pattern: "+1".into()
            },
            &cfg
        )
        .is_err());
        assert!(run_s(
            ListsCmd::Export {
                list: "nope".into(),
                output: None
            },
            &cfg
        )
        .is_err());
    }
}
