//! `GET /v1/signals/velocity/suggest`: the caller velocity thresholds the traffic seen so far
//! suggests, for an operator running velocity log-only before enforcing it.
//!
//! Only relays what the app's [`Checker`] reports; knows nothing of how it is worked out.
//!
//! [`Checker`]: crate::api::Checker

use hyper::StatusCode;

use crate::api::http::{json_resp, Fail, Reply};
use crate::api::State;

pub(in crate::api) fn velocity_suggest(st: &State) -> Reply {
    let v = st.checker.velocity_suggestion().ok_or_else(|| {
        Fail::new(
            StatusCode::NOT_FOUND,
            "no live traffic here: velocity suggestions come from a running agent",
        )
    })?;
    Ok(json_resp(StatusCode::OK, &v))
}
