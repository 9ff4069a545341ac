//! List entries: the operator-facing file format, loading a lists directory, and publishing
//! compiled rule snapshots for the hot path.
//!
//! [`ListSet`] owns the current [`Snapshot`] behind an `ArcSwap`: the hot path reads it without
//! a lock, and a reload builds a whole new index off the hot path and swaps it in one step. A
//! file that fails to parse is refused whole and its previous version stays in force.
//!
//! The store's SQLite files are reached only through [`store`]. The one exception to "no
//! network here" is [`feeds`]: a subscriber fetches partners' feeds with its own small HTTP
//! client ([`feeds::fetch`]), kept there because every header and limit it knows is feed
//! protocol. Apart from that, knows nothing of SIP or sockets.

pub mod cli;
pub mod csv;
pub mod edits;
pub mod feeds;
pub mod file;
pub mod import;
pub mod overlay;
pub mod report_desk;
pub mod store;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Deserialize;

use crate::metrics::{Collect, Counter, Exposition, Gauge};
use crate::screening::index::IndexBuilder;
use crate::screening::{ListInfo, Snapshot};

pub use file::ListError;

/// The `[lists]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListsConfig {
    /// Directory of `*.csv` list files; relative paths resolve against the current directory.
    pub dir: PathBuf,
    /// Cap on entries across all lists; a file that would pass it is refused.
    pub max_entries: usize,
    /// Cap on one file's size in bytes.
    pub max_file_bytes: u64,
}

impl Default for ListsConfig {
    fn default() -> Self {
        ListsConfig {
            dir: PathBuf::from("blocklists"),
            max_entries: 20_000_000,
            max_file_bytes: 2 << 30,
        }
    }
}

impl ListsConfig {
    /// Every problem with this section.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.dir.as_os_str().is_empty() {
            p.push("lists.dir is empty; expected a directory of *.csv files".to_string());
        }
        if self.max_entries == 0 {
            p.push("lists.max_entries is 0; expected a positive cap".to_string());
        }
        if self.max_file_bytes == 0 {
            p.push("lists.max_file_bytes is 0; expected a positive cap".to_string());
        }
        p
    }
}

/// Counters for list loading.
#[derive(Debug, Default)]
pub struct ListStats {
    pub reloads: Counter,
    /// Wall time of the last reload (read, parse, build, publish), and the sum over all: the
    /// load harness reads them to report reload durations under load.
    pub last_reload_ms: Gauge,
    pub reload_ms_total: Counter,
    pub files_refused: Counter,
    pub entries: Gauge,
    pub lists: Gauge,
    pub version: Gauge,
}

impl Collect for ListStats {
    fn collect(&self, out: &mut Exposition) {
        out.counter(
            "scamguard_list_reloads_total",
            "List directory reloads attempted.",
            &[],
            self.reloads.get(),
        );
        out.gauge(
            "scamguard_list_last_reload_milliseconds",
            "Wall time of the last list reload, from reading the files to publishing the rules.",
            &[],
            self.last_reload_ms.get(),
        );
        out.counter(
            "scamguard_list_reload_milliseconds_total",
            "Wall time spent in list reloads.",
            &[],
            self.reload_ms_total.get(),
        );
        out.counter(
            "scamguard_list_files_refused_total",
            "List files refused for errors (their previous version stayed in force).",
            &[],
            self.files_refused.get(),
        );
        out.gauge(
            "scamguard_list_entries",
            "Entries in the rules in force.",
            &[],
            self.entries.get(),
        );
        out.gauge(
            "scamguard_lists",
            "Lists in the rules in force.",
            &[],
            self.lists.get(),
        );
        out.gauge(
            "scamguard_list_version",
            "Version of the rules in force.",
            &[],
            self.version.get(),
        );
    }
}

/// One list file parsed into a staging builder.
pub struct LoadedFile {
    pub name: String,
    pub path: PathBuf,
    pub builder: IndexBuilder,
    pub entries: usize,
}

