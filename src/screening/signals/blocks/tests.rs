//! Block reputation over real number shapes: which blocks a number has in each country, the
//! thresholds, the caller never counting for itself, reports and own blocks fading, and caps.

use super::*;
use crate::screening::evidence::Reason;

const T: i64 = 1_800_000_000;
const T_MS: u64 = T as u64 * 1000;
const DAY: i64 = 86_400;

fn n(s: &str) -> Number {
    Number::parse_e164(s).unwrap_or_else(|| panic!("{s}"))
}

/// The listed set of `caller`'s block holding these numbers (all of the same block).
fn listed(numbers: &[&str]) -> Listed {
    let mut l = Listed::default();
    for s in numbers {
        l.insert(ThousandBlock::place(n(s)));
    }
    l
}

fn nearby(caller: &str, numbers: &[&str]) -> Nearby {
    for s in numbers {
        assert_eq!(ThousandBlock::of(n(s)), ThousandBlock::of(n(caller)), "{s}");
    }
    Nearby {
        caller: n(caller),
        reach: reach(n(caller)),
        listed: listed(numbers),
    }
}

fn book() -> BlockBook {
    BlockBook::new(BlocksConfig::default())
}

/// (score, entry, reason) of the evidence, if any.
fn said(e: Option<Evidence>) -> Option<(i32, String, String)> {
    e.map(|e| {
        assert_eq!(e.reason.source, Source::Signal(Signal::Blocks));
        assert_eq!(e.reason.category, "block-reputation");
        let Reason { entry, reason, .. } = e.reason;
        (e.score, entry, reason)
    })
}

#[test]
fn blocks_follow_each_countrys_numbering() {
    use Reach::*;
    let cases: &[(&str, Reach)] = &[
        // NANP: geographic and VoIP numbers have both blocks; toll-free none.
        ("+12025550143", HundredAndThousand),
        ("+14165550199", HundredAndThousand),
        ("+18005550143", None),
        ("+18335550143", None),
        ("+18885550143", None),
        ("+18845550143", None),
        ("+18135550143", HundredAndThousand),
        ("+1202555014", None),
        ("+11025550143", None),
        // GB: geographic and 03 by the thousand, mobile and 08/09 by the hundred.
        ("+442079460018", HundredAndThousand),
        ("+441632960001", HundredAndThousand),
        ("+443001234567", HundredAndThousand),
        ("+447700900123", Hundred),
        ("+448001234567", Hundred),
        ("+44169771234", Hundred),
        ("+448001111", None),
        // DE: variable length; mobile by the hundred; service numbers none.
        ("+493012345678", HundredAndThousand),
        ("+4989123456789", HundredAndThousand),
        ("+4930123456", Hundred),
        ("+4915123456789", Hundred),
        ("+498001234567", None),
        ("+491801234567", None),
        ("+499001234567", None),
        ("+49301234", None),
        // ES: closed 9-digit plan.
        ("+34912345678", HundredAndThousand),
        ("+34812345678", HundredAndThousand),
        ("+34612345678", Hundred),
        ("+34712345678", Hundred),
        ("+34900123456", None),
        ("+34803123456", None),
        ("+34512345678", None),
        // AU: geographic and 0550 by the thousand, mobile by the hundred, 13/1300/1800 none.
        ("+61298765432", HundredAndThousand),
        ("+61755501234", HundredAndThousand),
        ("+61412345678", Hundred),
        ("+611300975707", None),
        ("+61131234", None),
        // Elsewhere: the 100-block of long numbers.
        ("+33123456789", Hundred),
        ("+819012345678", Hundred),
        ("+3531234567", Hundred),
        ("+29012345", None),
    ];
    for (s, want) in cases {
        assert_eq!(reach(n(s)), *want, "{s}");
    }
}

