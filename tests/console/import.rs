//! Issue 16's list import in the console: an operator uploads a file on the Lists page (a real
//! file input, posted as `multipart/form-data`), sees a refused file's bad lines by line
//! number, then a good file's dry-run diff (added, changed, removed), confirms it, watches the
//! progress bar reach 100%, and the next call from an imported number is blocked.

use serde_json::json;

use crate::browser::{call, log_in, wait_text};
use crate::support::agent::Harness;
use crate::support::http::{request, write_tokens, WRITER};
use crate::support::webdriver::{Browser, Kind};

/// Kept, but changed from warn to block by the import.
const CHANGED: &str = "+14155552681";
/// On the list before, not in the file: a replace removes it.
const REMOVED: &str = "+14155552682";
/// New with the import.
const ADDED: &str = "+14155552683";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_file_is_diffed_then_imported_with_progress_in_chromium() {
    an_uploaded_file_is_diffed_then_imported_with_progress(Kind::Chromium).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_file_is_diffed_then_imported_with_progress_in_firefox() {
    an_uploaded_file_is_diffed_then_imported_with_progress(Kind::Firefox).await
}

/// The scenario, the same in each browser.
async fn an_uploaded_file_is_diffed_then_imported_with_progress(kind: Kind) {
    let keys = tempfile::tempdir().unwrap();
    let tokens = keys.path().join("tokens");
    write_tokens(&tokens);
    let h = Harness::start_with(&[], |c| c.api.tokens_file = Some(tokens.clone())).await;
    let api = h.agent.api_addr;
    let base = format!("http://{api}");
    let seed = json!([
        {"pattern": CHANGED, "action": "warn", "category": "import"},
        {"pattern": REMOVED, "action": "block", "category": "import"},
    ]);
    let r = request(
        api,
        "POST",
        "/v1/lists/imported/entries",
        Some(WRITER),
        seed.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(call(&h, "import1", ADDED).await, None, "not listed yet");

    let bad = keys.path().join("bad.txt");
    std::fs::write(&bad, format!("{CHANGED}\nnot-a-number\n{ADDED}\n")).unwrap();
    let good = keys.path().join("good.txt");
    std::fs::write(&good, format!("# imported\n{CHANGED}\n{ADDED}\n")).unwrap();

    let b = Browser::start(kind).await;
    log_in(&b, &base, WRITER).await;
    let upload = |path: std::path::PathBuf| {
        let b = &b;
        let base = base.clone();
        async move {
            b.goto(&format!("{base}/console/lists/imported")).await;
            b.click(&b.one("#import-format option:nth-child(3)").await)
                .await;
            b.click(&b.one("#import-replace option[value='true']").await)
                .await;
            let input = b.one("#import-file").await;
            b.type_in(&input, &path.display().to_string()).await;
            b.click(&b.one("#import-dry-run").await).await;
        }
    };

    // A file with a bad line: nothing staged, the line named as the loader names it.
    upload(bad).await;
    let errors = wait_text(&b, "#import-errors", "Nothing was written").await;
    assert!(errors.contains("import.plain:2:"), "{errors}");
    assert!(b.all("#import-commit").await.is_empty());
    b.screenshot("21-import-bad-lines").await;

    // The good file: its diff against the list, and nothing written yet.
    upload(good).await;
    let diff = wait_text(&b, "#import-diff", "Dry run").await;
    assert!(
        diff.contains("1 added, 1 changed, 1 removed, 0 unchanged"),
        "{diff}"
    );
    for (css, n) in [
        ("tr.added", ADDED),
        ("tr.changed-to", CHANGED),
        ("tr.removed", REMOVED),
    ] {
        let row = b.text(&b.one(css).await).await;
        assert!(row.contains(n), "{css}: {row}");
    }
    assert_eq!(
        call(&h, "import2", ADDED).await,
        None,
        "a dry run writes nothing"
    );
    b.screenshot("22-import-diff").await;

    // Confirmed: the job's progress reaches 100%, then the list is enforced.
    b.click(&b.one("#import-commit").await).await;
    wait_text(&b, "#import-percent", "100%").await;
    let state = b.text(&b.one("#import-state").await).await;
    assert_eq!(state, "Imported into imported: 2 written, 2 replaced.");
    b.screenshot("23-import-done").await;
    b.click(&b.one("#import-list").await).await;
    let entries = wait_text(&b, "#entries", ADDED).await;
    assert!(!entries.contains(REMOVED), "{entries}");
    let changed = wait_text(&b, "#entries tr", CHANGED).await;
    assert!(changed.contains("block"), "{changed}");
    assert_eq!(call(&h, "import3", ADDED).await, Some(603));
    assert_eq!(call(&h, "import4", REMOVED).await, None, "replaced away");
    let r = request(api, "GET", "/v1/lists/imported/entries", Some(WRITER), b"").await;
    assert!(
        r.text.contains(CHANGED) && r.text.contains(ADDED) && !r.text.contains(REMOVED),
        "{}",
        r.text
    );
    drop(b);
    h.stop().await;
}
