//! Velocity's levels per measure, and how outcomes, attestation and registration change what
//! rate means: simulated senders whose calls are answered, hung up on, cancelled or refused.

use super::*;

const T0: u64 = 1_790_000_040_000;

fn cfg() -> VelocityConfig {
    VelocityConfig {
        caller: Thresholds {
            per_second: Level::new(3, 5),
            per_minute: Level::new(10, 20),
            concurrent: Level::new(4, 8),
            distinct_callees: Level::new(6, 12),
        },
        source: Thresholds {
            per_minute: Level::new(15, 30),
            ..Thresholds::default()
        },
        prefix: Thresholds::default(),
        // Rate alone at the configured levels, as bad outcomes would have them: this table is
        // about the measures, the simulations below about the outcomes.
        rate_alone_factor: 1.0,
        ..VelocityConfig::default()
    }
}

fn start<'a>(caller: &'a str, callee: &'a str) -> Start<'a> {
    Start {
        caller: Some(caller),
        source: Some("192.0.2.7"),
        callee,
        attested: false,
    }
}

fn worst(j: &[Judged], measure: &str, kind: KeyKind) -> Option<(u32, Action)> {
    j.iter()
        .flat_map(|j| &j.findings)
        .find(|x| x.measure == measure && x.kind == kind)
        .map(|x| (x.value, x.action))
}

/// (calls, spacing ms, distinct callees?, end each call?, measure, expected at the last call)
#[test]
fn thresholds_per_measure() {
    type Case = (
        u32,
        u64,
        bool,
        bool,
        &'static str,
        KeyKind,
        Option<(u32, Action)>,
    );
    use KeyKind::{Caller, Source};
    let cases: &[Case] = &[
        (2, 100, false, true, "calls-per-second", Caller, None),
        (
            3,
            100,
            false,
            true,
            "calls-per-second",
            Caller,
            Some((3, Action::Warn)),
        ),
        (
            5,
            100,
            false,
            true,
            "calls-per-second",
            Caller,
            Some((5, Action::Block)),
        ),
        // One call every 2 s: never 3 in a second, but the minute fills up.
        (9, 2_000, false, true, "calls-per-minute", Caller, None),
        (
            10,
            2_000,
            false,
            true,
            "calls-per-minute",
            Caller,
            Some((10, Action::Warn)),
        ),
        (
            25,
            2_000,
            false,
            true,
            "calls-per-minute",
            Caller,
            Some((25, Action::Block)),
        ),
        // Calls spaced 10 s: the sliding minute only ever holds 6.
        (30, 10_000, false, true, "calls-per-minute", Caller, None),
        (
            4,
            1_000,
            false,
            false,
            "concurrent-calls",
            Caller,
            Some((4, Action::Warn)),
        ),
        (4, 1_000, false, true, "concurrent-calls", Caller, None),
        (
            8,
            1_000,
            true,
            false,
            "concurrent-calls",
            Caller,
            Some((8, Action::Block)),
        ),
        (
            6,
            1_000,
            true,
            true,
            "distinct-callees",
            Caller,
            Some((6, Action::Warn)),
        ),
        (6, 1_000, false, true, "distinct-callees", Caller, None),
        (
            13,
            2_000,
            true,
            true,
            "distinct-callees",
            Caller,
            // 13: the distinct callees remembered reach past the block level, to the levels
            // an attested caller would need.
            Some((13, Action::Block)),
        ),
        (
            16,
            3_000,
            true,
            true,
            "calls-per-minute",
            Source,
            Some((16, Action::Warn)),
        ),
    ];
    for (i, (n, gap, distinct, end, measure, kind, want)) in cases.iter().enumerate() {
        let v = Velocity::new(cfg());
        let mut last = Vec::new();
        for c in 0..*n {
            let callee = if *distinct {
                format!("+4420718387{c:02}")
            } else {
                "+442071838750".into()
            };
            let caller = if *kind == KeyKind::Source {
                format!("+1202762{c:04}")
            } else {
                "+12027620143".into()
            };
            let (keys, j) = v.call_started(&start(&caller, &callee), T0 + u64::from(c) * gap);
            if *end {
                // Forgotten without an outcome: only its concurrency ends.
                v.call_ended(keys, None);
            }
            last = j;
        }
        assert_eq!(worst(&last, measure, *kind), *want, "case {i}: {last:?}");
    }
}

