//! Counters and their Prometheus text rendering.
//!
//! Knows nothing of what is counted beyond names and labels.
