//! `GET /v1/check?caller=&callee=&display=`: the verdict `scamguard check` would print.
//!
//! Only reads the query and relays it; the decision is the app's, behind [`Checker`], and this
//! knows nothing of how it is made.
//!
//! [`Checker`]: crate::api::Checker

use hyper::StatusCode;

use crate::api::http::{json_resp, qget, Fail, Reply};
use crate::api::State;

pub(in crate::api) fn check(st: &State, q: &[(String, String)]) -> Reply {
    let caller = qget(q, "caller")
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| {
            Fail::new(
                StatusCode::BAD_REQUEST,
                "caller is required: /v1/check?caller=+12025550143",
            )
        })?;
    let v = st
        .checker
        .check(caller, qget(q, "callee"), qget(q, "display"));
    Ok(json_resp(StatusCode::OK, &v))
}
