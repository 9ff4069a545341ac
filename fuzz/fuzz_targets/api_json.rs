//! The admin API's request bodies and request targets, through `api::route` as the listener
//! would hand them over, with a real SQLite store in a scratch directory and a writer's token:
//! the JSON of `POST /v1/lists/{list}/entries` and `POST /v1/reports`, the CSV, FTC and plain
//! bodies of `POST /v1/lists/{list}/import`, and the path and query of any `GET`.
//!
//! The first byte chooses: bits 0-1 the endpoint, bits 2-3 the list or import format. Bad input
//! gets a clear answer: never a panic, never a 500, and from the API (not the console, which
//! answers in HTML) always a JSON error.

#![no_main]

mod common;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use libfuzzer_sys::fuzz_target;
use scamguard::api::reports::Limits;
use scamguard::api::{self, ApiConfig, Checker, Reporter, State};
use scamguard::lists::overlay::{Live, StoreRules};
use scamguard::lists::store::{Store, StoreConfig, StoreError, StoredReport, Who};
use scamguard::lists::watch::ListFiles;
use scamguard::lists::{ListSet, ListsConfig};
use scamguard::screening::signals::report_book::{Promotion, Report};
use scamguard::screening::NumberPlan;
use serde_json::{json, Value};

const WRITER: &str = "writer-token-bbbbbbbbbbbb";

/// Verdicts are not what is fuzzed here: every check answers the same.
struct Fixed;

impl Checker for Fixed {
    fn check(&self, caller: &str, callee: Option<&str>, display: Option<&str>) -> Value {
        json!({"action": "pass", "caller": caller, "callee": callee, "display": display})
    }
}

/// Takes reports as the app's desk would check them, and keeps none.
struct Desk(NumberPlan);

impl Reporter for Desk {
    fn number(&self, text: &str) -> Option<String> {
        self.0.normalise(text).map(|n| n.to_string())
    }
    fn limits(&self) -> Option<Limits> {
        Some(Limits {
            window: 30 * 86_400,
            ahead: 300,
        })
    }
    fn report(
        &self,
        _who: Who<'_>,
        _reports: &[Report],
        _now: i64,
    ) -> Result<Vec<(String, Promotion)>, StoreError> {
        Ok(Vec::new())
    }
    fn evidence(
        &self,
        _caller: &str,
        _limit: usize,
        _now: i64,
    ) -> Result<(Vec<StoredReport>, Option<Promotion>), StoreError> {
        Ok((Vec::new(), None))
    }
}

struct World {
    state: State,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let lists = dir.path().join("lists");
        std::fs::create_dir_all(&lists).expect("the lists directory");
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, format!("bot write {WRITER}\n")).expect("the tokens file");
        let store = Arc::new(
            Store::open(&StoreConfig {
                data_dir: dir.path().join("data"),
                ..StoreConfig::default()
            })
            .expect("the store opens"),
        );
        let rules = Arc::new(StoreRules::load(&store).expect("the store's rules load"));
        let set = Arc::new(ListSet::new(ListsConfig {
            dir: lists,
            ..ListsConfig::default()
        }));
        let files = Arc::new(ListFiles::new(set));
        files.reload_now();
        let live = Arc::new(Live::new(store, rules, Some(files.clone())));
        let cfg = ApiConfig {
            listen: "127.0.0.1:0".into(),
            tokens_file: Some(tokens),
            max_body_bytes: 64 * 1024,
            max_import_bytes: 64 * 1024,
            ..ApiConfig::default()
        };
        let mut state =
            State::new(cfg, live, Arc::new(Fixed), vec![files]).expect("the API state builds");
        state.reporter = Some(Arc::new(Desk(
            NumberPlan::for_country("US").expect("a known country"),
        )));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        World {
            state,
            rt,
            _dir: dir,
        }
    })
}

/// The request, and whether its errors must be JSON (the API's; the console answers in HTML).
fn request(sel: u8, rest: &[u8]) -> Option<(Request<Full<Bytes>>, bool)> {
    let list = ["fuzz", "blocked", "reports", "a-b_c"][usize::from((sel >> 2) & 3)];
    let (method, target, body) = match sel & 3 {
        0 => ("POST", format!("/v1/lists/{list}/entries"), rest),
        1 => ("POST", "/v1/reports".to_string(), rest),
        2 => {
            let format = ["csv", "ftc", "plain", "csv&replace=true&action=warn"]
                [usize::from((sel >> 2) & 3)];
            (
                "POST",
                format!("/v1/lists/fuzz/import?format={format}"),
                rest,
            )
        }
        _ => ("GET", std::str::from_utf8(rest).ok()?.to_string(), &b""[..]),
    };
    let json = target.starts_with("/v1/");
    let req = Request::builder()
        .method(method)
        .uri(target)
        .header("authorization", format!("Bearer {WRITER}"))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .ok()?;
    Some((req, json))
}

fn seeds() -> Vec<Vec<u8>> {
    let bodies: [(u8, &str); 12] = [
        (0, r#"{"pattern":"+12025550143","action":"block","category":"scam","reason":"r"}"#),
        (0, r#"[{"pattern":"+1202555*","action":"warn","expires":"2030-01-31"},{"pattern":"/^\\+1900/","action":"block","expires":1900000000}]"#),
        (4, r#"{"pattern":"+44 20 7946 0018","action":"allow","source":"ops","expires":"2030-01-31T00:00:00Z"}"#),
        (0, r#"{"pattern":"+1202555","action":"block","reason":"a\u0000b"}"#),
        (1, r#"{"caller":"+12025550143","callee":"+16175551234","category":"scam","reporter":"app-1"}"#),
        (1, r#"[{"caller":"(202) 555-0143","callee":"+16175551234","category":"robocall","reporter":"+13125550102","time":"2026-12-05T08:00:00Z"}]"#),
        (2, "pattern,action,category,reason,expires\n+12025550143,block,scam,listed,\n+1202555*,warn,,,2030-01-31\n"),
        (6, "Company_Phone_Number,Created_Date,Subject\n2025550143,2026-11-30,Imposters\n"),
        (10, "+12025550143\n# comment\n+44 20 7946 0018\n"),
        (3, "/v1/check?caller=%2B12025550143&callee=911&display=IRS"),
        (3, "/v1/lists/fuzz/entries?prefix=%2B1202&limit=5&cursor=%2B12025550100"),
        (3, "/v1/audit?since=0&limit=10&kind=refused"),
    ];
    bodies
        .iter()
        .map(|(sel, b)| [&[*sel][..], b.as_bytes()].concat())
        .collect()
}

fuzz_target!(
    init: {
        common::write_seeds(seeds);
        world();
    },
    |data: &[u8]| {
        let Some((&sel, rest)) = data.split_first() else {
            return;
        };
        let Some((req, json)) = request(sel, rest) else {
            return;
        };
        let w = world();
        let (status, body) = w.rt.block_on(async {
            let resp = api::route(&w.state, req).await;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.map(|b| b.to_bytes());
            (status, body)
        });
        let body = body.unwrap_or_else(|e| panic!("the answer's body failed: {e}"));
        assert_ne!(status, 500, "{:?}", String::from_utf8_lossy(&body));
        if status >= 400 && json {
            serde_json::from_slice::<Value>(&body).unwrap_or_else(|e| {
                panic!(
                    "a {status} that is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&body)
                )
            });
        }
    }
);
