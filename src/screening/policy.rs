//! Screening policy: the `[screening]` config section and its compiled form.
//!
//! Says how numbers are dialled in the default country, what to do with anonymous callers, and
//! which callee numbers are emergency services that must never be blocked.
//!
//! Knows nothing of lists, SIP or where the config text came from.

use serde::{Deserialize, Serialize};

use super::number::{BareDigits, Number, NumberPlan};

/// What to do with a caller who withholds their identity (RFC 3325 `Privacy: id`, or an
/// anonymous From).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousPolicy {
    /// Screen as any other call without a number.
    #[default]
    Pass,
    /// Warn the callee.
    Warn,
    /// Refuse the call; the proxy answers `433 Anonymity Disallowed` (RFC 5079).
    Reject,
}

/// The `[screening]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScreeningConfig {
    /// ISO 3166 code of the country whose dialling plan applies to numbers without `+`:
    /// one of US, CA, GB, DE, ES, AU.
    pub default_country: String,
    /// Override the plan's country calling code (digits).
    pub country_code: Option<String>,
    /// Override the plan's national trunk prefix; `""` means the country has none.
    pub trunk_prefix: Option<String>,
    /// Override the plan's international call prefix (digits).
    pub international_prefix: Option<String>,
    /// How digits written with neither `+`, international prefix nor trunk prefix are read:
    /// `national` (a number of the default country) or `international` (the country code is
    /// already there, only the `+` is missing).
    pub bare_digits: BareDigits,
    /// `pass`, `warn` or `reject` anonymous callers.
    pub anonymous: AnonymousPolicy,
    /// Callee numbers (as dialled, digits only) that are never blocked or warned. When absent,
    /// the default country's emergency numbers plus 112 and 911.
    pub emergency_numbers: Option<Vec<String>>,
}

impl Default for ScreeningConfig {
    fn default() -> Self {
        ScreeningConfig {
            default_country: "US".into(),
            country_code: None,
            trunk_prefix: None,
            international_prefix: None,
            bare_digits: BareDigits::National,
            anonymous: AnonymousPolicy::Pass,
            emergency_numbers: None,
        }
    }
}

/// Emergency (and must-reach crisis) numbers of a country, as dialled there.
pub fn default_emergency_numbers(iso: &str) -> &'static [&'static str] {
    match iso.to_ascii_uppercase().as_str() {
        // 988 is the US/CA Suicide & Crisis Lifeline.
        "US" | "CA" => &["911", "112", "988"],
        "GB" | "UK" => &["999", "112"],
        // 116117 is the medical on-call service.
        "DE" => &["110", "112", "116117"],
        "ES" => &["112", "091", "092", "061", "062", "080", "085"],
        // 106 is the text-relay emergency number.
        "AU" => &["000", "112", "106"],
        _ => &["112", "911"],
    }
}

fn digits_only(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl ScreeningConfig {
    /// Every problem with this section, each as "what is wrong, what was expected".
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if NumberPlan::for_country(&self.default_country).is_none() {
            problems.push(format!(
                "screening.default_country {:?} has no built-in number plan; expected one of {}",
                self.default_country,
                NumberPlan::KNOWN_COUNTRIES.join(", ")
            ));
        }
        if let Some(cc) = &self.country_code {
            if !digits_only(cc) || cc.len() > 3 || cc.starts_with('0') {
                problems.push(format!(
                    "screening.country_code {cc:?} is not a country calling code; expected 1 to 3 digits not starting with 0"
                ));
            }
        }
        if let Some(t) = &self.trunk_prefix {
            if !t.is_empty() && (!digits_only(t) || t.len() > 2) {
                problems.push(format!(
                    "screening.trunk_prefix {t:?} is not a trunk prefix; expected \"\" or 1 to 2 digits"
                ));
            }
        }
        if let Some(i) = &self.international_prefix {
            if !digits_only(i) || i.len() > 4 {
                problems.push(format!(
                    "screening.international_prefix {i:?} is not an international prefix; expected 1 to 4 digits"
                ));
            }
        }
        for e in self.emergency_numbers.iter().flatten() {
            if !digits_only(e) || e.len() > 8 {
                problems.push(format!(
                    "screening.emergency_numbers entry {e:?} is not a short number; expected 1 to 8 digits"
                ));
            }
        }
        problems
    }
}

