//! Caller IDs that cannot be real: not dialable, too long or short, in ranges no regulator has
//! allocated or that are reserved for drama and tests; a domestic number arriving from an
//! international gateway; and neighbour spoofing (the caller wears the callee's leading digits).
//!
//! Rule packs cover NANP (US/CA), GB, DE, ES and AU; other countries get only the E.164 shape
//! checks. Knows nothing of SIP, lists or attestation beyond the flag it is handed.

/// Why a caller ID is implausible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implausible {
    /// Characters other than digits and visual separators, or no digits at all.
    NotDialable,
    /// More than 15 digits (E.164's maximum).
    TooLong,
    /// Fewer digits than any country's numbers have.
    TooShort,
    /// A country code or range no one has allocated, or a length the country does not use.
    Unallocated,
    /// A range reserved for fiction and tests (NANP 555-01XX, Ofcom drama numbers, ACMA).
    Fictional,
}

impl Implausible {
    pub fn as_str(self) -> &'static str {
        match self {
            Implausible::NotDialable => "not-dialable",
            Implausible::TooLong => "too-long",
            Implausible::TooShort => "too-short",
            Implausible::Unallocated => "unallocated",
            Implausible::Fictional => "fictional",
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

/// Checks the raw caller ID as received (user part), before or without normalisation.
/// Visual separators (`-`, `.`, ` `, `(`, `)`) are allowed; a leading `+` is allowed.
pub fn check_raw(raw: &str) -> Option<Implausible> {
    let raw = raw.trim();
    let body = raw.strip_prefix('+').unwrap_or(raw);
    let mut digits = 0usize;
    for c in body.chars() {
        match c {
            '0'..='9' => digits += 1,
            '-' | '.' | ' ' | '(' | ')' => {}
            _ => return Some(Implausible::NotDialable),
        }
    }
    if digits == 0 {
        return Some(Implausible::NotDialable);
    }
    if digits > 15 {
        return Some(Implausible::TooLong);
    }
    None
}

/// Checks an E.164 number (`+` and digits) against the shape and the country rule packs.
pub fn check_e164(e164: &str) -> Option<Implausible> {
    let Some(d) = e164.strip_prefix('+') else {
        return Some(Implausible::NotDialable);
    };
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Implausible::NotDialable);
    }
    if d.len() > 15 {
        return Some(Implausible::TooLong);
    }
    if d.len() < 7 {
        return Some(Implausible::TooShort);
    }
    if d.starts_with('0') {
        return Some(Implausible::Unallocated);
    }
    if let Some(nsn) = d.strip_prefix('1') {
        return nanp(nsn);
    }
    if let Some(nsn) = d.strip_prefix("44") {
        return gb(e164, nsn);
    }
    if let Some(nsn) = d.strip_prefix("49") {
        return de(nsn);
    }
    if let Some(nsn) = d.strip_prefix("34") {
        return es(nsn);
    }
    if let Some(nsn) = d.strip_prefix("61") {
        return au(e164, nsn);
    }
    None
}

fn nanp(nsn: &str) -> Option<Implausible> {
    let b = nsn.as_bytes();
    if b.len() != 10 {
        return Some(Implausible::Unallocated);
    }
    let (npa, nxx, line) = (&nsn[..3], &nsn[3..6], &nsn[6..]);
    // NPA and NXX both start with 2-9 (N); N11 codes are service codes, not area codes or
    // exchanges; N9X area codes are held back for expansion of the plan.
    if b[0] < b'2' || b[3] < b'2' {
        return Some(Implausible::Unallocated);
    }
    if &npa[1..] == "11" || &nxx[1..] == "11" || b[1] == b'9' {
        return Some(Implausible::Unallocated);
    }
    if nxx == "555" && line.starts_with("01") {
        return Some(Implausible::Fictional);
    }
    None
}

fn gb(e164: &str, nsn: &str) -> Option<Implausible> {
    if GB_FICTIONAL.iter().any(|p| e164.starts_with(p)) {
        return Some(Implausible::Fictional);
    }
    let ok = match nsn.as_bytes().first() {
        // 01 numbers have 9 or 10 digits, 08 freephone/shared cost too; the rest have 10.
        Some(b'1') | Some(b'8') => (9..=10).contains(&nsn.len()),
        Some(b'2') | Some(b'3') | Some(b'5') | Some(b'7') | Some(b'9') => nsn.len() == 10,
        // 04 and 06 are unallocated; a 0 means the trunk prefix was left in.
        _ => false,
    };
    (!ok).then_some(Implausible::Unallocated)
}

