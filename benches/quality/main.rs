//! `cargo bench --bench quality [-- --scale 1 --duration 240 --seed 1 --countries US,GB --out F
//! --calls F.tsv]`
//!
//! The full labelled evaluation through the real agent over SIP: prints the confusion matrix
//! per class and per country, the warn threshold's trade-off curve, the false alarms with their
//! reasons, and the figure line. See README, "Screening quality".

#[path = "mod.rs"]
mod quality;

use std::path::PathBuf;

use quality::gen::{Country, Shape};

fn main() {
    let mut shape = Shape {
        scale: 1.0,
        duration_s: 240,
        seed: 1,
        time_scale: 1.0,
    };
    let mut countries = Country::ALL.to_vec();
    let mut out: Option<PathBuf> = None;
    let mut calls: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--scale" => shape.scale = val().parse().expect("--scale: a number"),
            "--duration" => shape.duration_s = val().parse().expect("--duration: seconds"),
            "--seed" => shape.seed = val().parse().expect("--seed: a number"),
            "--countries" => {
                countries = val()
                    .split(',')
                    .map(|c| Country::parse(c).unwrap_or_else(|| panic!("unknown country {c}")))
                    .collect()
            }
            "--out" => out = Some(PathBuf::from(val())),
            "--calls" => calls = Some(PathBuf::from(val())),
            // cargo bench passes --bench; nothing else is expected.
            _ => {}
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let started = std::time::Instant::now();
    let results = rt.block_on(quality::run(&countries, &shape, &root));
    let text = quality::report::render(&results, shape.seed, shape.scale);
    println!("{text}");
    eprintln!(
        "played {} calls in {:.0} s",
        results.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(p) = out {
        std::fs::write(&p, &text).expect("write --out");
    }
    if let Some(p) = calls {
        std::fs::write(&p, quality::report::calls_tsv(&results)).expect("write --calls");
    }
}