/// The compiled `[screening]` section [`crate::screening::Engine::decide`] uses.
#[derive(Debug, Clone)]
pub struct ScreeningPolicy {
    pub plan: NumberPlan,
    pub anonymous: AnonymousPolicy,
    /// Emergency numbers as dialled (digits).
    emergency: Vec<String>,
    /// The same numbers in international form with the plan's country code (`+1911`).
    emergency_e164: Vec<Number>,
}

impl ScreeningPolicy {
    /// Compile a section that has passed [`ScreeningConfig::validate`] (which refuses a country
    /// without a built-in plan; were one to get here, the NANP plan stands in).
    pub fn from_config(c: &ScreeningConfig) -> ScreeningPolicy {
        let mut plan = NumberPlan::for_country(&c.default_country).unwrap_or_else(nanp);
        if let Some(cc) = &c.country_code {
            plan.country_code = cc.clone();
        }
        if let Some(t) = &c.trunk_prefix {
            plan.trunk_prefix = (!t.is_empty()).then(|| t.clone());
        }
        if let Some(i) = &c.international_prefix {
            plan.international_prefix = i.clone();
        }
        plan.bare_digits = c.bare_digits;
        let emergency: Vec<String> = match &c.emergency_numbers {
            Some(list) => list.clone(),
            None => default_emergency_numbers(&c.default_country)
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let emergency_e164 = emergency
            .iter()
            .filter_map(|e| Number::from_digits(format!("{}{e}", plan.country_code).as_bytes()))
            .collect();
        ScreeningPolicy {
            plan,
            anonymous: c.anonymous,
            emergency,
            emergency_e164,
        }
    }

    /// Is this callee an emergency number? `raw` is compared digit by digit ignoring visual
    /// separators, without allocating; `number` is compared to `+<cc><code>`.
    pub fn is_emergency(&self, raw: &str, number: Option<Number>) -> bool {
        if let Some(n) = number {
            if self.emergency_e164.contains(&n) {
                return true;
            }
        }
        let digits = || {
            raw.trim()
                .bytes()
                .filter(|b| !matches!(b, b'-' | b'.' | b'(' | b')' | b' '))
        };
        if digits().any(|b| !b.is_ascii_digit()) {
            return false;
        }
        self.emergency.iter().any(|e| digits().eq(e.bytes()))
    }

    /// The emergency numbers in force.
    pub fn emergency_numbers(&self) -> &[String] {
        &self.emergency
    }
}

/// The US and Canada's plan, spelt out so that it needs no lookup.
fn nanp() -> NumberPlan {
    NumberPlan {
        country_code: "1".into(),
        trunk_prefix: Some("1".into()),
        international_prefix: "011".into(),
        national_len: (10, 10),
        bare_digits: BareDigits::National,
    }
}

impl Default for ScreeningPolicy {
    fn default() -> Self {
        ScreeningPolicy::from_config(&ScreeningConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply() {
        let c = ScreeningConfig {
            default_country: "gb".into(),
            trunk_prefix: Some(String::new()),
            international_prefix: Some("010".into()),
            ..Default::default()
        };
        let p = ScreeningPolicy::from_config(&c);
        assert_eq!(p.plan.country_code, "44");
        assert_eq!(p.plan.trunk_prefix, None);
        assert_eq!(p.plan.international_prefix, "010");
        assert_eq!(p.emergency_numbers(), ["999", "112"]);
    }

    #[test]
    fn validate_reports_every_problem() {
        let c = ScreeningConfig {
            default_country: "FR".into(),
            country_code: Some("0x".into()),
            trunk_prefix: Some("abc".into()),
            international_prefix: Some("".into()),
            emergency_numbers: Some(vec!["91 1".into()]),
            ..Default::default()
        };
        let p = c.validate();
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p[0].contains("expected one of US, CA, GB, DE, ES, AU"));
    }

    #[test]
    fn emergency_callees() {
        let us = ScreeningPolicy::default();
        let au = ScreeningPolicy::from_config(&ScreeningConfig {
            default_country: "AU".into(),
            ..Default::default()
        });
        // (policy, raw callee, is emergency)
        let cases = [
            (&us, "911", true),
            (&us, "9-1-1", true),
            (&us, "+1911", true),
            (&us, "112", true),
            (&us, "988", true),
            (&us, "9110", false),
            (&us, "2025550143", false),
            (&us, "", false),
            (&us, "sos", false),
            (&au, "000", true),
            (&au, "+61000", true),
            (&au, "911", false),
        ];
        for (p, raw, want) in cases {
            let n = p.plan.normalise(raw).or_else(|| Number::parse_e164(raw));
            assert_eq!(p.is_emergency(raw, n), want, "{raw:?}");
        }
    }
}
