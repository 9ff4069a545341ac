//! Caller IDs that cannot be real, after the Do-Not-Originate rules regulators require (FCC:
//! invalid, unallocated and unused numbers; Ofcom's, the Bundesnetzagentur's and ACMA's
//! equivalents): an emergency or service number, a short code, a length or a range the country's
//! numbering plan does not have, digits that cannot be dialled or numbers reserved for drama and
//! tests. Also a domestic number arriving from an international gateway, and neighbour spoofing
//! (the caller wears the callee's leading digits).
//!
//! Every country's plan comes from libphonenumber's metadata, compiled once at start into digit
//! automata ([`numbering`]); per call a caller id is judged by a table walk of at most 15 steps.
//! A finding is *firm* when the plan's structure or a fixed rule rules the number out, and
//! *doubtful* when only the range-by-range metadata does (a range opened after this build's
//! metadata looks the same), or when the country is not one of the configured strict countries.
//!
//! The caller arrives normalised (E.164, when the dialling plan could) and as received. The
//! received form is checked first, because short codes such as `911` or `000` never normalise;
//! when it did not normalise and is neither short nor international, it is read as a national
//! number of the callee's country (the callee is the network's own subscriber). Knows nothing of
//! SIP, lists, scores or attestation beyond the flag it is handed.

pub mod emergency;
pub mod numbering;

use self::numbering::{Fit, Numbering, SHORT_CODE_MAX};
use crate::screening::number::MAX_DIGITS;

/// Why a caller ID is implausible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implausible {
    /// Characters other than digits and visual separators, or no digits at all.
    NotDialable,
    /// More than 15 digits (E.164's maximum).
    TooLong,
    /// An emergency or public service number, which never places calls.
    EmergencyCaller,
    /// Shorter than any subscriber number of its country: a service or short code.
    ShortCode,
    /// A length the country's numbers (beginning with these digits) never have.
    WrongLength,
    /// A country code no country has, or a range the country's plan does not allocate.
    Unallocated,
    /// A range reserved for fiction and tests (NANP 555-01XX, Ofcom drama numbers, ACMA).
    Fictional,
}

impl Implausible {
    pub fn as_str(self) -> &'static str {
        match self {
            Implausible::NotDialable => "not-dialable",
            Implausible::TooLong => "too-long",
            Implausible::EmergencyCaller => "emergency-caller",
            Implausible::ShortCode => "short-code",
            Implausible::WrongLength => "wrong-length",
            Implausible::Unallocated => "unallocated",
            Implausible::Fictional => "fictional",
        }
    }
}

/// What is wrong with a caller id, and how sure that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCallerId {
    pub why: Implausible,
    /// False when only the range-by-range metadata, or a country outside the strict ones, says
    /// so: the number may be in a range opened since, and the finding should weigh little.
    pub firm: bool,
    /// The rest of the sentence `caller id "<id>" ...`: what is wrong, in words.
    pub detail: String,
}

impl BadCallerId {
    fn firm(why: Implausible, detail: String) -> BadCallerId {
        BadCallerId {
            why,
            firm: true,
            detail,
        }
    }
}

/// The country (ISO 3166 alpha-2) a number belongs to, for the countries with rule packs.
pub fn country_of(e164: &str) -> Option<&'static str> {
    let d = e164.strip_prefix('+')?;
    if let Some(nsn) = d.strip_prefix('1') {
        return Some(if nsn.len() >= 3 && CANADA_NPAS.contains(&&nsn[..3]) {
            "CA"
        } else {
            "US"
        });
    }
    [("44", "GB"), ("49", "DE"), ("34", "ES"), ("61", "AU")]
        .into_iter()
        .find(|(cc, _)| d.starts_with(cc))
        .map(|(_, c)| c)
}

/// Whether an E.164 number belongs to none of the `home` countries (ISO alpha-2). The NANP is
/// one numbering space: a Canadian number is domestic to a US deployment and the other way
/// round. Without home countries, or with one outside the rule packs (whose numbers this
/// cannot recognise), nothing is foreign.
pub fn is_foreign(e164: &str, home: &[String]) -> bool {
    let known = |h: &String| {
        ["US", "CA", "GB", "DE", "ES", "AU"]
            .iter()
            .any(|k| h.eq_ignore_ascii_case(k))
    };
    if home.is_empty() || !home.iter().all(known) || !e164.starts_with('+') {
        return false;
    }
    let nanp = |c: &str| c.eq_ignore_ascii_case("US") || c.eq_ignore_ascii_case("CA");
    match country_of(e164) {
        Some(c) => !home
            .iter()
            .any(|h| h.eq_ignore_ascii_case(c) || (nanp(h) && nanp(c))),
        None => true,
    }
}