#[test]
fn prefix_key_counts_a_range() {
    let v = Velocity::new(VelocityConfig {
        caller: Thresholds::default(),
        prefix: Thresholds {
            per_minute: Level::new(5, 50),
            ..Thresholds::default()
        },
        rate_alone_factor: 1.0,
        ..VelocityConfig::default()
    });
    let mut last = Vec::new();
    for c in 0..5u64 {
        // Five different numbers of one NPA-NXX.
        let caller = format!("+1202762{:04}", 100 + c);
        let (_, j) = v.call_started(&start(&caller, "+12125550000"), T0 + c * 1000);
        last = j;
    }
    assert_eq!(
        worst(&last, "calls-per-minute", KeyKind::Prefix),
        Some((5, Action::Warn))
    );
    let (_, j) = v.call_started(&start("+12025560100", "+12125550000"), T0 + 6_000);
    assert!(j.is_empty(), "another exchange: {j:?}");
}

// ------------------------------------------------------------------ simulated senders

/// What the callee (or the caller) does with one call.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Answered after `ring` ms, ended after `talk` ms of conversation.
    Talk { ring: u64, talk: u64 },
    /// The caller cancels after `ring` ms.
    Cancel { ring: u64 },
    /// Not answered: a final non-2xx (or a timeout) after `after` ms.
    Reject { after: u64 },
    /// The callee answers 607 after `after` ms.
    Unwanted { after: u64 },
}

enum Ev {
    Start(usize),
    Answer(usize),
    End(usize, CallEnd),
}

/// One sender placing `plans.len()` calls, one every `gap` ms from `t0`, each to its own
/// callee, with each call's answer and end delivered at its time. Returns, per call, the
/// velocity hits of its start (empty: it passes).
fn simulate(
    v: &Velocity,
    caller: &str,
    attested: bool,
    t0: u64,
    gap: u64,
    plans: &[Plan],
) -> Vec<Vec<Judged>> {
    let mut evs: Vec<(u64, usize, Ev)> = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let t = t0 + i as u64 * gap;
        evs.push((t, 0, Ev::Start(i)));
        match *p {
            Plan::Talk { ring, talk } => {
                evs.push((t + ring, 1, Ev::Answer(i)));
                evs.push((
                    t + ring + talk,
                    2,
                    Ev::End(i, CallEnd::Answered { talk_ms: talk }),
                ));
            }
            Plan::Cancel { ring } => evs.push((t + ring, 2, Ev::End(i, CallEnd::Cancelled))),
            Plan::Reject { after } => evs.push((t + after, 2, Ev::End(i, CallEnd::Rejected))),
            Plan::Unwanted { after } => {
                evs.push((t + after, 2, Ev::End(i, CallEnd::Unwanted)));
            }
        }
    }
    evs.sort_by_key(|(t, order, _)| (*t, *order));
    let mut keys = vec![CallKeys::default(); plans.len()];
    let mut started = vec![0u64; plans.len()];
    let mut answered = vec![None; plans.len()];
    let mut out = vec![Vec::new(); plans.len()];
    for (t, _, ev) in evs {
        match ev {
            Ev::Start(i) => {
                let callee = format!("+4420718{:05}", i);
                let s = Start {
                    caller: Some(caller),
                    source: None,
                    callee: &callee,
                    attested,
                };
                let (k, j) = v.call_started(&s, t);
                keys[i] = k;
                started[i] = t;
                out[i] = j;
            }
            Ev::Answer(i) => {
                answered[i] = Some(t);
                v.call_answered(keys[i], t);
            }
            Ev::End(i, end) => {
                let ring_ms = answered[i].unwrap_or(t) - started[i];
                v.call_ended(
                    keys[i],
                    Some(Finish {
                        end,
                        answered_ms: answered[i],
                        ring_ms,
                        now_ms: t,
                    }),
                );
            }
        }
    }
    out
}

