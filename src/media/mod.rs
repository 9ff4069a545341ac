//! RTP media for warned calls: SDP rewrite, relay and announcement playback.
//!
//! Knows nothing of SIP transactions or blocklists.
