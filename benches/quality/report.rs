//! Scores the outcomes against the labels: a confusion matrix per class and per country, the
//! trade-off curve of the warn threshold, a sample of every false alarm with its reasons, and
//! one figure line. Printed as Markdown so the README can quote it as it stands.
//!
//! Knows nothing of SIP or of how the outcomes were obtained.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::gen::{Call, Class, Country, Label};
use super::play::{Outcome, Seen};

/// Caught (scam) or flagged (legitimate): anything but a pass.
fn flagged(o: &Outcome) -> bool {
    matches!(o.seen, Seen::Warn | Seen::Block)
}

#[derive(Default, Clone, Copy)]
struct Tally {
    n: usize,
    pass: usize,
    warn: usize,
    block: usize,
    lost: usize,
}

impl Tally {
    fn add(&mut self, o: &Outcome) {
        self.n += 1;
        match o.seen {
            Seen::Pass => self.pass += 1,
            Seen::Warn => self.warn += 1,
            Seen::Block => self.block += 1,
            Seen::Lost => self.lost += 1,
        }
    }
    fn flagged(&self) -> usize {
        self.warn + self.block
    }
    fn pct(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            100.0 * self.flagged() as f64 / self.n as f64
        }
    }
}

/// The headline figures of a run.
pub struct Figures {
    pub listed_caught: f64,
    pub unlisted_caught: f64,
    pub legit_flagged: f64,
    pub worst_legit: (&'static str, f64),
    pub calls: usize,
    pub lost: usize,
    pub unexplained: usize,
}

pub fn figures(results: &[(Call, Outcome)]) -> Figures {
    let mut listed = Tally::default();
    let mut unlisted = Tally::default();
    let mut legit = Tally::default();
    let mut by_class: BTreeMap<Class, Tally> = BTreeMap::new();
    let mut lost = 0;
    let mut unexplained = 0;
    for (c, o) in results {
        match (c.class.label(), c.class) {
            (Label::Scam, Class::Listed) => listed.add(o),
            (Label::Scam, _) => unlisted.add(o),
            (Label::Legit, _) => legit.add(o),
        }
        by_class.entry(c.class).or_default().add(o);
        lost += usize::from(o.seen == Seen::Lost);
        unexplained += usize::from(flagged(o) && o.reasons.is_empty());
    }
    let worst_legit = by_class
        .iter()
        .filter(|(c, _)| c.label() == Label::Legit)
        .map(|(c, t)| (c.name(), t.pct()))
        .fold(("none", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    Figures {
        listed_caught: listed.pct(),
        unlisted_caught: unlisted.pct(),
        legit_flagged: legit.pct(),
        worst_legit,
        calls: results.len(),
        lost,
        unexplained,
    }
}

/// The one line to quote before and after a change to signals, scoring, lists or brands.
pub fn figure_line(results: &[(Call, Outcome)], seed: u64, scale: f64) -> String {
    let f = figures(results);
    format!(
        "quality seed={seed} scale={scale}: listed {:.1}% caught | unlisted scam {:.1}% caught | \
         legit {:.2}% flagged (worst class {} {:.1}%) | {} calls, {} lost, {} unexplained",
        f.listed_caught,
        f.unlisted_caught,
        f.legit_flagged,
        f.worst_legit.0,
        f.worst_legit.1,
        f.calls,
        f.lost,
        f.unexplained
    )
}

/// The whole report, as Markdown.
pub fn render(results: &[(Call, Outcome)], seed: u64, scale: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Per class\n");
    let _ = writeln!(
        out,
        "| class | label | calls | pass | warn | block | lost | caught / flagged |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    let mut by_class: BTreeMap<Class, Tally> = BTreeMap::new();
    let mut by_cc: BTreeMap<(Class, Country), Tally> = BTreeMap::new();
    for (c, o) in results {
        by_class.entry(c.class).or_default().add(o);
        by_cc.entry((c.class, c.country)).or_default().add(o);
    }
    for (class, t) in &by_class {
        let label = match class.label() {
            Label::Scam => "scam",
            Label::Legit => "legit",
        };
        let _ = writeln!(
            out,
            "| {} | {label} | {} | {} | {} | {} | {} | {:.1}% |",
            class.name(),
            t.n,
            t.pass,
            t.warn,
            t.block,
            t.lost,
            t.pct()
        );
    }

    let _ = writeln!(out, "\n## Per country\n");
    let _ = writeln!(
        out,
        "| country | calls | listed caught | unlisted scam caught | legit flagged | legit blocked |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for country in Country::ALL {
        let mut listed = Tally::default();
        let mut unlisted = Tally::default();
        let mut legit = Tally::default();
        for (c, o) in results.iter().filter(|(c, _)| c.country == country) {
            match (c.class.label(), c.class) {
                (Label::Scam, Class::Listed) => listed.add(o),
                (Label::Scam, _) => unlisted.add(o),
                (Label::Legit, _) => legit.add(o),
            }
        }
        if listed.n + unlisted.n + legit.n == 0 {
            continue;
        }
        let blocked = if legit.n == 0 {
            0.0
        } else {
            100.0 * legit.block as f64 / legit.n as f64
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.1}% | {:.1}% | {:.2}% | {:.2}% |",
            country.code(),
            listed.n + unlisted.n + legit.n,
            listed.pct(),
            unlisted.pct(),
            legit.pct(),
            blocked
        );
    }

    let _ = writeln!(
        out,
        "\n## Caught (scam) or flagged (legitimate) per class and country\n"
    );
    let _ = write!(out, "| class |");
    for c in Country::ALL {
        let _ = write!(out, " {} |", c.code());
    }
    let _ = writeln!(out, "\n|---|{}", "---:|".repeat(Country::ALL.len()));
    for class in Class::ALL {
        if !by_class.contains_key(&class) {
            continue;
        }
        let _ = write!(out, "| {} |", class.name());
        for c in Country::ALL {
            match by_cc.get(&(class, c)) {
                Some(t) => {
                    let _ = write!(out, " {:.0}% ({}) |", t.pct(), t.n);
                }
                None => {
                    let _ = write!(out, " - |");
                }
            }
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(out, "\n## Trade-off of the warn threshold\n");
    let _ = writeln!(
        out,
        "Recomputed from each call's logged score (the sum of its enforced contributions) and its \
         overrides, with everything else as played; the agent's own blocks feed back into later \
         calls, so a threshold other than the shipped one is an estimate.\n"
    );
    let _ = writeln!(out, "| warn_at | unlisted scam caught | legit flagged |");
    let _ = writeln!(out, "|---:|---:|---:|");
    for t in [25, 40, 50, 60, 75, 100, 125, 150] {
        let (mut sc, mut sn, mut lc, mut ln) = (0, 0, 0, 0);
        for (c, o) in results {
            let hit = o.overrides.iter().any(|x| x == "dno")
                || (o.score >= t && !o.overrides.iter().any(|x| x == "allow" || x == "emergency"));
            match (c.class.label(), c.class) {
                (Label::Scam, Class::Listed) => {}
                (Label::Scam, _) => {
                    sn += 1;
                    sc += usize::from(hit);
                }
                (Label::Legit, _) => {
                    ln += 1;
                    lc += usize::from(hit);
                }
            }
        }
        let pct = |a: usize, b: usize| {
            if b == 0 {
                0.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        let _ = writeln!(out, "| {t} | {:.1}% | {:.2}% |", pct(sc, sn), pct(lc, ln));
    }

    let _ = writeln!(out, "\n## False alarms (up to 3 per class and country)\n");
    let mut shown: BTreeMap<(Class, Country), usize> = BTreeMap::new();
    for (c, o) in results
        .iter()
        .filter(|(c, o)| c.class.label() == Label::Legit && flagged(o))
    {
        let k = shown.entry((c.class, c.country)).or_default();
        *k += 1;
        if *k > 3 {
            continue;
        }
        let _ = writeln!(
            out,
            "- {} {} {} -> {} {:?}: {}",
            c.country.code(),
            c.class.name(),
            c.caller,
            c.callee,
            o.seen,
            o.reasons.join(" | ")
        );
    }
    let _ = writeln!(out, "\n## Missed scams (up to 2 per class and country)\n");
    let mut shown: BTreeMap<(Class, Country), usize> = BTreeMap::new();
    for (c, o) in results
        .iter()
        .filter(|(c, o)| c.class.label() == Label::Scam && !flagged(o))
    {
        let k = shown.entry((c.class, c.country)).or_default();
        *k += 1;
        if *k > 2 {
            continue;
        }
        let _ = writeln!(
            out,
            "- {} {} {} -> {} {:?} ({}): {}",
            c.country.code(),
            c.class.name(),
            c.caller,
            c.callee,
            o.seen,
            c.display.as_deref().unwrap_or("-"),
            o.reasons.join(" | ")
        );
    }
    let _ = writeln!(out, "\n{}", figure_line(results, seed, scale));
    out
}

/// Every call on one line, for analysis beyond the report's samples: class, country, time,
/// caller, callee, display name, ingress, attested, what the callee does, what was seen, the
/// SIP status of a block, the logged score and the reasons.
pub fn calls_tsv(results: &[(Call, Outcome)]) -> String {
    let mut out = String::from(
        "class\tcountry\tat_ms\tcaller\tcallee\tdisplay\tingress\tattested\tcallee_does\tseen\tstatus\tscore\treasons\n",
    );
    for (c, o) in results {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{:?}\t{}\t{:?}\t{}\t{}\t{}\t{}",
            c.class.name(),
            c.country.code(),
            c.at_ms,
            c.caller,
            c.callee,
            c.display.as_deref().unwrap_or("-"),
            c.ingress,
            c.attested,
            c.callee_does,
            o.seen.name(),
            o.status.map_or_else(|| "-".to_string(), |s| s.to_string()),
            o.score,
            o.reasons.join(" | ")
        );
    }
    out
}
