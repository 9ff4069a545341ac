//! Callback protection: outbound calls of protected subscribers to numbers that scammers ask
//! their victims to call (issue 17). The `[callback]` section says which calls are outbound from
//! protected subscribers (by source peer, by the subscriber's number, by tenant) and what a
//! listed destination gets; this module turns a callback verdict into the call's course:
//!
//! | verdict | with early media | without (media off, no G.711, encrypted...) |
//! | --- | --- | --- |
//! | pass | forwarded untouched | the same |
//! | warn | held: a 183 plays `callback-warn` (or `callback-confirm` and waits for the digit), then forwarded, anchored; an unconfirmed call ends 603 | forwarded |
//! | block, `block = "announce"` | held: a 183 plays `callback-block`, then 603 | 603 at once |
//! | block, `block = "redirect"` | held: a 183 plays `callback-redirect`, then diverted to `redirect_to`, anchored | diverted at once |
//!
//! A held call waits in the proxy (`sip::Disposition::Hold`); when the media engine says how the
//! prompt ended, the outcome is queued here and the proxy takes it on its next tick
//! ([`crate::sip::Hook::resumed`]). What a held call needs later travels with it (in the prompt's
//! callback and the call's tag): the app keeps no table of calls. Held calls are bounded by the
//! media engine's sessions and each by `confirm_timeout_secs`, or by the proxy's Timer C.
//!
//! The destinations of outbound calls are personal data: the decision log shows them as a keyed
//! hash unless `hash_destinations = false`. Knows nothing of sockets or of how a verdict is
//! reached.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::hmac;
use serde::Deserialize;

use super::decision_log::Record;
use super::held::{self, onward, Held, Queue};
use super::screener::{Screener, Tagged};
use super::AppError;
use crate::media::{dtmf, Gate, Heard, MediaConfig, MediaEngine, PromptSet, Release};
use crate::metrics::{Collect, Counter, Exposition};
use crate::screening::{Action, Call, PolicyConfig, Verdict};
use crate::sip::{CallTag, Disposition, NewCall};

/// What a blocked destination gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockAs {
    /// The subscriber hears why, then the call ends (603).
    #[default]
    Announce,
    /// The call goes to `redirect_to` instead (after a short announcement).
    Redirect,
}

/// The `[callback]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackConfig {
    pub enabled: bool,
    /// Source addresses of the peers that carry protected subscribers' outbound calls (their
    /// PBX, the access SBC).
    pub peers: Vec<IpAddr>,
    /// E.164 prefixes of protected subscribers' numbers (the caller).
    pub subscriber_prefixes: Vec<String>,
    /// `[[policy.tenant]]` names: calls from those tenants' peers are outbound calls.
    pub tenants: Vec<String>,
    /// A warned call goes on only once the subscriber presses `confirm_digit`.
    pub confirm: bool,
    pub confirm_digit: String,
    /// How long after the warning the digit may come.
    pub confirm_timeout_secs: u64,
    pub block: BlockAs,
    /// The safe line a redirected call is sent to: the Request-URI's new user part.
    pub redirect_to: String,
    /// Show outbound destinations in the decision log as a keyed hash.
    pub hash_destinations: bool,
    /// The hash key (at least 16 bytes); empty: a random key per start.
    pub hash_key_file: String,
    /// How long the decision log file keeps a destination (`"30d"`, `"12h"`, `"45s"`) before
    /// it is redacted ([`super::retention`]); empty: as long as the file is kept.
    pub destination_retention: String,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            enabled: false,
            peers: Vec::new(),
            subscriber_prefixes: Vec::new(),
            tenants: Vec::new(),
            confirm: false,
            confirm_digit: "1".into(),
            confirm_timeout_secs: 10,
            block: BlockAs::Announce,
            redirect_to: String::new(),
            hash_destinations: true,
            hash_key_file: String::new(),
            destination_retention: "30d".into(),
        }
    }
}

/// The prompts, by what they say.
const WARN: &str = "callback-warn";
const CONFIRM: &str = "callback-confirm";
const BLOCK: &str = "callback-block";
const REDIRECT: &str = "callback-redirect";

