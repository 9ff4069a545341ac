//! Counters and their Prometheus text rendering.
//!
//! Each module keeps its own statistics as plain atomics in a struct of its own and implements
//! [`Collect`] for it; the admin API renders every registered collector into one exposition.
//! [`problems`] reads an exposition back the way a Prometheus server would and names what it
//! would refuse (a series or a `# TYPE` written twice, a family split in two), so a test can hold
//! the whole of `/metrics` to the format. This module knows nothing of what is counted beyond
//! names, help texts and labels.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (in-flight transactions, loaded entries).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution over fixed upper bounds (Prometheus `le`), with its sum and count. Lock-free:
/// one atomic per bucket.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative; rendering sums them).
    buckets: Box<[AtomicU64]>,
    /// Observations above the last bound.
    over: AtomicU64,
    /// The sum, in millionths, so it fits an atomic integer.
    sum_micros: AtomicU64,
}

impl Histogram {
    /// `bounds` ascending.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            over: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        let v = v.max(0.0);
        match self.bounds.iter().position(|b| v <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_micros.fetch_add(
            (v * 1e6).min(u64::MAX as f64 / 4.0) as u64,
            Ordering::Relaxed,
        );
    }

    pub fn count(&self) -> u64 {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum::<u64>()
            + self.over.load(Ordering::Relaxed)
    }
}

/// Something that can write its metrics in the Prometheus text format.
pub trait Collect: Send + Sync {
    fn collect(&self, out: &mut Exposition);
}

/// A Prometheus text exposition being written. Writes `# HELP`/`# TYPE` once per family.
#[derive(Default)]
pub struct Exposition {
    text: String,
    seen: std::collections::HashSet<String>,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        if self.seen.insert(name.to_string()) {
            let _ = writeln!(self.text, "# HELP {name} {help}");
            let _ = writeln!(self.text, "# TYPE {name} {kind}");
        }
    }

    /// One sample; `labels` are `(name, value)` pairs, values escaped here.
    pub fn sample(&mut self, name: &str, kind: &str, help: &str, labels: &[(&str, &str)], v: f64) {
        self.family(name, kind, help);
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(val));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {v}");
    }

    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: u64) {
        self.sample(name, "counter", help, labels, v as f64);
    }

    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: i64) {
        self.sample(name, "gauge", help, labels, v as f64);
    }

    /// A histogram's `_bucket` series (cumulative, `+Inf` last), `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        let mut total = 0;
        for (b, n) in h.bounds.iter().zip(h.buckets.iter()) {
            total += n.load(Ordering::Relaxed);
            let _ = writeln!(self.text, "{name}_bucket{{le=\"{b}\"}} {total}");
        }
        total += h.over.load(Ordering::Relaxed);
        let _ = writeln!(self.text, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(self.text, "{name}_sum {sum}");
        let _ = writeln!(self.text, "{name}_count {total}");
    }

    pub fn finish(self) -> String {
        self.text
    }
}

fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Render every collector into one exposition.
pub fn render(collectors: &[&dyn Collect]) -> String {
    let mut e = Exposition::default();
    for c in collectors {
        c.collect(&mut e);
    }
    e.finish()
}

/// What a Prometheus text-format (0.0.4) parser would refuse in `text`, one message per problem
/// naming the line: a `# HELP` or `# TYPE` given twice or after the family's samples, a family
/// whose lines are not one group, the same series (name and labels) twice, a malformed sample.
/// Empty when the exposition is valid.
pub fn problems(text: &str) -> Vec<String> {
    let mut p = Vec::new();
    let mut help = std::collections::HashSet::new();
    let mut types: std::collections::HashMap<String, String> = Default::default();
    let mut series = std::collections::HashSet::new();
    // Families already closed (another family's lines came after them), and the open one.
    let mut done = std::collections::HashSet::new();
    let mut current: Option<String> = None;
    let mut sampled = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", i + 1);
        let family = if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("").to_string();
            if !help.insert(name.clone()) {
                p.push(at(format!("second # HELP for {name}")));
            }
            name
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split(' ');
            let name = w.next().unwrap_or("").to_string();
            let kind = w.next().unwrap_or("").to_string();
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind.as_str()) {
                p.push(at(format!("unknown type {kind:?}")));
            }
            if types.insert(name.clone(), kind).is_some() {
                p.push(at(format!("second # TYPE for {name}")));
            }
            if sampled.contains(&name) {
                p.push(at(format!("# TYPE for {name} after its samples")));
            }
            name
        } else if line.starts_with('#') || line.trim().is_empty() {
            continue;
        } else {
            match sample(line) {
                Err(m) => {
                    p.push(at(m));
                    continue;
                }
                Ok((name, labels)) => {
                    let family = family_of(&name, &types);
                    if !series.insert((name.clone(), labels)) {
                        p.push(at(format!("second sample of the same series of {name}")));
                    }
                    sampled.insert(family.clone());
                    family
                }
            }
        };
        if current.as_deref() != Some(family.as_str()) {
            if done.contains(&family) {
                p.push(at(format!(
                    "{family} is split: its lines are not one group"
                )));
            }
            if let Some(prev) = current.replace(family) {
                done.insert(prev);
            }
        }
    }
    p
}