fn de(nsn: &str) -> Option<Implausible> {
    let ok = match nsn.as_bytes().first() {
        None | Some(b'0') => false,
        // Mobile (015x, 016x, 017x) numbers have 10 or 11 digits.
        Some(b'1') if matches!(nsn.as_bytes().get(1), Some(b'5' | b'6' | b'7')) => {
            (10..=11).contains(&nsn.len())
        }
        // German geographic numbers vary in length (area code 2-5 digits, subscriber 3-8).
        Some(_) => (6..=13).contains(&nsn.len()),
    };
    (!ok).then_some(Implausible::Unallocated)
}

fn es(nsn: &str) -> Option<Implausible> {
    // Spanish numbers are 9 digits; 6/7 mobile, 8/9 geographic, 5 corporate and special; 0-4
    // begin no subscriber number.
    let ok = nsn.len() == 9 && matches!(nsn.as_bytes()[0], b'5'..=b'9');
    (!ok).then_some(Implausible::Unallocated)
}

fn au(e164: &str, nsn: &str) -> Option<Implausible> {
    if AU_FICTIONAL.iter().any(|p| e164.starts_with(p)) {
        return Some(Implausible::Fictional);
    }
    let ok = match nsn.as_bytes().first() {
        // 2, 3, 7, 8 geographic; 4 mobile; 5 location-independent: all 9 digits.
        Some(b'2' | b'3' | b'4' | b'5' | b'7' | b'8') => nsn.len() == 9,
        // 13 xx xx, 1300/1800 numbers.
        Some(b'1') => (6..=10).contains(&nsn.len()),
        _ => false,
    };
    (!ok).then_some(Implausible::Unallocated)
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
mod tests {
    use super::*;
    use Implausible::*;

    #[test]
    fn e164_shapes_per_country() {
        let cases: &[(&str, Option<Implausible>)] = &[
            // NANP (US/CA)
            ("+12027620143", None),
            ("+14163920199", None),
            ("+12125550100", Some(Fictional)),
            ("+13125550142", Some(Fictional)),
            ("+10125550143", Some(Unallocated)),
            ("+11125550143", Some(Unallocated)),
            ("+12021550143", Some(Unallocated)),
            ("+12020550143", Some(Unallocated)),
            ("+14115550143", Some(Unallocated)),
            ("+12024110143", Some(Unallocated)),
            ("+13955550143", Some(Unallocated)),
            ("+1202762014", Some(Unallocated)),
            // GB
            ("+442079460123", Some(Fictional)),
            ("+447700900123", Some(Fictional)),
            ("+441134960000", Some(Fictional)),
            ("+442071838750", None),
            ("+447911123456", None),
            ("+441632960001", Some(Fictional)),
            ("+4415242123456", Some(Unallocated)),
            ("+442071838", Some(Unallocated)),
            ("+440207183875", Some(Unallocated)),
            ("+444123456789", Some(Unallocated)),
            ("+446123456789", Some(Unallocated)),
            ("+44800123456", None),
            // DE
            ("+4930123456", None),
            ("+49301234567890", None),
            ("+491711234567", None),
            ("+4915112345678", None),
            ("+49171123", Some(Unallocated)),
            ("+49030123456", Some(Unallocated)),
            // ES
            ("+34612345678", None),
            ("+34912345678", None),
            ("+3491234567", Some(Unallocated)),
            ("+34112345678", Some(Unallocated)),
            // AU
            ("+61291234567", None),
            ("+61412345678", None),
            ("+61255501234", Some(Fictional)),
            ("+61491570156", Some(Fictional)),
            ("+611300123456", None),
            ("+6129123456", Some(Unallocated)),
            ("+61612345678", Some(Unallocated)),
            // Shape
            ("+1234567890123456", Some(TooLong)),
            ("+123456", Some(TooShort)),
            ("+0123456789", Some(Unallocated)),
            ("12027620143", Some(NotDialable)),
            ("+1202555O143", Some(NotDialable)),
            ("+33142685300", None),
        ];
        for (n, want) in cases {
            assert_eq!(check_e164(n), *want, "{n}");
        }
    }

    #[test]
    fn raw_caller_ids() {
        let cases: &[(&str, Option<Implausible>)] = &[
            ("+1 (202) 555-0143", None),
            ("020 7183 8750", None),
            ("0049.30.123456", None),
            ("2025550143;ext=1", Some(NotDialable)),
            ("12345678901234567", Some(TooLong)),
            ("+", Some(NotDialable)),
            ("*67", Some(NotDialable)),
        ];
        for (raw, want) in cases {
            assert_eq!(check_raw(raw), *want, "{raw}");
        }
    }

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
