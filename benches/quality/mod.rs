//! The labelled evaluation: generates a day of labelled traffic for each of the six victim
//! countries ([`gen`]), plays it through the real agent over SIP ([`play`]) and scores what the
//! callees saw against the labels ([`report`]).
//!
//! `cargo bench --bench quality` runs the full evaluation (see README, "Screening quality");
//! `tests/quality.rs` runs a short one to prove the harness works. No test asserts its
//! percentages: they are measurements, not pass marks.
#![allow(dead_code)]

pub mod gen;
pub mod play;
pub mod report;

use std::path::Path;

use gen::{Call, Country, Shape};
use play::Outcome;

/// Plays every country's day at once (one agent each) and returns every call with its outcome.
pub async fn run(countries: &[Country], shape: &Shape, root: &Path) -> Vec<(Call, Outcome)> {
    let mut tasks = Vec::new();
    for &c in countries {
        let day = gen::day(c, shape);
        let root = root.to_path_buf();
        tasks.push(tokio::spawn(async move {
            let outcomes = play::play(&day, &root).await;
            day.calls.into_iter().zip(outcomes).collect::<Vec<_>>()
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("a country's run"));
    }
    all
}
