//! Every country's numbering plan, compiled once from libphonenumber's metadata (the
//! `phonenumber` crate) into one digit automaton per country calling code, so that judging a
//! caller id per call is a walk of at most 15 table entries: no regex, no allocation.
//!
//! The patterns of every region sharing a country code are joined (the 25 NANP regions under
//! +1, Russia and Kazakhstan under +7, ...). Two kinds are kept apart:
//! - the *general description*: the coarse structure of the plan (which leading digits begin
//!   numbers at all, and how long they are). It changes only when a regulator reorganises its
//!   plan, years after announcing it, so a number outside it is impossible, not merely unknown;
//! - the *number types* (fixed line, mobile, toll-free, premium, shared cost, personal, VoIP,
//!   pager, UAN, voicemail), each limited to its own possible lengths. They follow allocations
//!   range by range, so a number outside all of them may be in a range opened after the metadata
//!   this build carries: doubtful, not impossible.
//!
//! Each automaton state is a digit prefix of the national significant number, and it knows
//! which total lengths the numbers beginning with that prefix have: under the general
//! description, under any type, and under the types that place calls (fixed line, mobile, VoIP,
//! personal, UAN). That is enough to tell, per call, a valid number from a short code, a wrong
//! length and an unallocated range, and to name the digits where it went wrong.
//!
//! Measured (release build, this metadata): 215 country codes, about 23,000 states (1.1 MB),
//! compiled in about 0.2 s once per process; a walk takes 45 to 60 ns. One `regex` per code,
//! the other candidate, answers a yes/no match in about 40 ns but cannot say where a number
//! went wrong, which the categories and the firm/doubtful split need.
//!
//! Knows nothing of calls, scores, configuration or of which countries the agent serves.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::OnceLock;

use phonenumber::metadata::{Descriptor, Metadata, DATABASE};
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, MatchKind};

/// Longest national significant number followed (E.164 allows 15 digits in all).
const MAX_NSN: usize = 15;

/// The dead state: no number begins with the digits read.
const DEAD: u32 = 0;
const START: u32 = 1;

/// A set of number lengths (0 to 15 digits), as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lengths(u16);

impl Lengths {
    /// Lengths from `lo` to `hi` inclusive (capped at 15).
    pub fn span(lo: usize, hi: usize) -> Lengths {
        (lo..=hi.min(MAX_NSN)).fold(Lengths(0), |l, n| l.with(n))
    }

    /// The lengths in either set.
    pub fn union(self, other: Lengths) -> Lengths {
        Lengths(self.0 | other.0)
    }

    fn with(self, n: usize) -> Lengths {
        if n > MAX_NSN {
            return self;
        }
        Lengths(self.0 | 1 << n)
    }

    pub fn has(self, n: usize) -> bool {
        n <= MAX_NSN && self.0 & (1 << n) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn min(self) -> Option<usize> {
        (self.0 != 0).then(|| self.0.trailing_zeros() as usize)
    }

    pub fn max(self) -> Option<usize> {
        (self.0 != 0).then(|| 15 - self.0.leading_zeros() as usize)
    }
}

impl fmt::Display for Lengths {
    /// `10`, `9 or 10`, `7, 9 or 10`, `5 to 15`: runs of three or more are written as a span.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for n in (0..=MAX_NSN).filter(|&n| self.has(n)) {
            match runs.last_mut() {
                Some((_, hi)) if *hi + 1 == n => *hi = n,
                _ => runs.push((n, n)),
            }
        }
        let parts: Vec<String> = runs
            .iter()
            .flat_map(|&(lo, hi)| match hi - lo {
                0 => vec![lo.to_string()],
                1 => vec![lo.to_string(), hi.to_string()],
                _ => vec![format!("{lo} to {hi}")],
            })
            .collect();
        match parts.split_last() {
            None => f.write_str("no length"),
            Some((last, [])) => f.write_str(last),
            Some((last, rest)) => write!(f, "{} or {last}", rest.join(", ")),
        }
    }
}

/// One automaton state: a digit prefix and the lengths of the numbers that begin with it.
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    next: [u32; 10],
    general: Lengths,
    valid: Lengths,
    calling: Lengths,
}