/// Canadian area codes (CNAC), so that a Canadian domestic number can be told from a US one.
const CANADA_NPAS: &[&str] = &[
    "204", "226", "236", "249", "250", "257", "263", "289", "306", "343", "354", "365", "367",
    "368", "382", "403", "416", "418", "428", "431", "437", "438", "450", "460", "468", "474",
    "506", "514", "519", "548", "579", "581", "584", "587", "600", "604", "613", "622", "639",
    "647", "672", "683", "705", "709", "742", "753", "778", "780", "782", "807", "819", "825",
    "867", "873", "879", "902", "905", "942",
];

/// Ofcom's drama ranges (numbers reserved for TV, radio and tests), as E.164 prefixes.
const GB_FICTIONAL: &[&str] = &[
    "+447700900",
    "+442079460",
    "+441134960",
    "+441144960",
    "+441154960",
    "+441164960",
    "+441174960",
    "+441184960",
    "+441214960",
    "+441314960",
    "+441414960",
    "+441514960",
    "+441614960",
    "+442896496",
    "+442920180",
    "+441632960",
    "+448081570",
    "+449098790",
    "+443069990",
];

/// ACMA's numbers for fiction, as E.164 prefixes.
const AU_FICTIONAL: &[&str] = &[
    "+6125550",
    "+6135550",
    "+6175550",
    "+6185550",
    "+6127010",
    "+6137010",
    "+6177010",
    "+6187010",
    "+61491570",
    "+61491571",
    "+61491572",
    "+61491573",
    "+61491574",
    "+61491575",
    "+61491576",
    "+61491577",
    "+61491578",
    "+61491579",
];

/// User parts that mean "no number" (the caller withheld it, or the network lost it): the
/// anonymity rule's business, not a malformed number.
const NO_NUMBER: &[&str] = &[
    "anonymous",
    "unknown",
    "unavailable",
    "restricted",
    "private",
    "withheld",
];

/// International call prefixes a caller id may carry when written for dialling (`00` in most of
/// the world, `011` in NANP, `0011` in AU), longest first.
const INTERNATIONAL_PREFIXES: &[&[u8]] = &[b"0011", b"011", b"00"];

/// The caller id as received, reduced to its digits.
struct Received {
    digits: [u8; 32],
    len: usize,
    plus: bool,
}

impl Received {
    fn digits(&self) -> &[u8] {
        &self.digits[..self.len]
    }
}

enum Raw {
    Digits(Received),
    NoNumber,
    NotDialable(&'static str),
    TooLong(usize),
}

/// Reads the caller id as received: digits, visual separators (`-`, `.`, ` `, `(`, `)`) and a
/// leading `+`.
fn read_raw(raw: &str) -> Raw {
    let raw = raw.trim();
    let wordy = raw.as_bytes().first().is_some_and(u8::is_ascii_alphabetic);
    if wordy && NO_NUMBER.iter().any(|w| raw.eq_ignore_ascii_case(w)) {
        return Raw::NoNumber;
    }
    let (plus, body) = match raw.strip_prefix('+') {
        Some(b) => (true, b),
        None => (false, raw),
    };
    let mut r = Received {
        digits: [0; 32],
        len: 0,
        plus,
    };
    let mut count = 0usize;
    for b in body.bytes() {
        match b {
            b'0'..=b'9' => {
                if r.len < r.digits.len() {
                    r.digits[r.len] = b;
                    r.len += 1;
                }
                count += 1;
            }
            b'-' | b'.' | b' ' | b'(' | b')' => {}
            _ => return Raw::NotDialable("it has characters other than digits and separators"),
        }
    }
    if count == 0 {
        return Raw::NotDialable("it has no digits");
    }
    // Digits dialled after an international prefix are the E.164 number.
    let prefix = if plus {
        0
    } else {
        INTERNATIONAL_PREFIXES
            .iter()
            .find(|p| r.digits().starts_with(p) && count > p.len() + 3)
            .map_or(0, |p| p.len())
    };
    if count - prefix > MAX_DIGITS {
        return Raw::TooLong(count - prefix);
    }
    Raw::Digits(r)
}

/// The compiled checks: the numbering plans, which countries are judged strictly, and the
/// operator's own service callers. Built once with the signal state.
pub struct Checker {
    numbering: &'static Numbering,
    /// Country codes whose wrong lengths and unallocated ranges count as firm.
    strict: Vec<u16>,
    /// Caller ids (digits) this network's own services call from; never judged.
    service_callers: Vec<Vec<u8>>,
}

impl Checker {
    /// `strict_countries` are ISO 3166 alpha-2 codes; unknown ones are ignored here (the
    /// config's validation names them).
    pub fn new(strict_countries: &[String], service_callers: &[String]) -> Checker {
        let numbering = Numbering::get();
        let mut strict: Vec<u16> = strict_countries
            .iter()
            .filter_map(|c| numbering.plan_of_region(c).map(|p| p.cc()))
            .collect();
        strict.sort_unstable();
        strict.dedup();
        Checker {
            numbering,
            strict,
            service_callers: service_callers
                .iter()
                .map(|s| s.bytes().filter(u8::is_ascii_digit).collect())
                .filter(|d: &Vec<u8>| !d.is_empty())
                .collect(),
        }
    }