/// The worst action per call: `None` passes.
fn actions(r: &[Vec<Judged>]) -> Vec<Option<Action>> {
    r.iter().map(|j| j.first().map(|j| j.action)).collect()
}

/// An appointment-reminder line: 70% answered with a normal conversation, the rest ring out.
fn reminder(n: usize) -> Vec<Plan> {
    (0..n)
        .map(|i| {
            if i % 10 < 7 {
                Plan::Talk {
                    ring: 8_000,
                    talk: 45_000,
                }
            } else {
                Plan::Reject { after: 30_000 }
            }
        })
        .collect()
}

/// A robocaller: 10% talked through, the rest hung up on within seconds or cancelled quickly.
fn robocaller(n: usize) -> Vec<Plan> {
    (0..n)
        .map(|i| match i % 10 {
            0 => Plan::Talk {
                ring: 6_000,
                talk: 40_000,
            },
            1..=5 => Plan::Talk {
                ring: 5_000,
                talk: 2_000,
            },
            _ => Plan::Cancel { ring: 3_000 },
        })
        .collect()
}

#[test]
fn a_reminder_line_at_12_a_minute_passes_where_a_robocaller_is_warned() {
    let cfg = VelocityConfig::default();
    // Twelve distinct callees a minute is past the configured warn level: rate alone would
    // flag both senders.
    assert!(cfg.caller.distinct_callees.reached(12) == Some(Action::Warn));
    let v = Velocity::new(cfg);
    // Ten minutes at one call every 5 s.
    let good = simulate(&v, "+12025550143", false, T0, 5_000, &reminder(120));
    assert!(
        good.iter().all(Vec::is_empty),
        "the reminder line was flagged: {:?}",
        good.iter().find(|j| !j.is_empty())
    );
    // The last five minutes (the outcome window) hold some 60 calls, 70% talked through.
    let t = v.outcomes_of("+12025550143", T0 + 600_000);
    assert!(t.talked > 30 && t.settled() < 70, "{t:?}");

    let bad = simulate(&v, "+13125550177", false, T0, 5_000, &robocaller(120));
    let acts = actions(&bad);
    // Its failures come back within seconds: by its tenth callee its outcomes are bad, and it is
    // warned from then on.
    assert!(acts[..9].iter().all(Option::is_none), "{acts:?}");
    assert!(
        acts[9..].iter().all(|a| *a == Some(Action::Warn)),
        "{acts:?}"
    );
    let why = &bad[60][0].reason;
    assert!(
        why.starts_with("caller distinct-callees 12 (warn); of ")
            && why.contains("hung up within 6 s")
            && why.contains("cancelled within 6 s of ringing"),
        "{why}"
    );
    assert_eq!(bad[60][0].health, Health::Bad);
}

#[test]
fn a_burst_at_one_call_a_second_is_warned_as_soon_as_its_failures_come_back() {
    let v = Velocity::new(VelocityConfig::default());
    // Cancelled after four seconds of ringing; one call in seven answered and hung up on.
    let plans: Vec<Plan> = (0..30)
        .map(|i| {
            if i % 7 == 3 {
                Plan::Talk {
                    ring: 2_000,
                    talk: 2_000,
                }
            } else {
                Plan::Cancel { ring: 4_000 }
            }
        })
        .collect();
    let r = simulate(&v, "+12025550191", false, T0, 1_000, &plans);
    let acts = actions(&r);
    // By the tenth call (ten distinct callees, the configured warn level) five have failed.
    assert!(acts[..9].iter().all(Option::is_none), "{acts:?}");
    assert!(
        acts[9..29].iter().all(|a| *a == Some(Action::Warn)),
        "{acts:?}"
    );
    assert_eq!(acts[29], Some(Action::Block), "{acts:?}");
    assert_eq!(
        r[9][0].reason,
        "caller distinct-callees 10 (warn); of 5 recent calls with an outcome: 0 talked, 1 hung up within 6 s, 4 cancelled within 6 s of ringing"
    );
}

