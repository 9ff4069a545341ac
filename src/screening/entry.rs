//! One list entry: a number pattern with an action and the operator's explanation.
//!
//! A [`Pattern`] is parsed from the operator's text and prints back to the same text, so a list
//! can be shown, exported and diffed. Patterns are matched against E.164 numbers only.
//!
//! Knows nothing of where entries come from (files, the store, feeds) nor how they are indexed.

use std::fmt;

use serde::Serialize;

use super::number::{Number, MAX_DIGITS, POW10};

/// What an entry asks for when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryAction {
    Allow,
    Warn,
    Block,
}

impl EntryAction {
    pub fn parse(s: &str) -> Option<EntryAction> {
        // Compared without lowercasing into a new string: this runs once per list line.
        let s = s.trim();
        [
            ("allow", EntryAction::Allow),
            ("warn", EntryAction::Warn),
            ("block", EntryAction::Block),
        ]
        .into_iter()
        .find(|(w, _)| s.eq_ignore_ascii_case(w))
        .map(|(_, a)| a)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntryAction::Allow => "allow",
            EntryAction::Warn => "warn",
            EntryAction::Block => "block",
        }
    }

    /// Rank at equal specificity: allow beats block beats warn. An allow entry is an operator's
    /// deliberate exception, and a block is the stronger of the two list actions.
    pub fn rank(self) -> u8 {
        match self {
            EntryAction::Allow => 2,
            EntryAction::Block => 1,
            EntryAction::Warn => 0,
        }
    }
}

impl fmt::Display for EntryAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How specific a pattern is; a higher value wins over a lower one.
///
/// Classes from strongest: exact number, fixed-length digit pattern (more fixed digits first),
/// prefix (longer first), regex. Comparable across the compiled index and any live overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Specificity(u16);

impl Specificity {
    pub const REGEX: Specificity = Specificity(0);

    pub fn exact(len: usize) -> Specificity {
        Specificity((3 << 8) | len as u16)
    }
    pub fn digits(fixed: usize) -> Specificity {
        Specificity((2 << 8) | fixed as u16)
    }
    pub fn prefix(len: usize) -> Specificity {
        Specificity((1 << 8) | len as u16)
    }
}

/// A fixed-length pattern such as `+4420790XXXXX`: the length, which positions are fixed, and
/// the fixed digits (positions under `X` hold 0 in `value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DigitPattern {
    len: u8,
    /// Bit `i` set when digit `i` (0 = first after `+`) is fixed.
    mask: u16,
    value: u64,
}

impl DigitPattern {
    /// Rebuild from the index's parts; `value` must already have free positions at 0.
    pub fn from_parts(len: u8, mask: u16, value: u64) -> DigitPattern {
        DigitPattern { len, mask, value }
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn mask(&self) -> u16 {
        self.mask
    }
    /// The fixed digits as an integer with every `X` position set to 0.
    pub fn value(&self) -> u64 {
        self.value
    }
    pub fn fixed(&self) -> usize {
        self.mask.count_ones() as usize
    }

    /// `n` with the positions this pattern leaves free set to 0, for hashing by mask.
    pub fn masked(mask: u16, n: Number) -> u64 {
        // From the last digit backwards: division by the constant 10 is a multiply, where
        // picking digit i directly would divide by a variable power of ten.
        let len = n.len();
        let mut rest = n.value();
        let mut out = 0u64;
        for i in (0..len).rev() {
            let d = rest % 10;
            rest /= 10;
            if mask & (1 << i) != 0 {
                out += d * POW10[len - 1 - i];
            }
        }
        out
    }

    pub fn matches(&self, n: Number) -> bool {
        n.len() == self.len() && DigitPattern::masked(self.mask, n) == self.value
    }
}

/// A number pattern, always over the E.164 form (`+` then digits).
#[derive(Debug, Clone)]
pub enum Pattern {
    /// `+12025550143`
    Exact(Number),
    /// `+1900*`: every number starting with these digits (including the digits alone).
    Prefix(Number),
    /// `+4420790XXXXX`: this many digits, `X` standing for any one digit.
    Digits(DigitPattern),
    /// `/^\+2126\d{8}$/`: a regular expression run against the `+digits` text.
    Regex(std::sync::Arc<RegexPattern>),
}

/// A compiled regex pattern with the operator's source text.
#[derive(Debug, Clone)]
pub struct RegexPattern {
    source: String,
    regex: regex::Regex,
    required_prefix: Option<Number>,
}

impl RegexPattern {
    /// Digits every match must start with, when the expression is anchored as `^\+digits...`
    /// with no alternation; lets the index skip the regex for other numbers without running it.
    pub fn required_prefix(&self) -> Option<Number> {
        self.required_prefix
    }