#[test]
fn blocks_are_written_as_patterns_and_as_people_write_them() {
    // (caller, open digits, pattern, shown)
    let cases = [
        ("+12025550143", 2, "+120255501XX", "+1 202 555 01xx"),
        ("+12025550143", 3, "+12025550XXX", "+1 202 555 0xxx"),
        ("+442079460018", 3, "+442079460XXX", "+44 207946 0xxx"),
        ("+4915123456789", 2, "+49151234567XX", "+49 1512345 67xx"),
        ("+34912345678", 2, "+349123456XX", "+34 91234 56xx"),
        ("+61298765432", 3, "+61298765XXX", "+61 29876 5xxx"),
        ("+33123456789", 2, "+331234567XX", "+3312345 67xx"),
    ];
    for (c, open, p, h) in cases {
        assert_eq!(
            (pattern(n(c), open), shown(n(c), open)),
            (p.into(), h.into())
        );
    }
}

/// Listed numbers only, default thresholds (100-block: 2 suspect, 3 strong; 1000-block: 3
/// suspect, 6 strong; scores 30 and 50).
#[test]
fn thresholds_over_listed_numbers() {
    type Case<'a> = (&'a str, &'a [&'a str], Option<(i32, &'a str, &'a str)>);
    let cases: &[Case] = &[
        // One listed number never makes its neighbours suspect.
        ("+12025550143", &["+12025550144"], None),
        // Two in the 100-block: suspect, below the warn level.
        (
            "+12025550143",
            &["+12025550144", "+12025550177"],
            Some((30, "+120255501XX", "2 listed numbers in +1 202 555 01xx")),
        ),
        // Three in the 100-block: strong.
        (
            "+12025550143",
            &["+12025550101", "+12025550144", "+12025550199"],
            Some((50, "+120255501XX", "3 listed numbers in +1 202 555 01xx")),
        ),
        // Two spread over the 1000-block: not enough anywhere.
        ("+12025550143", &["+12025550201", "+12025550999"], None),
        // Three spread over the 1000-block: suspect there.
        (
            "+12025550143",
            &["+12025550201", "+12025550555", "+12025550999"],
            Some((30, "+12025550XXX", "3 listed numbers in +1 202 555 0xxx")),
        ),
        // The 100-block suspect and the 1000-block strong: the stronger wins.
        (
            "+12025550143",
            &[
                "+12025550101",
                "+12025550102",
                "+12025550301",
                "+12025550302",
                "+12025550303",
                "+12025550304",
                "+12025550305",
                "+12025550306",
                "+12025550307",
                "+12025550308",
                "+12025550309",
                "+12025550401",
                "+12025550402",
                "+12025550403",
                "+12025550404",
                "+12025550405",
                "+12025550406",
                "+12025550407",
                "+12025550408",
                "+12025550409",
            ],
            Some((50, "+12025550XXX", "20 listed numbers in +1 202 555 0xxx")),
        ),
        // Both at the same level: the narrower 100-block is named.
        (
            "+12025550143",
            &["+12025550101", "+12025550102", "+12025550301"],
            Some((30, "+120255501XX", "2 listed numbers in +1 202 555 01xx")),
        ),
        // A mobile number has no 1000-block: six listed numbers elsewhere in it say nothing.
        (
            "+447700900123",
            &[
                "+447700900201",
                "+447700900301",
                "+447700900401",
                "+447700900501",
                "+447700900601",
                "+447700900701",
            ],
            None,
        ),
        (
            "+447700900123",
            &["+447700900101", "+447700900102", "+447700900199"],
            Some((50, "+4477009001XX", "3 listed numbers in +44 770090 01xx")),
        ),
        // Toll-free: none at all.
        (
            "+18005550143",
            &["+18005550101", "+18005550102", "+18005550199"],
            None,
        ),
    ];
    let b = book();
    for (caller, numbers, want) in cases {
        let got = said(assess(&nearby(caller, numbers), &b, T_MS));
        let want = want.map(|(s, e, r)| (s, e.to_string(), r.to_string()));
        assert_eq!(got, want, "{caller} near {numbers:?}");
    }
}