/// Read and parse one list file. All of its errors, or the staged entries.
pub fn load_file(path: &Path, max_bytes: u64) -> Result<LoadedFile, Vec<ListError>> {
    let shown = path.display().to_string();
    let whole = |message: String| {
        vec![ListError {
            file: shown.clone(),
            line: 0,
            message,
        }]
    };
    let name = file::list_name(path).map_err(whole)?;
    let meta = std::fs::metadata(path).map_err(|e| whole(format!("cannot read: {e}")))?;
    if meta.len() > max_bytes {
        return Err(whole(format!(
            "file is {} bytes; expected at most lists.max_file_bytes = {max_bytes}",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| whole(format!("cannot read: {e}")))?;
    let text = file::decode(&shown, bytes).map_err(|e| vec![e])?;
    let mut builder = IndexBuilder::new();
    let entries = file::parse_list(&shown, &text, |_, e| builder.add(&name, &e))?;
    Ok(LoadedFile {
        name,
        path: path.to_path_buf(),
        builder,
        entries,
    })
}

/// The `*.csv` files of a directory, sorted, skipping hidden and editor temporary files.
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>, ListError> {
    let rd = std::fs::read_dir(dir).map_err(|e| ListError {
        file: dir.display().to_string(),
        line: 0,
        message: format!(
            "cannot read the lists directory ({e}); expected a directory of *.csv files"
        ),
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv") && !hidden(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Hidden files and editors' lock/backup files are not lists.
fn hidden(p: &Path) -> bool {
    match p.file_name().and_then(|n| n.to_str()) {
        None => true,
        Some(n) => n.starts_with('.') || n.starts_with('#') || n.ends_with('~'),
    }
}

/// The lists in force and the means to reload them.
pub struct ListSet {
    config: ListsConfig,
    current: ArcSwap<Snapshot>,
    /// Serialises reloads; never taken on the hot path.
    reload_lock: Mutex<()>,
    pub stats: ListStats,
}

impl ListSet {
    /// A set with no rules yet; call [`ListSet::reload`] to load the directory.
    pub fn new(config: ListsConfig) -> ListSet {
        ListSet {
            config,
            current: ArcSwap::from_pointee(Snapshot::default()),
            reload_lock: Mutex::new(()),
            stats: ListStats::default(),
        }
    }

    /// Create and load at once; the errors are those of [`ListSet::reload`].
    pub fn open(config: ListsConfig) -> (ListSet, Vec<ListError>) {
        let set = ListSet::new(config);
        let errors = set.reload();
        (set, errors)
    }

    pub fn config(&self) -> &ListsConfig {
        &self.config
    }

    /// The rules in force, for the hot path: a lock-free load.
    pub fn current(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The rules in force as an owned `Arc`, to keep across an await.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Re-read every list file and publish a new snapshot. A file with errors is refused whole
    /// and its previous version (if any) stays; files that disappeared are dropped. Returns
    /// every error.
    pub fn reload(&self) -> Vec<ListError> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.stats.reloads.inc();
        let started = std::time::Instant::now();
        let old = self.current.load_full();
        let mut errors = Vec::new();
        let files = match list_files(&self.config.dir) {
            Ok(f) => f,
            Err(e) => {
                // A directory that cannot be read keeps every list as it was.
                return vec![e];
            }
        };
        let mut builder = IndexBuilder::new();
        let mut lists: Vec<ListInfo> = Vec::new();
        let mut total = 0usize;
        for path in files {
            let loaded = load_file(&path, self.config.max_file_bytes).and_then(|f| {
                if total + f.entries > self.config.max_entries {
                    Err(vec![ListError {
                        file: path.display().to_string(),
                        line: 0,
                        message: format!(
                            "{} entries would take the total past lists.max_entries = {}; expected fewer entries or a higher cap",
                            f.entries, self.config.max_entries
                        ),
                    }])
                } else {
                    Ok(f)
                }
            });
            match loaded {
                Ok(f) => {
                    total += f.entries;
                    builder.merge(f.builder);
                    lists.push(ListInfo {
                        name: f.name,
                        entries: f.entries,
                        source: f.path.display().to_string(),
                    });
                }
                Err(errs) => {
                    self.stats.files_refused.inc();
                    errors.extend(errs);
                    // Keep the previous version of this list, if it had one.
                    let Ok(name) = file::list_name(&path) else {
                        continue;
                    };
                    if let Some(info) = old.lists.iter().find(|l| l.name == name) {
                        for (p, m) in old.index.entries_of(&name) {
                            builder.add_with_meta(&p, &m);
                        }
                        total += info.entries;
                        lists.push(info.clone());
                    }
                }
            }
        }
        let snapshot = Snapshot {
            index: builder.build(),
            lists,
            version: old.version + 1,
        };
        self.publish(snapshot);
        let ms = started.elapsed().as_millis().min(i64::MAX as u128) as u64;
        self.stats.last_reload_ms.set(ms as i64);
        self.stats.reload_ms_total.add(ms);
        errors
    }

    /// Publish a snapshot built elsewhere (tests, the store, feeds).
    pub fn publish(&self, snapshot: Snapshot) {
        let s = snapshot.index.stats();
        self.stats.entries.set(s.entries() as i64);
        self.stats.lists.set(snapshot.lists.len() as i64);
        self.stats.version.set(snapshot.version as i64);
        self.current.store(Arc::new(snapshot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screening::Number;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "scamguard-lists-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn action(set: &ListSet, n: &str) -> Option<String> {
        set.current()
            .index
            .lookup(Number::parse_e164(n).unwrap(), 0)
            .map(|m| format!("{} {}", m.meta.list, m.action))
    }

    #[test]
    fn reload_keeps_previous_version_of_a_broken_file() {
        let dir = tempdir("reload");
        let a = dir.join("a.csv");
        let b = dir.join("b.csv");
        std::fs::write(
            &a,
            "pattern,action,category,reason\n+12025550143,block,scam,r\n",
        )
        .unwrap();
        std::fs::write(
            &b,
            "pattern,action,category,reason\n+1900*,warn,premium-rate,r\n",
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        std::fs::write(dir.join(".hidden.csv"), "garbage").unwrap();
        let (set, errors) = ListSet::open(ListsConfig {
            dir: dir.clone(),
            ..Default::default()
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(action(&set, "+12025550143").as_deref(), Some("a block"));
        assert_eq!(action(&set, "+19005550100").as_deref(), Some("b warn"));
        assert_eq!(set.current().version, 1);
        assert_eq!(set.stats.entries.get(), 2);

        // Break a.csv: it keeps its old entries; b.csv changes normally.
        std::fs::write(
            &a,
            "pattern,action,category,reason\n+12025550143,blok,scam,r\n+12025550144,block,scam,r\n",
        )
        .unwrap();
        std::fs::write(
            &b,
            "pattern,action,category,reason\n+1900*,block,premium-rate,r\n",
        )
        .unwrap();
        let errors = set.reload();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            format!(
                "{}:2: action \"blok\" is not one of block, warn, allow",
                a.display()
            )
        );
        assert_eq!(action(&set, "+12025550143").as_deref(), Some("a block"));
        assert_eq!(action(&set, "+12025550144"), None);
        assert_eq!(action(&set, "+19005550100").as_deref(), Some("b block"));
        assert_eq!(set.current().lists.len(), 2);
        assert_eq!(set.stats.files_refused.get(), 1);

        // Removing a file drops its list.
        std::fs::remove_file(&a).unwrap();
        assert!(set.reload().is_empty());
        assert_eq!(action(&set, "+12025550143"), None);
        assert_eq!(set.current().version, 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The shipped callback list loads, and its entries reach only the callback lookup.
    #[test]
    fn shipped_callback_list_loads_as_callback_entries() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("blocklists");
        let f = load_file(&dir.join("callback.csv"), 1 << 20).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((f.name.as_str(), f.entries), ("callback", 3));
        let idx = f.builder.build();
        let n = Number::parse_e164("+12025550177").unwrap();
        assert!(idx.lookup(n, 0).is_none());
        assert_eq!(
            idx.lookup_callback(n, 0)
                .map(|m| m.meta.category.to_string()),
            Some("callback-tech-support".into())
        );
    }

    #[test]
    fn caps_and_missing_dir() {
        let dir = tempdir("caps");
        std::fs::write(
            dir.join("a.csv"),
            "pattern,action,category,reason\n+12025550143,block,scam,r\n+12025550144,block,scam,r\n",
        )
        .unwrap();
        let (set, errors) = ListSet::open(ListsConfig {
            dir: dir.clone(),
            max_entries: 1,
            ..Default::default()
        });
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("lists.max_entries = 1"),
            "{}",
            errors[0]
        );
        assert_eq!(set.current().index.stats().entries(), 0);
        let (_, errors) = ListSet::open(ListsConfig {
            dir: dir.join("nope"),
            ..Default::default()
        });
        assert!(errors[0]
            .message
            .starts_with("cannot read the lists directory"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
