//! Signals that catch scam calls no list names yet: STIR/SHAKEN attestation, call velocity,
//! wangiri, brand impersonation, Do-Not-Originate numbers, implausible caller IDs (including a
//! domestic number on an international gateway and neighbour spoofing), the reputation of the
//! caller's number block, and callers' reports.
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

pub mod blocks;
pub mod bounded;
pub mod brands;
pub mod certchain;
pub mod challenge;
pub mod origins;
pub mod plausible;
pub mod replay;
pub mod report_book;
pub mod shared;
pub mod stir;
pub mod text;
pub mod velocity;
pub mod wangiri;

use std::sync::Arc;

use serde::Deserialize;

use self::blocks::{BlockBook, BlocksConfig, Nearby};
use self::bounded::{Aging, BoundedMap};
use self::brands::Brands;
use self::challenge::{ChallengeBook, ChallengeSignalConfig};
use self::origins::Origins;
use self::plausible::Implausible;
use self::report_book::{Promotion, Report, ReportBook, ReportsConfig};
use self::shared::{Delta, Family, Sharing, Totals, Windows};
use self::stir::{Attest, CertLookup, StirConfig, StirInput, StirOutcome};
use self::velocity::{CallKeys, Finish, Start, Velocity, VelocityConfig};
use self::wangiri::{CallEnd, Wangiri, WangiriConfig};
use crate::screening::evidence::{Effect, Evidence, Signal};
use crate::screening::index::Rules;
use crate::screening::number::Number;
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
    /// The listed numbers of the caller's block ([`SignalState::listed_near`]); `None` keeps
    /// the block signal quiet (no number, a listed caller, or no block in its numbering).
    pub nearby: Option<Nearby>,
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
            // No signal reports a challenge level; were one to, it weighs as a warning.
            Action::Warn | Action::Challenge => self.warn,
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
    /// The score of a claim of a `warn` brand on a call with an A attestation (or a verstat
    /// that passed): the originating carrier vouches that the caller owns the number, which a
    /// brand's own team calling its customers does and a call centre spoofing a number cannot.
    /// Below the warn level, so it only adds to other evidence. A `block` brand (one that says
    /// it never calls) keeps its full score whatever the attestation.
    pub score_attested_claim: i32,
}