#[test]
fn the_callers_own_entry_report_and_block_never_count() {
    let b = book();
    // Listed itself and one neighbour: one other number, nothing to say.
    let nb = nearby("+12025550143", &["+12025550143", "+12025550144"]);
    assert_eq!(said(assess(&nb, &b, T_MS)), None);
    // A neighbour with the same two listed numbers around it sees both.
    let nb = nearby("+12025550145", &["+12025550143", "+12025550144"]);
    assert_eq!(said(assess(&nb, &b, T_MS)).map(|s| s.0), Some(30));

    // Reported by two reporters and blocked here: still only about its neighbours.
    b.reported("+12025550143", "+12025551001", T, T);
    b.reported("+12025550143", "+12025551002", T, T);
    b.blocked(n("+12025550143"), T_MS);
    b.reported("+12025550144", "+12025551003", T, T);
    let alone = nearby("+12025550143", &[]);
    assert_eq!(said(assess(&alone, &b, T_MS)), None);
    let next = nearby("+12025550150", &[]);
    assert_eq!(
        said(assess(&next, &b, T_MS)),
        Some((
            30,
            "+120255501XX".into(),
            "2 reported numbers in +1 202 555 01xx".into()
        ))
    );
}

#[test]
fn one_reporter_cannot_taint_a_block() {
    let b = book();
    for s in [
        "+12025550101",
        "+12025550102",
        "+12025550103",
        "+12025550104",
    ] {
        b.reported(s, "+13125550000", T, T);
    }
    let nb = nearby("+12025550150", &[]);
    assert_eq!(said(assess(&nb, &b, T_MS)), None);
    // A second reporter of one of them: now the block's reports count.
    b.reported("+12025550104", "+13125550001", T, T);
    assert_eq!(
        said(assess(&nb, &b, T_MS)),
        Some((
            50,
            "+120255501XX".into(),
            "4 reported numbers in +1 202 555 01xx".into()
        ))
    );
}

#[test]
fn kinds_combine_and_one_number_counts_once() {
    let b = book();
    b.reported("+12025550101", "+13125550000", T, T);
    b.reported("+12025550102", "+13125550001", T, T);
    b.blocked(n("+12025550103"), T_MS);
    // Listed and blocked here: one number, counted as listed.
    b.blocked(n("+12025550104"), T_MS);
    let nb = nearby("+12025550150", &["+12025550104", "+12025550105"]);
    assert_eq!(
        said(assess(&nb, &b, T_MS)),
        Some((
            50,
            "+120255501XX".into(),
            "2 listed numbers, 2 reported numbers and 1 number blocked here in +1 202 555 01xx"
                .into()
        ))
    );
}

#[test]
fn reports_and_own_blocks_fade_with_their_half_lives() {
    let b = book();
    for (s, who) in [
        ("+12025550101", "+13125550000"),
        ("+12025550102", "+13125550001"),
        ("+12025550103", "+13125550002"),
    ] {
        b.reported(s, who, T, T);
    }
    let nb = nearby("+12025550150", &[]);
    let at = |days: f64| said(assess(&nb, &b, T_MS + (days * DAY as f64) as u64 * 1000));
    assert_eq!(at(0.0).map(|s| s.0), Some(50));
    // One report half-life (3 days) later, three numbers weigh 1.5: below suspect (2).
    assert_eq!(at(3.0), None);
    // A day in, they weigh 2.4: suspect, and the reason says they have faded.
    assert_eq!(
        at(1.0),
        Some((
            30,
            "+120255501XX".into(),
            "3 reported numbers in +1 202 555 01xx (weighing 2.4 after fading)".into()
        ))
    );

    // Own blocks fade faster (1 day).
    let b = book();
    for s in ["+442079460101", "+442079460102", "+442079460103"] {
        b.blocked(n(s), T_MS);
    }
    let nb = nearby("+442079460150", &[]);
    let at = |days: f64| said(assess(&nb, &b, T_MS + (days * DAY as f64) as u64 * 1000));
    assert_eq!(
        at(0.0),
        Some((
            50,
            "+4420794601XX".into(),
            "3 numbers blocked here in +44 207946 01xx".into()
        ))
    );
    assert_eq!(at(0.5).map(|s| s.0), Some(30));
    assert_eq!(at(1.0), None);
    // Four half-lives on, the block is forgotten and the sweep frees it.
    assert_eq!(b.len(), 1);
    b.sweep(T_MS + 4 * DAY as u64 * 1000 - 1000);
    assert_eq!(b.len(), 1);
    b.sweep(T_MS + 4 * DAY as u64 * 1000);
    assert_eq!(b.len(), 0);
}

