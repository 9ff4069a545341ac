//! The verdict: what the engine ([`super::decide`]) says about one call, with the reasons that
//! explain it. Serialised as one JSON line by `scamguard check`, `/v1/check` and the decision
//! log; the proxy's answer is built from its typed parts, never from its text.
//!
//! Knows nothing of how a verdict is reached, or of SIP.

use serde::Serialize;

use super::evidence::Reason;
use super::signals::stir::StirCode;
use super::Action;

/// How a blocked call is refused; the proxy maps it to a response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Refusal {
    /// Blocked by a list entry or a signal: `603 Network Blocked` (or 608 per SIP config).
    #[default]
    Blocked,
    /// Anonymous caller refused by policy: `433 Anonymity Disallowed`.
    AnonymityDisallowed,
}

/// The decision for one call. Serialises as
/// `{"action":"block","caller":"+12025550143","reasons":[{"list":..,"entry":..,"category":..,"reason":..}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub action: Action,
    /// The caller in E.164 form, or as carried when it did not normalise.
    pub caller: String,
    pub reasons: Vec<Reason>,
    /// How a block is to be answered; meaningless unless `action` is block.
    #[serde(skip)]
    pub refusal: Refusal,
    /// The PASSporT failed verification with this RFC 8224 code (an absent one is no failure);
    /// a forwarded call carries it on as RFC 9410's `Reason: STIR`.
    #[serde(skip)]
    pub stir_failure: Option<StirCode>,
}

impl Verdict {
    /// One JSON line, as printed by `scamguard check` and the decision log.
    pub fn to_json(&self) -> String {
        // Serialising plain strings and enums cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}