/// The family a sample belongs to: its own name, or a histogram's or summary's name without
/// the `_bucket`, `_sum` or `_count` suffix.
fn family_of(name: &str, types: &std::collections::HashMap<String, String>) -> String {
    if !types.contains_key(name) {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if matches!(
                    types.get(base).map(String::as_str),
                    Some("histogram" | "summary")
                ) {
                    return base.to_string();
                }
            }
        }
    }
    name.to_string()
}

/// One sample line: its metric name and its labels, sorted, or what is wrong with it.
fn sample(line: &str) -> Result<(String, Vec<(String, String)>), String> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = labels_of(r, &mut labels)?;
    }
    let mut w = rest.split_ascii_whitespace();
    let value = w.next().ok_or("no value")?;
    let number = matches!(value, "NaN" | "+Inf" | "-Inf") || value.parse::<f64>().is_ok();
    if !number {
        return Err(format!("value {value:?} is not a number"));
    }
    if let Some(ts) = w.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("timestamp {ts:?} is not whole milliseconds"))?;
    }
    if w.next().is_some() {
        return Err("text after the value and timestamp".into());
    }
    labels.sort();
    if labels.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err("a label given twice".into());
    }
    Ok((name.to_string(), labels))
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `name="value",...}` after a sample's `{`: the labels go into `out`, the text after the `}`
/// is returned.
fn labels_of<'a>(mut r: &'a str, out: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        if let Some(after) = r.strip_prefix('}') {
            return Ok(after);
        }
        let (key, v) = r.split_once("=\"").ok_or("labels are not closed")?;
        if !valid_name(key) {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = v.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {key} is not closed")),
                Some((i, '"')) => break i + 1,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err(format!("bad escape in label {key}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        out.push((key.to_string(), value));
        r = &v[end..];
        if let Some(next) = r.strip_prefix(',') {
            r = next;
        } else if !r.starts_with('}') {
            return Err(format!("expected , or }} after label {key}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two(Counter, Gauge);
    impl Collect for Two {
        fn collect(&self, out: &mut Exposition) {
            out.counter("x_total", "things", &[("kind", "a\"b")], self.0.get());
            out.counter("x_total", "things", &[("kind", "c")], 7);
            out.gauge("y", "level", &[], self.1.get());
        }
    }

    #[test]
    fn renders_help_once_and_escapes_labels() {
        let t = Two(Counter::default(), Gauge::default());
        t.0.add(3);
        t.1.set(-2);
        let s = render(&[&t]);
        assert_eq!(
            s,
            "# HELP x_total things\n# TYPE x_total counter\nx_total{kind=\"a\\\"b\"} 3\nx_total{kind=\"c\"} 7\n# HELP y level\n# TYPE y gauge\ny -2\n"
        );
    }

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        struct H(Histogram);
        impl Collect for H {
            fn collect(&self, out: &mut Exposition) {
                out.histogram("t_seconds", "time", &self.0);
            }
        }
        let h = H(Histogram::new(&[1.0, 10.0]));
        for v in [0.5, 1.0, 3.0, 50.0] {
            h.0.observe(v);
        }
        let s = render(&[&h]);
        assert_eq!(
            s,
            "# HELP t_seconds time\n# TYPE t_seconds histogram\nt_seconds_bucket{le=\"1\"} 2\n\
             t_seconds_bucket{le=\"10\"} 3\nt_seconds_bucket{le=\"+Inf\"} 4\nt_seconds_sum 54.5\n\
             t_seconds_count 4\n"
        );
        assert_eq!(problems(&s), Vec::<String>::new());
        assert_eq!(h.0.count(), 4);
    }

    #[test]
    fn problems_name_what_a_scraper_refuses() {
        let t = Two(Counter::default(), Gauge::default());
        assert_eq!(problems(&render(&[&t])), Vec::<String>::new());
        // Rendered twice, as two collectors of one thing would be.
        let twice = render(&[&t, &t]);
        let p = problems(&twice);
        assert!(
            p.iter()
                .any(|m| m.contains("second sample of the same series of x_total")),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m.contains("x_total is split")), "{p:?}");
        let ok = "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\nu{a=\"q\\\"\\\\\\n\",b=\"\"} NaN 1700000000000\n";
        assert_eq!(problems(ok), Vec::<String>::new(), "{ok}");
        for (text, want) in [
            ("# HELP a x\n# HELP a y\na 1\n", "second # HELP for a"),
            (
                "# TYPE a gauge\n# TYPE a gauge\na 1\n",
                "second # TYPE for a",
            ),
            ("a 1\n# TYPE a gauge\n", "# TYPE for a after its samples"),
            ("a{x=\"1\"} 1\nb 2\na{x=\"2\"} 3\n", "a is split"),
            (
                "a{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 1\n",
                "second sample",
            ),
            ("a one\n", "not a number"),
            ("a{x=\"1} 1\n", "not closed"),
            ("a{x=\"1\"y=\"2\"} 1\n", "expected , or }"),
            ("a{x=\"1\",x=\"2\"} 1\n", "a label given twice"),
            ("9a 1\n", "bad metric name"),
            ("# TYPE a gauges\na 1\n", "unknown type"),
        ] {
            let p = problems(text);
            assert!(p.len() == 1 && p[0].contains(want), "{text:?}: {p:?}");
        }
    }
}