    /// Judges a caller: `caller` is its E.164 form when the dialling plan could normalise it,
    /// `raw` the caller id as received, `callee` the callee's E.164 form (whose country code is
    /// the network's). `None` when nothing is wrong.
    pub fn check(
        &self,
        caller: Option<&str>,
        raw: Option<&str>,
        callee: Option<&str>,
    ) -> Option<BadCallerId> {
        let received = match raw.map(read_raw) {
            None => None,
            Some(Raw::NoNumber) => return None,
            Some(Raw::NotDialable(why)) => {
                return Some(BadCallerId::firm(
                    Implausible::NotDialable,
                    format!("is not dialable: {why}"),
                ))
            }
            Some(Raw::TooLong(n)) => {
                return Some(BadCallerId::firm(
                    Implausible::TooLong,
                    format!("has {n} digits, more than the 15 any international number has"),
                ))
            }
            Some(Raw::Digits(r)) => Some(r),
        };
        if let Some(r) = &received {
            if self.service_callers.iter().any(|s| s == r.digits()) {
                return None;
            }
            // `911`, `000`: what the network carried, before any plan prefixed it.
            if !r.plus {
                if let Some(what) = emergency::reached(r.digits(), None) {
                    return Some(emergency_finding(&what));
                }
            }
        }
        if let Some(c) = caller {
            let d = c.strip_prefix('+').unwrap_or(c).as_bytes();
            let found = self.check_international(d)?;
            // The dialling plan's reading is one guess: a caller id written for dialling from
            // another country, or international without its `+`, may be valid read that way.
            if received
                .as_ref()
                .is_some_and(|r| !r.plus && self.valid_abroad(r.digits()))
            {
                return None;
            }
            return Some(found);
        }
        let r = received?;
        if r.plus {
            return self.check_international(r.digits());
        }
        self.check_unplaced(r.digits(), callee)
    }