#[test]
fn unanswered_calls_at_rate_are_warned_and_a_607_is_enough_with_rate() {
    let v = Velocity::new(VelocityConfig::default());
    // 10% answered, the rest ring out: a low answer ratio.
    let plans: Vec<Plan> = (0..60)
        .map(|i| {
            if i % 10 == 0 {
                Plan::Talk {
                    ring: 5_000,
                    talk: 60_000,
                }
            } else {
                Plan::Reject { after: 20_000 }
            }
        })
        .collect();
    let acts = actions(&simulate(&v, "+12025550111", false, T0, 5_000, &plans));
    assert!(
        acts[30..].iter().all(|a| *a == Some(Action::Warn)),
        "{acts:?}"
    );

    // A sender whose calls are mostly talked through, but one callee answered 607: with its
    // rate past the levels, that is enough, from the next call on.
    let mut plans = reminder(30);
    plans[2] = Plan::Unwanted { after: 3_000 };
    let r = simulate(&v, "+12025550122", false, T0, 5_000, &plans);
    let acts = actions(&r);
    // The tenth call reaches ten distinct callees: the warn level, as configured.
    assert!(acts[..9].iter().all(Option::is_none), "{acts:?}");
    assert_eq!(acts[9], Some(Action::Warn), "{acts:?}");
    assert!(r[9][0].reason.contains("1 refused with 607"), "{:?}", r[9]);
    // The same sender at a low rate is not flagged for the 607: one person's call is not a
    // campaign, and the reports signal counts 607s on their own.
    let slow = simulate(&v, "+12025550133", false, T0, 30_000, &plans);
    assert!(slow.iter().all(Vec::is_empty), "{slow:?}");
}

#[test]
fn a_registered_sender_passes_above_every_level_until_its_outcomes_turn_bad() {
    let v = Velocity::new(VelocityConfig {
        verified_senders: vec![
            VerifiedSender {
                pattern: "+1202555014*".into(),
                name: "Riverside Pharmacy reminders".into(),
                reason: "ticket OPS-1234".into(),
            },
            VerifiedSender {
                pattern: "+441632960001".into(),
                name: "County school closures".into(),
                reason: "ticket OPS-77".into(),
            },
        ],
        ..VelocityConfig::default()
    });
    assert_eq!(
        v.verified_sender("+12025550143").map(|s| s.name.as_str()),
        Some("Riverside Pharmacy reminders")
    );
    assert!(v.verified_sender("+12025550153").is_none());
    assert!(v.verified_sender("+441632960002").is_none());
    // 40 calls a minute to 40 callees: past the per-minute warn and the distinct block level.
    let mut plans = reminder(80);
    let r = simulate(&v, "+12025550143", false, T0, 1_500, &plans);
    assert!(r.iter().all(Vec::is_empty), "{:?}", actions(&r));
    // Its calls are not counted against its range either.
    assert_eq!(v.sizes().2, 0, "prefix slots");

    // One 607, and the registered sender is judged like any other caller, at its rate.
    plans[40] = Plan::Unwanted { after: 2_000 };
    let v2 = Velocity::new(v.config().clone());
    let r = simulate(&v2, "+12025550143", false, T0, 1_500, &plans);
    let acts = actions(&r);
    assert!(acts[..41].iter().all(Option::is_none), "{acts:?}");
    assert_eq!(acts[45], Some(Action::Block), "{acts:?}");
    let why = &r[45][0].reason;
    assert!(
        why.contains("refused with 607")
            && why.contains("registered sender \"Riverside Pharmacy reminders\""),
        "{why}"
    );

    // A school's closure notice: 60 calls in six seconds, all answered. The registered number
    // passes; an unregistered one is stopped by the burst protection at ten a second.
    let notice = vec![
        Plan::Talk {
            ring: 10_000,
            talk: 30_000,
        };
        60
    ];
    let t = T0 + 3_600_000;
    let school = simulate(&v2, "+441632960001", false, t, 100, &notice);
    assert!(school.iter().all(Vec::is_empty), "{:?}", actions(&school));
    let other = actions(&simulate(&v2, "+441632960002", false, t, 100, &notice));
    assert_eq!(other[9], Some(Action::Block), "{other:?}");
}

