//! The composition root: the only module that knows every other one.
//!
//! PLACEHOLDER: the lead wires the SIP proxy, media, admin API and lists here. Until then
//! [`run`] refuses to start rather than pretend to run.

use crate::config::Config;

/// Why the agent could not run.
#[derive(Debug)]
pub struct AppError(pub String);

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AppError {}

/// Run the agent until shutdown. Not wired yet: always returns an error.
pub fn run(config: Config) -> Result<(), AppError> {
    let _ = config;
    Err(AppError(
        "not wired yet: the proxy is assembled in app::run by the lead".into(),
    ))
}
