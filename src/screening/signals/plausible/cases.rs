//! The caller-id checks over real number shapes: each category in each of the six countries,
//! the short forms that never normalise in every default country, and genuine numbers (public
//! switchboards and helplines, libphonenumber's documentation examples for mobiles) that must
//! pass. Callers are read the way the engine reads them: normalised by the default country's
//! dialling plan, with the form as received beside it.

use super::numbering::{Fit, Lengths, Numbering, Plan};
use super::*;
use crate::screening::number::NumberPlan;
use Implausible::*;

const SIX: [&str; 6] = ["US", "CA", "GB", "DE", "ES", "AU"];

fn checker() -> Checker {
    Checker::new(&SIX.map(String::from), &[])
}

/// A subscriber of the network in each country (public switchboards), as the callee.
fn callee_of(country: &str) -> &'static str {
    match country {
        "US" => "+12024561414",
        "CA" => "+16136885335",
        "GB" => "+442074999000",
        "DE" => "+493083050",
        "ES" => "+34915872200",
        "AU" => "+61262145600",
        other => panic!("no callee for {other}"),
    }
}

/// The finding for a caller id received by a network whose default country is `country`.
fn judge_with(c: &Checker, country: &str, raw: &str) -> Option<BadCallerId> {
    let plan = NumberPlan::for_country(country).expect("a known country");
    let caller = plan.normalise(raw).map(|n| n.to_string());
    c.check(caller.as_deref(), Some(raw), Some(callee_of(country)))
}

fn judge(country: &str, raw: &str) -> Option<BadCallerId> {
    judge_with(&checker(), country, raw)
}

#[test]
fn metadata_compiles_for_every_code() {
    let n = Numbering::get();
    assert!(n.problems().is_empty(), "{:?}", n.problems());
    // Over 200 country codes, each with its regions (25 under +1).
    assert!(n.len() > 200, "{}", n.len());
    let nanp = n.plan(1).expect("+1");
    for r in ["US", "CA", "JM", "PR"] {
        assert!(nanp.regions().iter().any(|x| x == r), "{r}");
    }
    assert_eq!(nanp.regions()[0], "US");
    // The non-geographic codes share the region id 001; each has its own plan.
    for cc in [800, 808, 870, 878, 881, 882, 883, 888, 979] {
        assert_eq!(
            n.plan(cc).map(|p| p.regions().to_vec()),
            Some(vec!["001".to_string()]),
            "+{cc}"
        );
    }
    assert_eq!(nanp.national_prefix(), Some("1"));
    assert_eq!(n.plan(44).and_then(Plan::national_prefix), Some("0"));
    assert_eq!(n.plan(34).and_then(Plan::national_prefix), None);
    assert_eq!(n.plan_of_region("de").map(Plan::cc), Some(49));
    assert!(n.plan(28).is_none());
    assert!(n.plan_of(b"2812345678").is_none());
    assert!(n.plan_of(b"0123456789").is_none());
    assert_eq!(n.plan_of(b"4930").map(|(p, l)| (p.cc(), l)), Some((49, 2)));
    assert_eq!(
        n.plan_of(b"35312345").map(|(p, l)| (p.cc(), l)),
        Some((353, 3))
    );
}

/// The lengths each plan's numbers have, as the regulators publish them. A metadata update that
/// changes one fails here, so that the scores can be looked at again.
#[test]
fn six_plans_have_their_published_lengths() {
    let n = Numbering::get();
    let lengths = |cc: u16| n.plan(cc).map(Plan::lengths).unwrap_or_default();
    // NANP: ten digits; seven only for Canada's 310-xxxx numbers, dialled without an area code.
    assert_eq!(lengths(1), Lengths::span(10, 10).union(Lengths::span(7, 7)));
    // Spain's closed nine-digit plan.
    assert_eq!(lengths(34), Lengths::span(9, 9));
    // GB: ten digits, nine in some 01 areas and for 0800, seven for 0800 1111.
    for len in [7, 9, 10] {
        assert!(lengths(44).has(len), "GB {len}");
    }
    assert!(!lengths(44).has(8) && !lengths(44).has(11));
    // AU: nine digits, 13xx xx with six, 1300/1800 with ten.
    for len in [6, 9, 10] {
        assert!(lengths(61).has(len), "AU {len}");
    }
    // DE: area codes of two to five digits and subscriber numbers of varying length.
    for len in 5..=13 {
        assert!(lengths(49).has(len), "DE {len}");
    }
}

