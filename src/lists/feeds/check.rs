//! Whether a partner's answer may be applied: the signature verifies over the version it
//! claims, the body parses and agrees with that version, it does not go backwards, an increment
//! applies on the version held, and every entry is one this agent could have written (no control
//! character in its texts, no field past the store's cap). An answer is refused whole, never in
//! part.
//!
//! Pure: knows nothing of HTTP, the database or the rules in force.

use crate::screening::entry::check_text;
use crate::screening::{EntryAction, Pattern};

use super::keys::{verify, VerifyingKey};
use super::{FeedBody, VERSION_HEADER};

/// Caps on free-text fields, as the store has.
const MAX_FIELD: usize = 512;

/// Why an answer was refused whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Signature,
    Backwards { have: u64, got: u64 },
    Malformed(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Signature => f.write_str("signature does not verify"),
            Refusal::Backwards { have, got } => {
                write!(f, "version went backwards: have {have}, got {got}")
            }
            Refusal::Malformed(m) => write!(f, "malformed: {m}"),
        }
    }
}

impl Refusal {
    pub(super) fn label(&self) -> &'static str {
        match self {
            Refusal::Signature => "signature",
            Refusal::Backwards { .. } => "backwards",
            Refusal::Malformed(_) => "malformed",
        }
    }
}

/// A verified, validated answer, ready to apply.
#[derive(Debug)]
pub struct Checked {
    pub body: FeedBody,
}

/// Verify and validate an answer against the version the subscriber holds. Pure.
pub fn check_answer(
    key: &VerifyingKey,
    have: u64,
    version_header: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    max_entries: usize,
) -> Result<Checked, Refusal> {
    let version: u64 = version_header
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Refusal::Malformed(format!("missing or bad {VERSION_HEADER}")))?;
    let sig = signature.ok_or(Refusal::Signature)?;
    if !verify(key, version, body, sig) {
        return Err(Refusal::Signature);
    }
    let b: FeedBody =
        serde_json::from_slice(body).map_err(|e| Refusal::Malformed(format!("body: {e}")))?;
    if b.version != version {
        return Err(Refusal::Malformed(format!(
            "body version {} differs from header {version}",
            b.version
        )));
    }
    if version < have {
        return Err(Refusal::Backwards { have, got: version });
    }
    if !b.full && b.since != Some(have) {
        return Err(Refusal::Malformed(format!(
            "increment since {:?} does not apply on version {have}",
            b.since
        )));
    }
    if b.entries.len() > max_entries {
        return Err(Refusal::Malformed(format!(
            "{} entries exceed max_entries = {max_entries}",
            b.entries.len()
        )));
    }
    for (i, e) in b.entries.iter().enumerate() {
        Pattern::parse(&e.pattern).map_err(|x| {
            Refusal::Malformed(format!("entry {i}: pattern {:?}: {}", e.pattern, x.0))
        })?;
        if EntryAction::parse(&e.action).is_none() {
            return Err(Refusal::Malformed(format!(
                "entry {i}: action {:?}; expected allow, warn or block",
                e.action
            )));
        }
        if [&e.pattern, &e.category, &e.reason, &e.source]
            .iter()
            .any(|s| s.len() > MAX_FIELD)
        {
            return Err(Refusal::Malformed(format!(
                "entry {i}: a field exceeds {MAX_FIELD} bytes"
            )));
        }
        // The entries' texts reach logs and SIP headers: a partner's control characters are
        // refused like an operator's.
        for (field, v) in [
            ("category", &e.category),
            ("reason", &e.reason),
            ("source", &e.source),
        ] {
            check_text(field, v).map_err(|m| Refusal::Malformed(format!("entry {i}: {m}")))?;
        }
    }
    for (i, t) in b.removed.iter().enumerate() {
        if t.pattern.trim().is_empty() || t.pattern.len() > MAX_FIELD {
            return Err(Refusal::Malformed(format!("removal {i}: bad pattern")));
        }
    }
    Ok(Checked { body: b })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::feeds::sign;
    use crate::lists::feeds::testing::{body, key};

    #[test]
    fn answers_are_checked_whole() {
        let k = key(7);
        let pk = k.verifying_key();
        let good = body(5, false, Some(3), &["+12025550143"]);
        let sig = sign(&k, 5, &good);
        let other = sign(&key(8), 5, &good);
        let mut tampered = good.clone();
        let i = tampered.iter().position(|b| *b == b'3').unwrap();
        tampered[i] = b'4';
        let bad_pattern = body(5, true, None, &["call me maybe"]);
        let bad_sig = sign(&k, 5, &bad_pattern);
        let nul = String::from_utf8(body(5, true, None, &["+12025550143"]))
            .unwrap()
            .replace("\"reason\":\"r\"", "\"reason\":\"r\\u0000\"")
            .into_bytes();
        assert!(nul != body(5, true, None, &["+12025550143"]));
        let nul_sig = sign(&k, 5, &nul);
        let old = body(2, true, None, &[]);
        let old_sig = sign(&k, 2, &old);
        type Case<'a> = (
            &'a str,
            u64,
            &'a str,
            &'a str,
            &'a [u8],
            Result<(), &'a str>,
        );
        let cases: Vec<Case> = vec![
            ("genuine increment", 3, "5", &sig, &good, Ok(())),
            ("wrong key", 3, "5", &other, &good, Err("signature")),
            ("tampered body", 3, "5", &sig, &tampered, Err("signature")),
            (
                "version header changed",
                3,
                "6",
                &sig,
                &good,
                Err("signature"),
            ),
            (
                "not since our version",
                4,
                "5",
                &sig,
                &good,
                Err("malformed"),
            ),
            (
                "bad pattern",
                0,
                "5",
                &bad_sig,
                &bad_pattern,
                Err("malformed"),
            ),
            (
                "a NUL in a reason",
                0,
                "5",
                &nul_sig,
                &nul,
                Err("malformed"),
            ),
            ("backwards", 3, "2", &old_sig, &old, Err("backwards")),
            ("no version", 3, "x", &sig, &good, Err("malformed")),
        ];
        for (what, have, v, s, b, want) in cases {
            let got = check_answer(&pk, have, Some(v), Some(s), b, 10).map(|_| ());
            assert_eq!(got.map_err(|r| r.label()), want, "{what}");
        }
        assert_eq!(
            check_answer(&pk, 3, Some("5"), None, &good, 10).map(|_| ()),
            Err(Refusal::Signature)
        );
        assert!(matches!(
            check_answer(&pk, 3, Some("5"), Some(&sig), &good, 0),
            Err(Refusal::Malformed(_))
        ));
    }
}
