//! A real headless Chromium driven over WebDriver (W3C), for the console's browser tests:
//! `chromedriver` started on a free port with a fresh profile, one session, and the few commands
//! the tests use (open a page, find, type, click, read text and source, run a script, take a
//! screenshot). Plain JSON over HTTP/1.1 on loopback: no WebDriver crate needed.
//!
//! Chromium and chromedriver missing is a failure, never a skip: `.ci/run` installs them
//! (Debian `chromium`, `chromium-driver`). Knows nothing of the console's pages.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{free_port, WAIT};

/// The element key of the W3C protocol.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The first of `names` found on the PATH or as an absolute path.
fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|n| {
        let p = Path::new(n);
        if p.is_absolute() {
            return p.exists().then(|| p.to_path_buf());
        }
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|c| c.exists())
    })
}

/// Where screenshots go: `target/console-screenshots/` (of `CARGO_TARGET_DIR` when set).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::root().join("target"));
    let d = target.join("console-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A chromedriver process with one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A found element.
#[derive(Debug, Clone)]
pub struct El(String);

impl Browser {
    /// Start chromedriver and a headless Chromium session with a fresh profile.
    pub async fn start() -> Browser {
        let driver = find(&["chromedriver", "/usr/lib/chromium/chromedriver"]).expect(
            "chromedriver is not installed: apt-get install chromium chromium-driver (as .ci/run does)",
        );
        let chromium = find(&["/usr/lib/chromium/chromium", "chromium", "chromium-browser"])
            .expect(
            "chromium is not installed: apt-get install chromium chromium-driver (as .ci/run does)",
        );
        let port = free_port();
        let profile = tempfile::tempdir().unwrap();
        let log = profile.path().join("chromedriver.log");
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let mut b = Browser {
            driver: child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            session: String::new(),
            profile,
        };
        // A cold start on a loaded machine can be slow: a guard, not a measure.
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let status = b.raw("GET", "/status", None).await;
            if status.as_ref().is_ok_and(|v| v["value"]["ready"] == true) {
                break;
            }
            assert!(
                Instant::now() < end,
                "chromedriver never became ready ({status:?}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", b.profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let v = b.cmd("POST", "/session", Some(caps)).await;
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b
    }

    /// One WebDriver request; `Err` when the connection fails.
    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut s = timeout(WAIT, TcpStream::connect(self.addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        // chromedriver may keep the connection open after its answer: read by Content-Length.
        // A page load or a script may take a while on a busy machine: a guard, not a measure.
        let read = async {
            let mut raw = Vec::new();
            let mut buf = [0u8; 16384];
            loop {
                if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                    let len = head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        (k.trim() == "content-length").then(|| v.trim().parse::<usize>().ok())?
                    });
                    if len.is_some_and(|n| raw.len() >= end + 4 + n) {
                        return Ok::<Vec<u8>, String>(raw);
                    }
                }
                let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Ok::<Vec<u8>, String>(raw);
                }
                raw.extend_from_slice(&buf[..n]);
            }
        };
        let raw: Vec<u8> = timeout(Duration::from_secs(60), read)
            .await
            .map_err(|_| format!("{method} {path}: no answer"))??;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP head")?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    /// A command of this session (`path` after `/session/{id}`); its `value`, or the test fails.
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = if path.starts_with("/session") && self.session.is_empty() {
            path.to_string()
        } else {
            format!("/session/{}{path}", self.session)
        };
        let v = self
            .raw(method, &full, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {full}: {e}"));
        if let Some(err) = v["value"]["error"].as_str() {
            panic!(
                "WebDriver {method} {full}: {err}: {}",
                v["value"]["message"]
            );
        }
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Every element matching a CSS selector (none is no error).
    pub async fn all(&self, css: &str) -> Vec<El> {
        let v = self
            .cmd(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| El(e[ELEMENT].as_str().unwrap().to_string()))
            .collect()
    }

    /// The one element matching `css`; the test fails when there is none.
    pub async fn one(&self, css: &str) -> El {
        self.all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element {css}"))
    }

    pub async fn text(&self, e: &El) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The element's text, or `None` when the page has replaced it since it was found (htmx
    /// swaps a polled fragment whole, so an element read while it polls may be gone): the
    /// caller finds it again. Any other error fails the test.
    pub async fn text_unless_replaced(&self, e: &El) -> Option<String> {
        let full = format!("/session/{}/element/{}/text", self.session, e.0);
        let v = self
            .raw("GET", &full, None)
            .await
            .unwrap_or_else(|err| panic!("WebDriver GET {full}: {err}"));
        match v["value"]["error"].as_str() {
            Some("stale element reference") => None,
            Some(err) => panic!("WebDriver GET {full}: {err}: {}", v["value"]["message"]),
            None => Some(v["value"].as_str().unwrap().to_string()),
        }
    }

    pub async fn click(&self, e: &El) {
        self.cmd("POST", &format!("/element/{}/click", e.0), Some(json!({})))
            .await;
    }

    pub async fn clear(&self, e: &El) {
        self.cmd("POST", &format!("/element/{}/clear", e.0), Some(json!({})))
            .await;
    }

    pub async fn type_in(&self, e: &El, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Run `script` in the page; it calls `arguments[arguments.length - 1]` with its result.
    pub async fn run_async(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// A PNG of the viewport, saved as `name.png` in [`screenshot_dir`]; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let p = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&p, png).unwrap();
        p
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