#[test]
fn an_attested_caller_needs_more_rate_alone() {
    let v = Velocity::new(VelocityConfig::default());
    // Calls forgotten without an outcome: only rate counts. Distinct-callees warns at 10 x 2
    // for an unattested caller, at 10 x 2 x 2 for an attested one.
    let run = |caller: &str, attested: bool| {
        (0..50u64)
            .map(|i| {
                let callee = format!("+4420718{i:05}");
                let s = Start {
                    attested,
                    ..start(caller, &callee)
                };
                let (k, j) = v.call_started(&s, T0 + i * 1_000);
                v.call_ended(k, None);
                j.first().map(|j| (j.action, j.reason.clone()))
            })
            .collect::<Vec<_>>()
    };
    let plain = run("+12025550161", false);
    let signed = run("+12025550162", true);
    let first = |a: &[Option<(Action, String)>]| a.iter().position(Option::is_some);
    assert_eq!(first(&plain), Some(19), "{plain:?}");
    assert_eq!(first(&signed), Some(39), "{signed:?}");
    assert_eq!(
        signed[39],
        Some((
            Action::Warn,
            "caller distinct-callees 40 (warn); 0 calls with an outcome, 5 needed to judge them: levels x4 on rate alone".into()
        ))
    );
}

#[test]
fn bursts_block_whatever_the_outcomes() {
    let v = Velocity::new(VelocityConfig::default());
    // A healthy history first: ten minutes of a reminder line.
    let caller = "+12025550171";
    let good = simulate(&v, caller, true, T0, 5_000, &reminder(120));
    assert!(good.iter().all(Vec::is_empty));
    // Then 30 calls in one second, attested or not.
    let t = T0 + 700_000;
    let mut last = Vec::new();
    for i in 0..30u64 {
        let callee = format!("+4420718399{i:02}");
        let s = Start {
            attested: true,
            ..start(caller, &callee)
        };
        let (k, j) = v.call_started(&s, t + i * 30);
        v.call_ended(k, None);
        last = j;
    }
    assert_eq!(
        worst(&last, "calls-per-second", KeyKind::Caller),
        Some((30, Action::Block))
    );
    assert_eq!(last[0].action, Action::Block);
    // A fresh number bursting has no outcomes at all: it is blocked at ten.
    let mut seen = Vec::new();
    for i in 0..30u64 {
        let callee = format!("+4420718399{i:02}");
        let (_, j) = v.call_started(&start("+12025550172", &callee), t + i * 30);
        seen.push(j.first().map(|j| j.action));
    }
    assert_eq!(seen.iter().position(|a| *a == Some(Action::Block)), Some(9));
    // Concurrency's block level holds on rate alone too: 30 calls in progress.
    assert_eq!(
        worst(
            &seen_judged(&v, "+12025550173", t),
            "concurrent-calls",
            KeyKind::Caller
        ),
        Some((30, Action::Block))
    );
}

/// 30 calls from `caller`, two seconds apart, none ending; the judgement of the last.
fn seen_judged(v: &Velocity, caller: &str, t: u64) -> Vec<Judged> {
    let mut last = Vec::new();
    for i in 0..30u64 {
        let (_, j) = v.call_started(&start(caller, "+442071839900"), t + i * 2_000);
        last = j;
    }
    last
}

