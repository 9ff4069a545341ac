//! The recent calls the console shows: a bounded ring of screened calls, each with a sequence
//! number, filled by the app as it screens and read by the live tail, the overview and the
//! what-if preview.
//!
//! Pushing takes one short lock and wakes nobody: the live tail asks for rows after the last
//! one it sent a few times a second, so the SIP path never pays for a reader. The ring holds at
//! most `cap` rows; the oldest go first. Knows nothing of SIP, HTTP or how a call was decided.
//!
//! The rows live encoded, one after another, in a single buffer of `cap` × [`ROW_BYTES`] bytes
//! that is allocated and written through when the ring is made, with an index of `cap` slots
//! made the same way. A row kept as a struct of its own strings costs a dozen heap blocks, so a
//! ring filling up (with a flood's calls, or a busy hour's) left the agent's memory higher for
//! good; here the ring's whole cost is paid at start, and what a call adds is copied into it.
//! A row that needs more than its share of bytes simply leaves room for fewer rows. Readers get
//! each row decoded into a [`Row`] of its own, off the SIP path.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::screening::{Action, Reason, Signal, Source};

/// Bytes of the buffer per row of `cap`: a typical row (one or two reasons, a 603 with its
/// `Reason` header) encodes to 300–400.
pub const ROW_BYTES: usize = 512;
/// Longest text kept of one field; longer ones are cut (at a character boundary).
const MAX_TEXT: usize = 512;
/// The Identity header is kept whole up to this, so a what-if can verify it again.
const MAX_IDENTITY: usize = 2048;
/// Reasons kept of one verdict.
const MAX_REASONS: usize = 16;
/// The buffer is never smaller than this, so that the longest row always fits.
const MIN_BYTES: usize = 64 * 1024;

/// One screened call as the console shows it, and the facts needed to decide it again.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Set by [`Recent::push`]; increases by one per call.
    pub seq: u64,
    /// Unix milliseconds of the decision.
    pub time_ms: u64,
    pub call_id: String,
    /// E.164 when it normalised, else as carried.
    pub caller: String,
    /// E.164 when it normalised, else as dialled.
    pub callee: String,
    pub display_name: Option<String>,
    pub anonymous: bool,
    /// The peer it came from, `ip:port`.
    pub source: String,
    pub action: Action,
    /// Every contribution with its score (`(+50) ...`), then the policy's notes.
    pub reasons: Vec<Reason>,
    /// The answer sent, in words: `603 Decline` with its `Reason` header, or a forward with
    /// what was added to it.
    pub answer: String,
    /// The STIR/SHAKEN outcome in words.
    pub stir: String,
    /// Anything else the operator should know (why no announcement was played).
    pub note: Option<String>,
    pub decision_us: u64,
    /// Facts for deciding the call again (what-if), as the SIP layer gave them.
    pub facts: Facts,
}

/// What [`Row`] keeps of a call's facts to decide it again as a question.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    /// The caller as carried (before normalisation).
    pub caller_raw: String,
    pub callee_raw: String,
    /// The source's address only, as the signals name peers.
    pub source_ip: String,
    pub trusted: bool,
    #[serde(skip)]
    pub identity: Option<String>,
    pub verstat: Option<String>,
    /// A MESSAGE, judged as its sender's call would be.
    pub message: bool,
}

impl Row {
    /// Does the row's verdict cite `name` (a list, a signal or `policy`)?
    pub fn cites(&self, name: &str) -> bool {
        self.reasons.iter().any(|r| r.source.name() == name)
    }
}

/// The ring. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Recent {
    cap: usize,
    inner: Mutex<Inner>,
}

/// Where one row lies in the buffer.
#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u64,
    at: usize,
    len: usize,
}

#[derive(Debug)]
struct Inner {
    buf: Box<[u8]>,
    /// Oldest first; never more than `cap` (its capacity, reserved at start).
    slots: VecDeque<Slot>,
    /// Where the next row goes unless it must wrap to the start.
    head: usize,
    next: u64,
    /// Scratch for encoding, kept so a push allocates nothing once it has grown.
    scratch: Vec<u8>,
}

