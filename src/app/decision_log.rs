//! The decision log: one JSON line per screened call, written by a thread of its own so that a
//! slow disk or a blocked stdout never stalls the SIP receive path.
//!
//! The hot path hands a finished record to a bounded queue and moves on (the writer polls the
//! queue, so handing over never wakes a thread); when the queue is full
//! the record is dropped and counted (`scamguard_decision_log_dropped_total`) rather than letting
//! memory grow.
//!
//! With `[hep]` on, the writer also hands each line, as written, to the HEP capture as a log
//! record keyed by the call's Call-ID, so Homer shows the decision beside the call's flow: the
//! line is made once, off the SIP path, and the capture only queues it.
//!
//! With `[callback] destination_retention` and a log file, the writer also cuts the file into
//! periods and a thread of its own redacts outbound destinations once they are older than the
//! retention ([`super::retention`]).
//!
//! Knows nothing of SIP messages or how decisions are made.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::config::LogTarget;
use super::retention::{period_for, period_start, rotated_name, Sweeper};
use crate::metrics::{Collect, Counter, Exposition};
use crate::screening::{Action, Reason};
use crate::sip::Capture;

/// One screened call.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub action: Action,
    pub reasons: Vec<Reason>,
    /// Time spent deciding, in microseconds.
    pub decision_us: u64,
    /// Where the call came from.
    pub source: String,
    /// Anything else the operator should know (e.g. why a warned call got no announcement).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
    /// An outbound call of a protected subscriber: `callee` is the destination it dialled
    /// (hashed unless `callback.hash_destinations = false`) and the reasons are callback
    /// entries.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub outbound: bool,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let t = time::OffsetDateTime::from(*t);
    let text = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    s.serialize_str(&text)
}

#[derive(Default)]
pub struct LogStats {
    pub written: Counter,
    pub dropped: Counter,
    pub write_errors: Counter,
    /// Outbound lines whose destination was redacted for its age.
    pub redacted: Counter,
}

impl Collect for LogStats {
    fn collect(&self, out: &mut Exposition) {
        out.counter(
            "scamguard_decision_log_written_total",
            "Decision log lines written.",
            &[],
            self.written.get(),
        );
        out.counter(
            "scamguard_decision_log_dropped_total",
            "Decision log lines dropped because the writer fell behind.",
            &[],
            self.dropped.get(),
        );
        out.counter(
            "scamguard_decision_log_write_errors_total",
            "Decision log write failures.",
            &[],
            self.write_errors.get(),
        );
        out.counter(
            "scamguard_decision_log_redacted_total",
            "Outbound decision log lines whose destination was redacted (callback.destination_retention).",
            &[],
            self.redacted.get(),
        );
    }
}

/// The sending side, cheap to share.
#[derive(Clone)]
pub struct DecisionLog {
    tx: SyncSender<Record>,
    pub stats: Arc<LogStats>,
}

/// Records queued at most before new ones are dropped.
const QUEUE: usize = 65_536;

impl DecisionLog {
    /// Open the target and start the writer thread. The thread ends when every `DecisionLog`
    /// clone is dropped, after writing what was queued. With a `retention` of outbound
    /// destinations and a file, the file is cut into periods and a second thread redacts them.
    pub fn start(
        target: &LogTarget,
        hep: Option<Arc<Capture>>,
        retention: Option<Duration>,
    ) -> std::io::Result<(DecisionLog, std::thread::JoinHandle<()>)> {
        let stats = Arc::new(LogStats::default());
        let (out, rotate): (Box<dyn Write + Send>, _) = match target {
            LogTarget::Stdout => {
                if retention.is_some() {
                    tracing::warn!(
                        "callback.destination_retention: the decision log goes to stdout, so \
                         whatever keeps stdout keeps the destinations; log to a file to bound them"
                    );
                }
                (Box::new(std::io::stdout()), None)
            }
            LogTarget::File(path) => {
                let rotate = match retention {
                    Some(r) => Some(Rotate::start(path, r)?),
                    None => None,
                };
                (Box::new(open(path)?), rotate)
            }
        };
        let stop = match (&rotate, retention, target) {
            (Some(_), Some(r), LogTarget::File(path)) => {
                let (tx, rx) = sync_channel::<()>(0);
                let sweeper = Sweeper::new(path.clone(), r);
                let s = stats.clone();
                std::thread::Builder::new()
                    .name("decision-log-retention".into())
                    .spawn(move || sweeper.run(&rx, &s.redacted))?;
                Some(tx)
            }
            _ => None,
        };
        let (tx, rx) = sync_channel(QUEUE);
        let s = stats.clone();
        let handle = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || {
                writer(rx, Sink { out, rotate }, &s, hep.as_deref());
                // The retention thread ends with the writer.
                drop(stop);
            })?;
        Ok((DecisionLog { tx, stats }, handle))
    }

    pub fn write(&self, r: Record) {
        match self.tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.inc()
            }
        }
    }
}