#[test]
fn outcomes_of_one_finished_call() {
    let v = Velocity::new(VelocityConfig::default());
    let f = |end, answered_ms, ring_ms| Finish {
        end,
        answered_ms,
        ring_ms,
        now_ms: T0,
    };
    let cases = [
        (
            f(CallEnd::Answered { talk_ms: 5_999 }, Some(1), 0),
            Some(Outcome::HungUp),
        ),
        (
            f(CallEnd::Answered { talk_ms: 6_000 }, Some(1), 0),
            Some(Outcome::Talked),
        ),
        (
            f(CallEnd::Cancelled, None, 5_999),
            Some(Outcome::QuickCancel),
        ),
        (
            f(CallEnd::Cancelled, None, 25_000),
            Some(Outcome::Unanswered),
        ),
        (f(CallEnd::Rejected, None, 2_000), Some(Outcome::Unanswered)),
        (f(CallEnd::Unwanted, None, 2_000), Some(Outcome::Unwanted)),
        (f(CallEnd::Refused, None, 0), None),
    ];
    for (i, (fin, want)) in cases.iter().enumerate() {
        assert_eq!(v.outcome(fin), *want, "case {i}: {fin:?}");
    }
}

#[test]
fn memory_stays_within_the_caps() {
    let v = Velocity::new(VelocityConfig {
        max_keys: 1_000,
        shards: 4,
        prefix: Thresholds::default(),
        ..VelocityConfig::default()
    });
    // Ten thousand callers, each answered and ended: every table stays within its cap.
    for i in 0..10_000u64 {
        let caller = format!("+1{}", 2_025_550_000 + i * 7);
        let (k, _) = v.call_started(&start(&caller, "+442071838750"), T0 + i);
        v.call_answered(k, T0 + i + 1);
        v.call_ended(
            k,
            Some(Finish {
                end: CallEnd::Answered { talk_ms: 1 },
                answered_ms: Some(T0 + i + 1),
                ring_ms: 1,
                now_ms: T0 + i + 2,
            }),
        );
    }
    let (callers, sources, prefixes) = v.sizes();
    assert!(callers <= v.capacity() && callers > 0, "{callers}");
    assert_eq!((sources, prefixes), (0, 0));
    // One caller spraying five thousand callees remembers at most the distinct cap.
    let cap = v.distinct_cap();
    assert_eq!(cap, 120, "30 x rate_alone_factor x attested_factor");
    let mut top = 0;
    for i in 0..5_000u64 {
        let callee = format!("+4420{:08}", i);
        let (k, j) = v.call_started(&start("+12025559999", &callee), T0 + 20_000 + i);
        v.call_ended(k, None);
        top = top.max(
            j.iter()
                .flat_map(|j| &j.findings)
                .filter(|f| f.measure == "distinct-callees")
                .map(|f| f.value)
                .max()
                .unwrap_or(0),
        );
    }
    assert_eq!(top as usize, cap);
    let k = v.caller.key("+12025559999");
    assert_eq!(v.caller.peek(k, |c| c.callees.len()), Some(cap));
    // Idle slots go at the sweep once their outcome window has passed.
    v.sweep(T0 + 20_000 + 5_000 + 301_000);
    assert_eq!(v.sizes().0, 0);
}

// ------------------------------------------------------------------ suggested thresholds