impl Recent {
    /// A ring of at most `cap` rows (at least one), its memory taken and touched now.
    pub fn new(cap: usize) -> Recent {
        let cap = cap.max(1);
        let bytes = cap.saturating_mul(ROW_BYTES).max(MIN_BYTES);
        // Written through (not zeroed: zeroed memory arrives untouched from the kernel and
        // would be counted only as rows fill it), so the ring's cost shows from the start.
        let buf = vec![0xa5u8; bytes].into_boxed_slice();
        let mut slots = VecDeque::with_capacity(cap);
        slots.extend(
            std::iter::repeat(Slot {
                seq: u64::MAX,
                at: usize::MAX,
                len: 0,
            })
            .take(cap),
        );
        slots.clear();
        Recent {
            cap,
            inner: Mutex::new(Inner {
                buf,
                slots,
                head: 0,
                next: 1,
                scratch: Vec::with_capacity(MIN_BYTES / 2),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Add a call, numbering it; the oldest rows go when the ring is full or its bytes are.
    pub fn push(&self, row: Row) {
        let mut g = self.lock();
        let g = &mut *g;
        g.scratch.clear();
        encode(&row, &mut g.scratch);
        let len = g.scratch.len();
        let at = g.make_room(len, self.cap);
        g.buf[at..at + len].copy_from_slice(&g.scratch);
        g.head = at + len;
        let seq = g.next;
        g.next += 1;
        g.slots.push_back(Slot { seq, at, len });
    }

    /// The sequence number the next call will get: a tail starting now asks for rows from it.
    pub fn next_seq(&self) -> u64 {
        self.lock().next
    }

    /// Rows numbered `seq` and later, oldest first, at most `limit`.
    pub fn since(&self, seq: u64, limit: usize) -> Vec<Arc<Row>> {
        let g = self.lock();
        let first = g.slots.front().map_or(0, |s| s.seq);
        let skip = seq.saturating_sub(first) as usize;
        g.slots
            .iter()
            .skip(skip)
            .take(limit)
            .map(|s| g.row(s))
            .collect()
    }

    /// The row numbered `seq`, while the ring still holds it.
    pub fn get(&self, seq: u64) -> Option<Arc<Row>> {
        let g = self.lock();
        let first = g.slots.front()?.seq;
        let s = g.slots.get(seq.checked_sub(first)? as usize)?;
        Some(g.row(s))
    }

    /// Every row, newest first.
    pub fn newest_first(&self) -> Vec<Arc<Row>> {
        let g = self.lock();
        g.slots.iter().rev().map(|s| g.row(s)).collect()
    }
}

impl Inner {
    /// Drop the oldest rows until `len` bytes fit, at `head` or else at the start, and a slot
    /// is free; returns where the row goes. Rows lie in push order, wrapping once: those from
    /// the oldest to the buffer's end (when it has wrapped), then those from the start to
    /// `head`.
    fn make_room(&mut self, len: usize, cap: usize) -> usize {
        let at = if self.head + len <= self.buf.len() {
            self.head
        } else {
            0
        };
        while let Some(f) = self.slots.front() {
            let overlaps = f.at < at + len && at < f.at + f.len;
            // Wrapping to the start passes over every row still beyond `head`: older than
            // those at the start, they go first.
            let passed = at < self.head && f.at >= self.head;
            if overlaps || passed || self.slots.len() >= cap {
                self.slots.pop_front();
            } else {
                break;
            }
        }
        at
    }

    fn row(&self, s: &Slot) -> Arc<Row> {
        let mut r = Reader {
            b: &self.buf[s.at..s.at + s.len],
        };
        let mut row = decode(&mut r);
        row.seq = s.seq;
        Arc::new(row)
    }
}

const ANONYMOUS: u8 = 1;
const TRUSTED: u8 = 2;
const MESSAGE: u8 = 4;

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A text cut to `max` bytes at a character boundary, with its length first.
fn put_text(out: &mut Vec<u8>, s: &str, max: usize) {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// An optional text: a presence byte, then the text.
fn put_opt(out: &mut Vec<u8>, s: Option<&str>, max: usize) {
    match s {
        Some(s) => {
            out.push(1);
            put_text(out, s, max);
        }
        None => out.push(0),
    }
}

fn action_byte(a: Action) -> u8 {
    match a {
        Action::Pass => 0,
        Action::Warn => 1,
        Action::Challenge => 2,
        Action::Block => 3,
    }
}

fn encode(r: &Row, out: &mut Vec<u8>) {
    put_u64(out, r.time_ms);
    put_u64(out, r.decision_us);
    out.push(action_byte(r.action));
    let f = &r.facts;
    let flags = [
        (r.anonymous, ANONYMOUS),
        (f.trusted, TRUSTED),
        (f.message, MESSAGE),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0, |acc, (_, bit)| acc | bit);
    out.push(flags);
    for s in [
        &r.call_id, &r.caller, &r.callee, &r.source, &r.answer, &r.stir,
    ] {
        put_text(out, s, MAX_TEXT);
    }
    put_opt(out, r.display_name.as_deref(), MAX_TEXT);
    put_opt(out, r.note.as_deref(), MAX_TEXT);
    for s in [&f.caller_raw, &f.callee_raw, &f.source_ip] {
        put_text(out, s, MAX_TEXT);
    }
    put_opt(out, f.identity.as_deref(), MAX_IDENTITY);
    put_opt(out, f.verstat.as_deref(), MAX_TEXT);
    let reasons = &r.reasons[..r.reasons.len().min(MAX_REASONS)];
    out.push(reasons.len() as u8);
    for reason in reasons {
        match &reason.source {
            Source::List(name) => {
                out.push(0);
                put_text(out, name, MAX_TEXT);
            }
            Source::Signal(s) => {
                out.push(1);
                out.push(*s as u8);
            }
            Source::Policy => out.push(2),
        }
        for s in [&reason.entry, &reason.category, &reason.reason] {
            put_text(out, s, MAX_TEXT);
        }
    }
}

/// Reads back what [`encode`] wrote. The bytes are the ring's own, so a short read cannot
/// happen; were it to, the missing parts read as empty rather than panicking.
struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.b.len());
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        head
    }

    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let got = self.take(8);
        b[..got.len()].copy_from_slice(got);
        u64::from_le_bytes(b)
    }

    fn text(&mut self) -> String {
        let mut n = [0u8; 2];
        let got = self.take(2);
        n[..got.len()].copy_from_slice(got);
        let len = u16::from_le_bytes(n) as usize;
        String::from_utf8_lossy(self.take(len)).into_owned()
    }

    fn opt(&mut self) -> Option<String> {
        (self.u8() == 1).then(|| self.text())
    }
}

fn decode(r: &mut Reader<'_>) -> Row {
    let time_ms = r.u64();
    let decision_us = r.u64();
    let action = match r.u8() {
        1 => Action::Warn,
        2 => Action::Challenge,
        3 => Action::Block,
        _ => Action::Pass,
    };
    let flags = r.u8();
    let [call_id, caller, callee, source, answer, stir] = std::array::from_fn(|_| r.text());
    let display_name = r.opt();
    let note = r.opt();
    let [caller_raw, callee_raw, source_ip] = std::array::from_fn(|_| r.text());
    let identity = r.opt();
    let verstat = r.opt();
    let n = r.u8() as usize;
    let reasons = (0..n)
        .map(|_| {
            let source = match r.u8() {
                0 => Source::list(&r.text()),
                1 => Signal::ALL
                    .get(r.u8() as usize)
                    .map_or(Source::Policy, |s| Source::Signal(*s)),
                _ => Source::Policy,
            };
            let [entry, category, reason] = std::array::from_fn(|_| r.text());
            Reason {
                source,
                entry,
                category,
                reason,
            }
        })
        .collect();
    Row {
        seq: 0,
        time_ms,
        call_id,
        caller,
        callee,
        display_name,
        anonymous: flags & ANONYMOUS != 0,
        source,
        action,
        reasons,
        answer,
        stir,
        note,
        decision_us,
        facts: Facts {
            caller_raw,
            callee_raw,
            source_ip,
            trusted: flags & TRUSTED != 0,
            identity,
            verstat,
            message: flags & MESSAGE != 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(caller: &str, action: Action) -> Row {
        Row {
            seq: 0,
            time_ms: 0,
            call_id: format!("c-{caller}"),
            caller: caller.into(),
            callee: "+12025550100".into(),
            display_name: None,
            anonymous: false,
            source: "192.0.2.1:5060".into(),
            action,
            reasons: vec![],
            answer: String::new(),
            stir: String::new(),
            note: None,
            decision_us: 1,
            facts: Facts::default(),
        }
    }

    #[test]
    fn the_ring_numbers_rows_and_keeps_the_newest() {
        let r = Recent::new(3);
        assert_eq!(r.next_seq(), 1);
        assert!(r.since(1, 10).is_empty());
        assert!(r.get(1).is_none());
        for i in 0..5 {
            r.push(row(&format!("+1202555010{i}"), Action::Pass));
        }
        assert_eq!(r.next_seq(), 6);
        let seqs = |v: Vec<Arc<Row>>| v.iter().map(|r| r.seq).collect::<Vec<_>>();
        assert_eq!(seqs(r.since(0, 10)), [3, 4, 5], "the two oldest went");
        assert_eq!(seqs(r.since(4, 10)), [4, 5]);
        assert_eq!(seqs(r.since(4, 1)), [4]);
        assert!(r.since(6, 10).is_empty());
        assert_eq!(seqs(r.newest_first()), [5, 4, 3]);
        assert_eq!(r.get(4).unwrap().caller, "+12025550103");
        assert!(r.get(2).is_none() && r.get(6).is_none());
    }

    fn full_row() -> Row {
        Row {
            seq: 0,
            time_ms: 1_764_900_000_123,
            call_id: "a84b4c76e66710@pc33".into(),
            caller: "+12025550143".into(),
            callee: "+12025550100".into(),
            display_name: Some("SCAM? Bänk".into()),
            anonymous: true,
            source: "[2001:db8::1]:5060".into(),
            action: Action::Challenge,
            reasons: vec![
                Reason {
                    source: Source::list("example"),
                    entry: "+12025550143".into(),
                    category: "tech-support".into(),
                    reason: "(+50) listed".into(),
                },
                Reason {
                    source: Source::Signal(Signal::Challenge),
                    entry: "2 failed".into(),
                    category: "robocall".into(),
                    reason: "(+30) failed challenges".into(),
                },
                Reason {
                    source: Source::Policy,
                    entry: String::new(),
                    category: "policy".into(),
                    reason: "log only".into(),
                },
            ],
            answer: "603 Decline | Reason: SIP;cause=603;text=\"scam\"".into(),
            stir: "no Identity header".into(),
            note: Some("announcement skipped".into()),
            decision_us: 42,
            facts: Facts {
                caller_raw: "2025550143".into(),
                callee_raw: "sip:2025550100".into(),
                source_ip: "2001:db8::1".into(),
                trusted: true,
                identity: Some("eyJhbGciOiJFUzI1NiJ9.e30.sig;info=<https://cert>".into()),
                verstat: Some("TN-Validation-Passed".into()),
                message: true,
            },
        }
    }

    #[test]
    fn a_row_reads_back_as_it_was_pushed() {
        let r = Recent::new(2);
        r.push(full_row());
        let back = r.get(1).unwrap();
        let want = Row {
            seq: 1,
            ..full_row()
        };
        // Every field, the skipped identity too.
        assert_eq!(format!("{back:?}"), format!("{want:?}"));
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        let r = Recent::new(1);
        let mut row = full_row();
        row.answer = "ä".repeat(MAX_TEXT);
        row.reasons = vec![row.reasons[0].clone(); MAX_REASONS + 5];
        r.push(row);
        let back = r.get(1).unwrap();
        assert_eq!(back.answer, "ä".repeat(MAX_TEXT / 2));
        assert_eq!(back.reasons.len(), MAX_REASONS);
        assert_eq!(back.caller, "+12025550143");
    }

    #[test]
    fn rows_larger_than_their_share_leave_room_for_fewer_and_wrap_in_order() {
        // 200 rows of 0.5 to 2.5 KB through a 64 KB buffer: it wraps again and again, and
        // what is held is always the newest rows, numbered without gaps, each intact.
        let size = |i: u64| (i * 977 % 5) as usize * 500 + 1;
        let r = Recent::new(100);
        for i in 0..200u64 {
            let mut row = full_row();
            row.call_id = format!("c{i}");
            row.facts.identity = Some("x".repeat(size(i)));
            r.push(row);
            let held = r.newest_first();
            assert!(!held.is_empty() && held.len() <= 100);
            assert_eq!(held[0].seq, i + 1, "the newest is always kept");
            for (k, h) in held.iter().enumerate() {
                assert_eq!(h.seq, i + 1 - k as u64);
                assert_eq!(h.call_id, format!("c{}", h.seq - 1));
                assert_eq!(
                    h.facts.identity.as_ref().map(String::len),
                    Some(size(h.seq - 1))
                );
                assert_eq!(h.facts.verstat.as_deref(), Some("TN-Validation-Passed"));
            }
        }
        assert!(r.newest_first().len() < 100, "bytes, not slots, bounded it");
    }
}