/// Characters a safe line may hold: a number or a plain SIP user.
fn plain_user(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b))
}

fn read_key(path: &str) -> Result<Vec<u8>, String> {
    let key = std::fs::read(path).map_err(|e| format!("callback.hash_key_file {path}: {e}"))?;
    if key.len() < 16 {
        return Err(format!(
            "callback.hash_key_file {path}: {} bytes; expected at least 16 random bytes",
            key.len()
        ));
    }
    Ok(key)
}

impl CallbackConfig {
    /// Every problem with the section, each naming the setting and what was expected. A
    /// disabled section is not checked.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.enabled {
            return p;
        }
        if self.peers.is_empty() && self.subscriber_prefixes.is_empty() && self.tenants.is_empty() {
            p.push(
                "callback: no protected calls; expected peers, subscriber_prefixes or tenants"
                    .into(),
            );
        }
        for bad in self.subscriber_prefixes.iter().filter(|s| {
            s.strip_prefix('+').map_or(true, |d| {
                d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit())
            })
        }) {
            p.push(format!(
                "callback.subscriber_prefixes: {bad:?} is not + and digits; expected an E.164 prefix like +4930"
            ));
        }
        let one = |s: &str| s.chars().count() == 1;
        if !one(&self.confirm_digit) || self.confirm_digit.chars().any(|c| dtmf::event(c).is_none())
        {
            p.push(format!(
                "callback.confirm_digit {:?}: expected one of 0-9, *, #",
                self.confirm_digit
            ));
        }
        if !(1..=120).contains(&self.confirm_timeout_secs) {
            p.push(format!(
                "callback.confirm_timeout_secs {}: expected 1 to 120",
                self.confirm_timeout_secs
            ));
        }
        if self.block == BlockAs::Redirect && !plain_user(&self.redirect_to) {
            p.push(format!(
                "callback.redirect_to {:?}: expected the safe line's number (digits, +, letters, - . _), needed by block = \"redirect\"",
                self.redirect_to
            ));
        }
        if self.hash_destinations && !self.hash_key_file.is_empty() {
            p.extend(read_key(&self.hash_key_file).err());
        }
        if let Err(e) = super::retention::parse_retention(&self.destination_retention) {
            p.push(format!("callback.destination_retention {e}"));
        }
        p
    }

    /// How long the decision log keeps a destination: `None` with the section off (no line
    /// has one) or no limit set.
    pub fn retention(&self) -> Option<std::time::Duration> {
        let r = super::retention::parse_retention(&self.destination_retention);
        self.enabled.then_some(r.ok().flatten()).flatten()
    }

    /// What the section asks of others: its tenants defined in `[policy]`, and with media on,
    /// the prompts it plays in the default language.
    pub fn validate_against(&self, policy: &PolicyConfig, media: &MediaConfig) -> Vec<String> {
        let mut p = Vec::new();
        if !self.enabled {
            return p;
        }
        for t in &self.tenants {
            if !policy.tenants.iter().any(|d| &d.name == t) {
                p.push(format!(
                    "callback.tenants: {t:?} is no [[policy.tenant]] name; expected one of the tenants defined there"
                ));
            }
        }
        if !media.enabled {
            return p;
        }
        // A broken prompt set is media's to report.
        let Ok(prompts) = PromptSet::load(media) else {
            return p;
        };
        for cat in self.prompts() {
            if prompts.select_exact(&media.default_prompt, cat).is_none() {
                p.push(format!(
                    "callback: no prompt {}-{cat}.wav in {}; expected one for the default language",
                    media.default_prompt, media.prompts_dir
                ));
            }
        }
        p
    }

    /// The prompts this config may play.
    fn prompts(&self) -> Vec<&'static str> {
        let mut v = vec![WARN];
        if self.confirm {
            v.push(CONFIRM);
        }
        v.push(match self.block {
            BlockAs::Announce => BLOCK,
            BlockAs::Redirect => REDIRECT,
        });
        v
    }
}

