//! Number-block reputation: when several numbers of one block are listed, reported or blocked,
//! the block's other numbers become suspect. Scam campaigns rent numbers by the block and
//! rotate through them faster than lists follow; the block they rent is what stays the same.
//!
//! Three kinds of evidence about a block, each about distinct numbers, the caller never among
//! them (the caller's own entry, report or block is the list's business, not its neighbours'):
//! - **listed**: exact numbers with a block or warn entry in force, from every rule source (file
//!   lists, the store, feeds), counted when each index is built ([`Rules::listed_in`]) and
//!   added up as one set, so a number two sources list is one number;
//! - **reported**: callers reported by `607 Unwanted` or `POST /v1/reports` ([`BlockBook`] is
//!   told by the report book); they count only once at least `min_reporters` distinct reporters
//!   reported numbers of the block, so one callee or one API client cannot taint a block alone;
//! - **blocked here**: live calls this agent blocked for what the caller's number itself did (an
//!   exact list entry, velocity or wangiri of the number), never for its source address or
//!   range, a brand claim, a spoofed or withheld identity (DNO, gateway, neighbour, STIR
//!   failure, an invalid id, anonymity) nor for this signal itself, so the signal cannot feed
//!   on its own verdicts ([`about_the_number`]).
//!
//! Reports and own blocks fade: each number weighs `0.5^(age / half-life)` from its latest
//! report or block, and is forgotten below 1/16 (four half-lives). Exponential decay rather than
//! a window: it needs only the latest time per number, and a verdict never flips at an arbitrary
//! window edge. Listed numbers weigh 1 while their entry is in force; list expiry is the list's.
//!
//! Which blocks a number has follows its country's numbering ([`reach`]); the scores are low on
//! purpose: a false alarm costs more than a miss, and a VoIP provider's block holds many
//! innocent customers next to a few bad ones. Knows nothing of lists beyond [`Rules`], of SIP or
//! of clocks.

use std::hash::{BuildHasher, RandomState};

use serde::Deserialize;

use super::bounded::{Aging, BoundedMap};
use crate::screening::evidence::{Effect, Evidence, Signal, Source};
use crate::screening::index::{Listed, Rules, ThousandBlock};
use crate::screening::number::Number;

/// Half-lives after which a reported or blocked number is forgotten (its weight is 1/16).
const FORGET_HALF_LIVES: i64 = 4;
const FLOOR: f64 = 1.0 / 16.0;

/// `[signals.blocks]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlocksConfig {
    pub enabled: bool,
    /// Numbers (listed, reported or blocked; faded ones weigh less) of the caller's 100-block
    /// that make it suspect, and that make the evidence strong.
    pub suspect_in_hundred: u32,
    pub strong_in_hundred: u32,
    /// The same for the caller's 1000-block (where the country's numbering has one).
    pub suspect_in_thousand: u32,
    pub strong_in_thousand: u32,
    /// Score of a suspect block (below the warn level: it only adds to other evidence) and of a
    /// strong one (at the warn level: block reputation alone never blocks).
    pub score_suspect: i32,
    pub score_strong: i32,
    /// Half-life of a report's weight, and of a block by this agent, in seconds.
    pub report_half_life_secs: i64,
    pub blocked_half_life_secs: i64,
    /// Distinct reporters a block's reported numbers need before reports count there.
    pub min_reporters: u32,
    /// Blocks with reports or own blocks remembered; the idlest go beyond it.
    pub max_blocks: usize,
    /// Reported or blocked numbers remembered per block; the most faded go beyond it.
    pub max_numbers: usize,
    pub shards: usize,
}

impl Default for BlocksConfig {
    fn default() -> Self {
        BlocksConfig {
            enabled: true,
            suspect_in_hundred: 2,
            strong_in_hundred: 3,
            suspect_in_thousand: 3,
            strong_in_thousand: 20,
            score_suspect: 30,
            score_strong: 50,
            report_half_life_secs: 3 * 86_400,
            blocked_half_life_secs: 86_400,
            min_reporters: 2,
            max_blocks: 100_000,
            max_numbers: 32,
            shards: 16,
        }
    }
}

