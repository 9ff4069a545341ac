//! The typed config file, assembled from each module's own section.
//!
//! Knows nothing of behaviour: it only reads, defaults and validates settings.
