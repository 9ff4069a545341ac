//! `scamguard feeds keygen|status`: what `main.rs` runs for the `feeds` subcommand. `status`
//! reads what the subscriber persisted, so it works whether or not an agent is running.
//!
//! Knows nothing of HTTP, signatures beyond writing a key pair, or the rules in force.

use std::path::{Path, PathBuf};

use crate::lists::store::{FeedsDb, StoreError};

use super::subscribe::FeedStatus;

/// `scamguard feeds ...`.
#[derive(Debug, clap::Subcommand)]
pub enum FeedsCmd {
    /// Write a new Ed25519 key pair (feed.key, mode 0600, and feed.pub) into DIR.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Show each subscribed feed's version, last success, last error and entry count, as
    /// saved in the agent's data directory: the config's `store.data_dir`, or `--data`.
    Status {
        #[arg(long, required_unless_present = "data")]
        config: Option<PathBuf>,
        /// The agent's data directory (what `run --data` was given), replacing the config's
        /// store.data_dir.
        #[arg(long, visible_alias = "data-dir")]
        data: Option<PathBuf>,
    },
}

fn fmt_time(t: Option<i64>) -> String {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "never".into())
}

/// Print `status` as one block per feed.
pub fn write_status(status: &[FeedStatus], out: &mut impl std::io::Write) -> std::io::Result<()> {
    if status.is_empty() {
        writeln!(out, "no feed has been polled yet")?;
    }
    for s in status {
        writeln!(out, "{}  {}", s.name, s.url)?;
        writeln!(out, "  version       {}", s.version)?;
        writeln!(out, "  entries       {}", s.entries)?;
        writeln!(out, "  last success  {}", fmt_time(s.last_success))?;
        match &s.last_error {
            Some(e) => writeln!(out, "  last error    {} ({e})", fmt_time(s.last_error_at))?,
            None => writeln!(out, "  last error    none")?,
        }
    }
    Ok(())
}

/// The persisted status of every feed in `data_dir` (for `scamguard feeds status`). A directory
/// without the feeds database is an error naming it: creating an empty one would report "no
/// feed polled" about the wrong directory.
pub fn read_status(data_dir: &Path) -> Result<Vec<FeedStatus>, String> {
    let db = data_dir.join(crate::lists::store::FEEDS_DB);
    if !db.is_file() {
        return Err(format!(
            "{}: no such file; expected the data directory of an agent with [[feeds]] \
             (its store.data_dir, or --data DIR)",
            db.display()
        ));
    }
    let saved = FeedsDb::open(data_dir)
        .and_then(|db| db.saved())
        .map_err(StoreError::detail)?;
    Ok(saved
        .into_iter()
        .map(|f| FeedStatus {
            name: f.name,
            url: f.url,
            version: f.state.version,
            last_success: f.state.last_success,
            last_error: f.state.last_error,
            last_error_at: f.state.last_error_at,
            entries: f.entries,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_the_directory_it_is_given_and_never_creates_one() {
        let dir = tempfile::tempdir().unwrap();
        let wrong = dir.path().join("not-the-agent");
        let e = read_status(&wrong).unwrap_err();
        assert!(
            e.contains(
                &wrong
                    .join(crate::lists::store::FEEDS_DB)
                    .display()
                    .to_string()
            ),
            "{e}"
        );
        assert!(!wrong.exists(), "status created {}", wrong.display());
        FeedsDb::open(dir.path()).unwrap();
        assert_eq!(read_status(dir.path()).unwrap().len(), 0);
    }
}
