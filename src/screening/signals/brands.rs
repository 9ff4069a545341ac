//! Protected brands: which display names claim a brand, who may show a brand's name as the
//! caller, and which numbers only ever receive calls. Loaded from `config/brands.toml` (text
//! handed in; this module reads no files).
//!
//! A name claims a brand the way a fraud analyst reads it: the brand's words must stand as words
//! (`Applebee's` and `Amazonas Grill` claim nothing), look-alike spellings count (`Micr0s0ft`,
//! `PayPa1`, a Cyrillic `А` in `Аmazon`: see [`super::text`]), and a brand word that is also a
//! common word, a surname or a place (`Apple`, `Chase`, `Orange`, `Windows`) claims the brand
//! only beside a context word such as `support`, `refund` or `Kundendienst`. A brand word right
//! after an honorific (`Mr Chase`) is a surname, and right before a street word (`Telstra
//! Street`) a place: neither claims. Every word is compiled into one Aho-Corasick automaton at
//! load, so a call costs one fold of its display name and one pass over it.
//!
//! Knows nothing of lists, SIP or where the display name came from.

use std::collections::HashMap;
use std::fmt;

use aho_corasick::{AhoCorasick, MatchKind};
use serde::Deserialize;
use toml::Spanned;

use super::text::{skeleton, Folded};
use crate::screening::entry::check_category;
use crate::screening::Action;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrandsFile {
    #[serde(default)]
    words: WordsSection,
    #[serde(default, rename = "brand")]
    brands: Vec<BrandSection>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct WordsSection {
    /// Words that make an ambiguous brand word a claim (`support`, `refund`, `betrug*`).
    context: Vec<Spanned<String>>,
    /// Words before a brand word that make it a person's name (`mr`, `herr`, `sra`).
    honorifics: Vec<Spanned<String>>,
    /// Words after a brand word that make it a place (`street`, `strasse`, `calle`).
    places: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrandSection {
    name: Spanned<String>,
    /// Where the brand operates (ISO alpha-2), for the reader and the evaluation.
    #[serde(default)]
    countries: Vec<Spanned<String>>,
    /// What the brand says about calling its customers, in short.
    statement: String,
    /// Where the brand (or a regulator) says so, and where its numbers are published.
    sources: Vec<String>,
    /// `warn` or `block` for a display name claiming the brand from a number not its own.
    #[serde(default = "default_action")]
    action: Spanned<String>,
    /// Phrases that claim the brand on their own (any spelling: they are folded).
    #[serde(default)]
    patterns: Vec<Spanned<String>>,
    /// Words that claim the brand only beside a context word.
    #[serde(default)]
    needs_context: Vec<Spanned<String>>,
    /// More context words, for this brand's `needs_context` words only (`bank` for `Chase`).
    #[serde(default)]
    context: Vec<Spanned<String>>,
    /// Words right after a brand word that make it something else (`Amazon lily`).
    #[serde(default)]
    not_before: Vec<Spanned<String>>,
    /// Whether the file's `[words] context` also count for this brand. `false` for words
    /// whose innocent uses come with those very words (a visa agency offers "Visa Support").
    #[serde(default = "yes")]
    generic_context: bool,
    /// Numbers or prefixes (`+1425*`) the brand publishes as its outbound calls' numbers.
    #[serde(default)]
    outbound: Vec<Spanned<String>>,
    /// Numbers that only receive calls (support lines): a call from one is spoofed.
    #[serde(default)]
    inbound_only: Vec<Spanned<String>>,
    /// The scam category a claim of this brand belongs to (`tech-support`, `bank`, ...). It is
    /// the reason's category, so the announcement can pick `<lang>-<category>.wav`.
    #[serde(default = "default_category")]
    category: Spanned<String>,
}

fn line_at(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn yes() -> bool {
    true
}

fn default_action() -> Spanned<String> {
    Spanned::new(0..0, "warn".into())
}

fn default_category() -> Spanned<String> {
    Spanned::new(0..0, "impersonation".into())
}

/// A brands file that could not be used: the file, the line and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrandsError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for BrandsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for BrandsError {}

/// One protected brand, compiled.
#[derive(Debug, Clone)]
pub struct Brand {
    pub name: String,
    pub countries: Vec<String>,
    pub statement: String,
    pub sources: Vec<String>,
    pub action: Action,
    outbound: Vec<NumberPattern>,
    pub inbound_only: Vec<String>,
    pub category: String,
    generic_context: bool,
}

#[derive(Debug, Clone)]
enum NumberPattern {
    Exact(String),
    Prefix(String),
}

impl NumberPattern {
    fn parse(s: &str) -> Option<NumberPattern> {
        let s = s.trim();
        let (body, prefix) = match s.strip_suffix('*') {
            Some(b) => (b, true),
            None => (s, false),
        };
        let digits = body.strip_prefix('+')?;
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(if prefix {
            NumberPattern::Prefix(body.into())
        } else {
            NumberPattern::Exact(body.into())
        })
    }

    fn matches(&self, number: &str) -> bool {
        match self {
            NumberPattern::Exact(n) => n == number,
            NumberPattern::Prefix(p) => number.starts_with(p.as_str()),
        }
    }
}

impl Brand {
    /// Whether the brand publishes `caller` as a number it calls from.
    pub fn calls_from(&self, caller: Option<&str>) -> bool {
        caller.is_some_and(|c| self.outbound.iter().any(|p| p.matches(c)))
    }
}

/// What a word of the automaton means; one folded word can mean several things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A brand's word; `alone`: it claims without a context word.
    Brand {
        brand: usize,
        alone: bool,
    },
    /// A context word, for every brand or for one; `prefix`: it may begin a longer word
    /// (`betrug*` in `Betrugsabteilung`).
    Context {
        brand: Option<usize>,
        prefix: bool,
    },
    Honorific,
    Place,
    /// A word after which this brand's word is something else (`lily` after `Amazon`).
    NotBefore {
        brand: usize,
    },
}

/// Where a word of the automaton was found in a name.
#[derive(Debug, Clone, Copy)]
struct Hit {
    start: usize,
    end: usize,
    role: Role,
}

/// At most this many hits are weighed per name; a name that packs more words than that is
/// read up to them.
const MAX_HITS: usize = 32;

/// Every protected brand, with its words compiled into one automaton.
#[derive(Debug, Clone, Default)]
pub struct Brands {
    brands: Vec<Brand>,
    /// `None` when no brand has a word.
    automaton: Option<AhoCorasick>,
    /// The roles of each automaton pattern, by pattern id.
    roles: Vec<Vec<Role>>,
    inbound: HashMap<String, usize>,
}

/// Collects the automaton's words while the file is read.
#[derive(Default)]
struct Words {
    index: HashMap<String, usize>,
    words: Vec<String>,
    roles: Vec<Vec<Role>>,
}

impl Words {
    /// Whether `folded` already claims alone (`alone`) or only with context (`!alone`).
    fn has_brand_word(&self, folded: &str, alone: bool) -> bool {
        self.index.get(folded).is_some_and(|&id| {
            self.roles[id]
                .iter()
                .any(|r| matches!(r, Role::Brand { alone: a, .. } if *a == alone))
        })
    }

    fn add(&mut self, folded: String, role: Role) {
        let id = *self.index.entry(folded.clone()).or_insert_with(|| {
            self.words.push(folded);
            self.roles.push(Vec::new());
            self.words.len() - 1
        });
        if !self.roles[id].contains(&role) {
            self.roles[id].push(role);
        }
    }
}

/// Reads one brands file, naming the file and line of the first thing wrong.
struct Reader<'a> {
    text: &'a str,
    file: &'a str,
}

impl Reader<'_> {
    fn err(&self, at: &std::ops::Range<usize>, message: String) -> BrandsError {
        BrandsError {
            file: self.file.into(),
            line: line_at(self.text, at.start),
            message,
        }
    }

    /// Folds a word; a word ending in `*` is a prefix when `prefix_ok`.
    fn word(
        &self,
        w: &Spanned<String>,
        min: usize,
        prefix_ok: bool,
        what: &str,
    ) -> Result<(String, bool), BrandsError> {
        let (body, prefix) = match w.get_ref().trim().strip_suffix('*') {
            Some(b) if prefix_ok => (b, true),
            _ => (w.get_ref().as_str(), false),
        };
        let sk = skeleton(body);
        // A word folding to a letter or two would match half the phone book.
        if sk.len() < min {
            return Err(self.err(
                &w.span(),
                format!("{what} {:?} is too short to match safely: at least {min} letters after folding", w.get_ref()),
            ));
        }
        if sk.len() > 60 {
            return Err(self.err(
                &w.span(),
                format!("{what} {:?} is too long: at most 60 letters", w.get_ref()),
            ));
        }
        Ok((sk, prefix))
    }
}