#[test]
fn lengths_read_as_words() {
    assert_eq!(Lengths::span(10, 10).to_string(), "10");
    assert_eq!(Lengths::span(9, 10).to_string(), "9 or 10");
    assert_eq!(
        Lengths::span(7, 7).union(Lengths::span(9, 10)).to_string(),
        "7, 9 or 10"
    );
    assert_eq!(Lengths::span(5, 15).to_string(), "5 to 15");
    assert_eq!(
        Lengths::span(4, 6).union(Lengths::span(9, 9)).to_string(),
        "4 to 6 or 9"
    );
    assert_eq!(Lengths::default().to_string(), "no length");
    assert_eq!(Lengths::span(7, 10).min(), Some(7));
    assert_eq!(Lengths::span(7, 10).max(), Some(10));
    assert_eq!(Lengths::span(3, 40).max(), Some(15));
}

/// The short forms the evaluation found passed or only warned, in every default country:
/// emergency and service numbers (most of which no dialling plan normalises), short codes, and
/// a US number one digit short in international form.
#[test]
fn short_forms_in_every_default_country() {
    let c = checker();
    let cases: &[(&str, Implausible)] = &[
        ("911", EmergencyCaller),
        ("+1911", EmergencyCaller),
        ("+1 911", EmergencyCaller),
        ("112", EmergencyCaller),
        ("000", EmergencyCaller),
        ("999", EmergencyCaller),
        ("110", EmergencyCaller),
        ("116117", EmergencyCaller),
        ("116 123", EmergencyCaller),
        ("988", EmergencyCaller),
        ("106", EmergencyCaller),
        ("061", EmergencyCaller),
        ("091", EmergencyCaller),
        ("+44999", EmergencyCaller),
        ("+61000", EmergencyCaller),
        ("+49110", EmergencyCaller),
        ("+34112", EmergencyCaller),
        ("+33112", EmergencyCaller),
        ("0", ShortCode),
        ("12345", ShortCode),
        ("+112", ShortCode),
        ("+44 12345", ShortCode),
        ("+1202555014", WrongLength),
        ("+1 (202) 762-014", WrongLength),
    ];
    for country in SIX {
        for (raw, want) in cases {
            let f = judge_with(&c, country, raw);
            assert_eq!(
                f.as_ref().map(|f| (f.why, f.firm)),
                Some((*want, true)),
                "{country} {raw:?}: {f:?}"
            );
        }
    }
}

/// A US number written nationally with nine digits: the US and Canadian plans cannot place it,
/// and it is read against the network's own plan.
#[test]
fn nine_digit_national_number_in_nanp() {
    for country in ["US", "CA"] {
        for raw in ["202 555 014", "(202) 762-014", "202-762-014"] {
            let f = judge(country, raw).expect(raw);
            assert_eq!((f.why, f.firm), (WrongLength, true), "{country} {raw}");
        }
    }
    let f = judge("US", "(202) 762-014").unwrap();
    assert_eq!(
        f.detail,
        "has 9 digits after +1, but numbers beginning +1 have 7 or 10"
    );
}

