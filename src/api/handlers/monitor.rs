//! `GET /health`, `GET /ready` and `GET /metrics`: what monitoring reads, open to anyone.
//!
//! Knows nothing of tokens or of what the collectors count; it only asks them to write.

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::api::http::{full, json_resp, ResponseBody};
use crate::api::State;
use crate::metrics::{Collect, Exposition};

/// `GET /health`: the process answers.
pub(in crate::api) fn health() -> Response<ResponseBody> {
    json_resp(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /ready`: 503 until the lists are loaded, and while anything else the agent was given
/// stands in the way (a next hop that answers nothing), so a balancer sends no calls then.
/// `reasons` says why.
pub(in crate::api) fn ready(st: &State) -> Response<ResponseBody> {
    let mut reasons: Vec<String> = Vec::new();
    if !st.live.ready() {
        reasons.push("the lists are not loaded yet".into());
    }
    reasons.extend(st.ready.iter().filter_map(|r| r.not_ready()));
    let ready = reasons.is_empty();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_resp(code, &json!({"ready": ready, "reasons": reasons}))
}

/// `GET /metrics`: Prometheus text of the API, the rules and every collector passed in.
pub(in crate::api) fn metrics(st: &State) -> Response<ResponseBody> {
    let mut e = Exposition::default();
    st.stats.collect(&mut e);
    st.guard.collect(&mut e);
    st.live.rules.stats.collect(&mut e);
    st.live.store.collect(&mut e);
    for c in &st.collectors {
        c.collect(&mut e);
    }
    let mut r = Response::new(full(Bytes::from(e.finish())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
