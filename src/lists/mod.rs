//! List entries: the operator-facing file format, loading a lists directory, and publishing
//! compiled rule snapshots for the hot path.
//!
//! Knows nothing of SIP or sockets.

pub mod import;
pub mod overlay;
pub mod store;
