//! The signals beyond lists, as the running agent uses them: their state (velocity, wangiri,
//! reports), the scoring policy, and the translation of call events and 607 answers into their
//! inputs. Reports themselves are taken by [`super::reports`], which shares this state's report
//! book.
//!
//! Knows nothing of SIP syntax: the hook hands it parties and events in domain words.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;

use crate::screening::signals::brands::Brands;
use crate::screening::signals::policy::{self, PolicyConfig, PolicyContext};
use crate::screening::signals::stir::CertLookup;
use crate::screening::signals::wangiri::CallEnd;
use crate::screening::signals::{evaluate, SignalInput, SignalState, SignalsConfig};
use crate::screening::Verdict;

/// The `[peers]` section: which source addresses are international gateways (a domestic caller
/// id arriving there is spoofed in the countries that enforce it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeersConfig {
    pub international_gateways: Vec<IpAddr>,
}

pub struct Signals {
    /// State of live calls; `check` and `/v1/check` read it (so they see the wangiri and
    /// report history of live calls) without counting as calls.
    pub state: SignalState,
    pub policy: policy::Policy,
    pub peers: PeersConfig,
}

/// What the hook knows about a call, in the words the signals use.
pub struct CallFacts<'a> {
    pub call_id: &'a str,
    pub caller: Option<&'a str>,
    pub caller_raw: &'a str,
    pub callee: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub source: Option<IpAddr>,
    pub trusted: bool,
    pub identity: Option<&'a str>,
    pub verstat: Option<&'a str>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Signals {
    pub fn new(
        cfg: &SignalsConfig,
        policy_cfg: &PolicyConfig,
        peers: &PeersConfig,
        certs: Arc<dyn CertLookup>,
    ) -> Result<Signals, String> {
        let brands = if cfg.brands.enabled {
            let text = std::fs::read_to_string(&cfg.brands.file)
                .map_err(|e| format!("{}: cannot read the brands file: {e}", cfg.brands.file))?;
            Brands::from_toml(&text, &cfg.brands.file).map_err(|e| e.to_string())?
        } else {
            Brands::from_toml("", "none").map_err(|e| e.to_string())?
        };
        let brands = Arc::new(brands);
        Ok(Signals {
            state: SignalState::new(cfg.clone(), brands, certs),
            policy: policy::Policy::new(policy_cfg.clone())?,
            peers: peers.clone(),
        })
    }

    /// Fold the signals into the list verdict. `live` says whether this is a real call (counted
    /// for velocity) or a question from `check`.
    pub fn decide(&self, list: &Verdict, f: &CallFacts, live: bool) -> Verdict {
        let source = f.source.map(|ip| ip.to_string());
        let gateway = f
            .source
            .is_some_and(|ip| self.peers.international_gateways.contains(&ip));
        let input = SignalInput {
            call_id: f.call_id,
            caller: f.caller,
            caller_raw: Some(f.caller_raw).filter(|s| !s.is_empty()),
            callee: f.callee,
            display_name: f.display_name,
            source: source.as_deref(),
            peer: source.as_deref(),
            from_trusted_peer: f.trusted,
            from_international_gateway: gateway,
            identity: f.identity,
            date_unix: None,
            verstat: f.verstat.filter(|_| f.trusted),
            question: !live,
        };
        let eval = evaluate(&input, &self.state, now_ms());
        let ctx = PolicyContext {
            callee: f.callee,
            peer: source.as_deref(),
        };
        policy::decide_verdict(list, &eval.hits, &ctx, &self.policy).0
    }

    pub fn answered(&self, call_id: &str) {
        self.state.call_answered(call_id, now_ms());
    }

    pub fn ended(&self, call_id: &str, end: CallEnd) {
        self.state.call_ended(call_id, end, now_ms());
    }

    pub fn sweep(&self) {
        let now = now_ms();
        self.state.sweep(now);
    }
}
