//! Rule index benches: lookup hit, miss and prefix hit over 1,000,000 exact entries plus
//! 10,000 prefixes, X-patterns and a regex; the listed numbers of a caller's thousand-block (the
//! block signal's one probe); normalise+lookup of one caller; index build.
//! Set `SCAMGUARD_BENCH_10M=1` to also build and probe a 10,000,000-entry index (slow to
//! build, about 200 MB). Prints the index's bytes per exact entry.
//!
//! `SCAMGUARD_LOOKUP_COUNT=<entries>` skips criterion: it builds one index of that many exact
//! numbers (plus the same prefixes, X-patterns and regex) and runs 100,000 lookups of each kind,
//! each kind in its own never-inlined function, for an instruction-count profile that does not
//! depend on the machine's load:
//! `valgrind --tool=callgrind --toggle-collect='*probe_*' target/release/deps/lookup-*`
//! then divide each `probe_*` function's inclusive count by 100,000.

use std::hint::black_box;

use criterion::{criterion_group, Criterion};

use scamguard::screening::{
    Entry, EntryAction, IndexBuilder, Listed, Number, NumberPlan, Pattern, RuleIndex, ThousandBlock,
};

/// Deterministic NANP-shaped numbers (+1 NXX NXX XXXX).
fn numbers(count: usize, seed: u64) -> Vec<Number> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count)
        .map(|_| {
            let v = 10_000_000_000u64
                + rng.u64(2..10) * 1_000_000_000
                + rng.u64(0..100) * 10_000_000
                + rng.u64(2..10) * 1_000_000
                + rng.u64(0..1_000_000);
            Number::from_digits(v.to_string().as_bytes()).expect("11 digits")
        })
        .collect()
}

fn entry(pattern: Pattern, i: usize) -> Entry {
    // Few distinct metadata values, as in real lists.
    let (action, category) = match i % 4 {
        0 => (EntryAction::Warn, "robocall"),
        1 => (EntryAction::Allow, "partner"),
        _ => (EntryAction::Block, "scam"),
    };
    Entry {
        pattern,
        action,
        category: category.into(),
        reason: format!("{category} reported by feed"),
        source: "bench".into(),
        expires: None,
    }
}

fn build(exact: &[Number]) -> RuleIndex {
    build_with(exact, true)
}

fn build_with(exact: &[Number], regex: bool) -> RuleIndex {
    let mut b = IndexBuilder::new();
    for (i, n) in exact.iter().enumerate() {
        b.add(
            if i % 2 == 0 { "feed-a" } else { "feed-b" },
            &entry(Pattern::Exact(*n), i),
        );
    }
    for i in 0..10_000usize {
        let p = Pattern::parse(&format!("+44{}*", 100_000 + i)).expect("prefix");
        b.add("prefixes", &entry(p, i));
    }
    for i in 0..100usize {
        let p = Pattern::parse(&format!("+4420790{:02}XXX", i)).expect("x-pattern");
        b.add("patterns", &entry(p, i));
    }
    if regex {
        b.add(
            "patterns",
            &entry(Pattern::parse(r"/^\+2126\d{8}$/").expect("regex"), 2),
        );
    }
    b.build()
}

fn report(name: &str, idx: &RuleIndex) {
    let s = idx.stats();
    eprintln!(
        "{name}: {} exact, {} prefixes, {} x-patterns, {} regexes, {} metas; exact table {:.1} bytes/entry, other {} KiB; block counts {:.1} bytes per exact entry ({} numbers)",
        s.exact,
        s.prefixes,
        s.digit_patterns,
        s.regexes,
        s.metas,
        s.bytes_per_exact(),
        s.other_bytes / 1024,
        s.block_bytes as f64 / s.exact.max(1) as f64,
        s.block_numbers
    );
}

fn lookups(c: &mut Criterion, name: &str, exact: &[Number], idx: &RuleIndex) {
    let misses = numbers(4096, 99);
    let hits: Vec<Number> = exact.iter().step_by(exact.len() / 4096).copied().collect();
    let prefix_hits: Vec<Number> = (0..4096u64)
        .map(|i| {
            let v = (44_100_000 + i % 10_000) * 10_000 + (i * 37) % 10_000;
            Number::from_digits(v.to_string().as_bytes()).expect("12 digits")
        })
        .collect();
    let mut i = 0usize;
    c.bench_function(&format!("{name}/lookup_hit"), |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(idx.lookup(black_box(hits[i % hits.len()]), 0))
        })
    });
    c.bench_function(&format!("{name}/lookup_miss"), |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(idx.lookup(black_box(misses[i]), 0))
        })
    });
    c.bench_function(&format!("{name}/lookup_prefix_hit"), |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(idx.lookup(black_box(prefix_hits[i]), 0))
        })
    });
    // Neighbours of listed numbers (their blocks have members) and unrelated callers.
    let near: Vec<ThousandBlock> = hits.iter().filter_map(|n| ThousandBlock::of(*n)).collect();
    let far: Vec<ThousandBlock> = misses
        .iter()
        .filter_map(|n| ThousandBlock::of(*n))
        .collect();
    for (what, blocks) in [("listed_in_near", &near), ("listed_in_any", &far)] {
        c.bench_function(&format!("{name}/{what}"), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                let mut l = Listed::default();
                idx.listed_in(black_box(blocks[i % blocks.len()]), 0, &mut l);
                black_box(l)
            })
        });
    }
}