/// Each category in each of the six countries, in international form (and so whatever the
/// default country is), with whether it is firm.
#[test]
fn categories_per_country() {
    let c = checker();
    let cases: &[(&str, Implausible, bool)] = &[
        // NANP (US/CA)
        ("+1911", EmergencyCaller, true),
        ("+1988", EmergencyCaller, true),
        ("+1711", EmergencyCaller, true),
        ("+112345", ShortCode, true),
        ("+1202762014", WrongLength, true),
        ("+120276201433", WrongLength, true),
        ("+1416392248", WrongLength, true),
        ("+11234567890", Unallocated, true),
        ("+10234567890", Unallocated, true),
        ("+12114561414", Unallocated, true),
        ("+12954561414", Unallocated, true),
        ("+12021550143", Unallocated, true),
        ("+14164110143", Unallocated, true),
        ("+14161392248", Unallocated, true),
        // An area code in no NANP region's metadata: it may have opened since.
        ("+12372345678", Unallocated, false),
        ("+12125550100", Fictional, true),
        ("+14165550123", Fictional, true),
        // GB
        ("+44999", EmergencyCaller, true),
        ("+44101", EmergencyCaller, true),
        ("+44116123", EmergencyCaller, true),
        ("+44118118", EmergencyCaller, true),
        ("+4412345", ShortCode, true),
        ("+44207499900", WrongLength, true),
        ("+4402074999000", WrongLength, true),
        ("+4420749990001", WrongLength, true),
        ("+444123456789", Unallocated, true),
        ("+446123456789", Unallocated, true),
        ("+440207499900", Unallocated, true),
        ("+441012345678", Unallocated, false),
        ("+447700900123", Fictional, true),
        ("+442079460123", Fictional, true),
        // DE: lengths vary, so only a mobile range's length is a (doubtful) wrong length.
        ("+49110", EmergencyCaller, true),
        ("+49116117", EmergencyCaller, true),
        ("+49115", EmergencyCaller, true),
        ("+4912345", ShortCode, true),
        ("+4930", ShortCode, true),
        ("+49151234567", WrongLength, false),
        ("+49030123456", Unallocated, true),
        ("+491201234567", Unallocated, false),
        ("+49130123456", WrongLength, false),
        // ES
        ("+34112", EmergencyCaller, true),
        ("+34091", EmergencyCaller, true),
        ("+34016", EmergencyCaller, true),
        ("+3412345", ShortCode, true),
        ("+3491234567", WrongLength, true),
        ("+349123456789", WrongLength, true),
        ("+34112345678", Unallocated, true),
        ("+34212345678", Unallocated, true),
        ("+34520000000", Unallocated, false),
        // AU
        ("+61000", EmergencyCaller, true),
        ("+61106", EmergencyCaller, true),
        ("+6112345", ShortCode, true),
        ("+6129876543", WrongLength, true),
        ("+612987654321", WrongLength, true),
        ("+61612345678", Unallocated, true),
        ("+61912345678", Unallocated, true),
        ("+61255501234", Fictional, true),
        ("+61491570156", Fictional, true),
        // Shapes
        ("+2812345678", Unallocated, true),
        ("+0123456789", Unallocated, true),
        ("+1234567890123456", TooLong, true),
        ("+", NotDialable, true),
    ];
    for country in SIX {
        for (raw, why, firm) in cases {
            let f = judge_with(&c, country, raw);
            assert_eq!(
                f.as_ref().map(|f| (f.why, f.firm)),
                Some((*why, *firm)),
                "{country} {raw:?}: {f:?}"
            );
        }
    }
}

/// National forms of invalid numbers, read by each country's own plan.
#[test]
fn national_forms_per_country() {
    let cases: &[(&str, &str, Implausible, bool)] = &[
        ("US", "411", EmergencyCaller, true),
        ("US", "555-0143", WrongLength, true),
        ("US", "1 (011) 456-1414", Unallocated, true),
        ("CA", "(416) 139-2248", Unallocated, true),
        ("CA", "416-392-248", WrongLength, true),
        ("GB", "020 7499 900", WrongLength, true),
        ("GB", "04123 456789", Unallocated, true),
        ("GB", "07700 900123", Fictional, true),
        ("GB", "101", EmergencyCaller, true),
        ("DE", "0049 0301 23456", Unallocated, true),
        ("DE", "030", ShortCode, true),
        ("DE", "0151 234567", WrongLength, false),
        ("ES", "91 234 567", WrongLength, true),
        ("ES", "212 345 678", Unallocated, true),
        ("ES", "062", EmergencyCaller, true),
        ("AU", "(02) 9876 543", WrongLength, true),
        ("AU", "0612 345 678", Unallocated, true),
        ("AU", "0491 570 156", Fictional, true),
        ("AU", "000", EmergencyCaller, true),
    ];
    for (country, raw, why, firm) in cases {
        let f = judge(country, raw);
        assert_eq!(
            f.as_ref().map(|f| (f.why, f.firm)),
            Some((*why, *firm)),
            "{country} {raw:?}: {f:?}"
        );
    }
}