#[test]
fn suggested_thresholds_from_a_synthetic_minute_of_traffic() {
    let v = Velocity::new(VelocityConfig {
        verified_senders: vec![VerifiedSender {
            pattern: "+18005550100".into(),
            name: "bank alerts".into(),
            reason: "test".into(),
        }],
        ..VelocityConfig::default()
    });
    let empty = v.suggested_thresholds();
    assert_eq!(empty.caller_minutes, 0);
    assert!(empty.caller.is_empty());
    assert_eq!(empty.notes, ["no caller-minutes observed yet"]);

    // One calendar minute: 1,990 people calling once, eight reminder lines at 12 calls, two
    // larger senders at 40, all answered; a robocaller at 50 whose calls are refused; and a
    // registered sender at 100.
    let t = T0 - T0 % 60_000;
    let mut n = 0u64;
    let mut call = |caller: &str, calls: u64, answered: bool| {
        for c in 0..calls {
            n += 1;
            let callee = format!("+4420{:08}", n);
            let at = t + c * 59_000 / calls.max(1);
            let (k, _) = v.call_started(&start(caller, &callee), at);
            let end = if answered {
                v.call_answered(k, at + 1);
                CallEnd::Answered { talk_ms: 30_000 }
            } else {
                CallEnd::Rejected
            };
            v.call_ended(
                k,
                Some(Finish {
                    end,
                    answered_ms: answered.then_some(at + 1),
                    ring_ms: 1,
                    now_ms: at + 2,
                }),
            );
        }
    };
    for i in 0..1_990 {
        call(&format!("+1312555{i:04}"), 1, true);
    }
    for i in 0..8 {
        call(&format!("+1415555{i:04}"), 12, true);
    }
    for i in 0..2 {
        call(&format!("+1617555{i:04}"), 40, true);
    }
    call("+12125550199", 50, false);
    call("+18005550100", 100, true);

    let s = v.suggested_thresholds();
    assert_eq!((s.caller_minutes, s.excluded_minutes), (2_000, 1), "{s}");
    let m = |key: &str| s.caller.iter().find(|x| x.key == key).unwrap().clone();
    // 2,000 samples: the 99.9th percentile is the 1,998th, a reminder line at 12; the busiest
    // kept is 40. Warn at 12 x 1.5 = 18, rounded up to 20; block at 3 x 20 = 60 (40 x 1.5 = 60).
    let pm = m("per_minute");
    assert_eq!(
        (pm.p99, pm.p999, pm.max, pm.warn, pm.block),
        (1, 12, 40, 20, 60),
        "{s}"
    );
    let dc = m("distinct_callees");
    assert_eq!((dc.p999, dc.warn, dc.block), (12, 20, 60), "{s}");
    // Nobody called twice in one second: warn at the floor of 2, block at 6.
    let ps = m("per_second");
    assert_eq!((ps.p999, ps.max, ps.warn, ps.block), (1, 1, 2, 6), "{s}");
    assert!(s.notes.is_empty(), "{:?}", s.notes);
    let line = s.to_string();
    assert!(
        line.starts_with("from 2000 caller-minutes (1 left out for bad outcomes): [signals.velocity.caller] per_second = [2, 6]")
            && line.contains("per_minute = [20, 60] (p99.9 12, max 40)"),
        "{line}"
    );
}

// ------------------------------------------------------------------ config

#[test]
fn config_parses_and_validates() {
    #[derive(serde::Deserialize)]
    struct File {
        velocity: VelocityConfig,
    }
    let f: File = toml::from_str(
        r#"
[velocity]
min_outcomes = 5
rate_alone_factor = 3.0
verified_senders = [
  { pattern = "+1202555014*", name = "Riverside Pharmacy", reason = "OPS-1234" },
  { pattern = "+12025550150", name = "School", reason = "OPS-1" },
]
[velocity.caller]
per_minute = [30, 90]
"#,
    )
    .unwrap();
    let c = f.velocity;
    assert_eq!((c.min_outcomes, c.rate_alone_factor), (5, 3.0));
    assert_eq!(c.hang_up_secs, VelocityConfig::default().hang_up_secs);
    assert_eq!(c.caller.per_minute, Level::new(30, 90));
    assert_eq!(c.caller.distinct_callees, Level::new(10, 30));
    assert_eq!(c.verified_senders.len(), 2);
    assert!(c.validate().is_empty(), "{:?}", c.validate());

    let bad = VelocityConfig {
        min_outcomes: 0,
        min_talked_ratio: 1.5,
        attested_factor: 0.5,
        outcome_window_secs: 5,
        verified_senders: vec![
            VerifiedSender {
                pattern: "12025550143".into(),
                name: "x".into(),
                reason: "y".into(),
            },
            VerifiedSender {
                pattern: "+1202*555".into(),
                name: " ".into(),
                reason: "y".into(),
            },
        ],
        ..VelocityConfig::default()
    };
    let p = bad.validate();
    for want in [
        "signals.velocity.outcome_window_secs is 5;",
        "signals.velocity.min_outcomes is 0;",
        "signals.velocity.min_talked_ratio is 1.5;",
        "signals.velocity.attested_factor is 0.5;",
        "signals.velocity.verified_senders[0].pattern \"12025550143\" is not a number;",
        "signals.velocity.verified_senders[1].pattern \"+1202*555\" is not a number;",
        "signals.velocity.verified_senders[1].name is empty;",
    ] {
        assert!(p.iter().any(|m| m.starts_with(want)), "{want}: {p:#?}");
    }
    assert_eq!(p.len(), 7, "{p:#?}");
    // A malformed pattern matches nothing rather than everything.
    let v = Velocity::new(bad);
    assert!(v.verified_sender("+12025550143").is_none());

    for text in [
        "[velocity]\nverified = []\n",
        "[velocity]\nverified_senders = [{ pattern = \"+1\", name = \"a\", reason = \"b\", x = 1 }]\n",
        "[velocity]\nverified_senders = [{ pattern = \"+1\", name = \"a\" }]\n",
    ] {
        assert!(toml::from_str::<File>(text).is_err(), "{text}");
    }
}