/// What the plan makes of a national significant number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Some number type of some region under the code accepts it.
    Valid,
    /// At most [`SHORT_CODE_MAX`] digits, and every number that places calls and begins with
    /// the same digits is longer: a service or short code, not a subscriber.
    ShortCode { shortest: usize },
    /// No number beginning with the first `prefix` digits has this length; they have `lengths`.
    /// `firm` when the plan's structure (the general description) rules it out.
    WrongLength {
        prefix: usize,
        lengths: Lengths,
        firm: bool,
    },
    /// No number begins with the first `prefix` digits. `firm` as for a wrong length.
    Unallocated { prefix: usize, firm: bool },
}

/// Service and short codes have at most this many digits (116xxx, 118xxx); longer numbers that
/// miss every length are wrong-length numbers, not short codes.
pub const SHORT_CODE_MAX: usize = 6;

/// The plan of one country calling code.
pub struct Plan {
    cc: u16,
    /// Regions (ISO 3166 alpha-2, or `001` for non-geographic codes), the main one first.
    regions: Vec<String>,
    /// The national (trunk) prefix of the main region: `0` in GB, `1` in NANP.
    national_prefix: Option<String>,
    /// Empty when the metadata could not be compiled: then nothing is judged under this code.
    nodes: Vec<Node>,
}

impl Plan {
    pub fn cc(&self) -> u16 {
        self.cc
    }

    pub fn regions(&self) -> &[String] {
        &self.regions
    }

    pub fn national_prefix(&self) -> Option<&str> {
        self.national_prefix.as_deref()
    }

    /// Lengths any number under this code has.
    pub fn lengths(&self) -> Lengths {
        self.nodes
            .get(START as usize)
            .map_or(Lengths(0), |n| n.valid)
    }

    /// Judges a national significant number (ASCII digits after the country code).
    pub fn fit(&self, nsn: &[u8]) -> Fit {
        if self.nodes.is_empty() {
            return Fit::Valid;
        }
        let n = nsn.len();
        let (mut general, mut valid) = (Track::default(), Track::default());
        let mut calling = Lengths(0);
        let mut node = &self.nodes[START as usize];
        for depth in 0..=n {
            if depth > 0 {
                let d = usize::from(nsn[depth - 1].wrapping_sub(b'0'));
                let next = node.next.get(d).copied().unwrap_or(DEAD);
                if next == DEAD {
                    break;
                }
                node = &self.nodes[next as usize];
            }
            general.visit(depth, node.general, n);
            valid.visit(depth, node.valid, n);
            if !node.calling.is_empty() {
                calling = node.calling;
            }
        }
        if valid.reached == Some(n) && valid.last.has(n) {
            return Fit::Valid;
        }
        if n <= SHORT_CODE_MAX {
            let shortest = calling.min().or_else(|| valid.last.min());
            if let Some(shortest) = shortest.filter(|&s| n < s) {
                return Fit::ShortCode { shortest };
            }
        }
        if general.reached == Some(n) && general.last.has(n) {
            valid.verdict(false)
        } else {
            general.verdict(true)
        }
    }
}

/// How far one kind of description (general, or any type) follows a number's digits.
#[derive(Default)]
struct Track {
    /// The deepest prefix some number of the kind begins with (`None`: not even the empty one).
    reached: Option<usize>,
    /// The lengths of the numbers beginning with that prefix.
    last: Lengths,
    /// The shortest prefix whose numbers never have the number's length, with their lengths.
    wrong: Option<(usize, Lengths)>,
}

impl Track {
    fn visit(&mut self, depth: usize, lens: Lengths, n: usize) {
        // Lengths only shrink along a walk, and a prefix that lost them never regains them.
        if lens.is_empty() || self.reached != depth.checked_sub(1) {
            return;
        }
        self.reached = Some(depth);
        self.last = lens;
        if self.wrong.is_none() && !lens.has(n) {
            self.wrong = Some((depth, lens));
        }
    }

    fn verdict(&self, firm: bool) -> Fit {
        match self.wrong {
            Some((prefix, lengths)) => Fit::WrongLength {
                prefix,
                lengths,
                firm,
            },
            None => Fit::Unallocated {
                prefix: self.reached.map_or(0, |r| r + 1),
                firm,
            },
        }
    }
}

/// All plans, indexed by country code.
pub struct Numbering {
    by_cc: Vec<u16>,
    plans: Vec<Plan>,
    /// Codes whose metadata could not be compiled, with why (none with the shipped metadata).
    problems: Vec<String>,
}