/// Genuine numbers that must pass: public switchboards and helplines, toll-free and shared-cost
/// numbers that businesses call from, GB 03, AU 13/1300/1800, ES nine digits, DE numbers of
/// several lengths, and mobiles (libphonenumber's documentation examples, where a country has
/// no fictional mobile range that would pass).
#[test]
fn genuine_numbers_pass() {
    // (country of the network, caller id as received, what it is)
    let national: &[(&str, &str, &str)] = &[
        ("US", "1-800-829-1040", "IRS individual helpline"),
        ("US", "(202) 456-1414", "White House switchboard"),
        ("US", "1-800-772-1213", "Social Security Administration"),
        ("US", "(202) 647-4000", "Department of State"),
        ("US", "(202) 324-3000", "FBI headquarters"),
        ("US", "1-877-382-4357", "FTC consumer response"),
        ("US", "+1 876 926 0400", "Jamaica, another NANP region"),
        ("CA", "1-800-959-8281", "Canada Revenue Agency"),
        ("CA", "1-800-622-6232", "Service Canada"),
        ("CA", "(613) 688-5335", "US Embassy Ottawa"),
        ("CA", "(416) 392-2489", "City of Toronto"),
        ("CA", "1-888-495-8501", "Canadian Anti-Fraud Centre"),
        ("GB", "0300 200 3310", "HMRC self assessment (03)"),
        ("GB", "0300 790 6801", "DVLA (03)"),
        ("GB", "020 7499 9000", "US Embassy London"),
        ("GB", "020 7930 4832", "Buckingham Palace"),
        ("GB", "0800 1111", "Childline (seven digits)"),
        ("GB", "07400 123456", "mobile (libphonenumber example)"),
        ("DE", "0228 14-0", "Bundesnetzagentur (six digits)"),
        ("DE", "030 8305-0", "US Embassy Berlin (seven digits)"),
        ("DE", "030 18682-0", "Federal Ministry of Finance"),
        ("DE", "069 9566-0", "Bundesbank"),
        (
            "DE",
            "0800 330 1000",
            "Deutsche Telekom service (toll-free)",
        ),
        ("DE", "01512 3456789", "mobile (libphonenumber example)"),
        ("ES", "901 33 55 33", "Agencia Tributaria (shared cost)"),
        ("ES", "91 587 2200", "US Embassy Madrid"),
        ("ES", "912 320 320", "Renfe"),
        ("ES", "900 20 20 10", "Fundacion ANAR (toll-free)"),
        ("ES", "612 34 56 78", "mobile (libphonenumber example)"),
        ("AU", "13 28 61", "Australian Taxation Office (13)"),
        ("AU", "(02) 6214 5600", "US Embassy Canberra"),
        ("AU", "(02) 6277 7111", "Parliament House"),
        ("AU", "1300 850 115", "ACMA (1300)"),
        ("AU", "1800 737 732", "1800RESPECT (1800)"),
        ("AU", "0412 345 678", "mobile (libphonenumber example)"),
    ];
    let c = checker();
    for (country, raw, what) in national {
        assert_eq!(
            judge_with(&c, country, raw),
            None,
            "{country} {raw:?} ({what})"
        );
    }
    // International callers reach every network, in E.164 or written for dialling.
    let international: &[(&str, &str)] = &[
        ("+33 1 43 12 22 22", "US Embassy Paris"),
        ("+33 6 12 34 56 78", "FR mobile (libphonenumber example)"),
        ("+91 11 2419 8000", "US Embassy New Delhi"),
        ("+91 81234 56789", "IN mobile (libphonenumber example)"),
        ("+52 55 5080 2000", "US Embassy Mexico City"),
        ("+81 3 3224 5000", "US Embassy Tokyo"),
        ("+81 90 1234 5678", "JP mobile (libphonenumber example)"),
        ("+64 4 462 6000", "US Embassy Wellington"),
        ("+64 21 123 4567", "NZ mobile (libphonenumber example)"),
        (
            "+881 6 1234 5678",
            "satellite phone (libphonenumber example)",
        ),
        (
            "+870 301 234 567",
            "Inmarsat mobile (libphonenumber example)",
        ),
        (
            "+800 1234 5678",
            "international freephone (libphonenumber example)",
        ),
        (
            "+883 510 012 345",
            "international network (libphonenumber example)",
        ),
        ("+44 20 7499 9000", "US Embassy London"),
        ("+1 202 456 1414", "White House"),
        ("+49 30 83050", "US Embassy Berlin"),
        ("+61 13 28 61", "Australian Taxation Office"),
        (
            "+44 (0)20 7499 9000",
            "US Embassy London, national 0 in brackets",
        ),
    ];
    for country in SIX {
        for (raw, what) in international {
            assert_eq!(
                judge_with(&c, country, raw),
                None,
                "{country} {raw:?} ({what})"
            );
        }
    }
    // Written for dialling from another country, or international without the `+`.
    let foreign_forms: &[(&str, &str)] = &[
        ("US", "011 44 20 7499 9000"),
        ("US", "442074999000"),
        ("GB", "12024561414"),
        ("GB", "0011 1 202 456 1414"),
        ("DE", "00 1 202 456 1414"),
        ("DE", "12024561414"),
        ("ES", "0011 44 20 7499 9000"),
        ("AU", "011 49 30 83050"),
        ("AU", "4930830500"),
    ];
    for (country, raw) in foreign_forms {
        assert_eq!(judge_with(&c, country, raw), None, "{country} {raw:?}");
    }
}