impl BlocksConfig {
    /// Every problem with this section.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        // One listed number must never make its neighbours suspect.
        for (k, v) in [
            ("suspect_in_hundred", self.suspect_in_hundred),
            ("suspect_in_thousand", self.suspect_in_thousand),
            ("min_reporters", self.min_reporters),
        ] {
            if v < 2 {
                p.push(format!(
                    "signals.blocks.{k} is {v}; expected at least 2 distinct numbers or reporters"
                ));
            }
        }
        for (k, strong, suspect) in [
            (
                "strong_in_hundred",
                self.strong_in_hundred,
                self.suspect_in_hundred,
            ),
            (
                "strong_in_thousand",
                self.strong_in_thousand,
                self.suspect_in_thousand,
            ),
        ] {
            if strong < suspect {
                p.push(format!(
                    "signals.blocks.{k} ({strong}) is below its suspect level ({suspect}); expected at least as many"
                ));
            }
        }
        for (k, v) in [
            ("report_half_life_secs", self.report_half_life_secs),
            ("blocked_half_life_secs", self.blocked_half_life_secs),
            ("max_blocks", self.max_blocks as i64),
            ("max_numbers", self.max_numbers as i64),
            ("shards", self.shards as i64),
        ] {
            if v <= 0 {
                p.push(format!(
                    "signals.blocks.{k} is {v}; expected a positive number"
                ));
            }
        }
        for (k, v) in [
            ("score_suspect", self.score_suspect),
            ("score_strong", self.score_strong),
        ] {
            if v < 0 {
                p.push(format!("signals.blocks.{k} is {v}; expected 0 or more"));
            }
        }
        p
    }
}

/// Which of a number's blocks carry reputation, by its country's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Numbers assigned one by one (toll-free, service numbers) or too short to have blocks.
    None,
    /// The 100-block only: ranges a regulator allocates in large blocks whose numbers are then
    /// issued one at a time to unrelated people (mobile), and countries whose plan we do not
    /// know (a run of 100 is small in every plan).
    Hundred,
    /// The 100-block and the 1000-block: ranges allocated or sub-allocated by the thousand.
    HundredAndThousand,
}

/// The blocks `n` has:
///
/// | country | numbers | reach | why |
/// | --- | --- | --- | --- |
/// | NANP +1 | geographic and non-geographic NPAs | 100 and 1000 | the thousands-block (NPA-NXX-X) is the pooling unit, assigned to one carrier; VoIP carriers sell DIDs by the 100 |
/// | NANP +1 | toll-free NPAs (8XX) | none | RespOrgs assign toll-free numbers one by one |
/// | GB +44 | 10-digit 01, 02, 03, 05 | 100 and 1000 | Ofcom allocates geographic blocks of 1000 (10,000 outside conservation areas) |
/// | GB +44 | 07, 08, 09; 9-digit 01 | 100 | mobile numbers are issued one by one from 100,000 allocations; 08/09 go to single services |
/// | DE +49 | geographic (NSN of 9 to 11 digits) and 032 | 100 and 1000 | BNetzA allocates local numbers to providers in blocks of 1000 |
/// | DE +49 | geographic NSN of 7 or 8 digits; mobile 015, 016, 017 | 100 | old short numbers, and mobile numbers issued one by one |
/// | DE +49 | 0800, 0180, 0900, 0137, 0118, 0700, other 01 | none | service numbers are assigned one by one |
/// | ES +34 | 8 and 9 (second digit not 0) | 100 and 1000 | CNMC allocates geographic blocks of 10,000 and, since 2021, 1000 |
/// | ES +34 | 6, 7 | 100 | mobile |
/// | ES +34 | 80x, 90x, 5 | none | service and corporate numbers |
/// | AU +61 | 2, 3, 7, 8, 5 (9-digit NSN) | 100 and 1000 | ACMA allocates geographic numbers in blocks of 1000 or 10,000, and 0550 by the 1000 |
/// | AU +61 | 4 | 100 | mobile, allocated by 100,000 |
/// | AU +61 | 13, 1300, 1800 | none | smartnumbers are assigned one by one |
/// | any other | 10 digits or more | 100 | the last two digits are a small run in every plan |
pub fn reach(n: Number) -> Reach {
    let d = |i: usize| n.digit(i);
    match (d(0), d(1)) {
        (1, _) => nanp(n),
        (4, 4) => gb(n),
        (4, 9) => de(n),
        (3, 4) => es(n),
        (6, 1) => au(n),
        _ if n.len() >= 10 => Reach::Hundred,
        _ => Reach::None,
    }
}

