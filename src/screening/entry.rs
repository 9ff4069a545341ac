//! One list entry: a number pattern with an action and the operator's explanation.
//!
//! Knows nothing of where entries come from (files, the store, feeds) nor how they are indexed.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// What an entry asks for when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryAction {
    Allow,
    Warn,
    Block,
}

impl EntryAction {
    pub fn parse(s: &str) -> Option<EntryAction> {
        match s.trim().to_ascii_lowercase().as_str() {
            "allow" => Some(EntryAction::Allow),
            "warn" => Some(EntryAction::Warn),
            "block" => Some(EntryAction::Block),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntryAction::Allow => "allow",
            EntryAction::Warn => "warn",
            EntryAction::Block => "block",
        }
    }

    /// Rank at equal specificity: allow beats block beats warn.
    pub fn rank(self) -> u8 {
        match self {
            EntryAction::Allow => 2,
            EntryAction::Block => 1,
            EntryAction::Warn => 0,
        }
    }
}

/// A number pattern, always over the E.164 form (`+` then digits).
#[derive(Debug, Clone)]
pub enum Pattern {
    /// `+12025550143`
    Exact(String),
    /// `+1900*`: digits after the `+`, without the star.
    Prefix(String),
    /// `+4420790XXXXX`: fixed length, `X` for any digit.
    Digits(String),
    /// `/^\+2126\d{8}$/`
    Regex(Arc<regex::Regex>),
}

/// Why a pattern string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PatternError {}

/// A list entry as loaded from any source.
#[derive(Debug, Clone)]
pub struct Entry {
    pub pattern: Pattern,
    pub action: EntryAction,
    pub category: String,
    pub reason: String,
    pub source: String,
    /// Unix seconds after which the entry stops matching.
    pub expires: Option<i64>,
}