#[test]
fn received_forms() {
    let c = checker();
    // No number at all is the anonymity rule's business.
    for raw in [
        "unknown",
        "Unavailable",
        "restricted",
        "PRIVATE",
        "withheld",
    ] {
        assert_eq!(
            c.check(None, Some(raw), Some("+12024561414")),
            None,
            "{raw}"
        );
    }
    let cases: &[(&str, Implausible)] = &[
        ("alice", NotDialable),
        ("*67", NotDialable),
        ("2025550143;ext=1", NotDialable),
        ("+", NotDialable),
        ("()", NotDialable),
        ("12345678901234567890", TooLong),
        ("+1 202 456 1414 0000 0", TooLong),
    ];
    for (raw, why) in cases {
        let f = c.check(None, Some(raw), Some("+12024561414"));
        assert_eq!(f.map(|f| f.why), Some(*why), "{raw}");
    }
    // International prefixes do not count towards the length.
    assert_eq!(
        c.check(None, Some("0011 44 20 7499 9000"), Some("+61262145600")),
        None
    );
    // Nothing to go on: no caller, and no callee to tell the network's country.
    assert_eq!(c.check(None, None, None), None);
    assert_eq!(c.check(None, Some("202 762 014"), None), None);
}

#[test]
fn service_callers_are_not_judged() {
    let c = Checker::new(&SIX.map(String::from), &["121".into(), "+44 901".into()]);
    assert_eq!(judge_with(&c, "GB", "121"), None);
    assert_eq!(judge_with(&c, "GB", "+44 901"), None);
    let f = judge_with(&c, "GB", "1234").unwrap();
    assert_eq!(f.why, ShortCode);
}