    /// The expression between the slashes.
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }
}

/// Why a pattern string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PatternError {}

/// Numbers of different lengths and countries. A regex matching every one of them would match
/// (nearly) every caller, which is never what an operator meant.
const MATCH_ALL_PROBES: &[&str] = &[
    "+1",
    "+44",
    "+861",
    "+7495",
    "+3912345",
    "+4930123456",
    "+12025550143",
    "+442079460018",
    "+61298765432",
    "+34912345678",
    "+4915123456789",
    "+999999999999999",
];

/// The literal digits an anchored expression `^\+12...` requires at the start, conservatively:
/// none when there is alternation, flags or anything but plain digits after `^\+`, and the last
/// digit is dropped when a quantifier follows it.
fn literal_prefix(source: &str) -> Option<Number> {
    if source.contains('|') {
        return None;
    }
    let rest = source.strip_prefix("^\\+")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let next = rest.as_bytes().get(digits).copied();
    let keep = match next {
        Some(b'?' | b'*' | b'{' | b'+') => digits.saturating_sub(1),
        _ => digits,
    };
    Number::from_digits(&rest.as_bytes()[..keep])
}

/// Cap on a compiled regex so a hostile or careless list cannot eat memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Pattern {
    /// Parse the operator's text. Accepted forms: `+12025550143`, `+1900*`, `+4420790XXXXX`
    /// (`x` also accepted), `/regex/`. A pattern that would match every number is refused.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let t = text.trim();
        if t.len() >= 2 && t.starts_with('/') && t.ends_with('/') {
            return Pattern::parse_regex(&t[1..t.len() - 1]);
        }
        let Some(body) = t.strip_prefix('+') else {
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PatternError(format!(
                    "number {t:?} has no leading +; expected E.164 with its country code, like +12025550143"
                )));
            }
            return Err(PatternError(format!(
                "pattern {t:?} is not a number pattern; expected +digits, +digits*, +digits with X, or /regex/"
            )));
        };
        if let Some(prefix) = body.strip_suffix('*') {
            if prefix.is_empty() {
                return Err(PatternError(
                    "pattern \"+*\" would match every number; expected at least one digit before *"
                        .into(),
                ));
            }
            return match Number::from_digits(prefix.as_bytes()) {
                Some(n) => Ok(Pattern::Prefix(n)),
                None => Err(PatternError(format!(
                    "prefix {t:?} is not valid; expected + then 1 to {MAX_DIGITS} digits (not starting with 0) then *"
                ))),
            };
        }
        if body.bytes().any(|b| b == b'X' || b == b'x') {
            return Pattern::parse_digits(t, body);
        }
        match Number::from_digits(body.as_bytes()) {
            Some(n) => Ok(Pattern::Exact(n)),
            None => Err(PatternError(format!(
                "number {t:?} is not E.164; expected + then 1 to {MAX_DIGITS} digits, not starting with 0, no separators"
            ))),
        }
    }

    fn parse_digits(t: &str, body: &str) -> Result<Pattern, PatternError> {
        let bytes = body.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_DIGITS {
            return Err(PatternError(format!(
                "digit pattern {t:?} has {} positions; expected 1 to {MAX_DIGITS}",
                bytes.len()
            )));
        }
        let mut mask = 0u16;
        let mut value = 0u64;
        for (i, &b) in bytes.iter().enumerate() {
            let d = match b {
                b'0'..=b'9' => {
                    mask |= 1 << i;
                    b - b'0'
                }
                b'X' | b'x' => 0,
                _ => {
                    return Err(PatternError(format!(
                        "digit pattern {t:?} has {:?} at position {}; expected digits and X only",
                        b as char,
                        i + 1
                    )))
                }
            };
            value = value * 10 + u64::from(d);
        }
        if mask == 0 {
            return Err(PatternError(format!(
                "digit pattern {t:?} would match every number of its length; expected at least one fixed digit"
            )));
        }
        if mask & 1 != 0 && bytes[0] == b'0' {
            return Err(PatternError(format!(
                "digit pattern {t:?} starts with 0, which no E.164 number does"
            )));
        }
        Ok(Pattern::Digits(DigitPattern {
            len: bytes.len() as u8,
            mask,
            value,
        }))
    }

    fn parse_regex(source: &str) -> Result<Pattern, PatternError> {
        if source.is_empty() {
            return Err(PatternError(
                "regex \"//\" is empty and would match every number".into(),
            ));
        }
        let regex = regex::RegexBuilder::new(source)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                let first = e.to_string();
                let first = first.lines().last().unwrap_or("").trim().to_string();
                PatternError(format!(
                    "regex /{source}/ does not compile ({first}); expected a Rust regex between slashes"
                ))
            })?;
        if MATCH_ALL_PROBES.iter().all(|p| regex.is_match(p)) {
            return Err(PatternError(format!(
                "regex /{source}/ matches numbers of every length and country; expected a narrower expression such as /^\\+2126\\d{{8}}$/"
            )));
        }
        Ok(Pattern::Regex(std::sync::Arc::new(RegexPattern {
            source: source.to_string(),
            regex,
            required_prefix: literal_prefix(source),
        })))
    }

    /// How specific this pattern is, for precedence between matching entries.
    pub fn specificity(&self) -> Specificity {
        match self {
            Pattern::Exact(n) => Specificity::exact(n.len()),
            Pattern::Digits(d) => Specificity::digits(d.fixed()),
            Pattern::Prefix(p) => Specificity::prefix(p.len()),
            Pattern::Regex(_) => Specificity::REGEX,
        }
    }

    /// Does this pattern match the number? Linear work; the index does this faster in bulk.
    pub fn matches(&self, n: Number) -> bool {
        match self {
            Pattern::Exact(e) => *e == n,
            Pattern::Prefix(p) => {
                n.len() >= p.len() && n.value() / POW10[n.len() - p.len()] == p.value()
            }
            Pattern::Digits(d) => d.matches(n),
            Pattern::Regex(r) => {
                let (buf, len) = n.to_buf();
                std::str::from_utf8(&buf[..len])
                    .map(|s| r.regex.is_match(s))
                    .unwrap_or(false)
            }
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(n) => write!(f, "{n}"),
            Pattern::Prefix(p) => write!(f, "{p}*"),
            Pattern::Digits(d) => {
                f.write_str("+")?;
                for i in 0..d.len() {
                    if d.mask & (1 << i) != 0 {
                        let digit = (d.value / POW10[d.len() - 1 - i]) % 10;
                        write!(f, "{digit}")?;
                    } else {
                        f.write_str("X")?;
                    }
                }
                Ok(())
            }
            Pattern::Regex(r) => write!(f, "/{}/", r.source),
        }
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Pattern::Exact(a), Pattern::Exact(b)) => a == b,
            (Pattern::Prefix(a), Pattern::Prefix(b)) => a == b,
            (Pattern::Digits(a), Pattern::Digits(b)) => a == b,
            (Pattern::Regex(a), Pattern::Regex(b)) => a.source == b.source,
            _ => false,
        }
    }
}

