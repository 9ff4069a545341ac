//! The admin API over real HTTP on 127.0.0.1:0 with a real SQLite store in a temp dir: roles,
//! writes enforced at once and across a restart, imports all or nothing, reload with a broken
//! file, the audit trail, exports and refusals of bad requests.

use crate::support::api::*;
use crate::support::eventually;
use crate::support::http::{enc, ADMIN, READER, WRITER};
use serde_json::json;

#[tokio::test]
async fn roles_are_enforced_and_refusals_change_nothing() {
    let dir = tempdir();
    let a = Agent::start(dir.path()).await;
    let entry =
        json!({"pattern": "+12025550143", "action": "block", "category": "scam", "reason": "r"});
    let body = entry.to_string();
    // Open endpoints need no token.
    assert_eq!(a.req("GET", "/health", None, b"").await.status, 200);
    assert_eq!(a.req("GET", "/ready", None, b"").await.status, 200);
    let m = a.req("GET", "/metrics", None, b"").await;
    assert_eq!(m.status, 200);
    assert!(
        m.text.contains("scamguard_api_requests_total"),
        "{}",
        m.text
    );

    for (method, path, token, want) in [
        ("POST", "/v1/lists/ops/entries", None, 401),
        (
            "POST",
            "/v1/lists/ops/entries",
            Some("not-a-known-token-at-all"),
            401,
        ),
        ("POST", "/v1/lists/ops/entries", Some(READER), 403),
        (
            "POST",
            "/v1/lists/ops/import?format=plain",
            Some(READER),
            403,
        ),
        (
            "DELETE",
            "/v1/lists/ops/entries/%2B12025550143",
            Some(READER),
            403,
        ),
        ("POST", "/v1/reload", Some(WRITER), 403),
        ("GET", "/v1/audit", Some(WRITER), 403),
        ("GET", "/v1/lists", None, 401),
        ("GET", "/v1/check?caller=%2B12025550143", None, 401),
    ] {
        let r = a.req(method, path, token, body.as_bytes()).await;
        assert_eq!(r.status, want, "{method} {path} {token:?}: {}", r.text);
        assert!(r.json()["error"].is_string(), "{}", r.text);
    }
    // Nothing was written, nothing audited, the number still passes.
    let lists = a.get("/v1/lists", READER).await.json();
    assert_eq!(lists["lists"], json!([]));
    assert_eq!(a.get("/v1/audit", ADMIN).await.json()["records"], json!([]));
    assert_eq!(a.check("+12025550143").await, "pass");
    // The writer may.
    let r = a
        .req(
            "POST",
            "/v1/lists/ops/entries",
            Some(WRITER),
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(a.check("+12025550143").await, "block");
    a.stop().await;
}

#[tokio::test]
async fn add_check_restart_check_remove() {
    let dir = tempdir();
    let a = Agent::start(dir.path()).await;
    let many = json!([
        {"pattern": "+12025550143", "action": "block", "category": "scam", "reason": "IRS scam"},
        {"pattern": "+1900*", "action": "warn", "category": "premium-rate", "reason": "premium"},
        {"pattern": "+19005550100", "action": "allow", "category": "partner", "reason": "known partner",
         "expires": "2999-01-01"},
    ]);
    let r = a
        .req(
            "POST",
            "/v1/lists/ops/entries",
            Some(WRITER),
            many.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["entries"].as_array().unwrap().len(), 3);
    let v = a
        .get("/v1/check?caller=%2B12025550143", READER)
        .await
        .json();
    assert_eq!(v["action"], "block");
    assert_eq!(v["reasons"][0]["list"], "ops");
    assert_eq!(a.check("+19005550199").await, "warn");
    assert_eq!(a.check("+19005550100").await, "pass");
    a.stop().await;

    // Restart: reopen the store, recompile, same answers.
    let a = Agent::start(dir.path()).await;
    assert_eq!(a.check("+12025550143").await, "block");
    assert_eq!(a.check("+19005550199").await, "warn");
    assert_eq!(a.check("+19005550100").await, "pass");
    let lists = a.get("/v1/lists", READER).await.json();
    assert_eq!(
        lists["lists"],
        json!([{"name": "ops", "source": "store", "entries": 3, "error": null}])
    );

    // Remove (URL-encoded pattern): enforced at once, before any fold.
    let r = a
        .req(
            "DELETE",
            "/v1/lists/ops/entries/%2B12025550143",
            Some(WRITER),
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(a.check("+12025550143").await, "pass");
    let r = a
        .req(
            "DELETE",
            "/v1/lists/ops/entries/%2B12025550143",
            Some(WRITER),
            b"",
        )
        .await;
    assert_eq!(r.status, 404);
    let r = a
        .req(
            "DELETE",
            "/v1/lists/ops/entries/%2B1900%2A",
            Some(WRITER),
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(a.check("+19005550199").await, "pass");
    a.live.fold().unwrap();
    assert_eq!(a.check("+19005550199").await, "pass");
    assert_eq!(a.live.rules.overlay_len(), 0);

    // Paging.
    let items: Vec<_> = (0..7)
        .map(|i| json!({"pattern": format!("+4420794600{i:02}"), "action": "block", "category": "scam", "reason": "r"}))
        .collect();
    let r = a
        .req(
            "POST",
            "/v1/lists/uk/entries",
            Some(WRITER),
            json!(items).to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201);
    let p1 = a
        .get("/v1/lists/uk/entries?limit=5&prefix=%2B44", READER)
        .await
        .json();
    assert_eq!(p1["entries"].as_array().unwrap().len(), 5);
    let cur = p1["next_cursor"].as_str().unwrap().to_string();
    let p2 = a
        .get(
            &format!("/v1/lists/uk/entries?limit=5&cursor={}", enc(&cur)),
            READER,
        )
        .await
        .json();
    assert_eq!(p2["entries"].as_array().unwrap().len(), 2);
    assert_eq!(p2["next_cursor"], json!(null));
    a.stop().await;
}

#[tokio::test]
async fn imports_are_all_or_nothing() {
    let dir = tempdir();
    let a = Agent::start(dir.path()).await;
    // plain
    let r = a
        .req(
            "POST",
            "/v1/lists/bulk/import?format=plain&category=scam",
            Some(WRITER),
            b"# numbers\n+12025550101\n+12025550102\n\n",
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["written"], 2);
    assert_eq!(a.check("+12025550102").await, "block");

    // csv, malformed: refused whole with per-line details, nothing written.
    let bad = "pattern,action,category,reason\n+12025550201,block,scam,ok\n+12025550202,blok,scam,bad action\n12025550203,block,scam,no plus\n";
    let r = a
        .req(
            "POST",
            "/v1/lists/bulk/import?format=csv",
            Some(WRITER),
            bad.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let details: Vec<String> = r.json()["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details[0].starts_with("import.csv:3: action \"blok\""),
        "{details:?}"
    );
    assert!(details[1].starts_with("import.csv:4: "), "{details:?}");
    assert_eq!(a.check("+12025550201").await, "pass");
    assert_eq!(
        a.get("/v1/lists", READER).await.json()["lists"][0]["entries"],
        2
    );

    // csv, good, replacing the list.
    let good = "pattern,action,category,reason,source,expires\n+12025550201,block,scam,ok,t-1,\n+4420790XXXXX,warn,scam,\"London, range\",t-2,2999-01-01\n";
    let r = a
        .req(
            "POST",
            "/v1/lists/bulk/import?format=csv&replace=true",
            Some(WRITER),
            good.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        (r.json()["written"].as_u64(), r.json()["replaced"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(a.check("+12025550201").await, "block");
    assert_eq!(a.check("+12025550102").await, "pass");
    assert_eq!(a.check("+442079012345").await, "warn");

    // ftc: aggregated per number.
    let ftc = "Company_Phone_Number,Created_Date,Violation_Date,Consumer_City,Consumer_State,Consumer_Area_Code,Subject,Recorded_Message_Or_Robocall\n\
        4342481967,2026-09-23 00:02:35,2026-09-22 18:22:00,SACRAMENTO,California,510,\"Reducing your debt (credit cards, mortgage, student loans)\",Y\n\
        4342481967,2026-09-25 00:02:35,2026-09-24 18:22:00,X,California,510,\"Reducing your debt (credit cards, mortgage, student loans)\",Y\n\
        2025550101,2026-09-22 00:28:21,2026-09-21 19:12:00,Ballwin,Illinois,309,Other,\n";
    let r = a
        .req(
            "POST",
            "/v1/lists/ftc/import?format=ftc",
            Some(WRITER),
            ftc.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["written"], 2);
    let e = a
        .get("/v1/lists/ftc/entries?prefix=%2B1434", READER)
        .await
        .json();
    assert_eq!(e["entries"][0]["pattern"], "+14342481967");
    assert_eq!(e["entries"][0]["action"], "warn");
    assert_eq!(
        e["entries"][0]["reason"],
        "FTC DNC: 2 reports, first 2026-09-22, last 2026-09-24; subject: Reducing your debt (credit cards, mortgage, student loans)"
    );
    assert_eq!(a.check("+14342481967").await, "warn");
    let bad_ftc = "Company_Phone_Number,Created_Date\n12,2026-09-23\n";
    let r = a
        .req(
            "POST",
            "/v1/lists/ftc2/import?format=ftc",
            Some(WRITER),
            bad_ftc.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.json()["details"][0]
            .as_str()
            .unwrap()
            .starts_with("import.ftc:2: "),
        "{}",
        r.text
    );

    // Export in the list format.
    let r = a.get("/v1/lists/bulk/export?format=csv", READER).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text,
        "pattern,action,category,reason,source,expires\n+12025550201,block,scam,ok,t-1,\n+4420790XXXXX,warn,scam,\"London, range\",t-2,2999-01-01T00:00:00Z\n"
    );
    a.stop().await;
}

#[tokio::test]
async fn reload_with_a_broken_file_keeps_the_previous_version() {
    let dir = tempdir();
    let f = lists_dir(dir.path()).join("shared.csv");
    std::fs::create_dir_all(lists_dir(dir.path())).unwrap();
    std::fs::write(
        &f,
        "pattern,action,category,reason\n+12025550143,block,scam,from file\n",
    )
    .unwrap();
    let a = Agent::start(dir.path()).await;
    assert_eq!(a.check("+12025550143").await, "block");
    std::fs::write(&f, "pattern,action,category,reason\n+12025550143,block,scam,from file\n+1202555014,blok,scam,typo\n").unwrap();
    let r = a.req("POST", "/v1/reload", Some(ADMIN), b"").await;
    assert_eq!(r.status, 422, "{}", r.text);
    let d = r.json()["details"][0].as_str().unwrap().to_string();
    assert!(d.contains("shared.csv:3: action \"blok\""), "{d}");
    assert_eq!(a.check("+12025550143").await, "block");
    let lists = a.get("/v1/lists", READER).await.json();
    let l = &lists["lists"][0];
    assert_eq!(
        (
            l["name"].as_str(),
            l["source"].as_str(),
            l["entries"].as_u64()
        ),
        (Some("shared"), Some("file"), Some(1))
    );
    assert!(
        l["error"].as_str().unwrap().contains("shared.csv:3:"),
        "{l}"
    );
    let m = a.req("GET", "/metrics", None, b"").await.text;
    assert!(m.contains("scamguard_list_file_errors 1"), "{m}");
    // Fixed: reload applies it and clears the error.
    std::fs::write(
        &f,
        "pattern,action,category,reason\n+12025550144,warn,scam,fixed\n",
    )
    .unwrap();
    let r = a.req("POST", "/v1/reload", Some(ADMIN), b"").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(a.check("+12025550143").await, "pass");
    assert_eq!(a.check("+12025550144").await, "warn");
    assert_eq!(
        a.get("/v1/lists", READER).await.json()["lists"][0]["error"],
        json!(null)
    );
    a.stop().await;
}

#[tokio::test]
async fn audit_trail_names_who_and_what() {
    let dir = tempdir();
    let a = Agent::start(dir.path()).await;
    let put = |action: &str| {
        json!({"pattern": "+12025550143", "action": action, "category": "scam", "reason": "r"})
            .to_string()
    };
    assert_eq!(
        a.req(
            "POST",
            "/v1/lists/ops/entries",
            Some(WRITER),
            put("warn").as_bytes()
        )
        .await
        .status,
        201
    );
    assert_eq!(
        a.req(
            "POST",
            "/v1/lists/ops/entries",
            Some(ADMIN),
            put("block").as_bytes()
        )
        .await
        .status,
        201
    );
    assert_eq!(
        a.req(
            "DELETE",
            "/v1/lists/ops/entries/%2B12025550143",
            Some(WRITER),
            b""
        )
        .await
        .status,
        200
    );
    assert_eq!(
        a.req(
            "POST",
            "/v1/lists/ops/import?format=plain",
            Some(WRITER),
            b"+15550001\n"
        )
        .await
        .status,
        201
    );
    let recs = a.get("/v1/audit?since=0&limit=10", ADMIN).await.json()["records"].clone();
    let summary: Vec<(String, String)> = recs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["who"].as_str().unwrap().into(),
                r["what"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("bot", "add"),
        ("ops", "update"),
        ("bot", "remove"),
        ("bot", "import"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(summary, want);
    assert_eq!(recs[1]["before"]["action"], "warn");
    assert_eq!(recs[1]["after"]["action"], "block");
    assert_eq!(recs[2]["before"]["action"], "block");
    assert_eq!(recs[2]["after"], json!(null));
    assert_eq!(recs[3]["after"]["written"], 1);
    assert!(recs[0]["at"].as_i64().unwrap() > 1_700_000_000);
    let later = a.get("/v1/audit?since=2999-01-01", ADMIN).await.json();
    assert_eq!(later["records"], json!([]));
    a.stop().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let dir = tempdir();
    let a = Agent::start(dir.path()).await;
    let big = vec![b'['; 100 * 1024];
    for (method, path, body, want) in [
        ("POST", "/v1/lists/ops/entries", b"{not json".to_vec(), 400),
        ("POST", "/v1/lists/ops/entries", b"[]".to_vec(), 400),
        (
            "POST",
            "/v1/lists/ops/entries",
            br#"{"pattern":"+1","action":"block","colour":"red"}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/v1/lists/ops/entries",
            br#"{"pattern":"nope","action":"block"}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/v1/lists/ops/entries",
            br#"{"pattern":"+12025550143","action":"block","expires":"soon"}"#.to_vec(),
            422,
        ),
        ("POST", "/v1/lists/ops/entries", big.clone(), 413),
        ("POST", "/v1/lists/..%2Fetc/entries", b"{}".to_vec(), 400),
        ("POST", "/v1/lists/ops/import?format=xls", b"".to_vec(), 400),
        ("GET", "/v1/lists/ops/entries?limit=0", vec![], 400),
        ("GET", "/v1/check", vec![], 400),
        ("GET", "/v1/nothing", vec![], 404),
        ("PUT", "/v1/lists/ops/entries", vec![], 405),
        ("GET", "/v1/lists/ops/entries/%ZZ", vec![], 400),
    ] {
        let r = a.req(method, path, Some(ADMIN), &body).await;
        assert_eq!(r.status, want, "{method} {path}: {}", r.text);
        assert!(r.json()["error"].is_string(), "{}", r.text);
    }
    assert_eq!(a.get("/v1/lists", READER).await.json()["lists"], json!([]));
    // Still serving.
    assert_eq!(a.req("GET", "/health", None, b"").await.status, 200);
    a.stop().await;
}

#[test]
fn openapi_documents_every_endpoint() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml")).unwrap();
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/mod.rs")).unwrap();
    // Every path in the module's endpoint table is documented.
    let mut n = 0;
    for line in src.lines().filter(|l| l.starts_with("//! | `")) {
        let path = line
            .split('`')
            .nth(1)
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap();
        let path = path.split('?').next().unwrap();
        assert!(
            doc.contains(&format!("  {path}:")),
            "{path} missing from docs/openapi.yaml"
        );
        n += 1;
    }
    assert_eq!(n, 19);
}

#[tokio::test]
async fn file_watch_reloads_and_shows_errors() {
    let dir = tempdir();
    let f = lists_dir(dir.path()).join("watched.csv");
    std::fs::create_dir_all(lists_dir(dir.path())).unwrap();
    std::fs::write(
        &f,
        "pattern,action,category,reason\n+12025550143,block,scam,r\n",
    )
    .unwrap();
    let a = Agent::start(dir.path()).await;
    let _watch = scamguard::lists::watch::watch_lists(a.files.clone()).unwrap();
    assert_eq!(a.check("+12025550143").await, "block");
    // A good edit is picked up without any API call.
    std::fs::write(
        &f,
        "pattern,action,category,reason\n+12025550143,warn,scam,r\n",
    )
    .unwrap();
    eventually("the edited file is in force", || async {
        a.check("+12025550143").await == "warn"
    })
    .await;
    // A broken edit is refused whole: the error shows, the previous version stays.
    std::fs::write(
        &f,
        "pattern,action,category,reason\n+12025550143,block,scam,r\nbroken line\n",
    )
    .unwrap();
    let error = || async { a.get("/v1/lists", READER).await.json()["lists"][0]["error"].clone() };
    eventually("the broken edit's error shows", || async {
        !error().await.is_null()
    })
    .await;
    let err = error().await;
    assert!(err.as_str().unwrap().contains("watched.csv:3:"), "{err}");
    assert_eq!(a.check("+12025550143").await, "warn");
    a.stop().await;
}