#[test]
fn outside_strict_countries_findings_are_doubtful() {
    let none = Checker::new(&[], &[]);
    for raw in ["+444123456789", "+1202762014", "+3491234567"] {
        let f = none.check(Some(raw), Some(raw), None).unwrap();
        assert!(!f.firm, "{raw}: {f:?}");
        assert!(f.detail.contains("not a strict country"), "{}", f.detail);
    }
    // What no caller id can be stays firm everywhere.
    for raw in ["+44999", "+4412345", "+2812345678", "+1234567890123456"] {
        assert!(
            none.check(Some(raw), Some(raw), None).unwrap().firm,
            "{raw}"
        );
    }
    // France is not strict by default: its wrong length is doubtful.
    let f = checker()
        .check(Some("+3314312222"), Some("+3314312222"), None)
        .unwrap();
    assert_eq!((f.why, f.firm), (WrongLength, false));
}

#[test]
fn reasons_read_as_sentences() {
    let c = checker();
    let detail = |country: &str, raw: &str| judge_with(&c, country, raw).unwrap().detail;
    assert_eq!(
        detail("US", "911"),
        "is an emergency number (US, CA), which never places calls"
    );
    assert_eq!(
        detail("GB", "988"),
        "is the Suicide & Crisis Lifeline (US, CA), which never places calls"
    );
    assert_eq!(
        detail("DE", "116117"),
        "is a harmonised European 116 service number (GB, DE, ES), which never places calls"
    );
    assert_eq!(
        detail("ES", "+33 17"),
        "is an emergency number (FR), which never places calls"
    );
    assert_eq!(
        detail("US", "12345"),
        "has only 5 digits: a short code, not a subscriber number"
    );
    assert_eq!(
        detail("GB", "+44 20 7499 900"),
        "has 9 digits after +44, but numbers beginning +44 2 have 10"
    );
    assert_eq!(
        detail("GB", "+44 6123 456789"),
        "is in a range the numbering plan of +44 does not allocate: no number begins +44 6"
    );
    assert_eq!(
        detail("US", "+1 237 234 5678"),
        "is in a range the numbering plan of +1 does not allocate: no number begins +1 237 \
         (as far as this build's numbering metadata knows)"
    );
    assert_eq!(
        detail("US", "+1 011 456 1414"),
        "is not a NANP number: no area code begins with 0 or 1"
    );
    assert_eq!(
        detail("AU", "+61 2 5550 1234"),
        "is in a range reserved for fiction and tests (ACMA's numbers for fiction)"
    );
}

/// The automaton's answers for the plan's structure, one level down from the checker.
#[test]
fn fit_names_where_a_number_goes_wrong() {
    let n = Numbering::get();
    let gb = n.plan(44).unwrap();
    assert_eq!(gb.fit(b"2074999000"), Fit::Valid);
    assert_eq!(gb.fit(b"8001111"), Fit::Valid);
    // Fixed lines have nine or ten digits; 0800 1111 is shorter but places no calls.
    assert_eq!(gb.fit(b""), Fit::ShortCode { shortest: 9 });
    assert_eq!(
        gb.fit(b"6123456789"),
        Fit::Unallocated {
            prefix: 1,
            firm: true
        }
    );
    assert!(matches!(
        gb.fit(b"207499900"),
        Fit::WrongLength {
            prefix: 1,
            firm: true,
            ..
        }
    ));
    assert!(matches!(
        gb.fit(b"20749990"),
        Fit::WrongLength {
            prefix: 0,
            firm: true,
            ..
        }
    ));
    // Digits that are not digits end the walk where they stand.
    assert!(matches!(gb.fit(b"20x4999000"), Fit::Unallocated { .. }));
    let es = n.plan(34).unwrap();
    assert_eq!(
        es.fit(b"91234567"),
        Fit::WrongLength {
            prefix: 0,
            lengths: Lengths::span(9, 9),
            firm: true
        }
    );
}

