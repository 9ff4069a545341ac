//! Pure screening decisions: who the caller is as an E.164 number, which list entries match it,
//! and what the agent should do about the call.
//!
//! This module knows nothing of sockets, SIP syntax, files, clocks or tokio, and imports nothing
//! else of this crate. [`Engine::decide`] takes the facts of a call, an immutable rule snapshot
//! and `now`, and returns a [`Verdict`] with its typed reasons, so every decision can be
//! reproduced by `scamguard check` and unit-tested as a table.

pub mod decide;
pub mod entry;
pub mod evidence;
mod exact;
pub mod index;
pub mod number;
pub mod policy;
pub mod scoring;
pub mod signals;
pub mod verdict;

pub use decide::{Call, Engine};
pub use entry::{Entry, EntryAction, Pattern, PatternError, Specificity};
pub use evidence::{Effect, Evidence, Reason, Signal, Source};
pub use index::{
    EntryMeta, IndexBuilder, IndexStats, Listed, Match, RuleIndex, Rules, ThousandBlock,
};
pub use number::{BareDigits, Number, NumberPlan};
pub use policy::{AnonymousPolicy, ScreeningConfig, ScreeningPolicy};
pub use scoring::{PolicyConfig, Scoring, Tenancy, TenantConfig};
pub use verdict::{Refusal, Verdict};

use serde::Serialize;

/// What the agent does with a call. Ordered by severity so that `max` picks the strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pass,
    Warn,
    /// Between a warning and a block: the caller must press a digit before the call goes on
    /// (the app answers it with early media); one that cannot be challenged is warned.
    Challenge,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Warn => "warn",
            Action::Challenge => "challenge",
            Action::Block => "block",
        }
    }
}

/// One list as it is in force: its name, how many entries it contributes, where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListInfo {
    pub name: String,
    pub entries: usize,
    /// Where the list was loaded from (a file path, a feed URL, the store).
    pub source: String,
}

/// The rules in force at one moment: the compiled index and what went into it. Published whole
/// (behind an `Arc`) and never changed after publication.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub index: RuleIndex,
    pub lists: Vec<ListInfo>,
    /// Increases with every publication, so logs can say which rules decided a call.
    pub version: u64,
}

impl Rules for Snapshot {
    fn lookup(&self, number: Number, now: i64) -> Option<Match> {
        self.index.lookup(number, now)
    }

    fn listed_in(&self, block: ThousandBlock, now: i64, into: &mut Listed) {
        self.index.listed_in(block, now, into);
    }

    fn lookup_callback(&self, number: Number, now: i64) -> Option<Match> {
        self.index.lookup_callback(number, now)
    }
}
