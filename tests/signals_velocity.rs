//! Bounded memory under a flood: a million calls from random caller numbers (and random source
//! addresses), each cancelled after a second, plus a flood of reports from random reporters. Every
//! table stays within its cap, and a caller seen again after the flood is still counted.

use std::sync::Arc;

use scamguard::screening::signals::brands::Brands;
use scamguard::screening::signals::report_book::{Report, ReportSource, ReportsConfig};
use scamguard::screening::signals::stir::{CertLookup, CertState};
use scamguard::screening::signals::velocity::{Level, Thresholds, VelocityConfig};
use scamguard::screening::signals::wangiri::{CallEnd, WangiriConfig};
use scamguard::screening::signals::{evaluate, SignalInput, SignalState, SignalsConfig};

struct NoCerts;
impl CertLookup for NoCerts {
    fn lookup(&self, _: &str) -> CertState {
        CertState::Pending
    }
}

const CAP: usize = 20_000;

#[test]
fn a_million_random_callers_stay_within_the_caps() {
    let cfg = SignalsConfig {
        velocity: VelocityConfig {
            max_keys: CAP,
            source: Thresholds {
                per_minute: Level::new(1_000, 5_000),
                ..Thresholds::default()
            },
            ..VelocityConfig::default()
        },
        wangiri: WangiriConfig {
            max_keys: CAP,
            ..WangiriConfig::default()
        },
        reports: ReportsConfig {
            max_callers: CAP,
            ..ReportsConfig::default()
        },
        max_calls: CAP,
        ..SignalsConfig::default()
    };
    let state = SignalState::new(cfg, Arc::new(Brands::default()), Arc::new(NoCerts));
    let mut rng = fastrand::Rng::with_seed(7);
    let t0: u64 = 1_790_000_000_000;
    let mut id = String::new();
    let mut caller = String::new();
    let mut callee = String::new();
    let mut source = String::new();
    for i in 0..1_000_000u64 {
        use std::fmt::Write;
        id.clear();
        caller.clear();
        callee.clear();
        source.clear();
        let _ = write!(id, "flood-{i}");
        let _ = write!(
            caller,
            "+1{}{:09}",
            rng.u32(2..10),
            rng.u32(0..1_000_000_000)
        );
        let _ = write!(
            callee,
            "+44{}",
            7_000_000_000u64 + rng.u64(0..1_000_000_000)
        );
        let _ = write!(source, "198.51.{}.{}", rng.u8(..), rng.u8(..));
        let now = t0 + i; // a thousand calls a second
        let input = SignalInput {
            call_id: &id,
            caller: Some(&caller),
            callee: Some(&callee),
            source: Some(&source),
            ..Default::default()
        };
        evaluate(&input, &state, now);
        // Most calls end (cancelled within a second: each one a wangiri candidate); some never
        // send an end event at all, as lost calls do.
        if i % 10 != 0 {
            state.call_ended(&id, CallEnd::Cancelled, now + 1_000);
        }
        if i % 5 == 0 {
            let r = Report {
                caller: caller.clone(),
                callee: None,
                category: "scam".into(),
                reporter: format!("reporter-{}", rng.u32(..)),
                at: (now / 1000) as i64,
                source: ReportSource::Api,
            };
            state.report(&r, (now / 1000) as i64);
        }
    }
    let (callers, sources, prefixes) = state.velocity().sizes();
    let (numbers, ranges) = state.wangiri().sizes();
    let cap = state.velocity().capacity();
    assert!((CAP..CAP + 64).contains(&cap), "{cap}");
    for (name, n) in [
        ("velocity callers", callers),
        ("velocity sources", sources),
        ("velocity prefixes", prefixes),
        ("wangiri numbers", numbers),
        ("wangiri ranges", ranges),
        ("reports", state.reports().len()),
        ("calls in progress", state.calls_tracked()),
    ] {
        assert!(n <= cap, "{name}: {n} slots, cap {cap}");
        assert!(n > 0, "{name}: nothing tracked, the flood was not counted");
    }

    // After the flood, a burst from one caller is still seen: recent keys are kept.
    let t1 = t0 + 1_000_000;
    let mut last = None;
    for i in 0..12u64 {
        let id = format!("burst-{i}");
        let callee = format!("+4420718387{i:02}");
        let input = SignalInput {
            call_id: &id,
            caller: Some("+12027620143"),
            callee: Some(&callee),
            ..Default::default()
        };
        last = Some(evaluate(&input, &state, t1 + i * 50));
    }
    let hits = last.unwrap().hits;
    assert!(
        hits.iter()
            .any(|h| h.reason.source == "velocity" && h.score >= 100),
        "{hits:#?}"
    );

    // And an idle period frees everything without any new call.
    state.sweep(t1 + 10 * 86_400_000 + 1);
    let (callers, sources, prefixes) = state.velocity().sizes();
    assert_eq!(
        (
            callers,
            sources,
            prefixes,
            state.calls_tracked(),
            state.reports().len()
        ),
        (0, 0, 0, 0, 0)
    );
}
