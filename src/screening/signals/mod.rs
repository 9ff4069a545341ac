//! Signals that catch scam calls no list names yet: STIR/SHAKEN attestation, call velocity,
//! wangiri, brand impersonation, Do-Not-Originate numbers, implausible caller IDs (including a
//! domestic number on an international gateway and neighbour spoofing) and callers' reports.
//! Reports are counted here ([`report_book::ReportBook`]) but enforced as store-list entries, so
//! they give no hit of their own.
//!
//! Each signal turns the facts of a call into [`Evidence`]: a score and a reason whose source
//! is the signal. The engine ([`crate::screening::decide`]) gathers it with the list matches and
//! the scoring policy weighs it all in one fold. Pure: no sockets, files, clocks or tokio. Times
//! come in as arguments; state that must outlive one call (velocity, wangiri, reports) sits in
//! [`SignalState`], in bounded tables.
//!
//! Per new call the engine calls [`evaluate`]; on call events the app calls
//! [`SignalState::call_answered`], [`SignalState::call_ended`] and [`SignalState::report`], and
//! every few seconds [`SignalState::sweep`].

pub mod bounded;
pub mod brands;
pub mod certchain;
pub mod plausible;
pub mod report_book;
pub mod stir;
pub mod text;
pub mod velocity;
pub mod wangiri;

use std::sync::Arc;

use serde::Deserialize;

use self::bounded::{Aging, BoundedMap};
use self::brands::Brands;
use self::plausible::Implausible;
use self::report_book::{Promotion, Report, ReportBook, ReportsConfig};
use self::stir::{Attest, CertLookup, StirConfig, StirInput, StirOutcome};
use self::velocity::{CallKeys, Velocity, VelocityConfig};
use self::wangiri::{CallEnd, Wangiri, WangiriConfig};
use crate::screening::evidence::{Effect, Evidence, Signal};
use crate::screening::Action;

/// The facts of a call that signals look at. The lead fills it from the screening facts.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignalInput<'a> {
    /// Unique per call (the Call-ID); links start, answer and end.
    pub call_id: &'a str,
    /// The screened caller, E.164; `None` when anonymous or not normalisable.
    pub caller: Option<&'a str>,
    /// The caller id as received (user part), for the dialability checks.
    pub caller_raw: Option<&'a str>,
    /// The callee, E.164.
    pub callee: Option<&'a str>,
    /// The caller's display name.
    pub display_name: Option<&'a str>,
    /// Where the call came from (source address as text).
    pub source: Option<&'a str>,
    /// The configured peer it came from, if known.
    pub peer: Option<&'a str>,
    pub from_trusted_peer: bool,
    /// The peer is an international gateway (calls from abroad enter there).
    pub from_international_gateway: bool,
    /// The `Identity` header value.
    pub identity: Option<&'a str>,
    /// The `Date` header, unix seconds.
    pub date_unix: Option<i64>,
    /// `verstat` as received.
    pub verstat: Option<&'a str>,
    /// A question (`check`, `/v1/check`), not a call: read the state, count nothing.
    pub question: bool,
}

/// Everything `evaluate` found for one call.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub hits: Vec<Evidence>,
    /// For the lead: the caller to trust (a verified `orig.tn`) and `Reason: STIR;cause=`.
    pub stir: StirOutcome,
}

/// Scores for signals that report a warn or a block level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LevelScores {
    pub warn: i32,
    pub block: i32,
}

impl Default for LevelScores {
    fn default() -> Self {
        LevelScores {
            warn: 50,
            block: 100,
        }
    }
}

impl LevelScores {
    fn of(&self, a: Action) -> i32 {
        match a {
            Action::Block => self.block,
            Action::Warn => self.warn,
            Action::Pass => 0,
        }
    }
}

/// `[signals.brands]`: the file itself is read by the lead and handed to [`Brands::from_toml`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrandsConfig {
    pub enabled: bool,
    pub file: String,
}

impl Default for BrandsConfig {
    fn default() -> Self {
        BrandsConfig {
            enabled: true,
            file: "config/brands.toml".into(),
        }
    }
}

/// `[signals.dno]`: numbers that never originate calls, beyond brands' inbound-only numbers
/// (list entries in category `dno` are handled by the policy).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnoConfig {
    pub enabled: bool,
    pub numbers: Vec<String>,
}

impl Default for DnoConfig {
    fn default() -> Self {
        DnoConfig {
            enabled: true,
            numbers: Vec::new(),
        }
    }
}

/// `[signals.plausibility]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlausibilityConfig {
    pub enabled: bool,
    /// Countries (ISO alpha-2) whose numbers are domestic here.
    pub home_countries: Vec<String>,
    /// Countries whose domestic numbers may not arrive from an international gateway (their
    /// regulators require blocking those; the US relies on STIR instead).
    pub gateway_countries: Vec<String>,
    /// Neighbour spoofing: caller and callee equal but for this many trailing digits.
    pub neighbour_tail_digits: usize,
    pub score_not_dialable: i32,
    pub score_unallocated: i32,
    pub score_fictional: i32,
    pub score_gateway: i32,
    pub score_neighbour: i32,
}