const NO_PLAN: u16 = u16::MAX;

static NUMBERING: OnceLock<Numbering> = OnceLock::new();

impl Numbering {
    /// The plans compiled from the metadata built into this binary: compiled on first use
    /// (the signal state does it at start), then shared.
    pub fn get() -> &'static Numbering {
        NUMBERING.get_or_init(Numbering::compile)
    }

    fn compile() -> Numbering {
        let mut by_cc = vec![NO_PLAN; 1000];
        let mut plans = Vec::new();
        let mut problems = Vec::new();
        // By code, not by region: the non-geographic codes (+800, +870, +881 ...) share the
        // region id `001`, and a walk over regions would keep only one of them.
        for cc in 1..1000u16 {
            let Some(mut metas) = DATABASE.by_code(&cc) else {
                continue;
            };
            // The main region first, the rest by name, so that regions read the same each run.
            metas.sort_by_key(|m| (!m.is_main_country_for_code(), m.id().to_string()));
            let nodes = match compile_code(&metas) {
                Ok(nodes) => nodes,
                Err(e) => {
                    problems.push(format!("+{cc}: {e}"));
                    Vec::new()
                }
            };
            by_cc[usize::from(cc)] = plans.len() as u16;
            plans.push(Plan {
                cc,
                regions: metas.iter().map(|m| m.id().to_string()).collect(),
                national_prefix: metas
                    .first()
                    .and_then(|m| m.national_prefix())
                    .map(str::to_string),
                nodes,
            });
        }
        Numbering {
            by_cc,
            plans,
            problems,
        }
    }

    /// The plan whose country code begins these digits (country codes are prefix-free), with
    /// the code's length.
    pub fn plan_of(&self, digits: &[u8]) -> Option<(&Plan, usize)> {
        if digits.first() == Some(&b'0') {
            return None;
        }
        let mut cc = 0usize;
        for (i, &b) in digits.iter().take(3).enumerate() {
            if !b.is_ascii_digit() {
                return None;
            }
            cc = cc * 10 + usize::from(b - b'0');
            if let Some(&p) = self.by_cc.get(cc).filter(|&&p| p != NO_PLAN) {
                return Some((&self.plans[usize::from(p)], i + 1));
            }
        }
        None
    }

    /// The plan of a country code.
    pub fn plan(&self, cc: u16) -> Option<&Plan> {
        let p = *self.by_cc.get(usize::from(cc))?;
        (p != NO_PLAN).then(|| &self.plans[usize::from(p)])
    }

    /// The plan of a region (ISO 3166 alpha-2, case-insensitive).
    pub fn plan_of_region(&self, region: &str) -> Option<&Plan> {
        self.plans
            .iter()
            .find(|p| p.regions.iter().any(|r| r.eq_ignore_ascii_case(region)))
    }

    /// Codes whose metadata failed to compile, each with the error.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// How many country codes have a plan.
    pub fn len(&self) -> usize {
        self.plans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }

    /// Automaton states over all plans (for the memory figure in the docs).
    pub fn states(&self) -> usize {
        self.plans.iter().map(|p| p.nodes.len()).sum()
    }
}

#[derive(Clone, Copy)]
enum Kind {
    General,
    Calling,
    Other,
}

fn lengths_of(d: &Descriptor) -> Lengths {
    d.possible_length()
        .iter()
        .fold(Lengths(0), |l, &n| l.with(usize::from(n)))
}

/// The number types a valid number may have, and whether they place calls. Emergency, short
/// code, standard rate and carrier descriptions belong to short-number metadata, and
/// "no international dialling" overlaps the others.
fn types(m: &Metadata) -> [(Option<&Descriptor>, Kind); 10] {
    let d = m.descriptors();
    [
        (d.fixed_line(), Kind::Calling),
        (d.mobile(), Kind::Calling),
        (d.voip(), Kind::Calling),
        (d.personal_number(), Kind::Calling),
        (d.uan(), Kind::Calling),
        (d.toll_free(), Kind::Other),
        (d.premium_rate(), Kind::Other),
        (d.shared_cost(), Kind::Other),
        (d.pager(), Kind::Other),
        (d.voicemail(), Kind::Other),
    ]
}