    /// A caller id the dialling plan could not place, written without `+`.
    fn check_unplaced(&self, d: &[u8], callee: Option<&str>) -> Option<BadCallerId> {
        if d.len() <= SHORT_CODE_MAX {
            return Some(BadCallerId::firm(
                Implausible::ShortCode,
                format!(
                    "has only {} digit{}: a short code, not a subscriber number",
                    d.len(),
                    if d.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        if self.valid_abroad(d) {
            return None;
        }
        // Otherwise it is a national number of the network's own country, and wrong there.
        let home = callee.map(|c| c.strip_prefix('+').unwrap_or(c).as_bytes())?;
        let (plan, _) = self.numbering.plan_of(home)?;
        let nsn = plan
            .national_prefix()
            .and_then(|p| d.strip_prefix(p.as_bytes()))
            .unwrap_or(d);
        self.judge(plan, nsn)
    }

    /// Digits written without `+` that are a valid number when read as dialled abroad (after
    /// an international prefix) or as international without the `+` (as many trunks send it):
    /// a genuine caller the local plan could not read.
    fn valid_abroad(&self, d: &[u8]) -> bool {
        INTERNATIONAL_PREFIXES
            .iter()
            .filter_map(|p| d.strip_prefix(*p))
            .chain([d])
            .any(|digits| {
                digits.len() <= MAX_DIGITS
                    && self
                        .numbering
                        .plan_of(digits)
                        .is_some_and(|(p, n)| p.fit(&digits[n..]) == Fit::Valid)
            })
    }

    /// E.164 digits (without the `+`).
    fn check_international(&self, d: &[u8]) -> Option<BadCallerId> {
        if d.is_empty() {
            return Some(BadCallerId::firm(
                Implausible::NotDialable,
                "is not dialable: it has no digits".into(),
            ));
        }
        if d.len() > MAX_DIGITS {
            return Some(BadCallerId::firm(
                Implausible::TooLong,
                format!(
                    "has {} digits, more than the 15 any international number has",
                    d.len()
                ),
            ));
        }
        let Some((plan, cc_len)) = self.numbering.plan_of(d) else {
            let shown = String::from_utf8_lossy(&d[..d.len().min(3)]).into_owned();
            return Some(BadCallerId::firm(
                Implausible::Unallocated,
                format!("begins with no country's code (+{shown}...)"),
            ));
        };
        let nsn = &d[cc_len..];
        if let Some(reserve) = fictional(d) {
            return Some(BadCallerId::firm(
                Implausible::Fictional,
                format!("is in a range reserved for fiction and tests ({reserve})"),
            ));
        }
        if plan.cc() == 1 {
            if let Some(why) = nanp_structure(nsn) {
                return Some(BadCallerId {
                    why: Implausible::Unallocated,
                    firm: self.is_strict(1),
                    detail: format!("is not a NANP number: {why}"),
                });
            }
        }
        self.judge(plan, nsn)
    }

    fn is_strict(&self, cc: u16) -> bool {
        self.strict.binary_search(&cc).is_ok()
    }

    /// A national significant number under `plan`.
    fn judge(&self, plan: &numbering::Plan, nsn: &[u8]) -> Option<BadCallerId> {
        if let Some(what) = emergency::reached(nsn, Some(plan.regions())) {
            return Some(emergency_finding(&what));
        }
        let cc = plan.cc();
        let strict = self.is_strict(cc);
        let n = nsn.len();
        let begins = |k: usize| {
            let k = k.min(n);
            if k == 0 {
                format!("+{cc}")
            } else {
                format!("+{cc} {}", String::from_utf8_lossy(&nsn[..k]))
            }
        };
        // Only the plan's structure is certain; ranges are as of this build's metadata.
        let hedge = |firm: bool| match (firm, strict) {
            (true, _) => String::new(),
            (false, true) => " (as far as this build's numbering metadata knows)".to_string(),
            (false, false) => format!(" (+{cc} is not a strict country, and its metadata may lag)"),
        };
        match plan.fit(nsn) {
            Fit::Valid => None,
            Fit::ShortCode { shortest } => Some(BadCallerId::firm(
                Implausible::ShortCode,
                format!(
                    "is a short code: {n} digits after +{cc}, where numbers that place calls and begin the same way have at least {shortest}"
                ),
            )),
            Fit::WrongLength {
                prefix,
                lengths,
                firm,
            } => {
                let firm = firm && strict;
                Some(BadCallerId {
                    why: Implausible::WrongLength,
                    firm,
                    detail: format!(
                        "has {n} digits after +{cc}, but numbers beginning {} have {lengths}{}",
                        begins(prefix),
                        hedge(firm)
                    ),
                })
            }
            Fit::Unallocated { prefix, firm } => {
                let firm = firm && strict;
                Some(BadCallerId {
                    why: Implausible::Unallocated,
                    firm,
                    detail: format!(
                        "is in a range the numbering plan of +{cc} does not allocate: no number begins {}{}",
                        begins(prefix),
                        hedge(firm)
                    ),
                })
            }
        }
    }
}

fn emergency_finding(what: &str) -> BadCallerId {
    BadCallerId::firm(
        Implausible::EmergencyCaller,
        format!("is {what}, which never places calls"),
    )
}

/// A reserved range for fiction and tests, by name.
fn fictional(d: &[u8]) -> Option<&'static str> {
    let mut buf = [0u8; 16];
    buf[0] = b'+';
    let n = d.len().min(15);
    buf[1..=n].copy_from_slice(&d[..n]);
    let e164 = std::str::from_utf8(&buf[..=n]).ok()?;
    if let Some(nsn) = e164.strip_prefix("+1") {
        if nsn.len() == 10 && &nsn[3..6] == "555" && nsn[6..].starts_with("01") {
            return Some("NANP 555-0100 to 555-0199");
        }
    }
    // Only the tables of the number's own country are scanned.
    if e164.starts_with("+44") && GB_FICTIONAL.iter().any(|p| e164.starts_with(p)) {
        return Some("Ofcom's drama numbers");
    }
    if e164.starts_with("+61") && AU_FICTIONAL.iter().any(|p| e164.starts_with(p)) {
        return Some("ACMA's numbers for fiction");
    }
    None
}

/// NANP structure (NANPA, FCC): area code (NPA) and exchange (NXX) both begin with 2-9; N11
/// codes are service codes, never an area code or exchange; N9X area codes are held back for
/// the plan's expansion. These rules hold across every NANP region and do not change with
/// allocations.
fn nanp_structure(nsn: &[u8]) -> Option<&'static str> {
    if nsn.len() != 10 {
        return None;
    }
    if nsn[0] < b'2' {
        return Some("no area code begins with 0 or 1");
    }
    if nsn[1] == b'1' && nsn[2] == b'1' {
        return Some("an N11 code is a service code, not an area code");
    }
    if nsn[1] == b'9' {
        return Some("N9X area codes are reserved for expanding the plan");
    }
    if nsn[3] < b'2' {
        return Some("no exchange code begins with 0 or 1");
    }
    if nsn[4] == b'1' && nsn[5] == b'1' {
        return Some("an N11 code is a service code, not an exchange");
    }
    None
}

/// Whether the caller looks like the callee's neighbour: same country, same length, and all but
/// the last `tail` digits equal (for NANP with `tail` 4: the same NPA-NXX). Equal numbers are not
/// neighbours (that is a call to oneself, another matter).
pub fn is_neighbour(caller: &str, callee: &str, tail: usize) -> bool {
    if caller == callee || caller.len() != callee.len() || caller.len() <= tail + 4 {
        return false;
    }
    let keep = caller.len() - tail;
    caller.as_bytes()[..keep] == callee.as_bytes()[..keep] && country_code_len(caller) + 2 <= keep
}

fn country_code_len(e164: &str) -> usize {
    // The leading digits of the rule-pack countries; elsewhere assume the longest (3), which
    // only makes the neighbour rule more careful.
    let d = e164.trim_start_matches('+');
    if d.starts_with('1') || d.starts_with('7') {
        1
    } else if [
        "44", "49", "34", "61", "33", "39", "31", "32", "41", "43", "45", "46", "47", "48",
    ]
    .iter()
    .any(|cc| d.starts_with(cc))
    {
        2
    } else {
        3
    }
}

#[cfg(test)]
mod cases;

#[cfg(test)]
mod tests {
    #[test]
    fn foreign_is_outside_every_home_country_and_the_nanp_is_one_space() {
        let home = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            !is_foreign("+14165550100", &home(&["US"])),
            "Toronto, to a US deployment"
        );
        assert!(!is_foreign("+12025550100", &home(&["CA"])));
        assert!(is_foreign("+447911123456", &home(&["US"])));
        assert!(is_foreign("+221771234567", &home(&["GB", "DE"])));
        assert!(!is_foreign("+4915112345678", &home(&["GB", "DE"])));
        assert!(
            !is_foreign("+221771234567", &home(&[])),
            "no home: cannot tell"
        );
        assert!(
            !is_foreign("+33612345678", &home(&["FR"])),
            "no rule pack for FR"
        );
        assert!(!is_foreign("0201234567", &home(&["GB"])), "not E.164");
    }

    use super::*;

    #[test]
    fn countries_and_neighbours() {
        let countries = [
            ("+12027620143", Some("US")),
            ("+14163920199", Some("CA")),
            ("+16045550123", Some("CA")),
            ("+442071838750", Some("GB")),
            ("+4930123456", Some("DE")),
            ("+34912345678", Some("ES")),
            ("+61291234567", Some("AU")),
            ("+33142685300", None),
        ];
        for (n, want) in countries {
            assert_eq!(country_of(n), want, "{n}");
        }
        let neighbours = [
            ("+12027620143", "+12027629876", 4, true),
            ("+12027630143", "+12027629876", 4, false),
            ("+12027620143", "+12027620143", 4, false),
            ("+442071838750", "+442071831234", 4, true),
            ("+447911123456", "+442071831234", 4, false),
            ("+34912345678", "+34912349999", 4, true),
            ("+61291234567", "+61291230000", 4, true),
            ("+4930123456", "+4930129999", 4, true),
            ("+4930123456", "+493012345", 4, false),
            ("+1202555", "+1202556", 4, false),
        ];
        for (a, b, tail, want) in neighbours {
            assert_eq!(is_neighbour(a, b, tail), want, "{a} {b}");
        }
    }
}