/// Calls of callback protection, by what they got and how it ended.
#[derive(Debug, Default)]
pub struct CallbackStats {
    pub passed: Counter,
    pub warned: Counter,
    pub blocked: Counter,
    pub redirected: Counter,
    /// Acted on without a prompt (no early media possible).
    pub unannounced: Counter,
    /// Went on after the warning (heard, or confirmed by the digit).
    pub continued: Counter,
    /// Ended for want of the digit.
    pub unconfirmed: Counter,
}

impl Collect for CallbackStats {
    fn collect(&self, out: &mut Exposition) {
        let h = "Outbound calls of protected subscribers, by what their destination got";
        for (a, c) in [
            ("pass", &self.passed),
            ("warn", &self.warned),
            ("block", &self.blocked),
            ("redirect", &self.redirected),
        ] {
            out.counter(
                "scamguard_callback_calls_total",
                h,
                &[("action", a)],
                c.get(),
            );
        }
        let h = "Warned or blocked outbound calls, by how they went on";
        for (o, c) in [
            ("unannounced", &self.unannounced),
            ("continued", &self.continued),
            ("unconfirmed", &self.unconfirmed),
        ] {
            out.counter(
                "scamguard_callback_outcomes_total",
                h,
                &[("outcome", o)],
                c.get(),
            );
        }
    }
}

/// What becomes of a held call once its prompt has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Forward (after a warning; with a digit asked, only once it came).
    Go,
    /// Refuse: the destination is blocked.
    Refuse,
    /// Divert to the safe line.
    Divert,
}

/// The compiled `[callback]` section and the calls it holds.
pub struct Callback {
    cfg: CallbackConfig,
    /// Protected peers (the section's and its tenants'), in the text form of a call's source.
    peers: Vec<String>,
    key: Option<hmac::Key>,
    digit: char,
    /// Held calls whose prompt has ended.
    decided: Arc<Queue<Then>>,
    pub stats: Arc<CallbackStats>,
}