#[test]
fn a_fresh_event_renews_a_faded_number() {
    let b = book();
    b.blocked(n("+34912345101"), T_MS);
    b.blocked(n("+34912345102"), T_MS);
    let nb = nearby("+34912345150", &[]);
    let later = T_MS + 2 * DAY as u64 * 1000;
    assert_eq!(said(assess(&nb, &b, later)), None);
    b.blocked(n("+34912345101"), later);
    b.blocked(n("+34912345102"), later);
    assert_eq!(said(assess(&nb, &b, later)).map(|s| s.0), Some(30));
    // Reports in the past are weighed from when they were made, not when they arrived.
    let b = book();
    b.reported("+34912345101", "+34600000001", T - 6 * DAY, T);
    b.reported("+34912345102", "+34600000002", T - 6 * DAY, T);
    assert_eq!(said(assess(&nb, &b, T_MS)), None);
}

#[test]
fn caps_bound_blocks_and_numbers_per_block() {
    let cfg = BlocksConfig {
        max_blocks: 64,
        max_numbers: 4,
        shards: 4,
        ..BlocksConfig::default()
    };
    let b = BlockBook::new(cfg);
    for i in 0..1_000u64 {
        b.blocked(n(&format!("+1202{:03}0101", 200 + i % 800)), T_MS);
        b.blocked(n(&format!("+1312555{:04}", i * 10)), T_MS);
    }
    assert!(b.len() <= 64, "{}", b.len());
    // Per block: the most faded numbers go first, the fresh ones stay.
    let b = BlockBook::new(BlocksConfig {
        max_numbers: 4,
        ..BlocksConfig::default()
    });
    for i in 0..4u64 {
        b.blocked(n(&format!("+1415555020{i}")), T_MS);
    }
    let later = T_MS + DAY as u64 * 1000;
    for i in 0..4u64 {
        b.blocked(n(&format!("+1415555010{i}")), later);
    }
    let held = b
        .read(ThousandBlock::of(n("+14155550100")).unwrap(), |m| {
            let mut v: Vec<u16> = m.iter().map(|m| m.place).collect();
            v.sort_unstable();
            v
        })
        .unwrap();
    assert_eq!(held, vec![100, 101, 102, 103]);
}

#[test]
fn numbers_without_blocks_are_not_tallied() {
    let b = book();
    b.blocked(n("+18005550101"), T_MS);
    b.reported("+61130012345", "+61400000000", T, T);
    b.reported("not a number", "+61400000000", T, T);
    assert!(b.is_empty());
    let off = BlockBook::new(BlocksConfig {
        enabled: false,
        ..BlocksConfig::default()
    });
    off.blocked(n("+12025550101"), T_MS);
    assert!(off.is_empty());
    let nb = nearby(
        "+12025550150",
        &["+12025550101", "+12025550102", "+12025550103"],
    );
    assert_eq!(assess(&nb, &off, T_MS), None);
}