impl Default for BrandsConfig {
    fn default() -> Self {
        BrandsConfig {
            enabled: true,
            file: "config/brands.toml".into(),
            score_attested_claim: 25,
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
///
/// Scores of the caller-id checks follow the rule that a false alarm costs more than a miss:
/// what no genuine caller id can be (an emergency or service number, a short code, more than 15
/// digits, a length or a range the plan's structure rules out in a strict country) scores the
/// block level on its own, as the Do-Not-Originate rules say; what only the range-by-range
/// metadata rules out, or any finding outside the strict countries, scores `score_doubtful`:
/// a little, since the metadata may lag a newly opened range or a country's new length.
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
    /// A neighbour without an A attestation from an origin that signs its calls: evidence on
    /// its own (a STIR-capable network would have attested a genuine neighbour).
    pub score_neighbour: i32,
    /// A neighbour from an origin that does not sign (a legacy interconnect, or a country
    /// without STIR): genuine neighbours look exactly like this, so it only adds to other
    /// evidence and stays below the warn level alone.
    pub score_neighbour_unsigned: i32,
    /// The callee's own number as the caller id: no one calls themselves through an
    /// interconnect.
    pub score_own_number: i32,
    /// An origin (source address) counts as signing its calls once this many of its recent
    /// calls were seen, at least half of them with an Identity or a `verstat`.
    pub signing_origin_min_calls: u32,
    /// Countries (ISO alpha-2) whose plans are judged in full: a wrong length or unallocated
    /// range that the plan's structure rules out is firm there. Elsewhere every wrong length
    /// and unallocated range is doubtful. Sharing a country code shares the judgement (CA and
    /// US are both +1).
    pub strict_countries: Vec<String>,
    /// Caller ids (as sent, digits) that this network's own services call from, such as a
    /// voicemail notifier presenting `121`: never judged.
    pub service_callers: Vec<String>,
    /// Characters other than digits and separators (a SIP user name, `*67`).
    pub score_not_dialable: i32,
    /// More than 15 digits.
    pub score_too_long: i32,
    /// An emergency or public service number (911, 112, 999, 000, 110, 116xxx, 988 ...).
    pub score_emergency_caller: i32,
    /// Shorter than any subscriber number that begins the same way (at most 6 digits).
    pub score_short_code: i32,
    /// A length the plan's structure rules out, in a strict country.
    pub score_wrong_length: i32,
    /// No country's code, or a range the plan's structure rules out in a strict country.
    pub score_unallocated: i32,
    /// A wrong length or unallocated range that only the metadata, or a country outside the
    /// strict ones, rules out.
    pub score_doubtful: i32,
    pub score_fictional: i32,
    pub score_gateway: i32,
}

impl Default for PlausibilityConfig {
    fn default() -> Self {
        PlausibilityConfig {
            enabled: true,
            home_countries: Vec::new(),
            gateway_countries: ["GB", "DE", "ES", "CA", "AU"].map(String::from).to_vec(),
            neighbour_tail_digits: 4,
            strict_countries: ["US", "CA", "GB", "DE", "ES", "AU"]
                .map(String::from)
                .to_vec(),
            service_callers: Vec::new(),
            // A warning, not a block: SIP peers may present a user name rather than a number.
            score_not_dialable: 60,
            // What no caller id can be: each blocks on its own, as the DNO rules say.
            score_too_long: 100,
            score_emergency_caller: 100,
            score_short_code: 100,
            score_wrong_length: 100,
            score_unallocated: 100,
            // A fifth of the block level: with no other evidence the call passes.
            score_doubtful: 20,
            // Below the warn level on its own: fictional ranges fill documentation and test
            // traffic, and an operator's own warn entry for one must stay a warning.
            score_fictional: 25,
            score_gateway: 100,
            score_neighbour: 50,
            score_neighbour_unsigned: 20,
            score_own_number: 60,
            signing_origin_min_calls: 20,
        }
    }
}

impl PlausibilityConfig {
    /// Every problem with the section, each naming the key and what was expected.
    pub fn validate(&self) -> Vec<String> {
        let numbering = plausible::numbering::Numbering::get();
        let mut problems = Vec::new();
        for c in &self.strict_countries {
            if c.len() != 2 || numbering.plan_of_region(c).is_none() {
                problems.push(format!(
                    "signals.plausibility.strict_countries: {c:?} is not a region of the numbering metadata; expected an ISO 3166 alpha-2 code such as \"GB\""
                ));
            }
        }
        for s in &self.service_callers {
            let digits = s.bytes().filter(u8::is_ascii_digit).count();
            if digits == 0
                || s.bytes()
                    .any(|b| !b.is_ascii_digit() && !b"+-. ()".contains(&b))
            {
                problems.push(format!(
                    "signals.plausibility.service_callers: {s:?} is not a caller id; expected digits such as \"121\""
                ));
            }
        }
        problems
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
    pub blocks: BlocksConfig,
    pub challenge: ChallengeSignalConfig,
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
            blocks: BlocksConfig::default(),
            challenge: ChallengeSignalConfig::default(),
            levels: LevelScores::default(),
            max_calls: 200_000,
            max_call_secs: 4 * 3_600,
        }
    }
}

/// Source addresses remembered for whether they sign: peers are few, but untrusted traffic may
/// come from anywhere.
const MAX_ORIGINS: usize = 10_000;

impl SignalsConfig {
    /// Every problem with the section, each naming the setting and what was expected. The
    /// brands file is read by the lead, which checks it there.
    pub fn validate(&self) -> Vec<String> {
        let mut p = self.reports.validate();
        p.extend(self.velocity.validate());
        p.extend(self.wangiri.validate());
        p.extend(self.blocks.validate());
        p.extend(self.plausibility.validate());
        p.extend(self.challenge.validate());
        p
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
    /// Reports and own blocks per number block; the report book tells it of each report.
    blocks: Arc<BlockBook>,
    /// Challenges each caller failed lately.
    challenges: ChallengeBook,
    calls: BoundedMap<CallRec>,
    /// Which sources sign their calls, for neighbour spoofing.
    origins: Origins,
    /// The caller-id checks, with every numbering plan compiled (once per process).
    plausible: plausible::Checker,
    /// Present when velocity and wangiri counts are shared with a fleet.
    sharing: Option<Arc<Sharing>>,
    /// PASSporTs verified within their freshness window, to catch replays.
    replays: replay::Replays,
}

impl SignalState {
    pub fn new(cfg: SignalsConfig, brands: Arc<Brands>, certs: Arc<dyn CertLookup>) -> SignalState {
        let blocks = Arc::new(BlockBook::new(cfg.blocks.clone()));
        SignalState {
            velocity: Velocity::new(cfg.velocity.clone()),
            wangiri: Wangiri::new(cfg.wangiri.clone()),
            reports: Arc::new(ReportBook::new(cfg.reports.clone()).with_blocks(blocks.clone())),
            blocks,
            challenges: ChallengeBook::new(cfg.challenge.clone()),
            calls: BoundedMap::new(16, cfg.max_calls),
            origins: Origins::new(MAX_ORIGINS, cfg.plausibility.signing_origin_min_calls),
            plausible: plausible::Checker::new(
                &cfg.plausibility.strict_countries,
                &cfg.plausibility.service_callers,
            ),
            sharing: None,
            replays: replay::Replays::new(cfg.max_calls),
            brands,
            certs,
            cfg,
        }
    }