/// With a fleet: each change of a key's calls in progress leaves this agent's count (a state,
/// not a change) among the key's deltas, an end with no outcome included; the calls the fleet
/// says are in progress on the other agents add to the local ones while its view is in force,
/// and the reason says so; out of force, the agent's own count decides again.
#[test]
fn calls_in_progress_are_stated_to_the_fleet_and_those_of_other_agents_count() {
    let mut v = Velocity::new(cfg());
    let sharing = Arc::new(Sharing::new(100));
    v.share(sharing.clone());
    sharing.set_in_force(true, 60_000);
    let caller = "+13125550177";
    let token = v.caller.key(caller);
    let drain = |v: &Velocity| {
        v.with_slot(Family::Caller, token, |s| {
            shared::drain(Family::Caller, token, s)
        })
        .flatten()
        .map(|d| d.pending.concurrent)
    };
    let (k1, _) = v.call_started(&start(caller, "+16175550001"), T0);
    let _ = v.call_started(&start(caller, "+16175550002"), T0 + 1_000);
    assert_eq!(drain(&v), Some(Some(2)));
    assert_eq!(v.concurrent_now(Family::Caller, token, caller), 2);
    assert_eq!(v.concurrent_now(Family::Caller, token, "+19999999999"), 0);
    v.call_ended(k1, None);
    assert_eq!(drain(&v), Some(Some(1)));

    let w = v.windows(Family::Caller).unwrap();
    let totals = Totals {
        concurrent: 2,
        read_ms: T0 + 2_000,
        ..Totals::default()
    };
    v.with_slot(Family::Caller, token, |s| shared::install(s, totals, &w));
    // 1 here, 2 elsewhere, and this one: 4, the warn level.
    let (_, j) = v.call_started(&start(caller, "+16175550003"), T0 + 3_000);
    assert_eq!(
        worst(&j, "concurrent-calls", KeyKind::Caller),
        Some((4, Action::Warn))
    );
    assert!(
        j[0].reason
            .ends_with("; fleet: 4 calls at once across the fleet"),
        "{}",
        j[0].reason
    );
    // The fleet out of force (its Redis away): 3 calls here, below the level.
    sharing.set_in_force(false, 60_000);
    let (_, j) = v.call_started(&start(caller, "+16175550004"), T0 + 4_000);
    assert_eq!(
        worst(&j, "concurrent-calls", KeyKind::Caller),
        None,
        "3 here; the fleet's 2 no longer count"
    );
    let mut v = Velocity::new(VelocityConfig {
        caller: Thresholds {
            concurrent: Level::default(),
            ..cfg().caller
        },
        ..cfg()
    });
    v.share(sharing);
    let _ = v.call_started(&start(caller, "+16175550001"), T0);
    let token = v.caller.key(caller);
    let d = v
        .with_slot(Family::Caller, token, |s| {
            shared::drain(Family::Caller, token, s)
        })
        .flatten()
        .unwrap();
    assert_eq!(d.pending.concurrent, None, "no level, nothing stated");
}