impl Default for PlausibilityConfig {
    fn default() -> Self {
        PlausibilityConfig {
            enabled: true,
            home_countries: Vec::new(),
            gateway_countries: ["GB", "DE", "ES", "CA", "AU"].map(String::from).to_vec(),
            neighbour_tail_digits: 4,
            score_not_dialable: 60,
            score_unallocated: 60,
            // Below the warn level on its own: fictional ranges fill documentation and test
            // traffic, and an operator's own warn entry for one must stay a warning.
            score_fictional: 25,
            score_gateway: 100,
            score_neighbour: 50,
        }
    }
}

/// `[signals]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalsConfig {
    pub stir: StirConfig,
    pub velocity: VelocityConfig,
    pub wangiri: WangiriConfig,
    pub reports: ReportsConfig,
    pub brands: BrandsConfig,
    pub dno: DnoConfig,
    pub plausibility: PlausibilityConfig,
    /// Scores of warn/block levels (velocity, wangiri, reports, brands).
    pub levels: LevelScores,
    /// Calls in progress remembered for concurrency and wangiri; the oldest go beyond it.
    pub max_calls: usize,
    /// A call older than this is forgotten even without an end event.
    pub max_call_secs: u64,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        SignalsConfig {
            stir: StirConfig::default(),
            velocity: VelocityConfig::default(),
            wangiri: WangiriConfig::default(),
            reports: ReportsConfig::default(),
            brands: BrandsConfig::default(),
            dno: DnoConfig::default(),
            plausibility: PlausibilityConfig::default(),
            levels: LevelScores::default(),
            max_calls: 200_000,
            max_call_secs: 4 * 3_600,
        }
    }
}

impl SignalsConfig {
    /// Every problem with the section, each naming the setting and what was expected. The
    /// brands file is read by the lead, which checks it there.
    pub fn validate(&self) -> Vec<String> {
        self.reports.validate()
    }
}

struct CallRec {
    keys: CallKeys,
    caller: Option<Box<str>>,
    callee: Box<str>,
    started_ms: u64,
    answered_ms: Option<u64>,
    forget_ms: u64,
}

impl Aging for CallRec {
    fn idle_after_ms(&self) -> u64 {
        self.forget_ms
    }
}

/// State signals keep between calls. Shared by all calls (`&self` everywhere; sharded locks
/// inside, held for a few hundred nanoseconds and never across anything else).
pub struct SignalState {
    cfg: SignalsConfig,
    brands: Arc<Brands>,
    certs: Arc<dyn CertLookup>,
    velocity: Velocity,
    wangiri: Wangiri,
    /// Shared with the app's report desk, which counts durable reports into it.
    reports: Arc<ReportBook>,
    calls: BoundedMap<CallRec>,
}

impl SignalState {
    pub fn new(cfg: SignalsConfig, brands: Arc<Brands>, certs: Arc<dyn CertLookup>) -> SignalState {
        SignalState {
            velocity: Velocity::new(cfg.velocity.clone()),
            wangiri: Wangiri::new(cfg.wangiri.clone()),
            reports: Arc::new(ReportBook::new(cfg.reports.clone())),
            calls: BoundedMap::new(16, cfg.max_calls),
            brands,
            certs,
            cfg,
        }
    }

    pub fn config(&self) -> &SignalsConfig {
        &self.cfg
    }

    pub fn velocity(&self) -> &Velocity {
        &self.velocity
    }

    pub fn wangiri(&self) -> &Wangiri {
        &self.wangiri
    }

    pub fn reports(&self) -> &ReportBook {
        &self.reports
    }

    /// The report book, for whoever stores reports before counting them.
    pub fn reports_shared(&self) -> Arc<ReportBook> {
        self.reports.clone()
    }

    fn release(&self, gone: Vec<CallRec>) {
        for c in gone {
            self.velocity.call_ended(c.keys);
        }
    }

    /// The callee answered (200 OK to the INVITE).
    pub fn call_answered(&self, call_id: &str, now_ms: u64) {
        self.calls
            .update(self.calls.key(call_id), |c| c.answered_ms = Some(now_ms));
    }

