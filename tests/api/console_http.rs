//! The web console over HTTP, without a browser and without a socket: every console route
//! checks its role on the server, a write without the session's CSRF token (or from another
//! site) is refused and changes nothing, the login form counts and audits wrong tokens, and
//! every page carries the CSP and frame headers. Disputes are resolved through the API's own
//! code: audited, enforced and refused to the read role alike.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;

use crate::support::api::*;
use crate::support::http::{ADMIN, READER, WRITER};
use scamguard::api::{self, ClientAddr, State};

/// A reply as the tests read it.
struct Got {
    status: u16,
    headers: hyper::HeaderMap,
    text: String,
}

impl Got {
    fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The value of cookie `name` that the reply sets.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers.get_all("set-cookie").iter().find_map(|v| {
            let v = v.to_str().unwrap();
            v.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap().to_string())
        })
    }

    /// The value of the first attribute `name` on the page.
    fn field_attr(&self, name: &str) -> String {
        let key = format!("{name}=\"");
        let at = self
            .text
            .find(&key)
            .unwrap_or_else(|| panic!("no {name} in {}", self.text));
        let rest = &self.text[at + key.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    /// The value of the first hidden field `name` on the page.
    fn field(&self, name: &str) -> String {
        let key = format!("name=\"{name}\" value=\"");
        let at = self
            .text
            .find(&key)
            .unwrap_or_else(|| panic!("no field {name} in {}", self.text));
        let rest = &self.text[at + key.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

const ADDR: &str = "192.0.2.77:40000";

async fn send(st: &State, method: &str, path: &str, cookie: &str, body: &str) -> Got {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1");
    if !cookie.is_empty() {
        b = b.header("cookie", cookie);
    }
    if method == "POST" {
        b = b.header("content-type", "application/x-www-form-urlencoded");
    }
    route(
        st,
        b.body(Full::new(Bytes::from(body.to_string()))).unwrap(),
    )
    .await
}

/// `req` through the API's router from [`ADDR`], and what came back.
async fn route(st: &State, mut req: Request<Full<Bytes>>) -> Got {
    req.extensions_mut()
        .insert(ClientAddr(ADDR.parse().unwrap()));
    let r = api::route(st, req).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Got {
        status,
        headers,
        text,
    }
}

fn enc(s: &str) -> String {
    crate::support::http::enc(s)
}

/// A logged-in session: its cookie header and CSRF token.
struct Login {
    cookie: String,
    csrf: String,
}

async fn login(st: &State, token: &str) -> Login {
    let form = send(st, "GET", "/console/login", "", "").await;
    assert_eq!(form.status, 200);
    let double = form.cookie("sg_login").expect("the form sets its cookie");
    let body = format!("login={}&token={}", form.field("login"), enc(token));
    let r = send(
        st,
        "POST",
        "/console/login",
        &format!("sg_login={double}"),
        &body,
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(r.header("location"), "/console/live");
    let set = r.header("set-cookie");
    assert!(
        set.contains("sg_session=")
            && set.contains("HttpOnly")
            && set.contains("SameSite=Strict")
            && set.contains("Max-Age=28800"),
        "{set}"
    );
    let cookie = format!("sg_session={}", r.cookie("sg_session").unwrap());
    let page = send(st, "GET", "/console/live", &cookie, "").await;
    assert_eq!(page.status, 200, "{}", page.text);
    Login {
        csrf: page.field("csrf"),
        cookie,
    }
}

/// Every console page and action with the role it needs (method, path, form without csrf).
const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("GET", "/console/live", "", "read"),
    ("GET", "/console/live/stream?after=1", "", "read"),
    ("GET", "/console/live/1", "", "read"),
    ("GET", "/console/overview", "", "read"),
    ("GET", "/console/check?caller=%2B12025550143", "", "read"),
    (
        "GET",
        "/console/whatif?kind=entry&pattern=%2B1202555%2A&action=block",
        "",
        "read",
    ),
    ("GET", "/console/lists", "", "read"),
    ("GET", "/console/lists/ops", "", "read"),
    ("GET", "/console/reports", "", "read"),
    ("GET", "/console/feeds", "", "read"),
    ("GET", "/console/disputes", "", "read"),
    ("GET", "/console/imports/0123", "", "write"),
    (
        "POST",
        "/console/lists/ops/add",
        "pattern=%2B12025550177&action=block",
        "write",
    ),
    (
        "POST",
        "/console/lists/ops/remove",
        "pattern=%2B12025550177",
        "write",
    ),
    (
        "POST",
        "/console/lists/ops/import",
        "format=plain&text=%2B12025550188",
        "write",
    ),
    (
        "POST",
        "/console/reports/promote",
        "caller=%2B12025550199",
        "write",
    ),
    (
        "POST",
        "/console/reports/allow",
        "caller=%2B12025550199",
        "write",
    ),
    (
        "POST",
        "/console/reports/dismiss",
        "caller=%2B12025550199",
        "write",
    ),
    ("POST", "/console/disputes/1/lift", "", "write"),
    ("POST", "/console/disputes/1/uphold", "", "write"),
    ("GET", "/console/audit", "", "admin"),
];

fn rank(role: &str) -> u8 {
    match role {
        "read" => 1,
        "write" => 2,
        _ => 3,
    }
}

#[tokio::test]
async fn every_console_route_enforces_its_role() {
    let dir = tempdir();
    let st = state(dir.path(), |_| {}).0;
    let sessions = [
        ("read", login(&st, READER).await),
        ("write", login(&st, WRITER).await),
        ("admin", login(&st, ADMIN).await),
    ];
    for (method, path, form, need) in ROUTES {
        // No session: a page sends the browser to the login form; an action is refused.
        let r = send(&st, method, path, "", form).await;
        if *method == "GET" {
            assert_eq!(r.status, 303, "{method} {path} without a session");
            assert_eq!(r.header("location"), "/console/login");
        } else {
            assert_eq!(r.status, 401, "{method} {path} without a session");
        }
        for (role, s) in &sessions {
            let body = if *method == "POST" {
                format!("{form}&csrf={}", s.csrf)
            } else {
                String::new()
            };
            let r = send(&st, method, path, &s.cookie, &body).await;
            if rank(role) < rank(need) {
                assert_eq!(r.status, 403, "{role} on {method} {path}: {}", r.text);
                assert!(
                    r.text.contains(&format!("role {need} needed")),
                    "{}",
                    r.text
                );
            } else {
                assert!(
                    ![401, 403].contains(&r.status) && r.header("location") != "/console/login",
                    "{role} on {method} {path}: {} {}",
                    r.status,
                    r.text
                );
            }
        }
    }
    // The refusals are in the audit trail, with the operator's name and address.
    let refused = st.live.store.audit_of(0, 1000, Some(true)).unwrap();
    let viewer = refused
        .iter()
        .filter(|r| r.who == "viewer" && r.source.as_deref() == Some(ADDR))
        .count();
    assert_eq!(viewer, 10, "{refused:?}");
}

#[tokio::test]
async fn a_write_without_the_csrf_token_or_from_another_site_changes_nothing() {
    let dir = tempdir();
    let st = state(dir.path(), |_| {}).0;
    let w = login(&st, WRITER).await;
    let add = "pattern=%2B12025550177&action=block";
    for body in [add.to_string(), format!("{add}&csrf=0{}", &w.csrf[1..])] {
        let r = send(&st, "POST", "/console/lists/ops/add", &w.cookie, &body).await;
        assert_eq!(r.status, 403, "{}", r.text);
        assert!(r.text.contains("CSRF"), "{}", r.text);
    }
    assert_eq!(st.live.store.get("ops", "+12025550177").unwrap(), None);
    // A form posted from another site is refused even with the token.
    let mut req = Request::builder()
        .method("POST")
        .uri("/console/lists/ops/add")
        .header("host", "127.0.0.1:8080")
        .header("origin", "https://evil.example")
        .header("cookie", &w.cookie)
        .body(Full::new(Bytes::from(format!("{add}&csrf={}", w.csrf))))
        .unwrap();
    req.extensions_mut()
        .insert(ClientAddr(ADDR.parse().unwrap()));
    assert_eq!(api::route(&st, req).await.status(), 403);
    assert_eq!(st.live.store.get("ops", "+12025550177").unwrap(), None);
    // With the token it goes through, audited under the operator's name.
    let r = send(
        &st,
        "POST",
        "/console/lists/ops/add",
        &w.cookie,
        &format!("{add}&csrf={}", w.csrf),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("Added +12025550177"), "{}", r.text);
    assert!(st.live.store.get("ops", "+12025550177").unwrap().is_some());
    let changes = st.live.store.audit_of(0, 100, Some(false)).unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.who == "bot" && c.pattern.as_deref() == Some("+12025550177")),
        "{changes:?}"
    );
    // Logging out needs the token too, and ends the session.
    let r = send(&st, "POST", "/console/logout", &w.cookie, "").await;
    assert_eq!(r.status, 403);
    let r = send(
        &st,
        "POST",
        "/console/logout",
        &w.cookie,
        &format!("csrf={}", w.csrf),
    )
    .await;
    assert_eq!(r.status, 303);
    let r = send(&st, "GET", "/console/lists", &w.cookie, "").await;
    assert_eq!(r.header("location"), "/console/login");
}

#[tokio::test]
async fn wrong_tokens_at_the_login_are_audited_and_rate_limited() {
    let dir = tempdir();
    let st = state(dir.path(), |c| c.max_auth_failures = 3).0;
    let form = send(&st, "GET", "/console/login", "", "").await;
    let double = form.cookie("sg_login").unwrap();
    let cookie = format!("sg_login={double}");
    let body = |t: &str| format!("login={}&token={}", form.field("login"), enc(t));
    // Without the form's own cookie a good token is refused: the form came from elsewhere.
    let r = send(&st, "POST", "/console/login", "", &body(ADMIN)).await;
    assert_eq!(r.status, 403);
    assert!(r.cookie("sg_session").is_none());
    for _ in 0..3 {
        let r = send(
            &st,
            "POST",
            "/console/login",
            &cookie,
            &body("guess-guess-guess"),
        )
        .await;
        assert_eq!(r.status, 401, "{}", r.text);
        assert!(r.cookie("sg_session").is_none());
    }
    // The fourth failure refuses the address, and then a good token is refused too.
    let r = send(
        &st,
        "POST",
        "/console/login",
        &cookie,
        &body("guess-guess-guess"),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = send(&st, "POST", "/console/login", &cookie, &body(ADMIN)).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.cookie("sg_session").is_none());
    let refused = st.live.store.audit_of(0, 100, Some(true)).unwrap();
    let logins = refused
        .iter()
        .filter(|r| {
            r.source.as_deref() == Some(ADDR)
                && r.after.as_ref().is_some_and(|a| {
                    a["why"] == "console login with an unknown token"
                        && a["path"] == "/console/login"
                })
        })
        .count();
    assert_eq!(logins, 4, "{refused:?}");
    assert!(
        refused.iter().any(|r| r
            .after
            .as_ref()
            .is_some_and(|a| a.get("refused_for_secs").is_some())),
        "{refused:?}"
    );
}

#[tokio::test]
async fn pages_carry_the_csp_and_refuse_framing() {
    let dir = tempdir();
    let st = state(dir.path(), |_| {}).0;
    let a = login(&st, ADMIN).await;
    for path in [
        "/console/login",
        "/console/live",
        "/console/overview",
        "/console/audit",
        "/console/nowhere",
    ] {
        let cookie = if path.ends_with("login") {
            ""
        } else {
            &a.cookie
        };
        let r = send(&st, "GET", path, cookie, "").await;
        let csp = r.header("content-security-policy");
        assert!(
            csp.contains("script-src 'self'")
                && csp.contains("frame-ancestors 'none'")
                && !csp.contains("unsafe-inline")
                && !csp.contains("unsafe-eval"),
            "{path}: {csp}"
        );
        assert_eq!(r.header("x-frame-options"), "DENY", "{path}");
        assert!(!r.text.contains("<script>"), "{path} has an inline script");
        assert!(!r.text.contains("style=\""), "{path} has an inline style");
    }
    // The vendored assets are served from the binary.
    for (asset, ctype) in [
        ("htmx.min.js", "text/javascript"),
        ("sse.min.js", "text/javascript"),
        ("console.css", "text/css"),
    ] {
        let r = send(&st, "GET", &format!("/console/assets/{asset}"), "", "").await;
        assert_eq!(r.status, 200, "{asset}");
        assert!(r.header("content-type").starts_with(ctype), "{asset}");
        assert!(r.text.len() > 1000, "{asset}");
    }
    // A read session sees no write controls.
    let r = login(&st, READER).await;
    let page = send(&st, "GET", "/console/lists/ops", &r.cookie, "").await;
    assert_eq!(page.status, 200);
    assert!(!page.text.contains("/add\"") && !page.text.contains("/import\""));
    let w = login(&st, WRITER).await;
    let page = send(&st, "GET", "/console/lists/ops", &w.cookie, "").await;
    assert!(page.text.contains("/console/lists/ops/add\""));
}

#[tokio::test]
async fn disputes_are_shown_escaped_and_resolved_as_the_api_resolves_them() {
    use scamguard::lists::store::{DisputeLimits, DisputeStatus, NewDispute};
    let dir = tempdir();
    let st = state(dir.path(), |_| {}).0;
    let limits = DisputeLimits {
        max_open: 10,
        keep_resolved_secs: 86_400,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let open = |number: &str, statement: &str| {
        st.live
            .store
            .open_dispute(
                NewDispute {
                    number,
                    contact: "ann@example.org",
                    statement,
                },
                Some("198.51.100.4"),
                limits,
                now - 7_300,
            )
            .unwrap()
    };
    // The form refuses `<` and `>`; the console escapes what it shows all the same.
    let lifted = open("+12025550143", "I am the \"bakery\" & I called my mum");
    let upheld = open("+12025550185", "not a scam");

    let r = login(&st, READER).await;
    let page = send(&st, "GET", "/console/disputes", &r.cookie, "").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("+12025550143") && page.text.contains("ann@example.org"));
    assert!(
        page.text
            .contains("I am the &quot;bakery&quot; &amp; I called my mum"),
        "{}",
        page.text
    );
    assert!(page.text.contains("2 h 1 min"), "the age: {}", page.text);
    assert!(
        !page.text.contains("/lift") && !page.text.contains("/uphold"),
        "a reader sees no buttons: {}",
        page.text
    );
    // A forged POST from the reader (with its own CSRF token) is refused and changes nothing.
    let path = format!("/console/disputes/{}/lift", lifted.id);
    let forged = send(&st, "POST", &path, &r.cookie, &format!("csrf={}", r.csrf)).await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    let d = st.live.store.dispute(lifted.id).unwrap().unwrap();
    assert_eq!(d.status, DisputeStatus::Open);
    assert_eq!(st.live.store.get("disputes", "+12025550143").unwrap(), None);

    let w = login(&st, WRITER).await;
    let page = send(&st, "GET", "/console/disputes", &w.cookie, "").await;
    assert!(
        page.text.contains(&path),
        "a writer sees the buttons: {}",
        page.text
    );
    // Without the token: refused.
    let r = send(&st, "POST", &path, &w.cookie, "").await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = send(&st, "POST", &path, &w.cookie, &format!("csrf={}", w.csrf)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.text.contains(&format!(
            "Dispute {} lifted: +12025550143 is allowed (list disputes).",
            lifted.id
        )),
        "{}",
        r.text
    );
    let e = st
        .live
        .store
        .get("disputes", "+12025550143")
        .unwrap()
        .unwrap();
    assert_eq!(e.reason, format!("dispute {}", lifted.id));
    let d = st.live.store.dispute(lifted.id).unwrap().unwrap();
    assert_eq!(d.status, DisputeStatus::Lifted);
    assert_eq!(d.resolved_by.as_deref(), Some("bot"));
    // Lifted once: a second lift is refused and says why.
    let again = send(&st, "POST", &path, &w.cookie, &format!("csrf={}", w.csrf)).await;
    assert!(again.text.contains("is lifted already"), "{}", again.text);

    let path = format!("/console/disputes/{}/uphold", upheld.id);
    let r = send(&st, "POST", &path, &w.cookie, &format!("csrf={}", w.csrf)).await;
    assert!(r.text.contains("upheld: the block stays"), "{}", r.text);
    assert_eq!(
        st.live.store.dispute(upheld.id).unwrap().unwrap().status,
        DisputeStatus::Upheld
    );
    assert_eq!(st.live.store.get("disputes", "+12025550185").unwrap(), None);
    // Resolved disputes leave the page.
    let page = send(&st, "GET", "/console/disputes", &w.cookie, "").await;
    assert!(!page.text.contains("dispute-"), "{}", page.text);
    // Audited as the API's lift and uphold are, under the operator's name and address.
    let trail = st.live.store.audit_of(0, 1000, Some(false)).unwrap();
    for what in ["dispute-lift", "dispute-uphold"] {
        assert!(
            trail
                .iter()
                .any(|a| a.what == what && a.who == "bot" && a.source.as_deref() == Some(ADDR)),
            "{what}: {trail:?}"
        );
    }
    assert!(
        trail
            .iter()
            .any(|a| a.what == "add" && a.pattern.as_deref() == Some("+12025550143")),
        "{trail:?}"
    );
}

/// A multipart body as a browser sends the import form with a file.
fn multipart(boundary: &str, fields: &[(&str, &str)], file: &str) -> String {
    let mut b = String::new();
    for (k, v) in fields {
        b.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    b.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"l.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n{file}\r\n--{boundary}--\r\n"
    ));
    b
}

async fn post_multipart(st: &State, path: &str, cookie: &str, body: String) -> Got {
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "127.0.0.1")
        .header("cookie", cookie)
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    route(st, req).await
}