fn nanp(n: Number) -> Reach {
    if n.len() != 11 || n.digit(1) < 2 || n.digit(4) < 2 {
        return Reach::None;
    }
    let npa = n.leading(4) % 1000;
    // Toll-free NPAs: 8NN with a repeated digit (800, 833 ... 888) and 880-889, reserved for
    // toll-free growth.
    let (x, y) = (npa / 10 % 10, npa % 10);
    let toll_free = npa / 100 == 8 && (x == y || x == 8);
    if toll_free {
        Reach::None
    } else {
        Reach::HundredAndThousand
    }
}

fn gb(n: Number) -> Reach {
    match (n.len(), n.digit(2)) {
        (12, 1 | 2 | 3 | 5) => Reach::HundredAndThousand,
        (12, 7..=9) | (11, 1) => Reach::Hundred,
        _ => Reach::None,
    }
}

fn de(n: Number) -> Reach {
    let nsn = n.len() - 2;
    match (n.digit(2), n.digit(3)) {
        (1, 5..=7) if nsn >= 10 => Reach::Hundred,
        (1, _) | (8, 0) | (9, 0) | (7, 0) => Reach::None,
        // Geographic numbers, and 032 (national numbers allocated to providers like them).
        (2..=9, _) if nsn >= 9 => Reach::HundredAndThousand,
        (2..=9, _) if nsn >= 7 => Reach::Hundred,
        _ => Reach::None,
    }
}

fn es(n: Number) -> Reach {
    if n.len() != 11 {
        return Reach::None;
    }
    match (n.digit(2), n.digit(3)) {
        (8 | 9, 1..=9) => Reach::HundredAndThousand,
        (6 | 7, _) => Reach::Hundred,
        _ => Reach::None,
    }
}

fn au(n: Number) -> Reach {
    if n.len() != 11 {
        return Reach::None;
    }
    match n.digit(2) {
        2 | 3 | 5 | 7 | 8 => Reach::HundredAndThousand,
        4 => Reach::Hundred,
        _ => Reach::None,
    }
}

/// What the rules list near a caller, found by the engine (which holds the rules) and handed to
/// [`assess`] with the call's other facts.
#[derive(Debug, Clone, Copy)]
pub struct Nearby {
    pub caller: Number,
    /// The blocks the caller's numbering gives it.
    pub reach: Reach,
    /// The listed places of the caller's thousand-block, the caller's own included (it is taken
    /// out when counting).
    pub listed: Listed,
}

/// The listed numbers near `caller`, or `None` when its numbering has no block worth asking.
pub fn listed_near<R: Rules + ?Sized>(caller: Number, rules: &R, now_unix: i64) -> Option<Nearby> {
    let reach = reach(caller);
    if reach == Reach::None {
        return None;
    }
    let block = ThousandBlock::of(caller)?;
    let mut listed = Listed::default();
    rules.listed_in(block, now_unix, &mut listed);
    Some(Nearby {
        caller,
        reach,
        listed,
    })
}

#[derive(Debug, Clone, Copy)]
struct Member {
    place: u16,
    /// Unix seconds of the latest report and of the latest block here.
    reported_at: Option<i64>,
    /// The latest report's reporter, hashed.
    reporter: u64,
    blocked_at: Option<i64>,
}

struct Tally {
    head: u64,
    members: Vec<Member>,
    idle_after_ms: u64,
}

impl Aging for Tally {
    fn idle_after_ms(&self) -> u64 {
        self.idle_after_ms
    }
}