    /// Velocity and wangiri counts are shared with a fleet from now on: every key keeps its
    /// deltas for [`SignalState::drain_shared`] (at most `max_listed` keys between two drains)
    /// and, while [`Sharing::set_in_force`] says so, weighs the totals installed with
    /// [`SignalState::install_shared`]. Off, nothing of this costs anything.
    pub fn share_with_fleet(&mut self, max_listed: usize) -> Arc<Sharing> {
        let sharing = Arc::new(Sharing::new(max_listed));
        self.velocity.share(sharing.clone());
        self.wangiri.share(sharing.clone());
        self.replays.share();
        self.sharing = Some(sharing.clone());
        sharing
    }

    /// The deltas counted since the last drain, one per key; empty when counts are not shared.
    pub fn drain_shared(&self) -> Vec<Delta> {
        let Some(sharing) = &self.sharing else {
            return Vec::new();
        };
        sharing
            .take_listed()
            .into_iter()
            .filter_map(|(family, token)| {
                self.with_slot(family, token, |s| shared::drain(family, token, s))
                    .flatten()
            })
            .collect()
    }

    /// Installs the fleet's totals for a key drained or read before; whether the key is worth
    /// reading back every flush (`false` too when the key is no longer tracked here).
    pub fn install_shared(&self, family: Family, token: u64, totals: Totals) -> bool {
        let Some(w) = self.shared_windows(family) else {
            return false;
        };
        self.with_slot(family, token, |s| shared::install(s, totals, &w))
            .unwrap_or(false)
    }

    /// The PASSporTs verified here since the last drain, for the fleet to claim (empty without
    /// a fleet).
    pub fn drain_passports(&self) -> Vec<replay::Claim> {
        self.replays.drain_shared()
    }

    /// The fleet says a PASSporT verified here was first seen on call `holder`; whether that
    /// was another call (a replay, one side or the other).
    pub fn passport_held(&self, claim: replay::Claim, holder: u64, now_ms: u64) -> bool {
        self.replays.held_elsewhere(claim, holder, now_ms)
    }

