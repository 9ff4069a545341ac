//! Hot reload of the list files: a debounced watch of the lists directory, and the adapter that
//! gives the admin side (`GET /v1/lists`, `POST /v1/reload`, SIGHUP) the [`ListSet`]'s reloads
//! with their last errors.
//!
//! Each reload parses off the hot path (on the watcher's thread or the caller's); a file with
//! errors is refused whole by the [`ListSet`] and its previous version stays active. The errors
//! are logged, counted, and kept for the status listing until the next reload.
//! Knows nothing of HTTP or SQLite.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::metrics::{Collect, Exposition};

use super::file::ListError;
use super::overlay::{FileLists, ListStatus};
use super::ListSet;

/// A [`ListSet`] with the errors of its last reload, as the admin side sees it.
pub struct ListFiles {
    pub set: Arc<ListSet>,
    errors: Mutex<Vec<ListError>>,
    loaded: AtomicBool,
}

impl ListFiles {
    pub fn new(set: Arc<ListSet>) -> ListFiles {
        ListFiles {
            set,
            errors: Mutex::new(Vec::new()),
            loaded: AtomicBool::new(false),
        }
    }

    /// Reload now, log and keep the errors. Safe to call from any thread (SIGHUP, the watcher,
    /// the API); the set serialises reloads.
    pub fn reload_now(&self) -> Vec<ListError> {
        let errors = self.set.reload();
        for e in &errors {
            tracing::warn!(error = %e, "list file refused; its previous version stays active");
        }
        tracing::info!(
            version = self.set.current().version,
            refused = errors.len(),
            took_ms = self.set.stats.last_reload_ms.get(),
            "lists reloaded"
        );
        *self.errors.lock().unwrap_or_else(|p| p.into_inner()) = errors.clone();
        self.loaded.store(true, Ordering::Release);
        errors
    }

    /// Errors of the last reload.
    pub fn last_errors(&self) -> Vec<ListError> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl FileLists for ListFiles {
    fn reload(&self) -> Vec<String> {
        self.reload_now().iter().map(|e| e.to_string()).collect()
    }

    fn status(&self) -> Vec<ListStatus> {
        let snap = self.set.current();
        let errors = self.last_errors();
        let error_of = |file: &str| -> Option<String> {
            let v: Vec<String> = errors
                .iter()
                .filter(|e| e.file == file)
                .map(|e| e.to_string())
                .collect();
            (!v.is_empty()).then(|| v.join("; "))
        };
        let mut out: Vec<ListStatus> = snap
            .lists
            .iter()
            .map(|l| ListStatus {
                name: l.name.clone(),
                source: if l.source.starts_with("http://") || l.source.starts_with("https://") {
                    "feed".into()
                } else {
                    "file".into()
                },
                entries: l.entries as u64,
                error: error_of(&l.source),
            })
            .collect();
        // Files refused with no earlier version to keep: show them with their error.
        for e in &errors {
            let name = Path::new(&e.file)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or(&e.file)
                .to_string();
            if out.iter().any(|l| l.name == name) {
                continue;
            }
            out.push(ListStatus {
                name,
                source: "file".into(),
                entries: 0,
                error: error_of(&e.file),
            });
        }
        out
    }

    fn ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }
}

impl Collect for ListFiles {
    fn collect(&self, out: &mut Exposition) {
        out.gauge(
            "scamguard_list_file_errors",
            "Errors in list files at the last reload (those files kept their previous version).",
            &[],
            self.last_errors().len() as i64,
        );
        // Entries loaded, lists, version and reloads of the file lists.
        self.set.stats.collect(out);
    }
}

/// A running watch; dropping it stops the watching and its thread.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
}

/// How long the directory must stay quiet before a reload: editors and `cp` write in bursts.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Watch `dir` and call `on_change` once per burst of changes, [`DEBOUNCE`] after the last.
pub fn watch(dir: &Path, on_change: impl Fn() + Send + 'static) -> notify::Result<WatchHandle> {
    let (tx, rx) = channel::<()>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            if !ev.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let dir: PathBuf = dir.to_path_buf();
    std::thread::Builder::new()
        .name("lists-watch".into())
        .spawn(move || {
            // Ends when the watcher (and so the sender) is dropped.
            while rx.recv().is_ok() {
                loop {
                    match rx.recv_timeout(DEBOUNCE) {
                        Ok(()) => continue,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                tracing::debug!(dir = %dir.display(), "lists directory changed");
                on_change();
            }
        })
        .map_err(notify::Error::io)?;
    Ok(WatchHandle { _watcher: watcher })
}

/// Watch the set's directory and reload on change.
pub fn watch_lists(files: Arc<ListFiles>) -> notify::Result<WatchHandle> {
    let dir = files.set.config().dir.clone();
    watch(&dir, move || {
        files.reload_now();
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::ListsConfig;

    #[test]
    fn status_shows_errors_and_keeps_previous_version() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.csv");
        std::fs::write(
            &a,
            "pattern,action,category,reason\n+12025550143,block,scam,r\n",
        )
        .unwrap();
        let set = Arc::new(ListSet::new(ListsConfig {
            dir: d.path().into(),
            ..Default::default()
        }));
        let f = ListFiles::new(set);
        assert!(!f.ready());
        assert!(FileLists::reload(&f).is_empty());
        assert!(f.ready());
        std::fs::write(
            &a,
            "pattern,action,category,reason\n+12025550143,blok,scam,r\n",
        )
        .unwrap();
        std::fs::write(d.path().join("new.csv"), "garbage\n").unwrap();
        let errs = FileLists::reload(&f);
        assert_eq!(errs.len(), 2, "{errs:?}");
        let st = f.status();
        let a_st = st.iter().find(|l| l.name == "a").unwrap();
        assert_eq!(a_st.entries, 1);
        assert!(a_st
            .error
            .as_deref()
            .unwrap()
            .contains("a.csv:2: action \"blok\""));
        let n = st.iter().find(|l| l.name == "new").unwrap();
        assert_eq!((n.entries, n.error.is_some()), (0, true));
    }

    #[test]
    fn watch_debounces_a_burst() {
        let d = tempfile::tempdir().unwrap();
        let (tx, rx) = channel();
        let _h = watch(d.path(), move || {
            let _ = tx.send(());
        })
        .unwrap();
        for i in 0..5 {
            std::fs::write(d.path().join(format!("{i}.csv")), "x").unwrap();
        }
        rx.recv_timeout(Duration::from_secs(10))
            .expect("one reload after the burst");
        // The burst was one change: no second call follows once it is quiet.
        assert!(rx.recv_timeout(DEBOUNCE * 5).is_err());
    }
}