/// A number's weight `age` seconds after its latest event: 1 when fresh, halved every
/// `half_life`, 0 below the floor or without an event.
fn weight(at: Option<i64>, now: i64, half_life: i64) -> f64 {
    let Some(t) = at else { return 0.0 };
    if t >= now {
        return 1.0;
    }
    let w = 0.5f64.powf((now - t) as f64 / half_life.max(1) as f64);
    if w < FLOOR {
        0.0
    } else {
        w
    }
}

/// Reports and own blocks per thousand-block: bounded, fading, swept.
pub struct BlockBook {
    cfg: BlocksConfig,
    blocks: BoundedMap<Tally>,
    /// Seeds the blocks' keys, so callers cannot aim collisions at one shard.
    seed: RandomState,
}

impl BlockBook {
    pub fn new(cfg: BlocksConfig) -> BlockBook {
        BlockBook {
            blocks: BoundedMap::new(cfg.shards, cfg.max_blocks),
            seed: RandomState::new(),
            cfg,
        }
    }

    pub fn config(&self) -> &BlocksConfig {
        &self.cfg
    }

    /// The head alone names the block: heads of numbers of different lengths differ in digits.
    fn key(&self, block: ThousandBlock) -> u64 {
        self.seed.hash_one(block.head())
    }

    /// A report against `caller` (E.164) by `reporter`, made at `at` (Unix seconds). The report
    /// book calls it for every report it counts.
    pub fn reported(&self, caller: &str, reporter: &str, at: i64, now_unix: i64) {
        let Some(n) = Number::parse_e164(caller) else {
            return;
        };
        let reporter = self.blocks.key(reporter);
        let until = at.saturating_add(FORGET_HALF_LIVES * self.cfg.report_half_life_secs);
        self.note(n, now_unix, until, |m| {
            if m.reported_at.map_or(true, |t| at >= t) {
                m.reported_at = Some(at);
                m.reporter = reporter;
            }
        });
    }

    /// This agent blocked a live call from `caller` for what the number did.
    pub fn blocked(&self, caller: Number, now_ms: u64) {
        let now = (now_ms / 1000) as i64;
        let until = now.saturating_add(FORGET_HALF_LIVES * self.cfg.blocked_half_life_secs);
        self.note(caller, now, until, |m| m.blocked_at = Some(now));
    }

    fn note(&self, n: Number, now: i64, until: i64, f: impl FnOnce(&mut Member)) {
        if !self.cfg.enabled || reach(n) == Reach::None {
            return;
        }
        let Some(block) = ThousandBlock::of(n) else {
            return;
        };
        let place = ThousandBlock::place(n);
        let cap = self.cfg.max_numbers.max(1);
        let cfg = &self.cfg;
        let key = self.key(block);
        let now_ms = (now.max(0) as u64).saturating_mul(1000);
        self.blocks.upsert(
            key,
            now_ms,
            || Tally {
                head: block.head(),
                members: Vec::new(),
                idle_after_ms: 0,
            },
            |t| {
                if t.head != block.head() {
                    // Another block behind the same 64-bit key: start over rather than mix them.
                    t.head = block.head();
                    t.members.clear();
                }
                let i = match t.members.iter().position(|m| m.place == place) {
                    Some(i) => i,
                    None => {
                        if t.members.len() >= cap {
                            let faded = (0..t.members.len()).min_by(|&a, &b| {
                                strength(&t.members[a], now, cfg).total_cmp(&strength(
                                    &t.members[b],
                                    now,
                                    cfg,
                                ))
                            });
                            if let Some(i) = faded {
                                t.members.swap_remove(i);
                            }
                        }
                        t.members.push(Member {
                            place,
                            reported_at: None,
                            reporter: 0,
                            blocked_at: None,
                        });
                        t.members.len() - 1
                    }
                };
                f(&mut t.members[i]);
                let until_ms = (until.max(0) as u64).saturating_mul(1000);
                t.idle_after_ms = t.idle_after_ms.max(until_ms);
            },
        );
    }