fn benches(c: &mut Criterion) {
    let exact = numbers(1_000_000, 7);
    let idx = build(&exact);
    report("1M", &idx);
    // Sanity: the probes used below really hit and miss.
    assert!(idx.lookup(exact[0], 0).is_some());
    assert!(idx
        .lookup(Number::parse_e164("+441000001234567").expect("n"), 0)
        .is_some());
    lookups(c, "1M", &exact, &idx);

    // What the regex stage costs a miss.
    let no_regex = build_with(&exact, false);
    let misses = numbers(4096, 99);
    let mut i = 0usize;
    c.bench_function("1M/lookup_miss_without_regex", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(no_regex.lookup(black_box(misses[i]), 0))
        })
    });
    drop(no_regex);

    let plan = NumberPlan::for_country("US").unwrap();
    let caller = exact[12345].to_string();
    let display = format!("({}) {}-{}", &caller[2..5], &caller[5..8], &caller[8..]);
    c.bench_function("1M/normalise_and_lookup", |b| {
        b.iter(|| {
            let n = plan.normalise(black_box(&display));
            black_box(n.and_then(|n| idx.lookup(n, 0)))
        })
    });

    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    g.bench_function("1M_exact_10k_prefix", |b| {
        b.iter(|| black_box(build(&exact)))
    });
    g.finish();

    if std::env::var_os("SCAMGUARD_BENCH_10M").is_some() {
        let exact = numbers(10_000_000, 8);
        let idx = build(&exact);
        report("10M", &idx);
        lookups(c, "10M", &exact, &idx);
    }
}

/// Lookups per kind in the instruction-count mode.
const PROBES: usize = 100_000;

#[inline(never)]
fn probe_hit(idx: &RuleIndex, ns: &[Number]) -> usize {
    ns.iter().filter(|n| idx.lookup(**n, 0).is_some()).count()
}

#[inline(never)]
fn probe_miss(idx: &RuleIndex, ns: &[Number]) -> usize {
    // Counts what did match; each probe function differs so the linker cannot fold them into
    // one symbol (which would merge their counts).
    ns.len() - ns.iter().filter(|n| idx.lookup(**n, 0).is_none()).count()
}

#[inline(never)]
fn probe_prefix_hit(idx: &RuleIndex, ns: &[Number]) -> usize {
    ns.iter()
        .filter(
            |n| matches!(idx.lookup(**n, 0), Some(m) if matches!(m.pattern, Pattern::Prefix(_))),
        )
        .count()
}

/// The instruction-count mode (see the module doc): every probe set is checked for what it
/// claims to be, so a count is never taken over lookups that did something else.
fn count_mode(entries: usize) {
    let exact = numbers(entries, 8);
    let idx = build(&exact);
    report(&format!("{entries}"), &idx);
    let hits: Vec<Number> = exact
        .iter()
        .step_by((entries / PROBES).max(1))
        .copied()
        .collect();
    let misses = numbers(PROBES, 99);
    let prefix_hits: Vec<Number> = (0..PROBES as u64)
        .map(|i| {
            let v = (44_100_000 + i % 10_000) * 10_000 + (i * 37) % 10_000;
            Number::from_digits(v.to_string().as_bytes()).expect("12 digits")
        })
        .collect();
    let h = probe_hit(&idx, &hits);
    let m = probe_miss(&idx, &misses);
    let p = probe_prefix_hit(&idx, &prefix_hits);
    eprintln!(
        "probes: {h}/{} hits, {m}/{} misses matched, {p}/{} prefix hits",
        hits.len(),
        misses.len(),
        prefix_hits.len()
    );
    // Random NANP numbers can collide with the list by chance; anything beyond that is a bug.
    assert_eq!(h, hits.len(), "every hit probe must match");
    assert!(m * 100 < misses.len(), "miss probes must nearly all miss");
    assert_eq!(p, prefix_hits.len(), "every prefix probe must match");
}

criterion_group!(lookup, benches);

fn main() {
    if let Some(n) = std::env::var_os("SCAMGUARD_LOOKUP_COUNT") {
        let n = n
            .to_str()
            .and_then(|s| s.parse::<usize>().ok())
            .expect("SCAMGUARD_LOOKUP_COUNT is a number of entries");
        count_mode(n);
        return;
    }
    lookup();
    Criterion::default().configure_from_args().final_summary();
}
