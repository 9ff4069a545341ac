//! The admin API without a socket: requests handed straight to `api::route` get the replies a
//! client on the listener would (open endpoints, 401 and 403 as JSON, bad bodies, body caps),
//! and are counted as the listener counts them.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::{Request, Response};
use serde_json::{json, Value};

use crate::support::api::*;
use crate::support::http::{READER, WRITER};
use scamguard::api::{self, ResponseBody, State};
use scamguard::screening::signals::velocity::{Start, Velocity, VelocityConfig};

/// The state `Agent::start` serves, built without binding anything, with small body caps.
fn state(dir: &std::path::Path) -> State {
    crate::support::api::state(dir, |c| {
        c.max_body_bytes = 1024;
        c.max_import_bytes = 4096;
    })
    .0
}

fn req(method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Full::new(Bytes::copy_from_slice(body))).unwrap()
}

async fn text(r: Response<ResponseBody>) -> (u16, String) {
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn call(st: &State, r: Request<Full<Bytes>>) -> (u16, Value) {
    let (status, body) = text(api::route(st, r).await).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    (status, v)
}

/// A body that never ends and sends no length: only a streaming cap can answer it.
struct Endless;

impl Body for Endless {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&[b' '; 512])))))
    }
}

#[tokio::test]
async fn routes_without_a_socket() {
    let dir = tempdir();
    let st = state(dir.path());

    let (code, v) = call(&st, req("GET", "/health", None, b"")).await;
    assert_eq!((code, v), (200, json!({"status": "ok"})));

    let (code, v) = call(&st, req("GET", "/v1/lists", None, b"")).await;
    assert_eq!(code, 401);
    assert_eq!(v["error"], "missing or unknown bearer token");
    let (code, v) = call(&st, req("GET", "/v1/lists", Some(READER), b"")).await;
    assert_eq!((code, v), (200, json!({"lists": []})));
    let (code, v) = call(&st, req("POST", "/v1/reload", Some(WRITER), b"")).await;
    assert_eq!(code, 403);
    assert!(v["error"].as_str().unwrap().contains("role admin"), "{v}");

    let bad = req("POST", "/v1/lists/ops/entries", Some(WRITER), b"{not json");
    let (code, v) = call(&st, bad).await;
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap().starts_with("body is not JSON"));

    let entry = json!({"pattern": "+12025550143", "action": "block", "category": "scam"});
    let add = req(
        "POST",
        "/v1/lists/ops/entries",
        Some(WRITER),
        entry.to_string().as_bytes(),
    );
    assert_eq!(call(&st, add).await.0, 201);
    let check = req("GET", "/v1/check?caller=%2B12025550143", Some(READER), b"");
    let (code, v) = call(&st, check).await;
    assert_eq!((code, v["action"].as_str()), (200, Some("block")), "{v}");

    let (code, v) = call(&st, req("PUT", "/v1/check", Some(READER), b"")).await;
    assert_eq!(code, 405, "{v}");
    let (code, _) = call(&st, req("GET", "/v1/nothing", Some(READER), b"")).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn bodies_are_capped_without_a_socket() {
    let dir = tempdir();
    let st = state(dir.path());
    // JSON bodies: max_body_bytes = 1024, by Content-Length and while streaming.
    let big = vec![b'['; 1025];
    let mut declared = req("POST", "/v1/lists/ops/entries", Some(WRITER), &big);
    declared
        .headers_mut()
        .insert("content-length", big.len().into());
    let (code, v) = call(&st, declared).await;
    assert_eq!(code, 413);
    assert_eq!(v["error"], "request body larger than 1024 bytes");
    let undeclared = req("POST", "/v1/lists/ops/entries", Some(WRITER), &big);
    assert_eq!(call(&st, undeclared).await.0, 413);
    let endless = Request::post("/v1/reports")
        .header("authorization", format!("Bearer {WRITER}"))
        .body(Endless)
        .unwrap();
    // Without a reporter the endpoint is 404 before any body is read; entries read it.
    assert_eq!(text(api::route(&st, endless).await).await.0, 404);
    let endless = Request::post("/v1/lists/ops/entries")
        .header("authorization", format!("Bearer {WRITER}"))
        .body(Endless)
        .unwrap();
    let (code, body) = text(api::route(&st, endless).await).await;
    assert_eq!(code, 413, "{body}");

    // Imports have their own cap: max_import_bytes = 4096.
    let lines: String = (0..400).map(|i| format!("+1202555{i:04}\n")).collect();
    let import = "/v1/lists/ops/import?format=plain";
    let (code, v) = call(&st, req("POST", import, Some(WRITER), lines.as_bytes())).await;
    assert_eq!(code, 413, "{v}");
    let (code, v) = call(
        &st,
        req("POST", import, Some(WRITER), &lines.as_bytes()[..1300]),
    )
    .await;
    assert_eq!((code, &v["written"]), (201, &json!(100)), "{v}");

    // Counted as on a socket: seven requests with this one, five of them refused.
    let (code, m) = text(api::route(&st, req("GET", "/metrics", None, b"")).await).await;
    assert_eq!(code, 200);
    assert!(
        m.contains("scamguard_api_requests_total{outcome=\"all\"} 7"),
        "{m}"
    );
    assert!(
        m.contains("scamguard_api_requests_total{outcome=\"client_error\"} 5"),
        "{m}"
    );
}