    /// Runs `f` on the remembered numbers of `block`, if any.
    fn read<R>(&self, block: ThousandBlock, f: impl FnOnce(&[Member]) -> R) -> Option<R> {
        self.blocks
            .peek(self.key(block), |t| {
                (t.head == block.head()).then(|| f(&t.members))
            })
            .flatten()
    }

    /// Blocks remembered.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Frees blocks whose every number has faded.
    pub fn sweep(&self, now_ms: u64) {
        self.blocks.sweep(now_ms);
    }
}

fn strength(m: &Member, now: i64, cfg: &BlocksConfig) -> f64 {
    weight(m.reported_at, now, cfg.report_half_life_secs).max(weight(
        m.blocked_at,
        now,
        cfg.blocked_half_life_secs,
    ))
}

/// Distinct numbers of one range by kind, and their weight after fading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Count {
    listed: u32,
    reported: u32,
    blocked: u32,
    weight: f64,
}

/// The range `lo..hi` of the caller's block; `listed` is already without the caller's place,
/// `own`, which the members skip.
fn count(
    listed: &Listed,
    members: &[Member],
    (lo, hi): (u16, u16),
    own: u16,
    cfg: &BlocksConfig,
    now: i64,
) -> Count {
    let mut c = Count {
        listed: listed.count(lo, hi),
        ..Count::default()
    };
    c.weight = f64::from(c.listed);
    let inside =
        |m: &&Member| (lo..hi).contains(&m.place) && m.place != own && !listed.contains(m.place);
    let mut reporters: Vec<u64> = Vec::new();
    for m in members.iter().filter(inside) {
        if weight(m.reported_at, now, cfg.report_half_life_secs) > 0.0
            && !reporters.contains(&m.reporter)
        {
            reporters.push(m.reporter);
        }
    }
    let reports_count = reporters.len() >= cfg.min_reporters as usize;
    for m in members.iter().filter(inside) {
        let r = if reports_count {
            weight(m.reported_at, now, cfg.report_half_life_secs)
        } else {
            0.0
        };
        let b = weight(m.blocked_at, now, cfg.blocked_half_life_secs);
        if r == 0.0 && b == 0.0 {
            continue;
        }
        // A number both reported and blocked here is one number, shown as its stronger kind.
        if r >= b {
            c.reported += 1;
            c.weight += r;
        } else {
            c.blocked += 1;
            c.weight += b;
        }
    }
    c
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Suspect,
    Strong,
}

/// A weight as the reason shows it, to one decimal; the thresholds see the same figure, so a
/// reason never says "3 numbers" of a weight that missed a threshold of 3 by a hair.
fn rounded(weight: f64) -> f64 {
    (weight * 10.0).round() / 10.0
}

fn level(weight: f64, suspect: u32, strong: u32) -> Option<Level> {
    let w = rounded(weight);
    if w >= f64::from(strong) {
        Some(Level::Strong)
    } else if w >= f64::from(suspect) {
        Some(Level::Suspect)
    } else {
        None
    }
}

/// The block signal for one call: evidence when the caller's 100-block or 1000-block holds
/// enough listed, reported or blocked numbers besides the caller.
pub fn assess(nearby: &Nearby, book: &BlockBook, now_ms: u64) -> Option<Evidence> {
    let cfg = &book.cfg;
    if !cfg.enabled || nearby.reach == Reach::None {
        return None;
    }
    let block = ThousandBlock::of(nearby.caller)?;
    let own = ThousandBlock::place(nearby.caller);
    let mut listed = nearby.listed;
    listed.remove(own);
    let now = (now_ms / 1000) as i64;
    let hundred = (own / 100 * 100, own / 100 * 100 + 100);
    let thousand = nearby.reach == Reach::HundredAndThousand;
    let counts = |m: &[Member]| {
        (
            count(&listed, m, hundred, own, cfg, now),
            thousand.then(|| count(&listed, m, (0, 1000), own, cfg, now)),
        )
    };
    let (h, t) = match book.read(block, counts) {
        Some(c) => c,
        // Most calls: nothing listed, reported or blocked anywhere near.
        None if listed.is_empty() => return None,
        None => counts(&[]),
    };
    let at_h = level(h.weight, cfg.suspect_in_hundred, cfg.strong_in_hundred);
    let at_t = t.and_then(|t| level(t.weight, cfg.suspect_in_thousand, cfg.strong_in_thousand));
    let t = t.unwrap_or_default();
    // The stronger of the two; on a tie the 100-block, the narrower claim.
    let (lvl, c, open) = match (at_h, at_t) {
        (Some(a), Some(b)) if b > a => (b, t, 3),
        (Some(a), _) => (a, h, 2),
        (None, Some(b)) => (b, t, 3),
        (None, None) => return None,
    };
    let score = match lvl {
        Level::Strong => cfg.score_strong,
        Level::Suspect => cfg.score_suspect,
    };
    Some(Evidence::signal(
        Signal::Blocks,
        score,
        pattern(nearby.caller, open),
        "block-reputation",
        describe(&c, &shown(nearby.caller, open)),
    ))
}

