//! The SIP wire: framing, message scanning, transactions, forwarding and responses.
//!
//! Knows nothing of blocklists or verdicts: it asks one hook what to do with a new INVITE.
