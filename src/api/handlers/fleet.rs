//! `GET /v1/fleet`: the agents of the fleet this agent belongs to (`[fleet]`), each with the
//! version it runs, its list version (the last edit it applied) and its last heartbeat.
//!
//! What the fleet is and how it is read is the app's, behind [`FleetView`]; this only answers.
//! Knows nothing of Redis.

use hyper::StatusCode;
use serde_json::Value;

use crate::api::http::{json_resp, Fail, Reply};
use crate::api::State;

/// The fleet as last heard from, kept by the app.
pub trait FleetView: Send + Sync {
    /// `{"fleet": name, "agent": this agent, "agents": [...]}`.
    fn view(&self) -> Value;
}

pub(in crate::api) fn fleet(st: &State) -> Reply {
    let v = st.fleet.as_ref().ok_or_else(|| {
        Fail::new(
            StatusCode::NOT_FOUND,
            "this agent is not in a fleet ([fleet] is off)",
        )
    })?;
    Ok(json_resp(StatusCode::OK, &v.view()))
}
