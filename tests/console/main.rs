//! The web console in real headless browsers against the whole agent, with real SIP over UDP:
//! an operator logs in, watches a blocked call arrive in the live tail, opens it, previews and
//! adds an entry and sees the next call blocked, promotes a report; a `read` operator sees no
//! write controls and is refused a forged write (`browser`); a blocked caller's dispute sent on
//! the redress form is lifted in the console and the caller's next call passes (`disputes`); an
//! uploaded list file is diffed, imported with a progress bar and enforced (`import`).
//!
//! Each scenario runs once in Chromium (over WebDriver, through chromedriver) and once in
//! Firefox (over Marionette), as a test per browser calling one scenario function; screenshots
//! go to `target/console-screenshots/chromium/` and `.../firefox/`.
//!
//! Needs Debian's `chromium`, `chromium-driver` and `firefox-esr` (`.ci/run` installs them);
//! without them the tests fail rather than skip.

#[path = "../support/mod.rs"]
mod support;

mod browser;
mod disputes;
mod import;
