//! Counters and their Prometheus text rendering.
//!
//! Each module keeps its own statistics as plain atomics in a struct of its own and implements
//! [`Collect`] for it; the admin API renders every registered collector into one exposition.
//! This module knows nothing of what is counted beyond names, help texts and labels.

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
}