impl Callback {
    /// For a section that has passed validation; `None` when it is disabled. The hash key is
    /// read here (it may have changed since validation) or drawn at random.
    pub fn new(cfg: &CallbackConfig, policy: &PolicyConfig) -> Result<Option<Callback>, AppError> {
        if !cfg.enabled {
            return Ok(None);
        }
        let mut peers: Vec<String> = cfg.peers.iter().map(ToString::to_string).collect();
        for t in policy
            .tenants
            .iter()
            .filter(|t| cfg.tenants.contains(&t.name))
        {
            peers.extend(t.peers.iter().cloned());
        }
        let key = match (cfg.hash_destinations, cfg.hash_key_file.is_empty()) {
            (false, _) => None,
            (true, false) => Some(read_key(&cfg.hash_key_file).map_err(AppError)?),
            (true, true) => {
                let mut k = [0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
                    .map_err(|_| AppError("callback: no random hash key".into()))?;
                Some(k.to_vec())
            }
        };
        Ok(Some(Callback {
            peers,
            key: key.map(|k| hmac::Key::new(hmac::HMAC_SHA256, &k)),
            digit: cfg.confirm_digit.chars().next().unwrap_or('1'),
            decided: Arc::default(),
            stats: Arc::default(),
            cfg: cfg.clone(),
        }))
    }

    /// Is this an outbound call of a protected subscriber? Its source must be a protected peer
    /// (when any is named) and its caller a protected number (when any prefix is named): a
    /// caller id alone can be spoofed by anyone calling in.
    pub fn protects(&self, source: &str, caller: Option<&str>) -> bool {
        let by_peer = self.peers.is_empty() || self.peers.iter().any(|p| p == source);
        let by_number = self.cfg.subscriber_prefixes.is_empty()
            || caller.is_some_and(|c| {
                self.cfg
                    .subscriber_prefixes
                    .iter()
                    .any(|p| c.starts_with(p.as_str()))
            });
        by_peer && by_number
    }

    /// The destination as the decision log shows it: `hmac-sha256:` and the first 16 bytes of
    /// HMAC-SHA256(key, number) in hex, or the number itself when hashing is off.
    pub fn shown(&self, destination: &str) -> String {
        let Some(key) = &self.key else {
            return destination.to_string();
        };
        let tag = hmac::sign(key, destination.as_bytes());
        let hex: String = tag.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("hmac-sha256:{hex}")
    }
}

/// 603 with a Reason the subscriber's phone (or its log) can show.
fn refusal(text: &str) -> Disposition {
    Disposition::Reject {
        code: 603,
        phrase: "Decline".into(),
        headers: vec![format!("Reason: SIP;cause=603;text=\"{text}\"")],
    }
}

const LISTED: &str = "scamguard: the number dialled is listed as a scam callback number";
const UNCONFIRMED: &str = "scamguard: the caller did not confirm the call to a listed number";

impl Screener {
    /// A new call, if it is an outbound call of a protected subscriber: its disposition, its
    /// count and its log line. `None` for every other call.
    pub(super) fn outbound(
        &self,
        call: &NewCall<'_>,
        parties: &crate::sip::caller::Parties<'_>,
        now: Instant,
    ) -> Option<Disposition> {
        let cb = self.callback.as_deref()?;
        let started = Instant::now();
        let source = call.source.ip().to_string();
        let plan = &self.engine.screening.plan;
        let caller = plan.normalise(&parties.caller).map(|n| n.to_string());
        if !cb.protects(&source, caller.as_deref()) {
            return None;
        }
        let unix_ms = self.clock.unix_ms(now);
        let facts = Call {
            id: call.call_id,
            caller: &parties.caller,
            callee: &parties.callee,
            source: Some(&source),
            live: true,
            outbound: true,
            ..Call::default()
        };
        let v = self.screen(&facts, unix_ms);
        let callee = plan
            .normalise(&parties.callee)
            .map_or_else(|| parties.callee.to_string(), |n| n.to_string());
        let tag = CallTag::new(Tagged {
            caller: v.caller.clone(),
            callee: callee.clone(),
            announce: None,
            outbound: true,
            early: true,
        });
        let (answer, note) = self.outbound_answer(cb, call, &v, tag);
        self.count(&v);
        self.log.write(Record {
            time: std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(unix_ms),
            call_id: call.call_id.to_string(),
            caller: v.caller.clone(),
            callee: cb.shown(&callee),
            action: v.action,
            reasons: v.reasons,
            decision_us: started.elapsed().as_micros() as u64,
            source: call.source.to_string(),
            note,
            outbound: true,
        });
        Some(answer)
    }

    /// The course of a screened outbound call (see the module's table), and a note for the log
    /// when it could hear no prompt.
    fn outbound_answer(
        &self,
        cb: &Callback,
        call: &NewCall<'_>,
        v: &Verdict,
        tag: CallTag,
    ) -> (Disposition, Option<&'static str>) {
        let redirect = cb.cfg.block == BlockAs::Redirect;
        let (then, prompt, stat) = match v.action {
            Action::Pass => {
                cb.stats.passed.inc();
                return (onward(None, tag), None);
            }
            // No outbound verdict is a challenge (`decide_outbound`): as a warning if one were.
            Action::Warn | Action::Challenge => (Then::Go, WARN, &cb.stats.warned),
            Action::Block if redirect => (Then::Divert, REDIRECT, &cb.stats.redirected),
            Action::Block => (Then::Refuse, BLOCK, &cb.stats.blocked),
        };
        stat.inc();
        match self.hold(cb, call, &v.caller, then, prompt, tag.clone()) {
            Ok(hold) => (hold, None),
            Err(why) => {
                cb.stats.unannounced.inc();
                let d = match then {
                    // Forwarded with no verdict header: it goes towards the number dialled,
                    // the very one that is listed.
                    Then::Go => onward(None, tag),
                    Then::Refuse => refusal(LISTED),
                    Then::Divert => Disposition::Divert {
                        user: cb.cfg.redirect_to.clone(),
                        then: Box::new(onward(None, tag)),
                    },
                };
                (d, Some(why))
            }
        }
    }