/// Scores follow the config: a firm finding scores its category, a doubtful one
/// `score_doubtful`, and the reason shows the caller id as received.
#[test]
fn scores_follow_the_config() {
    use crate::screening::signals::brands::Brands;
    use crate::screening::signals::stir::{CertLookup, CertState};
    use crate::screening::signals::{evaluate, SignalInput, SignalState, SignalsConfig};
    use std::sync::Arc;

    struct NoCerts;
    impl CertLookup for NoCerts {
        fn lookup(&self, _: &str) -> CertState {
            CertState::Pending
        }
    }
    let mut cfg = SignalsConfig::default();
    cfg.plausibility.score_emergency_caller = 140;
    cfg.plausibility.score_doubtful = 7;
    cfg.plausibility.score_wrong_length = 90;
    let brands = Arc::new(Brands::from_toml("", "none").unwrap());
    let state = SignalState::new(cfg, brands, Arc::new(NoCerts));
    let hit = |caller: Option<&str>, raw: &str| {
        let input = SignalInput {
            call_id: "c1",
            caller,
            caller_raw: Some(raw),
            callee: Some("+12024561414"),
            question: true,
            ..Default::default()
        };
        evaluate(&input, &state, 1_790_000_000_000)
            .hits
            .into_iter()
            .find(|h| h.signal_kind() == Some(crate::screening::evidence::Signal::Plausibility))
            .map(|h| (h.score, h.reason.category.clone(), h.reason.reason.clone()))
    };
    assert_eq!(
        hit(None, "911"),
        Some((
            140,
            "emergency-caller".into(),
            "caller id \"911\" is an emergency number (US, CA), which never places calls".into()
        ))
    );
    let (score, category, _) = hit(Some("+12372345678"), "+1 237 234 5678").unwrap();
    assert_eq!((score, category.as_str()), (7, "unallocated"));
    let (score, category, text) = hit(Some("+1202762014"), "(202) 762-014").unwrap();
    assert_eq!((score, category.as_str()), (90, "wrong-length"));
    assert!(
        text.starts_with("caller id \"(202) 762-014\" has 9 digits"),
        "{text}"
    );
    assert_eq!(hit(Some("+12024561414"), "(202) 456-1414"), None);
}

/// The shipped config documents the defaults, and validation names bad keys.
#[test]
fn shipped_section_is_the_defaults_and_validates() {
    use crate::screening::signals::PlausibilityConfig;
    let text = include_str!("../../../../config/scamguard.toml");
    let all: toml::Table = toml::from_str(text).unwrap();
    let section = all["signals"]["plausibility"].clone();
    let shipped: PlausibilityConfig = section.try_into().unwrap();
    assert_eq!(
        format!("{shipped:?}"),
        format!("{:?}", PlausibilityConfig::default())
    );
    assert!(shipped.validate().is_empty(), "{:?}", shipped.validate());
    let bad = PlausibilityConfig {
        strict_countries: vec!["GB".into(), "UK".into(), "Germany".into()],
        service_callers: vec!["121".into(), "voicemail".into(), "".into()],
        ..PlausibilityConfig::default()
    };
    let problems = bad.validate();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(
        problems[0].contains("strict_countries: \"UK\""),
        "{}",
        problems[0]
    );
    assert!(
        problems[2].contains("service_callers: \"voicemail\""),
        "{}",
        problems[2]
    );
}

/// Through the engine with the shipped scores and every other signal at its default: what no
/// caller id can be blocks on its own in every default country, a doubtful range passes, and
/// genuine callers pass.
#[test]
fn the_engine_blocks_impossible_callers_and_passes_doubtful_ones() {
    use crate::screening::signals::brands::Brands;
    use crate::screening::signals::stir::NoCertificates;
    use crate::screening::signals::{SignalState, SignalsConfig};
    use crate::screening::{
        Action, Call, Engine, IndexBuilder, PolicyConfig, Scoring, ScreeningConfig, ScreeningPolicy,
    };
    use std::sync::Arc;

    let rules = IndexBuilder::new().build();
    for country in SIX {
        let engine = Engine {
            screening: ScreeningPolicy::from_config(&ScreeningConfig {
                default_country: country.into(),
                ..ScreeningConfig::default()
            }),
            scoring: Scoring::new(PolicyConfig::default()),
            signals: SignalState::new(
                SignalsConfig::default(),
                Arc::new(Brands::from_toml("", "none").unwrap()),
                Arc::new(NoCertificates),
            ),
            international_gateways: Vec::new(),
        };
        let cases: &[(&str, Action)] = &[
            ("911", Action::Block),
            ("000", Action::Block),
            ("+44 999", Action::Block),
            ("12345", Action::Block),
            ("+1 202 762 014", Action::Block),
            ("+44 6123 456789", Action::Block),
            ("+1 237 234 5678", Action::Pass),
            ("+33 1 43 12 22", Action::Pass),
            // Another White House line: the callee's own number would be own-number spoofing.
            ("+1 202 456 1111", Action::Pass),
            ("+44 300 200 3310", Action::Pass),
            ("+61 13 28 61", Action::Pass),
        ];
        for (caller, want) in cases {
            let call = Call::question(caller, callee_of(country), None, false);
            let v = engine.decide(&call, &rules, 1_790_000_000_000);
            assert_eq!(v.action, *want, "{country} {caller:?}: {:?}", v.reasons);
        }
    }
}