impl Eq for Pattern {}

impl std::hash::Hash for Pattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Pattern::Exact(n) | Pattern::Prefix(n) => n.hash(state),
            Pattern::Digits(d) => d.hash(state),
            Pattern::Regex(r) => r.source.hash(state),
        }
    }
}

/// A list entry as loaded from any source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub pattern: Pattern,
    pub action: EntryAction,
    /// Short machine word (`scam`, `dno`, `premium-rate`, ...), used as a metric label.
    pub category: String,
    /// Human explanation shown in verdicts and logs.
    pub reason: String,
    /// Where the entry comes from (a URL, a regulator, an operator's ticket).
    pub source: String,
    /// Unix seconds at which the entry stops matching (it matches while `now < expires`).
    pub expires: Option<i64>,
}

impl Entry {
    /// Does the entry still apply at `now` (unix seconds)?
    pub fn is_live(&self, now: i64) -> bool {
        self.expires.map_or(true, |e| now < e)
    }
}

/// Whether entries of `category` are callback entries: `callback` or `callback-<what>`
/// (`callback-tech-support`). They list numbers scammers ask victims to call, and match only
/// the number a protected subscriber dials ([`super::Rules::lookup_callback`]), never a caller.
/// A category convention, like `dno`, so that list files, the store, the API and feeds carry
/// them without a format of their own.
pub fn is_callback_category(category: &str) -> bool {
    category
        .strip_prefix("callback")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// Check a category word: non-empty, lowercase ASCII letters, digits, `-` and `_`, at most 32
/// characters, because it becomes a metric label value and a log field.
pub fn check_category(c: &str) -> Result<(), String> {
    if c.is_empty() || c.len() > 32 {
        return Err(format!(
            "category {c:?} must be 1 to 32 characters of a-z, 0-9, - or _"
        ));
    }
    if !c
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "category {c:?} is not one word; expected a-z, 0-9, - or _ (e.g. scam, dno, premium-rate)"
        ));
    }
    Ok(())
}