    /// Hold the call with its prompt as early media; `Err` says why it cannot be.
    fn hold(
        &self,
        cb: &Callback,
        call: &NewCall<'_>,
        subscriber: &str,
        then: Then,
        prompt: &str,
        tag: CallTag,
    ) -> Result<Disposition, &'static str> {
        let media = self
            .media
            .as_ref()
            .ok_or("callback: no early media (media is disabled)")?;
        // A digit can only be asked of a caller that offered telephone-events; without them
        // the warning is played and the call goes on.
        let dtmf = held::offer(call).is_some_and(held::offers_digits);
        let (prompt, gate) = match (then, cb.cfg.confirm && dtmf) {
            (Then::Go, true) => (
                CONFIRM,
                Gate::Press {
                    digit: cb.digit,
                    wait: Duration::from_secs(cb.cfg.confirm_timeout_secs),
                },
            ),
            _ => (prompt, Gate::Hear),
        };
        let prompt = media
            .prompts()
            .select_exact(subscriber, prompt)
            .ok_or("callback: no early media (no prompt for it)")?;
        cb.decided.hold(media, call, (prompt, gate), then, tag)
    }

    /// Held calls whose prompt has ended, with what becomes of them.
    pub(super) fn callback_resumed(&self) -> Vec<(String, Disposition)> {
        let (Some(cb), Some(media)) = (self.callback.as_deref(), self.media.as_deref()) else {
            return Vec::new();
        };
        cb.decided
            .take()
            .into_iter()
            .map(|(held, heard)| {
                let d = resume(cb, media, &held, heard);
                (held.call_id, d)
            })
            .collect()
    }
}

