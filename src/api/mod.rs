//! The admin HTTP API (hyper): health, readiness and metrics.
//!
//! Knows nothing of SIP.