/// Check free text that is stored and shown again (an entry's reason or source): no control
/// characters (C0, DEL, C1). A log line, a CSV file or a SIP header would carry them raw, and
/// no operator means one. `field` names the text in the message.
pub fn check_text(field: &str, v: &str) -> Result<(), String> {
    match v.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(format!(
            "{field} holds a control character (U+{:04X}); expected printable text",
            u32::from(c)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Number {
        Number::parse_e164(s).unwrap()
    }

    #[test]
    fn patterns_round_trip_to_the_operators_text() {
        for t in [
            "+12025550143",
            "+1900*",
            "+4420790XXXXX",
            "+120255501XX",
            "+X2025550143",
            r"/^\+2126\d{8}$/",
        ] {
            let p = Pattern::parse(t).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(p.to_string(), t);
        }
        assert_eq!(
            Pattern::parse(" +4420790xxxxx ").unwrap().to_string(),
            "+4420790XXXXX"
        );
    }

    #[test]
    fn refuses_bad_and_match_all_patterns() {
        for t in [
            "",
            "+",
            "+*",
            "*",
            "12025550143",
            "+1-202-555-0143",
            "+0123",
            "+1234567890123456",
            "+1234567890123456*",
            "+XXXXXXXXXX",
            "+0XXX",
            "+12X4Y",
            "//",
            "/.*/",
            "/^/",
            r"/\+/",
            r"/^\+\d+$/",
            r"/\d/",
            "/(/",
            "+12*3",
        ] {
            assert!(Pattern::parse(t).is_err(), "{t:?} should be refused");
        }
    }

    #[test]
    fn matching_table() {
        // (pattern, number, matches)
        let cases = [
            ("+12025550143", "+12025550143", true),
            ("+12025550143", "+12025550144", false),
            ("+1900*", "+19005551234", true),
            ("+1900*", "+1900", true),
            ("+1900*", "+190", false),
            ("+1900*", "+18005551234", false),
            ("+4420790XXXXX", "+442079012345", true),
            ("+4420790XXXXX", "+44207901234", false),
            ("+4420790XXXXX", "+442079112345", false),
            ("+X2025550143", "+12025550143", true),
            (r"/^\+2126\d{8}$/", "+212612345678", true),
            (r"/^\+2126\d{8}$/", "+21261234567", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(
                Pattern::parse(p).unwrap().matches(num(n)),
                want,
                "{p} vs {n}"
            );
        }
    }

    #[test]
    fn specificity_orders_classes() {
        let s = |t: &str| Pattern::parse(t).unwrap().specificity();
        assert!(s("+12025550143") > s("+120255501XX"));
        assert!(s("+120255501XX") > s("+1202555014XX") || s("+120255501XX") > s("+12025550*"));
        assert!(s("+120255501XX") > s("+1202555014*"));
        assert!(s("+12025550*") > s("+1202*"));
        assert!(s("+1*") > s(r"/^\+1202/"));
    }

    #[test]
    fn regex_literal_prefixes() {
        // (regex, required prefix)
        let cases = [
            (r"/^\+2126\d{8}$/", Some("+2126")),
            (r"/^\+1900\d+/", Some("+1900")),
            (r"/^\+12?3/", Some("+1")),
            (r"/^\+1{2}/", None),
            (r"/^\+1|^\+44/", None),
            (r"/\+2126/", None),
            (r"/^\+(1|44)900/", None),
            (r"/^\+[12]00/", None),
        ];
        for (re, want) in cases {
            let Pattern::Regex(r) = Pattern::parse(re).unwrap() else {
                panic!("{re} is a regex");
            };
            assert_eq!(
                r.required_prefix().map(|n| n.to_string()).as_deref(),
                want,
                "{re}"
            );
        }
    }

    #[test]
    fn callback_categories() {
        for (c, want) in [
            ("callback", true),
            ("callback-tech-support", true),
            ("callbacks", false),
            ("scam-callback", false),
            ("dno", false),
        ] {
            assert_eq!(is_callback_category(c), want, "{c}");
        }
    }

    #[test]
    fn categories() {
        assert!(check_category("premium-rate").is_ok());
        assert_eq!(check_text("reason", "Fake \"IRS\", 40 reports"), Ok(()));
        assert_eq!(check_text("source", "ticket-ü"), Ok(()));
        for (bad, code) in [
            ("a\0b", "U+0000"),
            ("a\tb", "U+0009"),
            ("\r\n", "U+000D"),
            ("\u{7f}", "U+007F"),
            ("\u{85}", "U+0085"),
        ] {
            let e = check_text("reason", bad).unwrap_err();
            assert!(
                e.starts_with(&format!("reason holds a control character ({code})")),
                "{e}"
            );
        }
        assert!(check_category("dno").is_ok());
        assert!(check_category("").is_err());
        assert!(check_category("Scam Call").is_err());
    }
}