/// The automaton agrees with the metadata it was compiled from, checked by another engine: each
/// number type's pattern as a `regex`, anchored, with the type's possible lengths. Over every
/// example number of every region (all must be valid) and, for a few codes, variants of each
/// example with a digit changed, dropped or added.
#[test]
fn automaton_agrees_with_the_metadata() {
    use phonenumber::metadata::{Descriptor, DATABASE};
    let n = Numbering::get();
    let types = |m: &'static phonenumber::Metadata| -> Vec<&'static Descriptor> {
        let d = m.descriptors();
        [
            d.fixed_line(),
            d.mobile(),
            d.voip(),
            d.personal_number(),
            d.uan(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.pager(),
            d.voicemail(),
        ]
        .into_iter()
        .flatten()
        .collect()
    };
    let mut examples = 0;
    for cc in 1..1000u16 {
        for m in DATABASE.by_code(&cc).unwrap_or_default() {
            for d in types(m) {
                if let Some(ex) = d.example() {
                    let plan = n.plan(cc).expect("a plan for every code");
                    assert_eq!(
                        plan.fit(ex.as_bytes()),
                        Fit::Valid,
                        "+{cc} {ex} ({})",
                        m.id()
                    );
                    examples += 1;
                }
            }
        }
    }
    assert!(examples > 1000, "{examples}");

    for cc in [1u16, 33, 34, 44, 49, 61, 91, 881] {
        let metas = DATABASE.by_code(&cc).unwrap();
        let general = |d: &Descriptor| d.possible_length().to_vec();
        let oracle: Vec<(regex::Regex, Vec<u16>)> = metas
            .iter()
            .flat_map(|m| {
                let union: Vec<u16> = types(m).iter().flat_map(|d| general(d)).collect();
                types(m).into_iter().map(move |d| {
                    let p: String = d
                        .national_number()
                        .as_str()
                        .chars()
                        .filter(|c| !c.is_whitespace())
                        .collect();
                    let lens = if d.possible_length().is_empty() {
                        union.clone()
                    } else {
                        d.possible_length().to_vec()
                    };
                    (regex::Regex::new(&format!("^(?:{p})$")).unwrap(), lens)
                })
            })
            .collect();
        let valid = |s: &str| {
            oracle
                .iter()
                .any(|(r, lens)| lens.contains(&(s.len() as u16)) && r.is_match(s))
        };
        let plan = n.plan(cc).unwrap();
        let mut checked = 0;
        for m in &metas {
            for d in types(m) {
                let Some(ex) = d.example() else { continue };
                let mut variants = vec![ex.to_string(), ex[..ex.len() - 1].to_string()];
                variants.push(format!("{ex}0"));
                for pos in [0, 1, 2, 3, ex.len() - 1] {
                    for digit in b'0'..=b'9' {
                        let mut v = ex.as_bytes().to_vec();
                        if pos < v.len() {
                            v[pos] = digit;
                            variants.push(String::from_utf8(v).unwrap());
                        }
                    }
                }
                for v in variants {
                    let got = plan.fit(v.as_bytes()) == Fit::Valid;
                    assert_eq!(got, valid(&v), "+{cc} {v}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "+{cc}: {checked}");
    }
}
