//! The brand matcher's edges, over a small sample file and over the shipped registry: innocent
//! names that must pass, look-alikes that must claim, the context rules, numbers, and bad files.

use super::*;

const SHIPPED: &str = include_str!("../../../../config/brands.toml");
const DNO_CSV: &str = include_str!("../../../../blocklists/do-not-originate.csv");

const SAMPLE: &str = r#"
[words]
context = ["support", "refund*", "betrug*"]
honorifics = ["mr", "herr"]
places = ["street"]

[[brand]]
name = "Microsoft"
statement = "does not make unsolicited calls"
sources = ["https://example.invalid/ms"]
action = "block"
category = "tech-support"
patterns = ["microsoft", "windows support", "windows technical", "msft support"]
needs_context = ["windows"]
inbound_only = ["+18006427676"]

[[brand]]
name = "Amazon"
statement = "never asks for payment by phone"
sources = ["https://example.invalid/amzn"]
patterns = ["amazon", "prime video"]
outbound = ["+12065550*"]
inbound_only = ["+18882804331"]

[[brand]]
name = "Visa"
statement = "card networks do not call"
sources = ["https://example.invalid/visa"]
needs_context = ["visa"]
generic_context = false
context = ["card"]
"#;

fn shipped() -> Brands {
    Brands::from_toml(SHIPPED, "config/brands.toml").unwrap()
}

fn claim<'a>(b: &'a Brands, name: &str) -> Option<&'a str> {
    b.claimed(name).map(|b| b.name.as_str())
}