/// A checker over live velocity state, as the agent's is.
struct Traffic(Velocity);

impl api::Checker for Traffic {
    fn check(&self, _: &str, _: Option<&str>, _: Option<&str>) -> Value {
        json!({})
    }

    fn velocity_suggestion(&self) -> Option<Value> {
        serde_json::to_value(self.0.suggested_thresholds()).ok()
    }
}

/// `GET /v1/signals/velocity/suggest`: a reader's view of the thresholds the traffic suggests;
/// 404 from a checker with no live traffic.
#[tokio::test]
async fn velocity_suggestions_without_a_socket() {
    let dir = tempdir();
    let mut st = state(dir.path());
    let path = "/v1/signals/velocity/suggest";
    assert_eq!(call(&st, req("GET", path, None, b"")).await.0, 401);
    let (code, v) = call(&st, req("GET", path, Some(READER), b"")).await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(call(&st, req("POST", path, Some(WRITER), b"")).await.0, 405);

    // One minute of traffic: 300 people calling once, a reminder line calling 12 patients.
    let velocity = Velocity::new(VelocityConfig::default());
    let t: u64 = 1_790_000_040_000;
    for i in 0..300u64 {
        let caller = format!("+1312555{i:04}");
        let s = Start {
            caller: Some(&caller),
            callee: "+12025550100",
            ..Start::default()
        };
        velocity.call_started(&s, t + i * 100);
    }
    for i in 0..12u64 {
        let callee = format!("+1202555{:04}", 200 + i);
        let s = Start {
            caller: Some("+14155550143"),
            callee: &callee,
            ..Start::default()
        };
        velocity.call_started(&s, t + i * 4_000);
    }
    st.checker = Arc::new(Traffic(velocity));
    let (code, v) = call(&st, req("GET", path, Some(READER), b"")).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["caller_minutes"], 301, "{v}");
    let per_minute = v["caller"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "per_minute")
        .unwrap_or_else(|| panic!("{v}"));
    // Few samples: the 99.9th percentile is the busiest caller, 12; warn 12 x 1.5 = 18 -> 20.
    assert_eq!(
        (
            &per_minute["p999"],
            &per_minute["warn"],
            &per_minute["block"]
        ),
        (&json!(12), &json!(20), &json!(60)),
        "{v}"
    );
    assert!(
        v["notes"][0]
            .as_str()
            .unwrap()
            .starts_with("only 301 caller-minutes observed"),
        "{v}"
    );
}