#[test]
fn which_evidence_speaks_for_the_number() {
    const CALLER: &str = "+12025550143";
    let ev = |source: Source, entry: &str, effect: Effect| {
        let mut e = Evidence::signal(Signal::Velocity, 50, entry, "c", "r");
        e.reason.source = source;
        e.effect = effect;
        e
    };
    let sig = |s: Signal, entry: &str| ev(Source::Signal(s), entry, Effect::Scores);
    let list = Source::list("scam");
    let cases = [
        (ev(list.clone(), CALLER, Effect::Scores), true),
        // A range entry covers the neighbours already; a DNO entry means a spoofed number.
        (ev(list.clone(), "+1202555014X", Effect::Scores), false),
        (ev(list, CALLER, Effect::DoNotOriginate), false),
        (ev(Source::Policy, CALLER, Effect::Scores), false),
        (sig(Signal::Velocity, CALLER), true),
        (sig(Signal::Wangiri, CALLER), true),
        // Velocity of the trunk's address or of a prefix is not about this number.
        (sig(Signal::Velocity, "192.0.2.44"), false),
        (sig(Signal::Velocity, "+1202555*"), false),
        (sig(Signal::Wangiri, "+1202555014"), false),
        (sig(Signal::Brand, CALLER), false),
        (sig(Signal::Stir, CALLER), false),
        (sig(Signal::Dno, CALLER), false),
        (sig(Signal::Plausibility, CALLER), false),
        (sig(Signal::Gateway, CALLER), false),
        (sig(Signal::Neighbour, CALLER), false),
        (sig(Signal::Blocks, CALLER), false),
    ];
    for (e, want) in cases {
        assert_eq!(about_the_number(&e, CALLER), want, "{e:?}");
    }
}

#[test]
fn config_problems_are_named() {
    let ok = BlocksConfig::default();
    assert!(ok.validate().is_empty(), "{:?}", ok.validate());
    let cases = [
        (
            BlocksConfig {
                suspect_in_thousand: 1,
                ..ok.clone()
            },
            "signals.blocks.suspect_in_thousand is 1; expected at least 2",
        ),
        (
            BlocksConfig {
                suspect_in_hundred: 1,
                strong_in_hundred: 1,
                ..ok.clone()
            },
            "signals.blocks.suspect_in_hundred is 1",
        ),
        (
            BlocksConfig {
                min_reporters: 1,
                ..ok.clone()
            },
            "signals.blocks.min_reporters is 1",
        ),
        (
            BlocksConfig {
                strong_in_hundred: 1,
                ..ok.clone()
            },
            "strong_in_hundred (1) is below its suspect level (2)",
        ),
        (
            BlocksConfig {
                report_half_life_secs: 0,
                ..ok.clone()
            },
            "signals.blocks.report_half_life_secs is 0",
        ),
        (
            BlocksConfig {
                max_blocks: 0,
                ..ok.clone()
            },
            "signals.blocks.max_blocks is 0",
        ),
        (
            BlocksConfig {
                score_strong: -1,
                ..ok.clone()
            },
            "signals.blocks.score_strong is -1",
        ),
    ];
    for (cfg, want) in cases {
        let p = cfg.validate();
        assert!(p.iter().any(|m| m.contains(want)), "{want}: {p:?}");
    }
}

#[test]
fn the_report_book_tells_the_blocks_of_the_reports_it_counts() {
    use super::super::report_book::{Report, ReportBook, ReportSource, ReportsConfig};
    use std::sync::Arc;
    let blocks = Arc::new(book());
    let reports = ReportBook::new(ReportsConfig::default()).with_blocks(blocks.clone());
    let r = |caller: &str, reporter: &str, at: i64| Report {
        caller: caller.into(),
        callee: Some(reporter.into()),
        category: "scam".into(),
        reporter: reporter.into(),
        at,
        source: ReportSource::Sip607,
    };
    // Not counted by the book, so not by the blocks: a caller reporting itself, a report older
    // than the window.
    reports.record(&r("+61298765101", "+61298765101", T), T);
    reports.record(&r("+61298765102", "+61400000001", T - 8 * DAY), T);
    let nb = nearby("+61298765150", &[]);
    assert!(blocks.is_empty());
    reports.record(&r("+61298765101", "+61400000001", T), T);
    reports.record(&r("+61298765102", "+61400000002", T), T);
    assert_eq!(
        said(assess(&nb, &blocks, T_MS)),
        Some((
            30,
            "+612987651XX".into(),
            "2 reported numbers in +61 29876 51xx".into()
        ))
    );
}
