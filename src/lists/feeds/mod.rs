//! Shared blocklists between organisations: signed, versioned feeds.
//!
//! A publisher serves one store list as a feed: a full snapshot, or the changes after a version
//! (tombstones for removals and expiries). The version is the store's audit sequence, so it
//! never goes back; when the audit trail cannot tell the changes (an import, records trimmed
//! away, a version from the future) the answer is a full snapshot, marked `full`. Each answer is
//! signed with Ed25519 over `version || "\n" || body`.
//!
//! A subscriber polls each `[[feeds]]` source off the hot path (jitter, hard timeout), verifies
//! the signature, refuses a feed whole when it is forged, malformed or goes backwards, persists
//! the entries and the version it reached in `feeds.db` in one transaction, then swaps the feed's
//! compiled [`RuleIndex`](crate::screening::RuleIndex) whole. [`FeedRules`] implements
//! [`Rules`](crate::screening::Rules) over every trusted feed.
//!
//! The parts, each ignorant of the others' insides: [`keys`] (Ed25519 keys and the signature
//! scheme), [`publish`] (answers for `GET /v1/feeds/{feed}`), [`check`] (whether an answer may be
//! applied), [`subscribe`] (the subscriber's state, rules and pollers), [`fetch`] (the HTTP
//! client) and [`cli`] (`scamguard feeds ...`). This module holds what they share: the config
//! sections, the wire format and its headers. Every SQL statement is in
//! [`store`](super::store), which also defines the wire entry because a kept row is exactly one.
//!
//! Feeds own an HTTP client, the only one in `lists` ([`fetch`]): a GET of one configured
//! `http://` URL with the feed's token, version and ETag, under the feed's timeout and body cap.
//! All of that is feed protocol, so the client stays beside the code that speaks it; the STIR
//! certificate fetcher in `certs` has its own (TLS, other headers, other trust), and a shared
//! client would have to know both. Knows nothing of HTTP routing, API tokens, SIP or what a
//! verdict does with a match.

pub mod check;
pub mod cli;
pub mod fetch;
pub mod keys;
pub mod publish;
pub mod subscribe;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use super::store::{FeedEntry, Tombstone, FEEDS_DB};
pub use check::{check_answer, Checked, Refusal};
pub use cli::{read_status, write_status, FeedsCmd};
pub use fetch::HttpUrl;
pub use keys::{
    keygen, load_signing_key, parse_public_key, sign, verify, SigningKey, SigningKeyHolder,
    VerifyingKey,
};
pub use publish::{Answer, PublishStats, Publisher};
pub use subscribe::{build_index, FeedRules, FeedStats, FeedStatus, WithFeeds};

/// Header carrying the version an answer brings the subscriber to.
pub const VERSION_HEADER: &str = "x-feed-version";
/// Header carrying `base64(Ed25519(version || "\n" || body))`.
pub const SIGNATURE_HEADER: &str = "x-feed-signature";

// ---------------------------------------------------------------------------------------------
// Config

/// How far a subscriber trusts a partner's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    /// Entries act as the partner wrote them (block blocks, warn warns).
    #[default]
    Block,
    /// Block entries only warn.
    BlockAsWarn,
    /// Entries are kept and shown but never decide a call.
    LogOnly,
}

/// One `[[feeds]]` subscription.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedConfig {
    /// Local list name the feed's entries appear under.
    pub name: String,
    /// `http://host:port/v1/feeds/NAME` of the publisher (https is not supported yet).
    pub url: String,
    /// The publisher's Ed25519 public key, base64 of 32 bytes.
    pub public_key: String,
    pub poll_interval_secs: u64,
    /// Bearer token sent to the publisher.
    pub token: Option<String>,
    pub trust: Trust,
    /// Hard limit on one whole poll (connect, request, body).
    pub timeout_secs: u64,
    pub max_body_bytes: usize,
    /// Most entries accepted from this feed.
    pub max_entries: usize,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            name: String::new(),
            url: String::new(),
            public_key: String::new(),
            poll_interval_secs: 300,
            token: None,
            trust: Trust::Block,
            timeout_secs: 30,
            max_body_bytes: 512 << 20,
            max_entries: 5_000_000,
        }
    }
}

/// One feed this agent publishes.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PublishedFeed {
    /// Name in the URL: `GET /v1/feeds/{name}`.
    pub name: String,
    /// Store list served.
    pub list: String,
    /// Tokens that may read this feed only (besides any `read` API token).
    pub tokens: Vec<String>,
}

/// The `[publish]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// Private key file written by `scamguard feeds keygen`.
    pub key_file: Option<PathBuf>,
    pub feeds: Vec<PublishedFeed>,
}

impl PublishConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.feeds.is_empty() && self.key_file.is_none() {
            p.push("publish.key_file is not set; expected the private key from `scamguard feeds keygen`".into());
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.feeds {
            if super::store::valid_list_name(&f.name).is_err() || !seen.insert(&f.name) {
                p.push(format!(
                    "publish.feeds: bad or repeated feed name {:?}",
                    f.name
                ));
            }
            if super::store::valid_list_name(&f.list).is_err() {
                p.push(format!(
                    "publish.feeds {:?}: bad list name {:?}",
                    f.name, f.list
                ));
            }
        }
        p
    }
}

/// Every problem with the `[[feeds]]` sections.
pub fn validate_feeds(feeds: &[FeedConfig]) -> Vec<String> {
    let mut p = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in feeds {
        let at = format!("feeds {:?}", f.name);
        if super::store::valid_list_name(&f.name).is_err() || !seen.insert(&f.name) {
            p.push(format!(
                "{at}: bad or repeated name; expected 1-64 of A-Z a-z 0-9 - _ ."
            ));
        }
        if let Err(e) = HttpUrl::parse(&f.url) {
            p.push(format!("{at}: url: {e}"));
        }
        if let Err(e) = parse_public_key(&f.public_key) {
            p.push(format!("{at}: public_key: {e}"));
        }
        if f.poll_interval_secs == 0 || f.timeout_secs == 0 || f.max_body_bytes == 0 {
            p.push(format!(
                "{at}: poll_interval_secs, timeout_secs and max_body_bytes must be > 0"
            ));
        }
    }
    p
}

// ---------------------------------------------------------------------------------------------
// Wire format

/// The body of a feed answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedBody {
    pub feed: String,
    pub version: u64,
    /// A full snapshot replaces everything the subscriber has; otherwise an increment.
    pub full: bool,
    /// The version an increment applies on top of.
    pub since: Option<u64>,
    pub entries: Vec<FeedEntry>,
    #[serde(default)]
    pub removed: Vec<Tombstone>,
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub fn body(version: u64, full: bool, since: Option<u64>, patterns: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&FeedBody {
            feed: "f".into(),
            version,
            full,
            since,
            entries: patterns
                .iter()
                .map(|p| FeedEntry {
                    pattern: p.to_string(),
                    action: "block".into(),
                    category: "scam".into(),
                    reason: "r".into(),
                    source: "s".into(),
                    first_seen: 1,
                    last_seen: 2,
                    expires: None,
                })
                .collect(),
            removed: vec![],
        })
        .unwrap()
    }
}
