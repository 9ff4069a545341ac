//! A short run of the labelled evaluation (`benches/quality`), to prove the harness works: every
//! generated call is played through the real agent over SIP and gets an outcome, every class
//! and country is present, and the product's invariants hold on it (listed numbers caught, calls
//! to emergency numbers passed, every flagged call explained). Its percentages are not asserted:
//! the full run is a benchmark (`cargo bench --bench quality`).

#[path = "../benches/quality/mod.rs"]
mod quality;

use std::path::PathBuf;

use quality::gen::{Class, Country, Shape};
use quality::play::Seen;

#[test]
fn the_same_seed_plays_the_same_day() {
    let shape = Shape {
        scale: 0.2,
        duration_s: 60,
        seed: 7,
        time_scale: 1.0,
    };
    let a = quality::gen::day(Country::GB, &shape);
    let b = quality::gen::day(Country::GB, &shape);
    assert!(!a.calls.is_empty());
    assert_eq!(a.calls.len(), b.calls.len());
    for (x, y) in a.calls.iter().zip(&b.calls) {
        assert_eq!(
            (&x.caller, &x.callee, x.at_ms),
            (&y.caller, &y.callee, y.at_ms)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_labelled_run_through_the_agent() {
    let shape = Shape {
        scale: 0.1,
        duration_s: 15,
        seed: 1,
        time_scale: 0.1,
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let results = quality::run(&Country::ALL, &shape, &root).await;

    let expected: usize = Country::ALL
        .iter()
        .map(|c| quality::gen::day(*c, &shape).calls.len())
        .sum();
    assert_eq!(results.len(), expected, "every generated call was played");
    for country in Country::ALL {
        for class in Class::ALL {
            // Brands' own attested numbers exist only where calls are signed.
            if class == Class::BrandGenuine && !country.signs_calls() {
                continue;
            }
            assert!(
                results
                    .iter()
                    .any(|(c, _)| c.country == country && c.class == class),
                "{} has no {} call",
                country.code(),
                class.name()
            );
        }
    }
    for (c, o) in &results {
        let what = format!(
            "{} {} {} -> {}",
            c.country.code(),
            c.class.name(),
            c.caller,
            c.callee
        );
        assert_ne!(o.seen, Seen::Lost, "{what}: no outcome");
        match c.class {
            Class::Listed => assert!(
                matches!(o.seen, Seen::Warn | Seen::Block),
                "{what}: a listed number passed"
            ),
            Class::Emergency => {
                assert_eq!(
                    o.seen,
                    Seen::Pass,
                    "{what}: an emergency call was held back"
                )
            }
            _ => {}
        }
        if o.seen != Seen::Pass {
            assert!(
                !o.reasons.is_empty(),
                "{what}: {:?} ({:?}) without a reason",
                o.seen,
                o.status
            );
        }
        if o.seen == Seen::Block {
            assert!(
                matches!(o.status, Some(403..=699)),
                "{what}: a block answered {:?}",
                o.status
            );
        }
    }
    let text = quality::report::render(&results, shape.seed, shape.scale);
    for section in [
        "## Per class",
        "## Per country",
        "## Trade-off",
        "quality seed=1",
    ] {
        assert!(text.contains(section), "report lacks {section}:\n{text}");
    }
}