    /// This agent's calls in progress under a shared key (0 when not tracked or not shared).
    pub fn concurrent_now(&self, family: Family, token: u64, key: &str) -> u32 {
        self.velocity.concurrent_now(family, token, key)
    }

    /// The windows of a family's shared counts.
    pub fn shared_windows(&self, family: Family) -> Option<Windows> {
        self.velocity
            .windows(family)
            .or_else(|| self.wangiri.windows(family))
    }

    fn with_slot<R>(
        &self,
        family: Family,
        token: u64,
        f: impl FnOnce(&mut shared::Slot) -> R,
    ) -> Option<R> {
        match family {
            Family::Caller | Family::Source | Family::Prefix => {
                self.velocity.with_slot(family, token, f)
            }
            Family::Number | Family::Range => self.wangiri.with_slot(family, token, f),
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

    pub fn blocks(&self) -> &BlockBook {
        &self.blocks
    }

    /// What `rules` list near `caller`, for [`SignalInput::nearby`]; `None` when the block
    /// signal is off or the caller's numbering has no block to ask about.
    pub fn listed_near<R: Rules + ?Sized>(
        &self,
        caller: Number,
        rules: &R,
        now_unix: i64,
    ) -> Option<Nearby> {
        if !self.cfg.blocks.enabled {
            return None;
        }
        blocks::listed_near(caller, rules, now_unix)
    }

    /// The engine blocked a live call from `caller` for what the number did (see
    /// [`blocks::about_the_number`]); it counts against the number's block for a while.
    pub fn blocked(&self, caller: Number, now_ms: u64) {
        self.blocks.blocked(caller, now_ms);
    }

    /// `caller` (E.164) was challenged and pressed no digit in time: its later calls weigh a
    /// little more for a while ([`challenge`]).
    pub fn challenge_failed(&self, caller: &str, now_ms: u64) {
        if self.cfg.challenge.enabled {
            self.challenges.failed(caller, now_ms);
        }
    }

    pub fn challenges(&self) -> &ChallengeBook {
        &self.challenges
    }

    /// The report book, for whoever stores reports before counting them.
    pub fn reports_shared(&self) -> Arc<ReportBook> {
        self.reports.clone()
    }

    /// Calls forgotten without an end event (the cap, `max_call_secs`): no longer in progress,
    /// and no outcome, since none is known.
    fn release(&self, gone: Vec<CallRec>) {
        for c in gone {
            self.velocity.call_ended(c.keys, None);
        }
    }

    /// The callee answered (the first 2xx to the INVITE): velocity counts the call as talked
    /// through from now, until its end says otherwise.
    pub fn call_answered(&self, call_id: &str, now_ms: u64) {
        let first = self.calls.update(self.calls.key(call_id), |c| {
            let first = c.answered_ms.is_none();
            c.answered_ms.get_or_insert(now_ms);
            first.then_some(c.keys)
        });
        if let Some(Some(keys)) = first {
            self.velocity.call_answered(keys, now_ms);
        }
    }

    /// The call ended: `Cancelled` (CANCEL before an answer), `Rejected` (a final non-2xx),
    /// `Unwanted` (a 607), `Refused` (the agent's own block) or `Answered` (BYE; the talk time
    /// is worked out here from the answer event when it is 0). Velocity and wangiri both weigh
    /// the outcome.
    pub fn call_ended(&self, call_id: &str, end: CallEnd, now_ms: u64) {
        let Some(c) = self.calls.remove(self.calls.key(call_id)) else {
            return;
        };
        let end = match (end, c.answered_ms) {
            (CallEnd::Answered { talk_ms: 0 }, Some(a)) => CallEnd::Answered {
                talk_ms: now_ms.saturating_sub(a),
            },
            (e, _) => e,
        };
        let ring_ms = c.answered_ms.unwrap_or(now_ms).saturating_sub(c.started_ms);
        self.velocity.call_ended(
            c.keys,
            Some(Finish {
                end,
                answered_ms: c.answered_ms,
                ring_ms,
                now_ms,
            }),
        );
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
        self.origins.sweep(now_ms);
        self.replays.sweep(now_ms);
        self.reports.sweep((now_ms / 1000) as i64);
        self.blocks.sweep(now_ms);
        self.challenges.sweep(now_ms);
    }

    /// Calls in progress tracked.
    pub fn calls_tracked(&self) -> usize {
        self.calls.len()
    }
}

/// A verified PASSporT already verified on another call within its freshness window (either
/// side of `iat`, so twice `max_age_secs`) becomes [`StirOutcome::Replayed`].
fn replayed(
    outcome: StirOutcome,
    input: &SignalInput<'_>,
    state: &SignalState,
    now_ms: u64,
) -> StirOutcome {
    let StirOutcome::Verified { attest, x5u, .. } = &outcome else {
        return outcome;
    };
    let Some(sig) = input.identity.and_then(stir::identity_signature) else {
        return outcome;
    };
    let window_ms = (state.cfg.stir.max_age_secs.clamp(1, 86_400) as u64) * 2_000;
    match state.replays.note(sig, input.call_id, now_ms, window_ms) {
        None => outcome,
        Some(r) => StirOutcome::Replayed {
            attest: *attest,
            x5u: x5u.clone(),
            fleet: r == replay::Replay::Fleet,
        },
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
        let outcome = stir::verify(&si, state.certs.as_ref(), &cfg.stir, now_unix);
        replayed(outcome, input, state, now_ms)
    } else {
        StirOutcome::Absent
    };
    // A call that carries a PASSporT came by a signing path, whatever its origin's past;
    // otherwise the origin is judged on what was known before this call. Asked only of an
    // unsigned call and of a neighbour, so other calls pay no table lookup.
    let from_signing_origin =
        || input.identity.is_some() || input.source.is_some_and(|s| state.origins.signs(s));
    if cfg.stir.enabled {
        let absent_on_signing_path = matches!(stir, StirOutcome::Absent) && from_signing_origin();
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
            StirOutcome::Absent if absent_on_signing_path => {
                (cfg.stir.score_absent_signing_origin, "428".into())
            }
            StirOutcome::Absent => (cfg.stir.score_absent, "428".into()),
            StirOutcome::Replayed { .. } => (cfg.stir.score_replayed, "replayed".into()),
        };
        if score != 0 || !matches!(stir, StirOutcome::Absent) {
            let reason = if absent_on_signing_path {
                "no identity, from an origin that signs most of its calls".to_string()
            } else {
                stir.to_string()
            };
            hits.push(hit(Signal::Stir, score, entry, "stir", reason));
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
                    let score = if well_attested && b.action == Action::Warn {
                        cfg.brands.score_attested_claim
                    } else {
                        cfg.levels.of(b.action)
                    };
                    hits.push(hit(
                        Signal::Brand,
                        score,
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
        plausibility(
            input,
            &cfg.plausibility,
            &state.plausible,
            well_attested,
            from_signing_origin,
            &mut hits,
        );
    }
    if let Some(source) = input.source.filter(|_| !input.question) {
        let signed = input.identity.is_some() || input.verstat.is_some();
        state.origins.observe(source, signed, now_ms);
    }

    if let Some(nearby) = &input.nearby {
        hits.extend(blocks::assess(nearby, &state.blocks, now_ms));
    }
    if let Some(caller) = input.caller.filter(|_| cfg.challenge.enabled) {
        hits.extend(state.challenges.assess(caller, now_ms));
    }

    // Velocity counts the call and links it to its end event.
    if let Some(callee) = input.callee.filter(|_| !input.question) {
        let key = state.calls.key(input.call_id);
        let fresh = state.calls.peek(key, |_| ()).is_none();
        if fresh {
            let start = Start {
                caller: input.caller,
                source: input.source,
                callee,
                attested: well_attested,
            };
            let (keys, judged) = state.velocity.call_started(&start, now_ms);
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
            // One hit per key that reached a level, its outcomes in the reason.
            for j in judged {
                let entry = match j.kind {
                    velocity::KeyKind::Caller => input.caller.unwrap_or("").to_string(),
                    velocity::KeyKind::Source => input.source.unwrap_or("").to_string(),
                    velocity::KeyKind::Prefix => input.caller.map_or(String::new(), |c| {
                        let n = (state.velocity.config().prefix_digits + 1).min(c.len());
                        format!("{}*", &c[..n])
                    }),
                };
                hits.push(hit(
                    Signal::Velocity,
                    cfg.levels.of(j.action),
                    entry,
                    "velocity",
                    j.reason,
                ));
            }
        }
    }

    if let Some(caller) = input.caller {
        let foreign = || plausible::is_foreign(caller, &cfg.plausibility.home_countries);
        if let Some(top) = state.wangiri.check(caller, foreign, now_ms).first() {
            hits.push(hit(
                Signal::Wangiri,
                cfg.levels.of(top.action),
                top.key.clone(),
                "wangiri",
                wangiri_reason(top, cfg.wangiri.window_secs),
            ));
        }
    }
    Evaluation { hits, stir }
}

fn wangiri_reason(f: &wangiri::FanOut, window_secs: u64) -> String {
    let mut s = format!(
        "{} {} rang {} distinct callees and hung up within seconds ({} of its {} recent calls)",
        f.scope, f.key, f.callees, f.short, f.ended
    );
    if let Some(agents) = f.fleet {
        let across = shared::across(agents);
        s.push_str(&format!(
            "; fleet: {} distinct callees in {} s {across}",
            f.callees,
            window_secs.clamp(1, 7 * 86_400)
        ));
    }
    s
}

fn plausibility(
    input: &SignalInput<'_>,
    cfg: &PlausibilityConfig,
    checker: &plausible::Checker,
    well_attested: bool,
    signing_origin: impl Fn() -> bool,
    hits: &mut Vec<Evidence>,
) {
    if let Some(f) = checker.check(input.caller, input.caller_raw, input.callee) {
        let score = if !f.firm {
            cfg.score_doubtful
        } else {
            match f.why {
                Implausible::NotDialable => cfg.score_not_dialable,
                Implausible::TooLong => cfg.score_too_long,
                Implausible::EmergencyCaller => cfg.score_emergency_caller,
                Implausible::ShortCode => cfg.score_short_code,
                Implausible::WrongLength => cfg.score_wrong_length,
                Implausible::Unallocated => cfg.score_unallocated,
                Implausible::Fictional => cfg.score_fictional,
            }
        };
        // As received: `911` reads better than the `+1911` a plan may have made of it.
        let shown = input.caller_raw.or(input.caller).unwrap_or("").trim();
        hits.push(hit(
            Signal::Plausibility,
            score,
            input.caller.unwrap_or(shown),
            f.why.as_str(),
            format!("caller id {shown:?} {}", f.detail),
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
    let Some(callee) = input.callee else { return };
    if caller == callee {
        hits.push(hit(
            Signal::Neighbour,
            cfg.score_own_number,
            caller,
            "own-number",
            format!("the caller id {caller} is the callee's own number"),
        ));
    } else if !well_attested && plausible::is_neighbour(caller, callee, cfg.neighbour_tail_digits) {
        let tail = cfg.neighbour_tail_digits;
        let (score, why) = if signing_origin() {
            (
                cfg.score_neighbour,
                "without an A attestation, from an origin that signs its calls",
            )
        } else {
            (
                cfg.score_neighbour_unsigned,
                "from an origin that does not sign its calls (weak alone)",
            )
        };
        hits.push(hit(
            Signal::Neighbour,
            score,
            caller,
            "spoofed",
            format!("caller {caller} shares all but the last {tail} digits with the callee, {why}"),
        ));
    }
}

#[cfg(test)]
mod tests;
