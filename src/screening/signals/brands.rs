//! Protected brands: who may show a brand's name as the caller, and which numbers only ever
//! receive calls. Loaded from `config/brands.toml` (text handed in; this module reads no files).
//!
//! Knows nothing of lists, SIP or where the display name came from.

use std::fmt;

use serde::Deserialize;

use super::text::skeleton;
use crate::screening::entry::check_category;
use crate::screening::Action;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrandsFile {
    #[serde(default, rename = "brand")]
    brands: Vec<BrandSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrandSection {
    name: String,
    /// What the brand says about calling its customers, in short.
    statement: String,
    /// Where the brand (or a regulator) says so.
    sources: Vec<String>,
    /// `warn` or `block` for a display name claiming the brand from a number not its own.
    #[serde(default = "default_action")]
    action: String,
    /// Display-name phrases that claim the brand (any spelling: they are folded).
    patterns: Vec<String>,
    /// Numbers or prefixes (`+1425*`) the brand registered for its outbound calls.
    #[serde(default)]
    outbound: Vec<String>,
    /// Numbers that only receive calls (support lines): a call from one is spoofed.
    #[serde(default)]
    inbound_only: Vec<String>,
    /// The scam category a claim of this brand belongs to (`tech-support`, `bank`, ...). It is
    /// the reason's category, so the announcement can pick `<lang>-<category>.wav`.
    #[serde(default = "default_category")]
    category: String,
}

fn line_at(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn default_action() -> String {
    "warn".into()
}

fn default_category() -> String {
    "impersonation".into()
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
    pub statement: String,
    pub sources: Vec<String>,
    pub action: Action,
    patterns: Vec<String>,
    outbound: Vec<NumberPattern>,
    pub inbound_only: Vec<String>,
    pub category: String,
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
    /// Whether the brand registered `caller` for its outbound calls.
    pub fn calls_from(&self, caller: Option<&str>) -> bool {
        caller.is_some_and(|c| self.outbound.iter().any(|p| p.matches(c)))
    }
}

/// Every protected brand, with folded patterns ready for matching.
#[derive(Debug, Clone, Default)]
pub struct Brands {
    brands: Vec<Brand>,
}

impl Brands {
    /// Parses the text of a brands file; `file` only names it in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Brands, BrandsError> {
        let err = |line: usize, message: String| BrandsError {
            file: file.into(),
            line,
            message,
        };
        let parsed: BrandsFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_at(text, s.start)).unwrap_or(0);
            err(line, e.message().to_string())
        })?;
        let line_of = |needle: &str| text.find(needle).map(|at| line_at(text, at)).unwrap_or(0);
        let mut brands = Vec::with_capacity(parsed.brands.len());
        for b in parsed.brands {
            let at = line_of(&format!("\"{}\"", b.name));
            let action = match b.action.as_str() {
                "warn" => Action::Warn,
                "block" => Action::Block,
                other => {
                    return Err(err(
                        at,
                        format!(
                            "brand {}: action must be warn or block, not {other:?}",
                            b.name
                        ),
                    ))
                }
            };
            if b.sources.is_empty() {
                return Err(err(
                    at,
                    format!(
                        "brand {}: sources must name where the brand says it does not call",
                        b.name
                    ),
                ));
            }
            // The category names a prompt file and becomes a reason's category: the list
            // format's rule for it applies.
            if let Err(e) = check_category(&b.category) {
                return Err(err(line_of(&b.category), format!("brand {}: {e}", b.name)));
            }
            let mut patterns = Vec::with_capacity(b.patterns.len());
            for p in &b.patterns {
                let sk = skeleton(p);
                // A pattern folding to a couple of letters would match half the phone book.
                if sk.len() < 4 {
                    return Err(err(
                        line_of(p),
                        format!(
                            "brand {}: pattern {p:?} is too short to match safely",
                            b.name
                        ),
                    ));
                }
                patterns.push(sk);
            }
            let mut outbound = Vec::new();
            for n in &b.outbound {
                outbound.push(NumberPattern::parse(n).ok_or_else(|| {
                    err(
                        line_of(n),
                        format!(
                            "brand {}: outbound {n:?} is not +digits or +digits*",
                            b.name
                        ),
                    )
                })?);
            }
            for n in &b.inbound_only {
                match NumberPattern::parse(n) {
                    Some(NumberPattern::Exact(_)) => {}
                    _ => {
                        return Err(err(
                            line_of(n),
                            format!(
                                "brand {}: inbound_only {n:?} is not an E.164 number",
                                b.name
                            ),
                        ))
                    }
                }
            }
            brands.push(Brand {
                name: b.name,
                statement: b.statement,
                sources: b.sources,
                action,
                patterns,
                outbound,
                inbound_only: b
                    .inbound_only
                    .iter()
                    .map(|s| s.trim().to_string())
                    .collect(),
                category: b.category,
            });
        }
        Ok(Brands { brands })
    }

    /// The brand a display name claims, if any.
    pub fn claimed(&self, display_name: &str) -> Option<&Brand> {
        let sk = skeleton(display_name);
        if sk.len() < 4 {
            return None;
        }
        self.brands
            .iter()
            .find(|b| b.patterns.iter().any(|p| sk.contains(p.as_str())))
    }

    /// The brand whose inbound-only number `caller` is.
    pub fn inbound_only_owner(&self, caller: &str) -> Option<&Brand> {
        self.brands
            .iter()
            .find(|b| b.inbound_only.iter().any(|n| n == caller))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Brand> {
        self.brands.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[[brand]]
name = "Microsoft"
statement = "does not make unsolicited calls"
sources = ["https://example.invalid/ms"]
action = "block"
category = "tech-support"
patterns = ["microsoft", "windows support", "windows technical", "msft support"]
inbound_only = ["+18006427676"]

[[brand]]
name = "Amazon"
statement = "never asks for payment by phone"
sources = ["https://example.invalid/amzn"]
patterns = ["amazon", "prime video"]
outbound = ["+12065550*"]
inbound_only = ["+18882804331"]
"#;

    #[test]
    fn display_names_claiming_brands() {
        let b = Brands::from_toml(SAMPLE, "brands.toml").unwrap();
        let cases: &[(&str, Option<&str>)] = &[
            ("Microsoft", Some("Microsoft")),
            ("Micr0soft", Some("Microsoft")),
            ("M1crosoft", Some("Microsoft")),
            ("Mícrosoft", Some("Microsoft")),
            ("MICROSOFT  SUPPORT", Some("Microsoft")),
            ("Windows Support", Some("Microsoft")),
            ("WINDOWS-TECHNICAL dept", Some("Microsoft")),
            ("Amaz0n", Some("Amazon")),
            ("amazon.com", Some("Amazon")),
            ("AMAZON PRIME", Some("Amazon")),
            ("Prime  Video", Some("Amazon")),
            ("Arnazon Refunds", Some("Amazon")),
            ("John Smith", None),
            ("Windows & Doors Ltd", None),
            ("Micro Center", None),
            ("", None),
        ];
        for (name, want) in cases {
            assert_eq!(b.claimed(name).map(|b| b.name.as_str()), *want, "{name:?}");
        }
    }

    #[test]
    fn registered_outbound_and_inbound_only_numbers() {
        let b = Brands::from_toml(SAMPLE, "brands.toml").unwrap();
        let amazon = b.claimed("Amazon").unwrap();
        let cases = [
            (Some("+12065550100"), true),
            (Some("+12065551100"), false),
            (Some("+442079460123"), false),
            (None, false),
        ];
        for (caller, want) in cases {
            assert_eq!(amazon.calls_from(caller), want, "{caller:?}");
        }
        assert_eq!(
            b.inbound_only_owner("+18006427676")
                .map(|b| b.name.as_str()),
            Some("Microsoft")
        );
        assert_eq!(
            b.inbound_only_owner("+18882804331")
                .map(|b| b.name.as_str()),
            Some("Amazon")
        );
        assert!(b.inbound_only_owner("+18006427677").is_none());
    }

    #[test]
    fn categories_default_to_impersonation() {
        let b = Brands::from_toml(SAMPLE, "brands.toml").unwrap();
        let cases = [("Microsoft", "tech-support"), ("Amazon", "impersonation")];
        for (name, want) in cases {
            assert_eq!(b.claimed(name).unwrap().category, want, "{name}");
        }
    }

    #[test]
    fn bad_files_name_line_and_expectation() {
        let cases = [
            ("[[brand]]\nname = \"X\"\nstatement = \"s\"\nsources = [\"u\"]\npatterns = [\"ab\"]\n", 5, "too short"),
            ("[[brand]]\nname = \"X\"\nstatement = \"s\"\nsources = [\"u\"]\npatterns = [\"xerox\"]\naction = \"drop\"\n", 2, "warn or block"),
            ("[[brand]]\nname = \"X\"\nstatement = \"s\"\nsources = [\"u\"]\npatterns = [\"xerox\"]\noutbound = [\"12345\"]\n", 6, "+digits"),
            ("[[brand]]\nname = \"X\"\ncolour = \"red\"\n", 3, "unknown field"),
            ("[[brand]]\nname = \"X\"\nstatement = \"s\"\nsources = [\"u\"]\npatterns = [\"xerox\"]\ncategory = \"Tech Support\"\n", 6, "one word"),
        ];
        for (text, line, needle) in cases {
            let e = Brands::from_toml(text, "b.toml").unwrap_err();
            assert_eq!((e.file.as_str(), e.line), ("b.toml", line), "{e}");
            assert!(e.message.contains(needle), "{e}");
        }
    }
}