    /// The call ended: `Cancelled` (CANCEL before an answer), `Rejected` (a final non-2xx) or
    /// `Answered` (BYE; the talk time is worked out here from the answer event when it is 0).
    pub fn call_ended(&self, call_id: &str, end: CallEnd, now_ms: u64) {
        let Some(c) = self.calls.remove(self.calls.key(call_id)) else {
            return;
        };
        self.velocity.call_ended(c.keys);
        let end = match (end, c.answered_ms) {
            (CallEnd::Answered { talk_ms: 0 }, Some(a)) => CallEnd::Answered {
                talk_ms: now_ms.saturating_sub(a),
            },
            (e, _) => e,
        };
        let ring_ms = c.answered_ms.unwrap_or(now_ms).saturating_sub(c.started_ms);
        if let Some(caller) = &c.caller {
            self.wangiri
                .call_ended(caller, &c.callee, ring_ms, end, now_ms);
        }
    }

    /// A report against a caller (a 607 from the callee, or the API). Persist it first through
    /// [`report_book::ReportStore`]; this only counts it. A promotion is not a signal hit: it is
    /// enforced as an entry of the store list `reports` (durable, audited, removable by an
    /// operator), and scoring it here as well would count the same evidence twice.
    pub fn report(&self, r: &Report, now_unix: i64) -> Option<Promotion> {
        self.reports.record(r, now_unix)
    }

    /// Frees idle slots in every table; call every few seconds from a timer.
    pub fn sweep(&self, now_ms: u64) {
        let gone = self.calls.sweep(now_ms);
        self.release(gone);
        self.velocity.sweep(now_ms);
        self.wangiri.sweep(now_ms);
        self.reports.sweep((now_ms / 1000) as i64);
    }

    /// Calls in progress tracked.
    pub fn calls_tracked(&self) -> usize {
        self.calls.len()
    }
}

fn hit(
    signal: Signal,
    score: i32,
    entry: impl Into<String>,
    category: &str,
    reason: impl Into<String>,
) -> Evidence {
    Evidence::signal(signal, score, entry, category, reason)
}

