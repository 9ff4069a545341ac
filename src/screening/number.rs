//! Telephone numbers in E.164 form, and the national dialling plans needed to get there.
//!
//! A caller or callee arrives as whatever string the network carried: `+12025550143`,
//! `011 44 20 7946 0018`, `(202) 555-0143`, `020 7946 0018`. [`NumberPlan::normalise`] turns it
//! into a [`Number`] (`+` and at most 15 digits) using the default country's country code,
//! national trunk prefix and international prefix, or returns `None` when it cannot. `None` is not
//! an error for the call: the call is screened without a number, never dropped for it.
//!
//! Knows nothing of SIP URIs (the caller of this module extracts the user part) nor of lists.

use std::fmt;

/// An E.164 number held as its digits in a `u64` plus the digit count, so that it is `Copy`,
/// hashes in one step and needs no allocation on the hot path. E.164 numbers never start with
/// `0`, so the value alone is unique; the length is kept for prefix arithmetic and display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Number {
    value: u64,
    len: u8,
}

/// Longest E.164 number, in digits (ITU-T E.164 section 6).
pub const MAX_DIGITS: usize = 15;

pub(crate) const POW10: [u64; 16] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
];

impl Number {
    /// From the digits after the `+`. `None` unless 1 to 15 ASCII digits not starting with `0`.
    pub fn from_digits(digits: &[u8]) -> Option<Number> {
        if digits.is_empty() || digits.len() > MAX_DIGITS || digits[0] == b'0' {
            return None;
        }
        let mut value = 0u64;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u64::from(d - b'0');
        }
        Some(Number {
            value,
            len: digits.len() as u8,
        })
    }

    /// From an integer value and its digit count; `None` unless the value has exactly `len`
    /// digits (so no leading zero) and `len` is 1 to 15.
    pub fn from_value(value: u64, len: usize) -> Option<Number> {
        if len == 0 || len > MAX_DIGITS || value >= POW10[len] || value < POW10[len - 1] {
            return None;
        }
        Some(Number {
            value,
            len: len as u8,
        })
    }

    /// Parse the strict E.164 form `+` then digits, nothing else.
    pub fn parse_e164(s: &str) -> Option<Number> {
        s.strip_prefix('+')
            .and_then(|d| Number::from_digits(d.as_bytes()))
    }

    /// The digits as an integer (no leading zero, so unique per number).
    pub fn value(self) -> u64 {
        self.value
    }

    /// How many digits (1 to 15).
    pub fn len(self) -> usize {
        usize::from(self.len)
    }

    /// Never true: a number has at least one digit. Present for clippy's `len` convention.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The first `n` digits as an integer (`n` clamped to the length).
    pub fn leading(self, n: usize) -> u64 {
        let n = n.min(self.len());
        self.value / POW10[self.len() - n]
    }

    /// The digit at position `i` (0 is the first after the `+`).
    pub fn digit(self, i: usize) -> u8 {
        if i >= self.len() {
            return 0;
        }
        ((self.value / POW10[self.len() - 1 - i]) % 10) as u8
    }

    /// Writes `+digits` into a stack buffer and returns it with its length; lets the regex
    /// stage and the decision log use the text form without allocating.
    pub fn to_buf(self) -> ([u8; 16], usize) {
        let mut buf = [0u8; 16];
        buf[0] = b'+';
        let mut v = self.value;
        for i in (1..=self.len()).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        (buf, self.len() + 1)
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (buf, n) = self.to_buf();
        // The buffer holds only ASCII written above.
        f.write_str(std::str::from_utf8(&buf[..n]).unwrap_or("+"))
    }
}

/// How digits written without `+`, international prefix or trunk prefix are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareDigits {
    /// As a national number of the default country (`2025550143` in the US), falling back to
    /// the international form when they start with our own country code and the national
    /// length does not fit.
    #[default]
    National,
    /// As an international number without its `+` (`4930123456` is `+4930123456`): what many
    /// trunks and number databases send, where "plain digits" already carry the country code.
    International,
}

/// How numbers are dialled in the default country: what `0...`, `00...` and bare digits mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPlan {
    /// Country calling code digits, e.g. `"1"`, `"44"`.
    pub country_code: String,
    /// National trunk prefix dialled before an area code (`"0"` in GB, `"1"` in NANP), if any.
    pub trunk_prefix: Option<String>,
    /// International call prefix (`"011"` in NANP, `"00"` in most of Europe, `"0011"` in AU).
    pub international_prefix: String,
    /// Shortest and longest national significant number (digits after the country code) that a
    /// nationally dialled number may have; outside this range it does not normalise.
    pub national_len: (usize, usize),
    /// How digits with neither prefix are read.
    pub bare_digits: BareDigits,
}