#[tokio::test]
async fn an_uploaded_import_is_a_dry_run_until_its_owner_confirms_it() {
    let dir = tempdir();
    let st = state(dir.path(), |_| {}).0;
    let w = login(&st, WRITER).await;
    let a = login(&st, ADMIN).await;
    let path = "/console/lists/ops/import";
    // Without the CSRF field in the multipart body: refused.
    let r = post_multipart(
        &st,
        path,
        &w.cookie,
        multipart("XyZ", &[("format", "plain")], "+12025550177"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    // Bad lines are named as the loader names them, and nothing is staged.
    let fields = [
        ("csrf", w.csrf.as_str()),
        ("format", "plain"),
        ("replace", "false"),
    ];
    let r = post_multipart(
        &st,
        path,
        &w.cookie,
        multipart("XyZ", &fields, "+12025550177\nnope\n"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("import.plain:2:"), "{}", r.text);
    assert!(!r.text.contains("name=\"staged\""), "{}", r.text);
    // A good file: the diff, nothing written.
    let r = post_multipart(
        &st,
        path,
        &w.cookie,
        multipart("XyZ", &fields, "+12025550177\n+12025550178\n"),
    )
    .await;
    assert!(
        r.text
            .contains("<strong id=\"diff-added\">2</strong> added"),
        "{}",
        r.text
    );
    assert_eq!(st.live.store.get("ops", "+12025550177").unwrap(), None);
    let staged = r.field("staged");
    // Another operator cannot confirm it.
    let r = send(
        &st,
        "POST",
        path,
        &a.cookie,
        &format!("confirm=yes&staged={staged}&csrf={}", a.csrf),
    )
    .await;
    assert!(
        r.text.contains("has expired or was confirmed already"),
        "{}",
        r.text
    );
    // Its owner can, once; the job's progress reaches 100% with the entries enforced.
    let confirm = format!("confirm=yes&staged={staged}&csrf={}", w.csrf);
    let r = send(&st, "POST", path, &w.cookie, &confirm).await;
    assert!(r.text.contains("id=\"import-progress\""), "{}", r.text);
    let job = r.field_attr("data-job");
    let page = format!("/console/imports/{job}");
    crate::support::eventually("the import finished", || {
        let (st, cookie, page) = (&st, w.cookie.clone(), page.clone());
        async move {
            let p = send(st, "GET", &page, &cookie, "").await;
            p.text.contains("id=\"import-percent\">100%")
        }
    })
    .await;
    // Another operator's id finds nothing.
    let other = send(&st, "GET", &page, &a.cookie, "").await;
    assert!(other.text.contains("No such import"), "{}", other.text);
    let done = send(&st, "GET", &page, &w.cookie, "").await.text;
    assert!(
        !done.contains("hx-get"),
        "a finished job is not asked again: {done}"
    );
    assert!(done.contains("2 written, 0 replaced"), "{done}");
    assert!(st.live.store.get("ops", "+12025550178").unwrap().is_some());
    let r = send(&st, "POST", path, &w.cookie, &confirm).await;
    assert!(
        r.text.contains("has expired or was confirmed already"),
        "{}",
        r.text
    );
}