#[test]
fn sample_names_claiming_brands() {
    let b = Brands::from_toml(SAMPLE, "brands.toml").unwrap();
    let cases: &[(&str, Option<&str>)] = &[
        ("Microsoft", Some("Microsoft")),
        ("Micr0soft", Some("Microsoft")),
        ("M1crosoft", Some("Microsoft")),
        ("Mícrosoft", Some("Microsoft")),
        ("MICROSOFT  SUPPORT", Some("Microsoft")),
        ("MicrosoftSupport", Some("Microsoft")),
        ("microsoftsupport", Some("Microsoft")),
        ("Windows Support", Some("Microsoft")),
        ("WINDOWS-TECHNICAL dept", Some("Microsoft")),
        ("Windows Refunds", Some("Microsoft")),
        ("Windows Betrugsabteilung", Some("Microsoft")),
        ("Amaz0n", Some("Amazon")),
        ("amazon.com", Some("Amazon")),
        ("AMAZON PRIME", Some("Amazon")),
        ("Prime  Video", Some("Amazon")),
        ("Arnazon Refunds", Some("Amazon")),
        ("Visa Card", Some("Visa")),
        ("John Smith", None),
        ("Windows & Doors Ltd", None),
        ("Micro Center", None),
        ("Amazonas Grill", None),
        ("Mr Microsoft", None),
        ("Amazon Street Cafe", None),
        // Visa counts only its own context words: a visa agency's "support" is not a claim.
        ("UK Visa Support", None),
        ("", None),
    ];
    for (name, want) in cases {
        assert_eq!(claim(&b, name), *want, "{name:?}");
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
    let brand = "[[brand]]\nname = \"X\"\nstatement = \"s\"\nsources = [\"u\"]\n";
    let cases = [
        (format!("{brand}patterns = [\"ab\"]\n"), 5, "too short"),
        (format!("{brand}patterns = [\"xerox\"]\naction = \"drop\"\n"), 6, "warn or block"),
        (format!("{brand}patterns = [\"xerox\"]\noutbound = [\"12345\"]\n"), 6, "+digits"),
        ("[[brand]]\nname = \"X\"\ncolour = \"red\"\n".to_string(), 3, "unknown field"),
        (format!("{brand}patterns = [\"xerox\"]\ncategory = \"Tech Support\"\n"), 6, "one word"),
        (format!("{brand}\n"), 2, "at least one of patterns or needs_context"),
        (format!("{brand}needs_context = [\"x\"]\n"), 5, "too short"),
        (format!("{brand}patterns = [\"xerox\"]\ncountries = [\"usa\"]\n"), 6, "ISO alpha-2"),
        (format!("{brand}patterns = [\"xerox\"]\ninbound_only = [\"+1800*\"]\n"), 6, "E.164"),
        (
            format!("{brand}patterns = [\"xerox\"]\ninbound_only = [\"+18005550100\", \"+18005550100\"]\n"),
            6,
            "listed twice",
        ),
        (
            format!("{brand}patterns = [\"xerox\"]\noutbound = [\"+1800*\"]\n\n{brand}patterns = [\"yak\"]\ninbound_only = [\"+18005550100\"]\n"),
            13,
            "also an outbound number of X",
        ),
        (
            format!("{brand}patterns = [\"norton 360\"]\nneeds_context = [\"norton\"]\n"),
            6,
            "both a pattern and a needs_context word",
        ),
        ("[words]\ncontext = [\"s\"]\n".to_string(), 2, "too short"),
        ("[words]\nnoise = [\"x\"]\n".to_string(), 2, "unknown field"),
        (format!("{brand}patterns = [\"xerox\"]\nsources = []\n"), 0, "duplicate key"),
    ];
    for (text, line, needle) in cases {
        let e = Brands::from_toml(&text, "b.toml").unwrap_err();
        assert!(e.message.contains(needle), "{e}");
        if line > 0 {
            assert_eq!((e.file.as_str(), e.line), ("b.toml", line), "{e}");
        }
        assert!(e.to_string().starts_with("b.toml:"), "{e}");
    }
    let sources_empty =
        "[[brand]]\nname = \"X\"\nstatement = \"s\"\nsources = []\npatterns = [\"xerox\"]\n";
    let e = Brands::from_toml(sources_empty, "b.toml").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    assert!(e.message.contains("sources must name"), "{e}");
}

/// The shipped registry loads, covers every sector in every country, and every brand says
/// where its statement and numbers come from.
#[test]
fn shipped_registry_loads_with_sources() {
    let b = shipped();
    assert!(b.iter().count() >= 60, "{}", b.iter().count());
    for brand in b.iter() {
        assert!(!brand.sources.is_empty(), "{}", brand.name);
        for s in &brand.sources {
            assert!(s.starts_with("https://"), "{}: {s}", brand.name);
        }
        assert!(!brand.countries.is_empty(), "{}", brand.name);
        assert!(!brand.statement.is_empty(), "{}", brand.name);
    }
    for country in ["US", "CA", "GB", "DE", "ES", "AU"] {
        for category in [
            "tech-support",
            "bank",
            "payment",
            "telco",
            "tax",
            "police",
            "delivery",
        ] {
            let n = b
                .iter()
                .filter(|x| x.category == category && x.countries.iter().any(|c| c == country))
                .count();
            assert!(n > 0, "no {category} brand for {country}");
        }
    }
}

/// People and local businesses whose names hold a brand word, or a piece of one, across the six
/// countries and their languages: none of them claims a brand.
#[test]
fn innocent_names_do_not_claim() {
    let b = shipped();
    let innocent = [
        // US
        "Applebee's Grill",
        "Sarah Chase",
        "John Apple",
        "Apple Fruit Market",
        "Chase Farm Hospital",
        "Citizens Advice",
        "Nationwide Plumbing",
        "Ups and Downs Bakery",
        // CA
        "Tom Bell",
        "Kenny Rogers",
        "Halifax Pet Supplies",
        "TD Smith",
        // GB
        "Appleby Windows",
        "Windows & Doors Ltd",
        "Windows Cleaning Services",
        "Chasewater Cafe",
        "Lloyds Pharmacy",
        "Sky Garden Restaurant",
        "Three Crowns Pub",
        "EE Cummings",
        "Apple Care Home",
        "UK Visa Support",
        "Mr Chase",
        // DE
        "Herr Sparkasse",
        "Ing. Karl Müller Sicherheitstechnik",
        "Polizei-Sportverein Berlin",
        "Zelle 5 Bar",
        // ES
        "Amazonas Fruits",
        "Hacienda Mexican Grill",
        "Hotel Santander",
        "Policía Local de Madrid",
        "Correos Electrónicos SL",
        "Naranja Orange Frutas",
        // Premises and venues, and things named after the Amazon river.
        "Postbank Filiale Kiel",
        "Restaurante La Caixa",
        "Chase Center Tickets",
        "Optus Park Cafe",
        "Westpac Stadium Tours",
        "Amazon Lily Florist",
        "Amazon River Cruises",
        "Rogers Plumbing",
        // AU
        "Telstra Street Bakery",
        "Ato Boateng",
        "Nab Cafe",
        "Optusia Travel",
        // Numbers and empties
        "0800 123 456",
        "+44 20 7946 0123",
        "",
    ];
    for name in innocent {
        assert_eq!(claim(&b, name), None, "{name:?} is innocent");
    }
}

/// Look-alike spellings claim their brand: digits for letters, confusable letters from other
/// scripts, full-width and mathematical letters, spacing and gluing.
#[test]
fn look_alikes_claim() {
    let b = shipped();
    let cases = [
        ("Micr0s0ft Support", "Microsoft"),
        ("M1CR0S0FT", "Microsoft"),
        ("Ｍｉｃｒｏｓｏｆｔ", "Microsoft"),
        ("𝐌𝐢𝐜𝐫𝐨𝐬𝐨𝐟𝐭 Security", "Microsoft"),
        ("Micro soft Tech", "Microsoft"),
        ("MicrosoftSupport", "Microsoft"),
        ("PayPa1", "PayPal"),
        ("Pay Pal Refunds", "PayPal"),
        ("PаyPаl", "PayPal"),
        ("Amaz0n", "Amazon"),
        ("Аmazon", "Amazon"),
        ("Arnazon Prime", "Amazon"),
        ("A.M.A.Z.O.N", "Amazon"),
        ("АМАΖОΝ", "Amazon"),
        ("App1e Support", "Apple"),
        ("Αpple Security", "Apple"),
        ("1RS", "IRS"),
        ("I.R.S. Department", "IRS"),
        ("HMRC Refunds", "HMRC"),
        ("H.M.R.C", "HMRC"),
        ("Barc1ays Fraud Team", "Barclays"),
        ("Wells Farg0", "Wells Fargo"),
        ("VVells Fargo", "Wells Fargo"),
        ("Spark@sse", "Sparkasse"),
        ("Deutsche  Bank", "Deutsche Bank"),
        ("Telefónica", "Movistar"),
        ("Te1stra", "Telstra"),
        ("C0mmBank", "CommBank"),
        ("Canada Revenue Agency", "Canada Revenue Agency"),
        ("Agencia Tributaria", "Agencia Tributaria"),
    ];
    for (name, want) in cases {
        assert_eq!(claim(&b, name), Some(want), "{name:?}");
    }
}

/// Ambiguous brand words claim only beside a context word, in any of the six countries'
/// languages; brand-specific context counts only for its brand.
#[test]
fn ambiguous_words_need_context() {
    let b = shipped();
    let cases: &[(&str, Option<&str>)] = &[
        ("Apple", None),
        ("Apple Support", Some("Apple")),
        ("Apple Refund Dept", Some("Apple")),
        ("Apple Inc", Some("Apple")),
        ("Chase", None),
        ("Chase Fraud Department", Some("Chase")),
        ("Chase Bank", Some("Chase")),
        ("ChaseFraud", Some("Chase")),
        ("Windows", None),
        ("Windows Helpdesk", Some("Microsoft")),
        ("Orange", None),
        ("Orange Atención al Cliente", Some("Orange")),
        ("Orange Support", None),
        ("Sky", None),
        ("Sky Broadband Billing", Some("Sky")),
        ("Visa", None),
        ("Visa Card Services", Some("Visa")),
        ("Halifax", None),
        ("Halifax Fraud Team", Some("Halifax")),
        ("Santander", None),
        ("Santander Seguridad", Some("Santander")),
        ("Banco Santander", Some("Santander")),
        ("Polizei", None),
        ("Polizei Betrugsdezernat", Some("Polizei")),
        ("Policía Fraude", Some("Policia Nacional")),
        ("Hacienda", None),
        ("Hacienda Devolución", Some("Agencia Tributaria")),
        ("Telekom", None),
        ("Telekom Kundenservice", Some("Telekom")),
        ("ING", None),
        ("ING Konto", Some("ING")),
        ("Zelle", None),
        ("Zelle Refund", Some("Zelle")),
        ("ATO", None),
        ("ATO Tax Debt", Some("ATO")),
        ("BT", None),
        ("BT Broadband", Some("BT")),
        ("Norton", None),
        ("Norton Renewal", Some("Norton")),
        ("Social Security", None),
        (
            "Social Security Suspended",
            Some("Social Security Administration"),
        ),
        ("Rogers", None),
        ("Rogers Support", Some("Rogers")),
        ("Telekom Service", Some("Telekom")),
        ("Hacienda Reembolso", Some("Agencia Tributaria")),
        ("Halifax Security", Some("Halifax")),
        (
            "Social Security Admin",
            Some("Social Security Administration"),
        ),
        ("Amazon Lily", None),
        ("Amazon Lily Refunds", None),
        ("Amazon Refunds Lily", Some("Amazon")),
        // Unambiguous names claim alone.
        ("Microsoft", Some("Microsoft")),
        ("PayPal", Some("PayPal")),
        ("HMRC", Some("HMRC")),
        ("IRS", Some("IRS")),
        ("Sparkasse", Some("Sparkasse")),
        ("Telstra", Some("Telstra")),
        ("Movistar", Some("Movistar")),
        ("NBN Co", Some("NBN Co")),
    ];
    for (name, want) in cases {
        assert_eq!(claim(&b, name), *want, "{name:?}");
    }
}

#[test]
fn genuine_outbound_numbers_pass_and_inbound_only_numbers_are_found() {
    // The shipped brands publish no outbound numbers; a brand that does, passes from them.
    let text = SHIPPED.replacen(
        "outbound = []\ninbound_only = [\n  # 1-800-MICROSOFT",
        "outbound = [\"+14258828080\", \"+1425703*\"]\ninbound_only = [\n  # 1-800-MICROSOFT",
        1,
    );
    assert_ne!(text, SHIPPED, "the Microsoft entry moved");
    let b = Brands::from_toml(&text, "brands.toml").unwrap();
    let ms = b.claimed("Microsoft Support").unwrap();
    assert!(ms.calls_from(Some("+14258828080")));
    assert!(ms.calls_from(Some("+14257030001")));
    assert!(!ms.calls_from(Some("+14258828081")));
    assert!(!ms.calls_from(None));

    let b = shipped();
    let cases = [
        ("+18006427676", "Microsoft"),
        ("+18008291040", "IRS"),
        ("+443002003300", "HMRC"),
        ("+18009598281", "Canada Revenue Agency"),
        ("+34901335533", "Agencia Tributaria"),
        ("+61132861", "ATO"),
        ("+443001232040", "Action Fraud"),
        ("+18006226232", "Service Canada"),
    ];
    for (number, owner) in cases {
        assert_eq!(
            b.inbound_only_owner(number).map(|b| b.name.as_str()),
            Some(owner),
            "{number}"
        );
    }
    assert!(b.inbound_only_owner("+18006427677").is_none());
}

/// `brands.toml`'s inbound-only numbers and `do-not-originate.csv` agree: every inbound-only
/// number is a `dno` block entry, every entry names its source, and no entry is a number a brand
/// calls from.
#[test]
fn registry_and_dno_list_agree() {
    let b = shipped();
    let mut rows = Vec::new();
    for line in DNO_CSV.lines() {
        if line.trim().is_empty() || line.starts_with('#') || line.starts_with("pattern,") {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let source = fields[fields.len() - 2];
        assert_eq!(&fields[1..3], ["block", "dno"], "{line}");
        assert!(source.starts_with("https://"), "{line}");
        rows.push(fields[0]);
    }
    assert!(rows.len() >= 20, "{}", rows.len());
    let mut unique = rows.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), rows.len(), "a number listed twice");
    for brand in b.iter() {
        for n in &brand.inbound_only {
            assert!(
                rows.contains(&n.as_str()),
                "{} {n} missing from the csv",
                brand.name
            );
        }
        for n in &rows {
            assert!(
                !brand.calls_from(Some(n)),
                "{n} is an outbound number of {}",
                brand.name
            );
        }
    }
}