/// The metadata writes patterns with layout whitespace (compiled with `x` there).
fn pattern(d: &Descriptor) -> String {
    let p: String = d
        .national_number()
        .as_str()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    format!("(?:{p})$")
}

/// One automaton for all regions under a code: a DFA of every pattern (anchored at both ends),
/// walked over the ten digits and paired with the depth so that each pattern's possible lengths
/// apply, then reduced to the prefixes some number still begins with.
fn compile_code(metas: &[&Metadata]) -> Result<Vec<Node>, String> {
    let mut patterns: Vec<String> = Vec::new();
    let mut info: Vec<(Kind, Lengths)> = Vec::new();
    for m in metas {
        let typed: Vec<(&Descriptor, Kind)> = types(m)
            .into_iter()
            .filter_map(|(d, k)| d.map(|d| (d, k)))
            .collect();
        // libphonenumber gives the general description the union of its types' lengths.
        let union = typed
            .iter()
            .fold(lengths_of(m.descriptors().general()), |l, (d, _)| {
                Lengths(l.0 | lengths_of(d).0)
            });
        patterns.push(pattern(m.descriptors().general()));
        info.push((Kind::General, union));
        for (d, kind) in typed {
            let own = lengths_of(d);
            patterns.push(pattern(d));
            info.push((kind, if own.is_empty() { union } else { own }));
        }
    }
    let dfa = dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(StartKind::Anchored),
        )
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .thompson(thompson::Config::new().utf8(false))
        .build_many(&patterns)
        .map_err(|e| format!("metadata pattern does not compile: {e}"))?;
    let s0 = dfa
        .start_state(&start::Config::new().anchored(Anchored::Yes))
        .map_err(|e| format!("no anchored start state: {e}"))?;

    // Breadth first, so that every child comes after its parent (depth grows by one).
    let mut nodes = vec![Node::default(), Node::default()];
    let mut ids: HashMap<(StateID, usize), u32> = HashMap::from([((s0, 0), START)]);
    let mut queue = VecDeque::from([(s0, 0usize, START)]);
    while let Some((sid, depth, id)) = queue.pop_front() {
        let eoi = dfa.next_eoi_state(sid);
        if dfa.is_match_state(eoi) {
            let n = &mut nodes[id as usize];
            for i in 0..dfa.match_len(eoi) {
                let (kind, lens) = info[dfa.match_pattern(eoi, i).as_usize()];
                if !lens.has(depth) {
                    continue;
                }
                match kind {
                    Kind::General => n.general = n.general.with(depth),
                    Kind::Calling => {
                        n.valid = n.valid.with(depth);
                        n.calling = n.calling.with(depth);
                    }
                    Kind::Other => n.valid = n.valid.with(depth),
                }
            }
        }
        if depth == MAX_NSN {
            continue;
        }
        for d in 0..10u8 {
            let t = dfa.next_state(sid, b'0' + d);
            if dfa.is_dead_state(t) || dfa.is_quit_state(t) {
                continue;
            }
            let next = *ids.entry((t, depth + 1)).or_insert_with(|| {
                nodes.push(Node::default());
                let child = (nodes.len() - 1) as u32;
                queue.push_back((t, depth + 1, child));
                child
            });
            nodes[id as usize].next[usize::from(d)] = next;
        }
    }
    // Each prefix learns the lengths of the numbers that begin with it, children first.
    for id in (1..nodes.len()).rev() {
        let mut n = nodes[id];
        for &c in n.next.iter().filter(|&&c| c != DEAD) {
            let child = nodes[c as usize];
            n.general = n.general.union(child.general);
            n.valid = n.valid.union(child.valid);
            n.calling = n.calling.union(child.calling);
        }
        nodes[id] = n;
    }
    // Drop prefixes no number begins with, so that a walk stops where the plan does.
    let alive = |n: &Node| !(n.general.is_empty() && n.valid.is_empty());
    let mut renum = vec![DEAD; nodes.len()];
    let mut kept = vec![Node::default()];
    for (id, n) in nodes.iter().enumerate().skip(1) {
        if alive(n) || id == START as usize {
            renum[id] = kept.len() as u32;
            kept.push(*n);
        }
    }
    for n in kept.iter_mut().skip(1) {
        for c in &mut n.next {
            *c = renum[*c as usize];
        }
    }
    Ok(kept)
}