/// What a held call gets once its prompt has ended. A refused call's media is released here;
/// one that goes on keeps its session, now anchoring the call.
fn resume(cb: &Callback, media: &MediaEngine, held: &Held<Then>, heard: Heard) -> Disposition {
    let id = held.call_id.as_str();
    let refuse = |text| {
        drop(media.release(id, Release::Failed));
        refusal(text)
    };
    let anchored = || held::anchored(media, held);
    match (held.kind, heard) {
        (Then::Refuse, _) => refuse(LISTED),
        (Then::Go, Heard::TimedOut) => {
            cb.stats.unconfirmed.inc();
            refuse(UNCONFIRMED)
        }
        (Then::Go, _) => {
            cb.stats.continued.inc();
            anchored()
        }
        (Then::Divert, _) => Disposition::Divert {
            user: cb.cfg.redirect_to.clone(),
            then: Box::new(anchored()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml: &str) -> CallbackConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn config_reads_defaults_and_refuses_unknown_fields() {
        let c = cfg("enabled = true\npeers = [\"192.0.2.10\"]\n");
        assert_eq!(c.confirm_digit, "1");
        assert!(c.hash_destinations);
        assert_eq!(c.block, BlockAs::Announce);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert!(toml::from_str::<CallbackConfig>("enable = true").is_err());
        assert!(toml::from_str::<CallbackConfig>("block = \"drop\"").is_err());
        assert!(CallbackConfig::default().validate().is_empty());
    }

    #[test]
    fn validate_names_each_problem() {
        let c = cfg(
            "enabled = true\nsubscriber_prefixes = [\"4930\", \"+49x\"]\nconfirm_digit = \"12\"\n\
             confirm_timeout_secs = 0\nblock = \"redirect\"\nredirect_to = \"159@x\"\n\
             hash_key_file = \"/nonexistent/key\"\n",
        );
        let p = c.validate();
        let want = [
            "callback.subscriber_prefixes: \"4930\" is not + and digits",
            "callback.subscriber_prefixes: \"+49x\" is not + and digits",
            "callback.confirm_digit \"12\": expected one of 0-9, *, #",
            "callback.confirm_timeout_secs 0: expected 1 to 120",
            "callback.redirect_to \"159@x\": expected the safe line's number",
            "callback.hash_key_file /nonexistent/key:",
        ];
        assert_eq!(p.len(), want.len(), "{p:?}");
        for (got, want) in p.iter().zip(want) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
        let none = cfg("enabled = true\n").validate();
        assert_eq!(
            none,
            ["callback: no protected calls; expected peers, subscriber_prefixes or tenants"]
        );
        let policy: PolicyConfig =
            toml::from_str("[[tenant]]\nname = \"acme\"\npeers = [\"192.0.2.7\"]\n").unwrap();
        let c = cfg("enabled = true\ntenants = [\"acme\", \"other\"]\n");
        assert_eq!(
            c.validate_against(&policy, &MediaConfig::default()),
            ["callback.tenants: \"other\" is no [[policy.tenant]] name; expected one of the tenants defined there"]
        );
    }

    #[test]
    fn protected_calls_by_peer_number_and_tenant() {
        let policy: PolicyConfig =
            toml::from_str("[[tenant]]\nname = \"acme\"\npeers = [\"192.0.2.7\"]\n").unwrap();
        let c = cfg(
            "enabled = true\npeers = [\"192.0.2.10\"]\ntenants = [\"acme\"]\n\
             subscriber_prefixes = [\"+4930\"]\n",
        );
        let cb = Callback::new(&c, &policy).unwrap().unwrap();
        // (source, caller, protected)
        let cases = [
            ("192.0.2.10", Some("+493012345678"), true),
            ("192.0.2.7", Some("+493012345678"), true),
            // A subscriber's number arriving from elsewhere is an inbound call (maybe spoofed).
            ("198.51.100.1", Some("+493012345678"), false),
            ("192.0.2.10", Some("+498912345678"), false),
            ("192.0.2.10", None, false),
        ];
        for (source, caller, want) in cases {
            assert_eq!(cb.protects(source, caller), want, "{source} {caller:?}");
        }
        let by_number = Callback::new(
            &cfg("enabled = true\nsubscriber_prefixes = [\"+4930\"]\n"),
            &policy,
        )
        .unwrap()
        .unwrap();
        assert!(by_number.protects("198.51.100.1", Some("+4930123")));
        assert!(Callback::new(&CallbackConfig::default(), &policy)
            .unwrap()
            .is_none());
    }

    #[test]
    fn destinations_are_shown_as_a_keyed_hash() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, [7u8; 32]).unwrap();
        let policy = PolicyConfig::default();
        let c = CallbackConfig {
            enabled: true,
            subscriber_prefixes: vec!["+1".into()],
            hash_key_file: key.display().to_string(),
            ..CallbackConfig::default()
        };
        let a = Callback::new(&c, &policy).unwrap().unwrap();
        let b = Callback::new(&c, &policy).unwrap().unwrap();
        let shown = a.shown("+18005550199");
        assert!(
            shown.starts_with("hmac-sha256:") && shown.len() == 12 + 32,
            "{shown}"
        );
        assert!(!shown.contains("8005550199"));
        assert_eq!(
            shown,
            b.shown("+18005550199"),
            "the same key, the same hash"
        );
        assert_ne!(shown, a.shown("+18005550198"));
        // A random key per start: stable within a run, unlinkable across runs.
        let r = Callback::new(
            &CallbackConfig {
                hash_key_file: String::new(),
                ..c.clone()
            },
            &policy,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.shown("+18005550199"), r.shown("+18005550199"));
        assert_ne!(r.shown("+18005550199"), shown);
        let clear = Callback::new(
            &CallbackConfig {
                hash_destinations: false,
                ..c
            },
            &policy,
        )
        .unwrap()
        .unwrap();
        assert_eq!(clear.shown("+18005550199"), "+18005550199");
        std::fs::write(&key, [7u8; 8]).unwrap();
        let short = CallbackConfig {
            enabled: true,
            subscriber_prefixes: vec!["+1".into()],
            hash_key_file: key.display().to_string(),
            ..CallbackConfig::default()
        };
        assert!(short.validate()[0].ends_with("8 bytes; expected at least 16 random bytes"));
    }
}
