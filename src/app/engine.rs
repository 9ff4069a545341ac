//! The one place the decision engine is built from the config, for `run` and `check` alike, so
//! a question asked with `scamguard check` is answered by the same engine as a live call.

use std::sync::Arc;

use super::config::Config;
use super::AppError;
use crate::screening::signals::brands::Brands;
use crate::screening::signals::stir::CertLookup;
use crate::screening::signals::{BrandsConfig, SignalState};
use crate::screening::{Engine, Scoring, ScreeningPolicy};

/// The engine for a config that has passed [`Config::validate`]; `certs` answers the STIR
/// signal's certificate lookups. The one error left is the brands file's: it is read again here
/// and may have changed since it was checked.
pub fn build(config: &Config, certs: Arc<dyn CertLookup>) -> Result<Engine, AppError> {
    let brands = brands(&config.signals.brands).map_err(AppError)?;
    let mut signals = config.signals.clone();
    // The carrier's own country is domestic to it: a number of it arriving from an
    // international gateway is spoofed. Without this default the gateway rule could not fire in
    // a deployment that only set its default_country.
    if signals.plausibility.home_countries.is_empty() {
        signals.plausibility.home_countries = vec![config.screening.default_country.clone()];
    }
    Ok(Engine {
        screening: ScreeningPolicy::from_config(&config.screening),
        scoring: Scoring::new(config.policy.clone()),
        signals: SignalState::new(signals, Arc::new(brands), certs),
        // In the text form the hook gives a call's source (`IpAddr`'s Display).
        international_gateways: config
            .peers
            .international_gateways
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
}

/// The brands table `[signals.brands]` names, empty when the signal is off; a file that cannot
/// be read or parsed is an error naming it. `screening` reads no files, so the app does.
pub fn brands(cfg: &BrandsConfig) -> Result<Brands, String> {
    if !cfg.enabled {
        return Brands::from_toml("", "none").map_err(|e| e.to_string());
    }
    let text = std::fs::read_to_string(&cfg.file)
        .map_err(|e| format!("{}: cannot read the brands file: {e}", cfg.file))?;
    Brands::from_toml(&text, &cfg.file).map_err(|e| e.to_string())
}
