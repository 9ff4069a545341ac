//! The one place the decision engine is built from the config, for `run` and `check` alike, so
//! a question asked with `scamguard check` is answered by the same engine as a live call.

use std::sync::Arc;

use super::config::Config;
use super::AppError;
use crate::screening::signals::brands::Brands;
use crate::screening::signals::stir::CertLookup;
use crate::screening::signals::SignalState;
use crate::screening::{Engine, Scoring, ScreeningPolicy};

/// The engine for this config; `certs` answers the STIR signal's certificate lookups.
pub fn build(config: &Config, certs: Arc<dyn CertLookup>) -> Result<Engine, AppError> {
    let screening =
        ScreeningPolicy::from_config(&config.screening).map_err(|p| AppError(p.join("; ")))?;
    let mut signals = config.signals.clone();
    // The carrier's own country is domestic to it: a number of it arriving from an
    // international gateway is spoofed. Without this default the gateway rule could not fire in
    // a deployment that only set its default_country.
    if signals.plausibility.home_countries.is_empty() {
        signals.plausibility.home_countries = vec![config.screening.default_country.clone()];
    }
    let cfg = &signals;
    let brands = if cfg.brands.enabled {
        let text = std::fs::read_to_string(&cfg.brands.file).map_err(|e| {
            AppError(format!(
                "{}: cannot read the brands file: {e}",
                cfg.brands.file
            ))
        })?;
        Brands::from_toml(&text, &cfg.brands.file).map_err(|e| AppError(e.to_string()))?
    } else {
        Brands::from_toml("", "none").map_err(|e| AppError(e.to_string()))?
    };
    Ok(Engine {
        screening,
        scoring: Scoring::new(config.policy.clone()).map_err(AppError)?,
        signals: SignalState::new(signals.clone(), Arc::new(brands), certs),
        // In the text form the hook gives a call's source (`IpAddr`'s Display).
        international_gateways: config
            .peers
            .international_gateways
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
}
