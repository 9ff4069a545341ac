//! Typed evidence: what one list entry, signal or policy rule says about a call, before the
//! scoring weighs it, and the reason that explains it afterwards.
//!
//! Every reason names its [`Source`] as a value, so nothing downstream re-reads a verdict's text
//! to learn where a reason came from: a list called `stir` and the STIR/SHAKEN signal are told
//! apart by type, and only their JSON rendering shares a field. Knows nothing of how evidence is
//! found or weighed.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// A signal that can contribute to a verdict. Its name is what `policy.log_only` and the
/// reason's `list` field say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// STIR/SHAKEN: the PASSporT's attestation, or its failure.
    Stir,
    /// Call rate and distinct callees per caller, source or prefix.
    Velocity,
    /// One-ring fan-out: many short, unanswered calls.
    Wangiri,
    /// A display name that claims a protected brand from a number the brand does not call from.
    Brand,
    /// A Do-Not-Originate number as the caller.
    Dno,
    /// A caller id that cannot be dialled, is unallocated or fictional.
    Plausibility,
    /// A domestic caller id arriving from an international gateway.
    Gateway,
    /// A caller id sharing all but its last digits with the callee's.
    Neighbour,
    /// Several other numbers of the caller's 100- or 1000-block listed, reported or blocked.
    Blocks,
    /// Challenges the caller failed lately (no digit in time): a robodialer's mark.
    Challenge,
}

impl Signal {
    /// Every signal, in a fixed order: what counters of signals are indexed by.
    pub const ALL: [Signal; 10] = [
        Signal::Stir,
        Signal::Velocity,
        Signal::Wangiri,
        Signal::Brand,
        Signal::Dno,
        Signal::Plausibility,
        Signal::Gateway,
        Signal::Neighbour,
        Signal::Blocks,
        Signal::Challenge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::Stir => "stir",
            Signal::Velocity => "velocity",
            Signal::Wangiri => "wangiri",
            Signal::Brand => "brand",
            Signal::Dno => "dno",
            Signal::Plausibility => "plausibility",
            Signal::Gateway => "gateway",
            Signal::Neighbour => "neighbour",
            Signal::Blocks => "blocks",
            Signal::Challenge => "challenge",
        }
    }
}

/// Where a reason comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A list or a partner's feed, by name.
    List(Arc<str>),
    Signal(Signal),
    /// The screening policy itself: anonymity, emergency callees, overrides, log-only notes.
    Policy,
}

impl Source {
    /// The name operators use for it: the list's name, the signal's, or `policy`.
    pub fn name(&self) -> &str {
        match self {
            Source::List(name) => name,
            Source::Signal(s) => s.name(),
            Source::Policy => "policy",
        }
    }

    pub fn list(name: &str) -> Source {
        Source::List(name.into())
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq<str> for Source {
    fn eq(&self, other: &str) -> bool {
        self.name() == other
    }
}

impl PartialEq<&str> for Source {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One reason behind a verdict: which list, signal or rule, which entry matched, and why.
/// Serialises as `{"list":..,"entry":..,"category":..,"reason":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    #[serde(rename = "list")]
    pub source: Source,
    pub entry: String,
    pub category: String,
    pub reason: String,
}

/// What a piece of evidence does beyond adding its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Only its score counts.
    Scores,
    /// An operator's allow entry: the call passes whatever else scored.
    Allows,
    /// The caller is a number that never places calls: the call is blocked.
    DoNotOriginate,
    /// The callee is an emergency service: the call is never held back.
    EmergencyCallee,
    /// The policy refuses withheld identities: a block is answered 433, not 603.
    RefusesAnonymous,
    /// An operator's entry in category `challenge`: the caller is challenged rather than
    /// warned or blocked, unless the rest of the evidence blocks on its own.
    Challenges,
}

/// One thing that may count towards a verdict, before the scoring policy weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub score: i32,
    pub effect: Effect,
    pub reason: Reason,
}

impl Evidence {
    /// Evidence from a signal that only adds its score.
    pub fn signal(
        signal: Signal,
        score: i32,
        entry: impl Into<String>,
        category: &str,
        reason: impl Into<String>,
    ) -> Evidence {
        Evidence {
            score,
            effect: Effect::Scores,
            reason: Reason {
                source: Source::Signal(signal),
                entry: entry.into(),
                category: category.into(),
                reason: reason.into(),
            },
        }
    }

    /// The signal this evidence comes from, if it comes from one.
    pub fn signal_kind(&self) -> Option<Signal> {
        match self.reason.source {
            Source::Signal(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters of signals are indexed by `Signal as usize`: `ALL` must be the declaration order,
    /// every name once.
    #[test]
    fn all_is_every_signal_in_declaration_order() {
        for (i, s) in Signal::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{s:?}");
        }
        let names: std::collections::HashSet<_> = Signal::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), Signal::ALL.len());
    }
}