/// How long the writer sleeps between drains. The hot path never wakes it: a blocked
/// `recv` would cost a futex wake (a syscall and, on a busy box, a context switch) for every
/// call, which at thousands of calls a second is more than the line itself costs.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

fn open(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Where the writer appends.
struct Sink {
    out: Box<dyn Write + Send>,
    rotate: Option<Rotate>,
}

/// The periods of a log file whose outbound destinations have a retention: at each period's
/// end the file is renamed for it and a new one opened, so the file being written never holds
/// a line older than the retention.
struct Rotate {
    path: PathBuf,
    period: Duration,
    /// When the current period ends.
    ends: SystemTime,
    /// Anything in the file yet (an empty period leaves no file behind).
    written: bool,
}

impl Rotate {
    /// The periods from now; a file left from an earlier period is renamed for it first.
    fn start(path: &Path, retention: Duration) -> std::io::Result<Rotate> {
        let period = period_for(retention);
        let now = SystemTime::now();
        let current = period_start(now, period);
        let mut written = false;
        if let Ok(m) = std::fs::metadata(path) {
            let last = m.modified().unwrap_or(now);
            if m.len() > 0 && last < current {
                let to = rotated_name(path, period_start(last, period), period);
                std::fs::rename(path, &to).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("{} to {}: {e}", path.display(), to.display()),
                    )
                })?;
            } else {
                written = m.len() > 0;
            }
        }
        Ok(Rotate {
            path: path.to_path_buf(),
            period,
            ends: current + period,
            written,
        })
    }

    /// At a period's end: rename the file for the period and open a new one. A failure is
    /// counted and the old file kept, so no line is lost.
    fn roll(&mut self, out: &mut Box<dyn Write + Send>, stats: &LogStats) {
        let now = SystemTime::now();
        if now < self.ends {
            return;
        }
        if self.written {
            let to = rotated_name(&self.path, self.ends - self.period, self.period);
            match std::fs::rename(&self.path, &to).and_then(|()| open(&self.path)) {
                Ok(f) => {
                    *out = Box::new(f);
                    self.written = false;
                }
                Err(e) => {
                    stats.write_errors.inc();
                    tracing::warn!("decision log {}: not rotated: {e}", self.path.display());
                }
            }
        }
        self.ends = period_start(now, self.period) + self.period;
    }
}

fn writer(rx: Receiver<Record>, mut sink: Sink, stats: &LogStats, hep: Option<&Capture>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, sink.out);
    let mut line = Vec::with_capacity(1024);
    loop {
        // Drain what is queued, then flush once: one write per drain, not per line.
        let mut wrote = false;
        let gone = loop {
            match rx.try_recv() {
                Ok(r) => {
                    line.clear();
                    let ok = serde_json::to_writer(&mut line, &r).is_ok()
                        && out.write_all(&line).is_ok()
                        && out.write_all(b"\n").is_ok();
                    if ok {
                        stats.written.inc();
                    } else {
                        stats.write_errors.inc();
                    }
                    if let Some(h) = hep {
                        h.log(&r.call_id, line.clone(), r.time);
                    }
                    wrote = true;
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        if wrote && out.flush().is_err() {
            stats.write_errors.inc();
        }
        if gone {
            break;
        }
        if let Some(r) = &mut sink.rotate {
            r.written |= wrote;
            if SystemTime::now() >= r.ends {
                // Flushed above: the new file starts with the next line.
                let _ = out.flush();
                r.roll(out.get_mut(), stats);
            }
        }
        std::thread::sleep(DRAIN_EVERY);
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_json_line_per_record_to_a_file() {
        let path = std::env::temp_dir().join(format!("sg-declog-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let (log, handle) = DecisionLog::start(&LogTarget::File(path.clone()), None, None).unwrap();
        for i in 0..3 {
            log.write(Record {
                time: SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_500_000),
                call_id: format!("c{i}"),
                caller: "+12025550143".into(),
                callee: "+12025550100".into(),
                action: Action::Block,
                reasons: vec![Reason {
                    source: crate::screening::Source::list("example"),
                    entry: "+12025550143".into(),
                    category: "example".into(),
                    reason: "r".into(),
                }],
                decision_us: 7,
                source: "127.0.0.1:5080".into(),
                note: None,
                outbound: false,
            });
        }
        let stats = log.stats.clone();
        drop(log);
        handle.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            r#"{"time":"1970-01-01T00:00:01.5Z","call_id":"c0","caller":"+12025550143","callee":"+12025550100","action":"block","reasons":[{"list":"example","entry":"+12025550143","category":"example","reason":"r"}],"decision_us":7,"source":"127.0.0.1:5080"}"#
        );
        assert_eq!(stats.written.get(), 3);
        assert_eq!(stats.dropped.get(), 0);
        let _ = std::fs::remove_file(&path);
    }
}