impl Brands {
    /// Parses the text of a brands file; `file` only names it in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Brands, BrandsError> {
        let r = Reader { text, file };
        let parsed: BrandsFile = toml::from_str(text).map_err(|e| BrandsError {
            file: file.into(),
            line: e.span().map(|s| line_at(text, s.start)).unwrap_or(0),
            message: e.message().to_string(),
        })?;
        let mut words = Words::default();
        for w in &parsed.words.context {
            let (sk, prefix) = r.word(w, 2, true, "context word")?;
            words.add(
                sk,
                Role::Context {
                    brand: None,
                    prefix,
                },
            );
        }
        for w in &parsed.words.honorifics {
            words.add(r.word(w, 2, false, "honorific")?.0, Role::Honorific);
        }
        for w in &parsed.words.places {
            words.add(r.word(w, 2, false, "place word")?.0, Role::Place);
        }
        let mut brands = Vec::with_capacity(parsed.brands.len());
        let mut inbound = HashMap::new();
        for (i, b) in parsed.brands.into_iter().enumerate() {
            let brand = r.brand(b, i, &mut words, &mut inbound)?;
            brands.push(brand);
        }
        r.no_contradictions(&brands)?;
        let automaton = if words.words.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&words.words)
                    .map_err(|e| BrandsError {
                        file: file.into(),
                        line: 0,
                        message: format!("the brand words do not compile: {e}"),
                    })?,
            )
        };
        Ok(Brands {
            brands,
            automaton,
            roles: words.roles,
            inbound,
        })
    }

    /// The brand a display name claims, if any: the earliest claim in the name.
    pub fn claimed(&self, display_name: &str) -> Option<&Brand> {
        let ac = self.automaton.as_ref()?;
        let name = Folded::new(display_name);
        if name.is_empty() {
            return None;
        }
        let mut hits = [Hit {
            start: 0,
            end: 0,
            role: Role::Honorific,
        }; MAX_HITS];
        let mut n = 0;
        'scan: for m in ac.find_overlapping_iter(name.text()) {
            let at_word = name.starts_word(m.start());
            for &role in &self.roles[m.pattern().as_usize()] {
                // Only a context word may start inside a word: glued to a brand word before it
                // (`microsoftsupport`).
                if !at_word && !matches!(role, Role::Context { .. }) {
                    continue;
                }
                if n == MAX_HITS {
                    break 'scan;
                }
                hits[n] = Hit {
                    start: m.start(),
                    end: m.end(),
                    role,
                };
                n += 1;
            }
        }
        let hits = &hits[..n];
        let mut best: Option<(usize, usize)> = None;
        for h in hits {
            let Role::Brand { brand, alone } = h.role else {
                continue;
            };
            if best.is_some_and(|(start, _)| start <= h.start) {
                continue;
            }
            let generic = self.brands[brand].generic_context;
            if claims(&name, hits, h, brand, alone, generic) {
                best = Some((h.start, brand));
            }
        }
        best.map(|(_, b)| &self.brands[b])
    }

    /// The brand whose inbound-only number `caller` is.
    pub fn inbound_only_owner(&self, caller: &str) -> Option<&Brand> {
        self.inbound.get(caller).map(|&i| &self.brands[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Brand> {
        self.brands.iter()
    }
}

/// Whether the brand word found at `h` claims the brand, given every other word found.
fn claims(name: &Folded, hits: &[Hit], h: &Hit, brand: usize, alone: bool, generic: bool) -> bool {
    let is_context = |c: &Hit| match c.role {
        Role::Context { brand: None, .. } => generic,
        Role::Context { brand: b, .. } => b == Some(brand),
        _ => false,
    };
    // A context word's end must be a word's end unless it is a prefix (`betrug*`).
    let context_ends =
        |c: &Hit| matches!(c.role, Role::Context { prefix: true, .. }) || name.ends_word(c.end);
    // The brand word must end a word, or run straight into a context word that does
    // (`microsoftsupport`): `Applebees` and `Chasewater` are other words.
    let glued = !name.ends_word(h.end)
        && hits
            .iter()
            .any(|c| c.start == h.end && is_context(c) && context_ends(c));
    if !name.ends_word(h.end) && !glued {
        return false;
    }
    let surname = hits
        .iter()
        .any(|c| c.role == Role::Honorific && c.end == h.start && name.ends_word(c.end));
    // A place word after any brand word, or this brand's own not_before word.
    let follows = |c: &Hit| c.role == Role::Place || c.role == (Role::NotBefore { brand });
    let place = !glued
        && hits
            .iter()
            .any(|c| follows(c) && c.start == h.end && name.ends_word(c.end));
    if surname || place {
        return false;
    }
    alone
        || glued
        || hits.iter().any(|c| {
            is_context(c)
                && name.starts_word(c.start)
                && context_ends(c)
                && (c.end <= h.start || c.start >= h.end)
        })
}

impl Reader<'_> {
    fn brand(
        &self,
        b: BrandSection,
        i: usize,
        words: &mut Words,
        inbound: &mut HashMap<String, usize>,
    ) -> Result<Brand, BrandsError> {
        let name = b.name.get_ref().clone();
        let at = b.name.span();
        let action = match b.action.get_ref().as_str() {
            "warn" => Action::Warn,
            "block" => Action::Block,
            other => {
                return Err(self.err(
                    &b.action.span(),
                    format!("brand {name}: action must be warn or block, not {other:?}"),
                ))
            }
        };
        if b.sources.is_empty() {
            return Err(self.err(
                &at,
                format!("brand {name}: sources must name where the brand says it does not call"),
            ));
        }
        if b.patterns.is_empty() && b.needs_context.is_empty() {
            return Err(self.err(
                &at,
                format!("brand {name}: expected at least one of patterns or needs_context"),
            ));
        }
        let mut countries = Vec::with_capacity(b.countries.len());
        for c in &b.countries {
            let code = c.get_ref();
            if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(self.err(
                    &c.span(),
                    format!("brand {name}: country {code:?} is not an ISO alpha-2 code such as GB"),
                ));
            }
            countries.push(code.clone());
        }
        // The category names a prompt file and becomes a reason's category: the list
        // format's rule for it applies.
        if let Err(e) = check_category(b.category.get_ref()) {
            let span = if b.category.span().is_empty() {
                at.clone()
            } else {
                b.category.span()
            };
            return Err(self.err(&span, format!("brand {name}: {e}")));
        }
        self.brand_words(&b, &name, i, words)?;
        let (outbound, inbound_only) = self.brand_numbers(&b, &name, i, inbound)?;
        Ok(Brand {
            name,
            countries,
            statement: b.statement,
            sources: b.sources,
            action,
            outbound,
            inbound_only,
            category: b.category.into_inner(),
            generic_context: b.generic_context,
        })
    }

    /// Adds a brand's patterns, needs_context and context words to the automaton's words.
    fn brand_words(
        &self,
        b: &BrandSection,
        name: &str,
        i: usize,
        words: &mut Words,
    ) -> Result<(), BrandsError> {
        // A word cannot both claim alone and need context: whichever was meant, the other
        // silently wins (`norton 360` folds to `norton`, digits being no word).
        let clash = |p: &Spanned<String>, sk: &str| {
            self.err(
                &p.span(),
                format!("brand {name}: {:?} folds to {sk:?}, which is both a pattern and a needs_context word; expected one or the other", p.get_ref()),
            )
        };
        for p in &b.patterns {
            let (sk, _) = self.word(p, 3, false, &format!("brand {name}: pattern"))?;
            if words.has_brand_word(&sk, false) {
                return Err(clash(p, &sk));
            }
            words.add(
                sk,
                Role::Brand {
                    brand: i,
                    alone: true,
                },
            );
        }
        for p in &b.needs_context {
            let (sk, _) = self.word(p, 2, false, &format!("brand {name}: needs_context word"))?;
            if words.has_brand_word(&sk, true) {
                return Err(clash(p, &sk));
            }
            words.add(
                sk,
                Role::Brand {
                    brand: i,
                    alone: false,
                },
            );
        }
        for p in &b.not_before {
            let (sk, _) = self.word(p, 2, false, &format!("brand {name}: not_before word"))?;
            words.add(sk, Role::NotBefore { brand: i });
        }
        for p in &b.context {
            let (sk, prefix) = self.word(p, 2, true, &format!("brand {name}: context word"))?;
            words.add(
                sk,
                Role::Context {
                    brand: Some(i),
                    prefix,
                },
            );
        }
        Ok(())
    }

    /// A brand's outbound patterns and inbound-only numbers; `inbound` maps every inbound-only
    /// number read so far to its brand.
    fn brand_numbers(
        &self,
        b: &BrandSection,
        name: &str,
        i: usize,
        inbound: &mut HashMap<String, usize>,
    ) -> Result<(Vec<NumberPattern>, Vec<String>), BrandsError> {
        let mut outbound = Vec::new();
        for n in &b.outbound {
            outbound.push(NumberPattern::parse(n.get_ref()).ok_or_else(|| {
                self.err(
                    &n.span(),
                    format!(
                        "brand {name}: outbound {:?} is not +digits or +digits*",
                        n.get_ref()
                    ),
                )
            })?);
        }
        let mut inbound_only = Vec::with_capacity(b.inbound_only.len());
        for n in &b.inbound_only {
            let number = n.get_ref().trim().to_string();
            if !matches!(NumberPattern::parse(&number), Some(NumberPattern::Exact(_))) {
                return Err(self.err(
                    &n.span(),
                    format!("brand {name}: inbound_only {number:?} is not an E.164 number"),
                ));
            }
            if inbound.insert(number.clone(), i).is_some() {
                return Err(self.err(
                    &n.span(),
                    format!("brand {name}: inbound_only {number} is listed twice; expected each number under one brand"),
                ));
            }
            inbound_only.push(number);
        }
        Ok((outbound, inbound_only))
    }

    /// A number cannot both place a brand's calls and never place any.
    fn no_contradictions(&self, brands: &[Brand]) -> Result<(), BrandsError> {
        for b in brands {
            for n in brands.iter().flat_map(|o| o.inbound_only.iter()) {
                if b.outbound.iter().any(|p| p.matches(n)) {
                    let at = self.text.find(&format!("\"{n}\"")).unwrap_or(0);
                    return Err(self.err(
                        &(at..at),
                        format!("inbound_only {n} is also an outbound number of {}; expected one or the other", b.name),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