impl NumberPlan {
    /// The built-in plan for an ISO 3166 alpha-2 country code (case-insensitive).
    pub fn for_country(iso: &str) -> Option<NumberPlan> {
        let (cc, trunk, intl, min, max) = match iso.to_ascii_uppercase().as_str() {
            // NANP: 10-digit national numbers, "1" as trunk prefix, 011 to dial out.
            "US" | "CA" => ("1", Some("1"), "011", 10, 10),
            // UK: Ofcom numbering, 7 (0800 1111 style) to 10 digits after the 0.
            "GB" | "UK" => ("44", Some("0"), "00", 7, 10),
            // Germany: variable-length area codes, BNetzA allows up to 13 digits.
            "DE" => ("49", Some("0"), "00", 5, 13),
            // Spain: closed 9-digit plan, no trunk prefix.
            "ES" => ("34", None, "00", 9, 9),
            // Australia: 9-digit geographic/mobile, 1300/1800 are 10 digits, 13xx xx are 6.
            "AU" => ("61", Some("0"), "0011", 6, 10),
            _ => return None,
        };
        Some(NumberPlan {
            country_code: cc.to_string(),
            trunk_prefix: trunk.map(str::to_string),
            international_prefix: intl.to_string(),
            national_len: (min, max),
            bare_digits: BareDigits::National,
        })
    }