/// Evaluates every enabled signal for a new call and counts it for velocity. Call once per new
/// call (an initial INVITE, not its retransmissions); a repeated `call_id` is not counted twice.
// Long on purpose: one block per signal, in the order they are documented.
#[allow(clippy::too_many_lines)]
pub fn evaluate(input: &SignalInput<'_>, state: &SignalState, now_ms: u64) -> Evaluation {
    let cfg = &state.cfg;
    let now_unix = (now_ms / 1000) as i64;
    let mut hits = Vec::new();

    let stir = if cfg.stir.enabled {
        let si = StirInput {
            identity: input.identity,
            caller: input.caller,
            callee: input.callee,
            date_unix: input.date_unix,
            verstat: input.verstat,
            from_trusted_peer: input.from_trusted_peer,
        };
        stir::verify(&si, state.certs.as_ref(), &cfg.stir, now_unix)
    } else {
        StirOutcome::Absent
    };
    if cfg.stir.enabled {
        let (score, entry) = match &stir {
            StirOutcome::Verified {
                attest: Attest::A, ..
            } => (cfg.stir.score_a, "attest=A".to_string()),
            StirOutcome::Verified {
                attest: Attest::B, ..
            } => (cfg.stir.score_b, "attest=B".into()),
            StirOutcome::Verified {
                attest: Attest::C, ..
            } => (cfg.stir.score_c, "attest=C".into()),
            StirOutcome::PeerVerified => (cfg.stir.score_a, "verstat=TN-Validation-Passed".into()),
            StirOutcome::Pending { .. } => (cfg.stir.score_pending, "pending".into()),
            StirOutcome::Failed { code, .. } => (cfg.stir.score_failed, code.status().to_string()),
            StirOutcome::Absent => (cfg.stir.score_absent, "428".into()),
        };
        if score != 0 || !matches!(stir, StirOutcome::Absent) {
            hits.push(hit(Signal::Stir, score, entry, "stir", stir.to_string()));
        }
    }
    let well_attested = matches!(
        stir,
        StirOutcome::Verified {
            attest: Attest::A,
            ..
        } | StirOutcome::PeerVerified
    );

    if let Some(caller) = input.caller {
        if cfg.dno.enabled {
            if let Some(b) = state.brands.inbound_only_owner(caller) {
                let mut h = hit(Signal::Dno, cfg.levels.block, caller, "dno", format!("{caller} is an inbound-only number of {} (brands.toml): a call from it is spoofed", b.name));
                h.effect = Effect::DoNotOriginate;
                hits.push(h);
            } else if cfg.dno.numbers.iter().any(|n| n == caller) {
                let mut h = hit(Signal::Dno, cfg.levels.block, caller, "dno", format!("{caller} is on the configured Do-Not-Originate list: a call from it is spoofed"));
                h.effect = Effect::DoNotOriginate;
                hits.push(h);
            }
        }
    }

    if cfg.brands.enabled {
        if let Some(name) = input.display_name {
            if let Some(b) = state.brands.claimed(name) {
                if !b.calls_from(input.caller) {
                    hits.push(hit(
                        Signal::Brand,
                        cfg.levels.of(b.action),
                        b.name.as_str(),
                        &b.category,
                        format!(
                            "display name {name:?} claims {} from {}, not a number it calls from; {} ({})",
                            b.name,
                            input.caller.unwrap_or("an anonymous caller"),
                            b.statement,
                            b.sources.first().map_or("", String::as_str)
                        ),
                    ));
                }
            }
        }
    }

    if cfg.plausibility.enabled {
        plausibility(input, &cfg.plausibility, well_attested, &mut hits);
    }

    // Velocity counts the call and links it to its end event.
    if let Some(callee) = input.callee.filter(|_| !input.question) {
        let key = state.calls.key(input.call_id);
        let fresh = state.calls.peek(key, |_| ()).is_none();
        if fresh {
            let (keys, findings) =
                state
                    .velocity
                    .call_started(input.caller, input.source, callee, now_ms);
            let rec = CallRec {
                keys,
                caller: input.caller.map(Into::into),
                callee: callee.into(),
                started_ms: now_ms,
                answered_ms: None,
                forget_ms: now_ms.saturating_add(cfg.max_call_secs * 1000),
            };
            let (_, gone) = state.calls.upsert(key, now_ms, || rec, |_| ());
            state.release(gone);
            for kind in [
                velocity::KeyKind::Caller,
                velocity::KeyKind::Source,
                velocity::KeyKind::Prefix,
            ] {
                let mine: Vec<&velocity::Finding> =
                    findings.iter().filter(|f| f.kind == kind).collect();
                let Some(top) = mine.first() else { continue };
                let what = mine
                    .iter()
                    .map(|f| format!("{} {} ({})", f.measure, f.value, f.action.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ");
                let entry = match kind {
                    velocity::KeyKind::Caller => input.caller.unwrap_or("").to_string(),
                    velocity::KeyKind::Source => input.source.unwrap_or("").to_string(),
                    velocity::KeyKind::Prefix => input.caller.map_or(String::new(), |c| {
                        let n = (state.velocity.config().prefix_digits + 1).min(c.len());
                        format!("{}*", &c[..n])
                    }),
                };
                hits.push(hit(
                    Signal::Velocity,
                    cfg.levels.of(top.action),
                    entry,
                    "velocity",
                    format!("{} {what}", kind.as_str()),
                ));
            }
        }
    }

    if let Some(caller) = input.caller {
        if let Some(top) = state.wangiri.check(caller, now_ms).first() {
            hits.push(hit(
                Signal::Wangiri,
                cfg.levels.of(top.action),
                top.key.clone(),
                "wangiri",
                format!(
                    "{} {} rang {} distinct callees and hung up within seconds",
                    top.scope, top.key, top.callees
                ),
            ));
        }
    }
    Evaluation { hits, stir }
}

fn plausibility(
    input: &SignalInput<'_>,
    cfg: &PlausibilityConfig,
    well_attested: bool,
    hits: &mut Vec<Evidence>,
) {
    let verdict = match (input.caller, input.caller_raw) {
        (Some(c), _) => plausible::check_e164(c),
        (None, Some(raw)) => plausible::check_raw(raw),
        (None, None) => None,
    };
    if let Some(why) = verdict {
        let score = match why {
            Implausible::NotDialable | Implausible::TooLong | Implausible::TooShort => {
                cfg.score_not_dialable
            }
            Implausible::Unallocated => cfg.score_unallocated,
            Implausible::Fictional => cfg.score_fictional,
        };
        let shown = input.caller.or(input.caller_raw).unwrap_or("");
        hits.push(hit(
            Signal::Plausibility,
            score,
            shown,
            why.as_str(),
            format!("caller id {shown:?} is {}", why.as_str().replace('-', " ")),
        ));
    }
    let Some(caller) = input.caller else { return };
    if input.from_international_gateway {
        if let Some(country) = plausible::country_of(caller) {
            let home = cfg
                .home_countries
                .iter()
                .any(|c| c.eq_ignore_ascii_case(country));
            let enforced = cfg
                .gateway_countries
                .iter()
                .any(|c| c.eq_ignore_ascii_case(country));
            if home && enforced {
                hits.push(hit(
                    Signal::Gateway,
                    cfg.score_gateway,
                    caller,
                    "spoofed",
                    format!(
                        "domestic {country} number {caller} arrived from international gateway {}",
                        input.peer.unwrap_or("?")
                    ),
                ));
            }
        }
    }
    if let Some(callee) = input.callee {
        if !well_attested && plausible::is_neighbour(caller, callee, cfg.neighbour_tail_digits) {
            hits.push(hit(
                Signal::Neighbour,
                cfg.score_neighbour,
                caller,
                "spoofed",
                format!("caller {caller} shares all but the last {} digits with the callee, without A attestation", cfg.neighbour_tail_digits),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
