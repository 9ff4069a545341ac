//! Pure screening decisions: who the caller is as an E.164 number, which list entries match it,
//! and what the agent should do about the call.
//!
//! This module knows nothing of sockets, SIP syntax, files, clocks or tokio. It takes the facts
//! of a call and an immutable rule snapshot and returns a [`Verdict`] with its reasons, so every
//! decision can be reproduced by `scamguard check` and unit-tested as a table.

pub mod entry;
pub mod signals;

pub use entry::{Entry, EntryAction, Pattern, PatternError};

use serde::Serialize;

/// What the agent does with a call. Ordered by severity so that `max` picks the strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pass,
    Warn,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Warn => "warn",
            Action::Block => "block",
        }
    }
}

/// One reason behind a verdict: which list (or signal) and which entry matched, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub list: String,
    pub entry: String,
    pub category: String,
    pub reason: String,
}