    /// ISO codes [`NumberPlan::for_country`] knows.
    pub const KNOWN_COUNTRIES: &'static [&'static str] = &["US", "CA", "GB", "DE", "ES", "AU"];

    /// Normalise a caller or callee string to E.164, or `None` when it is not a number this plan
    /// can place. Visual separators (`-`, `.`, `(`, `)`, space) are ignored; any other character
    /// means "not a number". Never panics.
    pub fn normalise(&self, raw: &str) -> Option<Number> {
        let mut buf = [0u8; 32];
        let mut n = 0usize;
        let mut plus = false;
        let raw = raw.trim().as_bytes();
        let mut i = 0usize;
        while i < raw.len() {
            let b = raw[i];
            // `+44 (0)20 ...`: the bracketed trunk prefix is written for national callers only.
            if plus && raw[i..].starts_with(b"(0)") {
                i += 3;
                continue;
            }
            i += 1;
            match b {
                b'0'..=b'9' => {
                    if n == buf.len() {
                        return None;
                    }
                    buf[n] = b;
                    n += 1;
                }
                b'+' if i == 1 => plus = true,
                b'-' | b'.' | b'(' | b')' | b' ' => {}
                _ => return None,
            }
        }
        let digits = &buf[..n];
        if digits.is_empty() {
            return None;
        }
        if plus {
            return Number::from_digits(digits);
        }
        let intl = self.international_prefix.as_bytes();
        if !intl.is_empty() && digits.starts_with(intl) {
            return Number::from_digits(&digits[intl.len()..]);
        }
        if let Some(trunk) = self.trunk_prefix.as_deref().map(str::as_bytes) {
            if !trunk.is_empty() && digits.starts_with(trunk) {
                let national = &digits[trunk.len()..];
                if self.national_ok(national.len()) {
                    return self.national(national);
                }
            }
        }
        if self.bare_digits == BareDigits::International {
            return Number::from_digits(digits);
        }
        if self.national_ok(digits.len()) {
            return self.national(digits);
        }
        // Many trunks send the international form without its `+` (`442079460018`); accept it
        // when it carries our own country code and a national number of a plausible length.
        let cc = self.country_code.as_bytes();
        if digits.starts_with(cc) && self.national_ok(digits.len() - cc.len()) {
            return Number::from_digits(digits);
        }
        None
    }

    fn national_ok(&self, len: usize) -> bool {
        len >= self.national_len.0 && len <= self.national_len.1
    }

    fn national(&self, national: &[u8]) -> Option<Number> {
        let cc = self.country_code.as_bytes();
        let mut full = [0u8; 32];
        let total = cc.len() + national.len();
        if total > full.len() {
            return None;
        }
        full[..cc.len()].copy_from_slice(cc);
        full[cc.len()..total].copy_from_slice(national);
        Number::from_digits(&full[..total])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_real_number_shapes() {
        // (country, input, expected E.164 or None)
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("US", "+12025550143", Some("+12025550143")),
            ("US", "+1 (202) 555-0143", Some("+12025550143")),
            ("US", "(202) 555-0143", Some("+12025550143")),
            ("US", "202.555.0143", Some("+12025550143")),
            ("US", "2025550143", Some("+12025550143")),
            ("US", "1-202-555-0143", Some("+12025550143")),
            ("US", "12025550143", Some("+12025550143")),
            ("US", "011 44 20 7946 0018", Some("+442079460018")),
            ("US", "01144 20 7946 0018", Some("+442079460018")),
            ("US", "1-800-642-7676", Some("+18006427676")),
            ("US", "555-0143", None),
            ("US", "911", None),
            ("US", "anonymous", None),
            ("US", "", None),
            ("US", "+", None),
            ("US", "+0123", None),
            ("US", "+1234567890123456", None),
            ("US", "2025550143;ext=1", None),
            ("US", "++12025550143", None),
            ("US", "12+025550143", None),
            ("CA", "(416) 555-0199", Some("+14165550199")),
            ("GB", "020 7946 0018", Some("+442079460018")),
            ("GB", "07700 900123", Some("+447700900123")),
            ("GB", "+44 (0)20 7946 0018", Some("+442079460018")),
            ("GB", "0044 20 7946 0018", Some("+442079460018")),
            ("GB", "00 1 202 555 0143", Some("+12025550143")),
            ("GB", "442079460018", Some("+442079460018")),
            ("GB", "0800 1111", Some("+448001111")),
            ("GB", "0909 8790000", Some("+449098790000")),
            ("DE", "030 12345678", Some("+493012345678")),
            ("DE", "0049 30 12345678", Some("+493012345678")),
            ("DE", "0151 23456789", Some("+4915123456789")),
            ("DE", "+49 (0)30 12345678", Some("+493012345678")),
            ("DE", "0900 5 123456", Some("+499005123456")),
            ("ES", "912 345 678", Some("+34912345678")),
            ("ES", "+34 612 34 56 78", Some("+34612345678")),
            ("ES", "0034 912345678", Some("+34912345678")),
            ("ES", "34912345678", Some("+34912345678")),
            ("ES", "91234567", None),
            ("AU", "(02) 9876 5432", Some("+61298765432")),
            ("AU", "0412 345 678", Some("+61412345678")),
            ("AU", "1300 975 707", Some("+611300975707")),
            ("AU", "0011 44 20 7946 0018", Some("+442079460018")),
            ("AU", "+61 2 9876 5432", Some("+61298765432")),
        ];
        for (cc, input, want) in cases {
            let plan = NumberPlan::for_country(cc).unwrap();
            let got = plan.normalise(input).map(|n| n.to_string());
            assert_eq!(got.as_deref(), *want, "{cc} {input:?}");
        }
    }

    #[test]
    fn bare_digits_read_as_international() {
        let mut de = NumberPlan::for_country("DE").unwrap();
        de.bare_digits = BareDigits::International;
        // (input, expected): prefixes keep their meaning, only bare digits change.
        let cases: &[(&str, Option<&str>)] = &[
            ("4930123456789", Some("+4930123456789")),
            ("442079460018", Some("+442079460018")),
            ("12025550143", Some("+12025550143")),
            ("030 12345678", Some("+493012345678")),
            ("0049 30 12345678", Some("+493012345678")),
            ("+4930123456", Some("+4930123456")),
            ("1234567890123456", None),
            ("anonymous", None),
        ];
        for (input, want) in cases {
            let got = de.normalise(input).map(|n| n.to_string());
            assert_eq!(got.as_deref(), *want, "{input:?}");
        }
        // The national reading (the default) takes the same digits as a German number.
        let national = NumberPlan::for_country("DE").unwrap();
        assert_eq!(
            national
                .normalise("4930123456")
                .map(|n| n.to_string())
                .as_deref(),
            Some("+494930123456")
        );
    }

    #[test]
    fn digit_arithmetic() {
        let n = Number::parse_e164("+4420790123").unwrap();
        assert_eq!(n.len(), 10);
        assert_eq!(n.leading(4), 4420);
        assert_eq!(n.leading(40), 4420790123);
        assert_eq!(n.digit(0), 4);
        assert_eq!(n.digit(9), 3);
        assert_eq!(n.digit(10), 0);
        assert_eq!(Number::from_value(4420790123, 10), Some(n));
        assert_eq!(Number::from_value(4420790123, 11), None);
        assert_eq!(Number::from_value(4420790123, 9), None);
        assert_eq!(Number::from_value(0, 1), None);
        assert_eq!(Number::from_value(7, 0), None);
        let max = Number::parse_e164("+999999999999999").unwrap();
        assert_eq!(max.to_string(), "+999999999999999");
    }

    #[test]
    fn unknown_country_has_no_plan() {
        assert!(NumberPlan::for_country("XX").is_none());
        for c in NumberPlan::KNOWN_COUNTRIES {
            assert!(NumberPlan::for_country(c).is_some(), "{c}");
        }
    }
}
