//! The web console in a real headless Chromium (driven over WebDriver) against the whole agent,
//! with real SIP over UDP: an operator logs in, watches a blocked call arrive in the live tail,
//! opens it, previews and adds an entry and sees the next call blocked, promotes a report; a
//! `read` operator sees no write controls and is refused a forged write (`browser`); a blocked
//! caller's dispute sent on the redress form is lifted in the console and the caller's next call
//! passes (`disputes`); an uploaded list file is diffed, imported with a progress bar and
//! enforced (`import`). Screenshots go to
//! `target/console-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without them the
//! test fails rather than skips.

#[path = "../support/mod.rs"]
mod support;

mod browser;
mod disputes;
mod import;
