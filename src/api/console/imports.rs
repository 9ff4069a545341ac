//! List imports in the console, between the dry run and the written list: uploads parsed and
//! waiting for the operator's confirmation ("staged"), and the import jobs they become, each
//! with its progress for the page's progress bar.
//!
//! Both are bounded: at most [`MAX_STAGED`] uploads wait (the oldest goes first) and each for
//! [`STAGED_TTL`]; at most [`MAX_JOBS`] jobs are kept, a finished one for [`JOB_TTL`], and a new
//! one is refused while [`MAX_RUNNING`] are still writing. A staged upload or a job belongs to
//! the operator who made it: another operator's id finds nothing.
//!
//! Knows nothing of file formats or SQL: entries come in parsed, and the job's work is a
//! closure the page hands in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;

use crate::lists::store::StoredEntry;

/// Uploads waiting for a confirmation at once.
pub const MAX_STAGED: usize = 4;
/// How long an upload waits for its confirmation.
pub const STAGED_TTL: Duration = Duration::from_secs(15 * 60);
/// Jobs kept at once, running or finished.
pub const MAX_JOBS: usize = 16;
/// Jobs writing at once (the store writes one import at a time anyway).
pub const MAX_RUNNING: usize = 2;
/// How long a finished job's outcome stays to be read.
pub const JOB_TTL: Duration = Duration::from_secs(15 * 60);

/// A parsed upload waiting for the operator's confirmation.
pub struct Staged {
    pub list: String,
    pub entries: Vec<StoredEntry>,
    pub replace: bool,
    pub format: String,
    owner: String,
    at: Instant,
}

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Writing entries to the store, in one transaction.
    Writing,
    /// Written; the list is being compiled, after which it is enforced.
    Enforcing,
    /// Enforced; what was written.
    Done(String),
    /// Nothing was written; why.
    Failed(String),
}

/// One import job and its progress.
pub struct Job {
    pub list: String,
    pub total: u64,
    written: AtomicU64,
    phase: Mutex<Phase>,
    owner: String,
    started: Instant,
    ended: Mutex<Option<Instant>>,
}

impl Job {
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed).min(self.total)
    }
    pub fn set_written(&self, n: u64) {
        self.written.store(n, Ordering::Relaxed);
    }
    pub fn phase(&self) -> Phase {
        lock(&self.phase).clone()
    }
    pub fn set_phase(&self, p: Phase) {
        if matches!(p, Phase::Done(_) | Phase::Failed(_)) {
            *lock(&self.ended) = Some(Instant::now());
        }
        *lock(&self.phase) = p;
    }
    /// Whole percent: 100 only once the list is enforced.
    pub fn percent(&self) -> u64 {
        match self.phase() {
            Phase::Done(_) => 100,
            Phase::Failed(_) => 0,
            _ if self.total == 0 => 99,
            _ => (self.written() * 99 / self.total).min(99),
        }
    }
    fn running(&self) -> bool {
        matches!(self.phase(), Phase::Writing | Phase::Enforcing)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The staged uploads and the jobs.
pub struct Imports {
    rng: SystemRandom,
    staged: Mutex<HashMap<String, Staged>>,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

impl Default for Imports {
    fn default() -> Self {
        Imports {
            rng: SystemRandom::new(),
            staged: Mutex::default(),
            jobs: Mutex::default(),
        }
    }
}

impl Imports {
    /// Keep an upload for `owner`'s confirmation; its id, or `None` when the system's random
    /// source fails.
    pub fn stage(
        &self,
        owner: &str,
        list: &str,
        entries: Vec<StoredEntry>,
        replace: bool,
        format: &str,
    ) -> Option<String> {
        let id = super::session::random_hex(&self.rng)?;
        let now = Instant::now();
        let mut t = lock(&self.staged);
        t.retain(|_, s| now.duration_since(s.at) < STAGED_TTL);
        while t.len() >= MAX_STAGED {
            let oldest = t.iter().min_by_key(|(_, s)| s.at).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => t.remove(&k),
                None => break,
            };
        }
        t.insert(
            id.clone(),
            Staged {
                list: list.to_string(),
                entries,
                replace,
                format: format.to_string(),
                owner: owner.to_string(),
                at: now,
            },
        );
        Some(id)
    }

    /// Take `owner`'s staged upload `id` for `list` (it is confirmed once).
    pub fn take(&self, owner: &str, list: &str, id: &str) -> Option<Staged> {
        let mut t = lock(&self.staged);
        let ok = t
            .get(id)
            .is_some_and(|s| s.owner == owner && s.list == list && s.at.elapsed() < STAGED_TTL);
        if ok {
            t.remove(id)
        } else {
            None
        }
    }

    /// A new job of `total` entries for `owner`, or why not.
    pub fn start(&self, owner: &str, list: &str, total: u64) -> Result<(String, Arc<Job>), String> {
        let id = super::session::random_hex(&self.rng)
            .ok_or_else(|| "the system's random source failed".to_string())?;
        let mut t = lock(&self.jobs);
        t.retain(|_, j| j.running() || lock(&j.ended).is_some_and(|e| e.elapsed() < JOB_TTL));
        if t.values().filter(|j| j.running()).count() >= MAX_RUNNING {
            return Err(format!(
                "{MAX_RUNNING} imports are running already; confirm again once one has finished"
            ));
        }
        while t.len() >= MAX_JOBS {
            let oldest = t
                .iter()
                .filter(|(_, j)| !j.running())
                .min_by_key(|(_, j)| j.started)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => t.remove(&k),
                None => return Err("too many imports are running".into()),
            };
        }
        let job = Arc::new(Job {
            list: list.to_string(),
            total,
            written: AtomicU64::new(0),
            phase: Mutex::new(Phase::Writing),
            owner: owner.to_string(),
            started: Instant::now(),
            ended: Mutex::new(None),
        });
        t.insert(id.clone(), job.clone());
        Ok((id, job))
    }

    /// `owner`'s job `id`.
    pub fn job(&self, owner: &str, id: &str) -> Option<Arc<Job>> {
        lock(&self.jobs)
            .get(id)
            .filter(|j| j.owner == owner)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_uploads_are_bounded_and_belong_to_their_owner() {
        let im = Imports::default();
        let ids: Vec<String> = (0..MAX_STAGED + 1)
            .map(|_| im.stage("ann", "ops", vec![], false, "plain").unwrap())
            .collect();
        // The oldest went first.
        assert!(im.take("ann", "ops", &ids[0]).is_none());
        assert!(im.take("bob", "ops", &ids[1]).is_none());
        assert!(im.take("ann", "other", &ids[1]).is_none());
        assert!(im.take("ann", "ops", &ids[1]).is_some());
        assert!(im.take("ann", "ops", &ids[1]).is_none(), "confirmed once");
    }

    #[test]
    fn jobs_are_bounded_and_report_progress() {
        let im = Imports::default();
        let (a, ja) = im.start("ann", "ops", 200).unwrap();
        let (_, jb) = im.start("ann", "ops", 0).unwrap();
        assert!(im.start("ann", "ops", 1).is_err(), "two running already");
        assert!(im.job("bob", &a).is_none());
        ja.set_written(100);
        assert_eq!(ja.percent(), 49);
        ja.set_phase(Phase::Enforcing);
        assert_eq!(ja.percent(), 49);
        ja.set_phase(Phase::Done("written".into()));
        assert_eq!(im.job("ann", &a).unwrap().percent(), 100);
        jb.set_phase(Phase::Failed("no".into()));
        assert_eq!(jb.percent(), 0);
        assert!(im.start("ann", "ops", 1).is_ok());
    }
}
