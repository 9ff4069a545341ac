//! Caller-id: who is calling, from a SIP message (`sip::caller`: P-Asserted-Identity, Privacy,
//! From, the Request-URI) or from typed text, normalised in every built-in numbering plan
//! (`screening::number`) and screened by the agent's engine with its shipped brands (display
//! names, look-alike letters, plausibility). A normalised number must be a fixed point: its
//! E.164 text parses back to it and normalises to it in every plan.
//!
//! The first byte chooses: bit 0 a SIP message or three text lines (caller, callee, display
//! name), bit 1 a trusted source (its asserted identity counts) and an anonymous caller.

#![no_main]

mod common;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use scamguard::screening::index::{Match, Rules};
use scamguard::screening::signals::brands::Brands;
use scamguard::screening::signals::stir::NoCertificates;
use scamguard::screening::signals::{SignalState, SignalsConfig};
use scamguard::screening::{
    BareDigits, Call, Engine, Number, NumberPlan, PolicyConfig, Scoring, ScreeningConfig,
    ScreeningPolicy,
};
use scamguard::sip::msg::{Limits, Message};
use scamguard::sip::{NewCall, Transport};

/// Lists are not what is fuzzed here: no number is listed.
struct NoLists;

impl Rules for NoLists {
    fn lookup(&self, _number: Number, _now: i64) -> Option<Match> {
        None
    }
}

struct World {
    plans: Vec<NumberPlan>,
    engine: Engine,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let mut plans = Vec::new();
        for cc in NumberPlan::KNOWN_COUNTRIES {
            let mut p = NumberPlan::for_country(cc).expect("a known country");
            plans.push(p.clone());
            p.bare_digits = BareDigits::International;
            plans.push(p);
        }
        let brands = Brands::from_toml(
            include_str!("../../config/brands.toml"),
            "config/brands.toml",
        )
        .expect("the shipped brands load");
        let engine = Engine {
            screening: ScreeningPolicy::from_config(&ScreeningConfig::default()),
            scoring: Scoring::new(PolicyConfig::default()),
            signals: SignalState::new(
                SignalsConfig::default(),
                Arc::new(brands),
                Arc::new(NoCertificates),
            ),
            international_gateways: Vec::new(),
        };
        World { plans, engine }
    })
}

fn normalise_everywhere(w: &World, raw: &str) {
    for plan in &w.plans {
        let Some(n) = plan.normalise(raw) else {
            continue;
        };
        let text = n.to_string();
        assert_eq!(Number::parse_e164(&text), Some(n), "{raw:?} -> {text}");
        for other in &w.plans {
            assert_eq!(
                other.normalise(&text),
                Some(n),
                "{raw:?} -> {text} in {other:?}"
            );
        }
    }
}

fn screen(w: &World, caller: &str, callee: &str, display: Option<&str>, anonymous: bool) {
    normalise_everywhere(w, caller);
    normalise_everywhere(w, callee);
    let call = Call::question(caller, callee, display, anonymous);
    let _ = w.engine.decide(&call, &NoLists, 1_800_000_000_000);
}

fn seeds() -> Vec<Vec<u8>> {
    let mut s = common::with_selectors(common::messages());
    for typed in [
        "+12025550143\n+16175551234\nIRS Refunds",
        "(202) 555-0143\n911\n",
        "011 44 20 7946 0018\n+442079460018\n\u{0410}mazon",
        "+44 (0)20 7946 0018\n020 7946 0018\nMicrosoft Support",
        "0011 44 20 7946 0018\n1300 975 707\n\u{ff30}\u{ff41}\u{ff59}\u{ff30}\u{ff41}\u{ff4c}",
        "anonymous\n112\n",
    ] {
        s.push([&[0u8][..], typed.as_bytes()].concat());
    }
    s
}

fuzz_target!(
    init: {
        common::write_seeds(seeds);
        world();
    },
    |data: &[u8]| {
        let Some((&sel, rest)) = data.split_first() else {
            return;
        };
        let w = world();
        let special = sel & 2 != 0;
        if sel & 1 == 1 {
            let Ok(m) = Message::parse(Bytes::copy_from_slice(rest), &Limits::default(), true)
            else {
                return;
            };
            let source = "198.51.100.7:5080".parse().expect("literal");
            let call = NewCall::new(&m, source, Transport::Udp, special);
            let p = call.parties();
            screen(w, &p.caller, &p.callee, p.display_name.as_deref(), p.anonymous);
        } else {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let mut lines = text.splitn(3, '\n');
            let caller = lines.next().unwrap_or("");
            let callee = lines.next().unwrap_or("");
            let display = lines.next();
            screen(w, caller, callee, display, special);
        }
    }
);