/// Does this evidence speak of the caller's number `caller` (E.164) itself? Only then may a
/// block it brought about count against the number's block: an exact list entry for it, or
/// velocity or wangiri measured on the number. Velocity of a source address or a prefix, a
/// range entry, a brand claim (impersonators spoof numbers), a spoofed, invalid or withheld
/// identity say nothing of the block's other numbers, and the block signal's own weight must
/// not feed itself.
pub fn about_the_number(e: &Evidence, caller: &str) -> bool {
    if e.effect == Effect::DoNotOriginate || e.reason.entry != caller {
        return false;
    }
    match &e.reason.source {
        Source::List(_) => true,
        Source::Policy => false,
        Source::Signal(s) => match s {
            Signal::Velocity | Signal::Wangiri => true,
            Signal::Brand
            | Signal::Stir
            | Signal::Dno
            | Signal::Plausibility
            | Signal::Gateway
            | Signal::Neighbour
            | Signal::Blocks
            // A failed challenge may be a spoofed number's: it says nothing of its block.
            | Signal::Challenge => false,
        },
    }
}

/// The block as a list pattern (`+120255501XX`), so an operator can paste it into a list.
fn pattern(caller: Number, open: usize) -> String {
    let s = caller.to_string();
    let keep = s.len().saturating_sub(open);
    format!("{}{}", &s[..keep], "X".repeat(s.len() - keep))
}

/// The block as people write it: `+1 202 555 01xx`, `+44 207946 00xx`.
fn shown(caller: Number, open: usize) -> String {
    let digits = caller.to_string();
    let d = &digits[1..];
    let keep = d.len().saturating_sub(open);
    let t = format!("{}{}", &d[..keep], "x".repeat(d.len() - keep));
    let cc = match (caller.digit(0), caller.digit(1)) {
        (1, _) => 1,
        (4, 4) | (4, 9) | (3, 4) | (6, 1) => 2,
        _ => 0,
    };
    let tail = t.len().saturating_sub(4);
    if cc == 1 && t.len() == 11 {
        format!("+1 {} {} {}", &t[1..4], &t[4..7], &t[7..])
    } else if cc == 2 && tail > 2 {
        format!("+{} {} {}", &t[..2], &t[2..tail], &t[tail..])
    } else {
        format!("+{} {}", &t[..tail], &t[tail..])
    }
}

fn describe(c: &Count, block: &str) -> String {
    let some = |n: u32, one: &str, many: &str| {
        (n > 0).then(|| format!("{n} {}", if n == 1 { one } else { many }))
    };
    let parts: Vec<String> = [
        some(c.listed, "listed number", "listed numbers"),
        some(c.reported, "reported number", "reported numbers"),
        some(c.blocked, "number blocked here", "numbers blocked here"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let what = match parts.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    };
    let whole = f64::from(c.listed + c.reported + c.blocked);
    if rounded(c.weight) < whole {
        format!("{what} in {block} (weighing {:.1} after fading)", c.weight)
    } else {
        format!("{what} in {block}")
    }
}

#[cfg(test)]
mod tests;
