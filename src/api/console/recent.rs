//! The recent calls the console shows: a bounded ring of screened calls, each with a sequence
//! number, filled by the app as it screens and read by the live tail, the overview and the
//! what-if preview.
//!
//! Pushing takes one short lock and wakes nobody: the live tail asks for rows after the last
//! one it sent a few times a second, so the SIP path never pays for a reader. The ring holds at
//! most `cap` rows; the oldest go first. Knows nothing of SIP, HTTP or how a call was decided.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::screening::{Action, Reason};

/// One screened call as the console shows it, and the facts needed to decide it again.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Set by [`Recent::push`]; increases by one per call.
    pub seq: u64,
    /// Unix milliseconds of the decision.
    pub time_ms: u64,
    pub call_id: String,
    /// E.164 when it normalised, else as carried.
    pub caller: String,
    /// E.164 when it normalised, else as dialled.
    pub callee: String,
    pub display_name: Option<String>,
    pub anonymous: bool,
    /// The peer it came from, `ip:port`.
    pub source: String,
    pub action: Action,
    /// Every contribution with its score (`(+50) ...`), then the policy's notes.
    pub reasons: Vec<Reason>,
    /// The answer sent, in words: `603 Decline` with its `Reason` header, or a forward with
    /// what was added to it.
    pub answer: String,
    /// The STIR/SHAKEN outcome in words.
    pub stir: String,
    /// Anything else the operator should know (why no announcement was played).
    pub note: Option<String>,
    pub decision_us: u64,
    /// Facts for deciding the call again (what-if), as the SIP layer gave them.
    pub facts: Facts,
}

/// What [`Row`] keeps of a call's facts to decide it again as a question.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    /// The caller as carried (before normalisation).
    pub caller_raw: String,
    pub callee_raw: String,
    /// The source's address only, as the signals name peers.
    pub source_ip: String,
    pub trusted: bool,
    #[serde(skip)]
    pub identity: Option<String>,
    pub verstat: Option<String>,
    /// A MESSAGE, judged as its sender's call would be.
    pub message: bool,
}

impl Row {
    /// Does the row's verdict cite `name` (a list, a signal or `policy`)?
    pub fn cites(&self, name: &str) -> bool {
        self.reasons.iter().any(|r| r.source.name() == name)
    }
}

/// The ring. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Recent {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    rows: VecDeque<Arc<Row>>,
    next: u64,
}

impl Recent {
    /// A ring of at most `cap` rows (at least one).
    pub fn new(cap: usize) -> Recent {
        Recent {
            cap: cap.max(1),
            inner: Mutex::new(Inner {
                rows: VecDeque::new(),
                next: 1,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Add a call, numbering it; the oldest row goes when the ring is full.
    pub fn push(&self, mut row: Row) {
        let mut g = self.lock();
        row.seq = g.next;
        g.next += 1;
        if g.rows.len() >= self.cap {
            g.rows.pop_front();
        }
        g.rows.push_back(Arc::new(row));
    }

    /// The sequence number the next call will get: a tail starting now asks for rows from it.
    pub fn next_seq(&self) -> u64 {
        self.lock().next
    }

    /// Rows numbered `seq` and later, oldest first, at most `limit`.
    pub fn since(&self, seq: u64, limit: usize) -> Vec<Arc<Row>> {
        let g = self.lock();
        let first = g.rows.front().map_or(0, |r| r.seq);
        let skip = seq.saturating_sub(first) as usize;
        g.rows.iter().skip(skip).take(limit).cloned().collect()
    }

    /// The row numbered `seq`, while the ring still holds it.
    pub fn get(&self, seq: u64) -> Option<Arc<Row>> {
        let g = self.lock();
        let first = g.rows.front()?.seq;
        g.rows.get(seq.checked_sub(first)? as usize).cloned()
    }

    /// Every row, newest first.
    pub fn newest_first(&self) -> Vec<Arc<Row>> {
        self.lock().rows.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(caller: &str, action: Action) -> Row {
        Row {
            seq: 0,
            time_ms: 0,
            call_id: format!("c-{caller}"),
            caller: caller.into(),
            callee: "+12025550100".into(),
            display_name: None,
            anonymous: false,
            source: "192.0.2.1:5060".into(),
            action,
            reasons: vec![],
            answer: String::new(),
            stir: String::new(),
            note: None,
            decision_us: 1,
            facts: Facts::default(),
        }
    }

    #[test]
    fn the_ring_numbers_rows_and_keeps_the_newest() {
        let r = Recent::new(3);
        assert_eq!(r.next_seq(), 1);
        assert!(r.since(1, 10).is_empty());
        assert!(r.get(1).is_none());
        for i in 0..5 {
            r.push(row(&format!("+1202555010{i}"), Action::Pass));
        }
        assert_eq!(r.next_seq(), 6);
        let seqs = |v: Vec<Arc<Row>>| v.iter().map(|r| r.seq).collect::<Vec<_>>();
        assert_eq!(seqs(r.since(0, 10)), [3, 4, 5], "the two oldest went");
        assert_eq!(seqs(r.since(4, 10)), [4, 5]);
        assert_eq!(seqs(r.since(4, 1)), [4]);
        assert!(r.since(6, 10).is_empty());
        assert_eq!(seqs(r.newest_first()), [5, 4, 3]);
        assert_eq!(r.get(4).unwrap().caller, "+12025550103");
        assert!(r.get(2).is_none() && r.get(6).is_none());
    }
}
