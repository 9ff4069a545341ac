//! A real headless browser driven over WebDriver, for the console's browser tests: Chromium
//! through `chromedriver` (W3C WebDriver, JSON over HTTP/1.1), or Firefox through Marionette,
//! the remote protocol built into Firefox (`len:json` frames over one TCP connection). Each
//! starts with a fresh profile and one session, and offers the few commands the tests use (open
//! a page, find, type, click, read text and source, run a script, resize, take a screenshot).
//! Plain JSON on loopback: no WebDriver crate and no geckodriver needed (Debian has none).
//!
//! The two protocols carry the same commands with the same parameters, answers, errors and
//! element references (Marionette is what geckodriver translates W3C WebDriver into), so
//! [`Browser`] is one type with two backends: each command is named once for each, and every
//! helper is written once.
//!
//! A browser missing is a failure, never a skip: `.ci/run` installs them (Debian `chromium`,
//! `chromium-driver`, `firefox-esr`). Knows nothing of the console's pages.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::timeout;

use super::{free_port, WAIT};

/// The element key of the W3C protocol (Marionette uses the same).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one command may take: a page load or a script on a busy machine (five builds and
/// two browsers on two cores) can be slow. A guard against a hang, not a measure.
const COMMAND: Duration = Duration::from_secs(60);

/// Which browser a test drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chromium,
    Firefox,
}

impl Kind {
    /// Its name in screenshot folders and messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Chromium => "chromium",
            Kind::Firefox => "firefox",
        }
    }
}

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

/// A browser's refusal of a command, in both protocols' words.
#[derive(Debug)]
struct Refused {
    error: String,
    message: String,
}

/// One command in the words of both protocols.
struct Cmd {
    /// The W3C method and path after `/session/{id}`.
    method: &'static str,
    path: String,
    /// Marionette's name for it.
    name: &'static str,
    /// The W3C body; Marionette takes the same keys, plus the element's `id` (which W3C puts in
    /// the path).
    params: Value,
    element: Option<String>,
}

impl Cmd {
    fn new(method: &'static str, path: &str, name: &'static str, params: Value) -> Cmd {
        Cmd {
            method,
            path: path.to_string(),
            name,
            params,
            element: None,
        }
    }

    /// A command on an element: `/element/{id}{rest}`.
    fn on(e: &El, method: &'static str, rest: &str, name: &'static str, params: Value) -> Cmd {
        Cmd {
            method,
            path: format!("/element/{}{rest}", e.0),
            name,
            params,
            element: Some(e.0.clone()),
        }
    }
}

enum Backend {
    Chromedriver {
        driver: Child,
        addr: SocketAddr,
        session: String,
    },
    Marionette {
        firefox: Child,
        conn: Mutex<Marionette>,
    },
}

/// The one Marionette connection: commands go one at a time, each answered by its id.
struct Marionette {
    stream: TcpStream,
    buf: Vec<u8>,
    next: u64,
}

/// A browser with one session; the browser (and its driver) end on drop.
pub struct Browser {
    kind: Kind,
    backend: Backend,
    profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let child = match &mut self.backend {
            Backend::Chromedriver {
                driver,
                addr,
                session,
            } => {
                // Killing chromedriver leaves its Chromium running, parented to init, after the
                // test: ending the session first makes chromedriver quit the browser.
                if !session.is_empty() {
                    end_session(*addr, session);
                }
                driver
            }
            // Firefox's content processes end with the parent process.
            Backend::Marionette { firefox, .. } => firefox,
        };
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `DELETE /session/{id}`, blocking (a drop cannot await), waiting at most a few seconds for
/// chromedriver's answer, which it sends once the browser has quit.
fn end_session(addr: SocketAddr, session: &str) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
    }
}

/// A child process killed on drop, unless taken out first.
struct Reaped(Option<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A found element.
#[derive(Debug, Clone)]
pub struct El(String);

impl Browser {
    /// Start `kind` headless with a fresh profile and open a session.
    pub async fn start(kind: Kind) -> Browser {
        let b = match kind {
            Kind::Chromium => Browser::chromium().await,
            Kind::Firefox => Browser::firefox().await,
        };
        // Both at the same laptop size, whatever each one's headless default is.
        b.resize(1280, 900).await;
        b
    }

    /// chromedriver on a free port, and a headless Chromium session through it.
    async fn chromium() -> Browser {
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
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut b = Browser {
            kind: Kind::Chromium,
            backend: Backend::Chromedriver {
                driver: child,
                addr,
                session: String::new(),
            },
            profile,
        };
        // A cold start on a loaded machine can be slow: a guard, not a measure.
        let end = Instant::now() + COMMAND;
        loop {
            let status = http(addr, "GET", "/status", None).await;
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
        let v = http(addr, "POST", "/session", Some(caps))
            .await
            .unwrap_or_else(|e| panic!("WebDriver POST /session: {e}"));
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        if let Backend::Chromedriver { session, .. } = &mut b.backend {
            *session = id;
        }
        b
    }

    /// A headless Firefox listening for Marionette, and a session over it. The port is the
    /// one Firefox picks itself (`marionette.port` 0) and writes into the profile as
    /// `MarionetteActivePort`: no race for a free port with the other tests' browsers.
    async fn firefox() -> Browser {
        let firefox = find(&["firefox-esr", "firefox"])
            .expect("firefox is not installed: apt-get install firefox-esr (as .ci/run does)");
        let profile = tempfile::tempdir().unwrap();
        // Marionette sets its recommended prefs itself (no updates, no telemetry, no first-run
        // pages): only the port is ours to choose.
        std::fs::write(
            profile.path().join("user.js"),
            "user_pref(\"marionette.port\", 0);\n",
        )
        .unwrap();
        let log = profile.path().join("firefox.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&firefox)
            .args(["--headless", "--marionette", "--no-remote", "-profile"])
            .arg(profile.path())
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", firefox.display()));
        // Until the browser holds it, a failed start must not leave Firefox running.
        let mut firefox = Reaped(Some(child));
        let active = profile.path().join("MarionetteActivePort");
        // A cold start on a loaded machine can be slow: a guard, not a measure.
        let end = Instant::now() + COMMAND;
        let stream = loop {
            let port = std::fs::read_to_string(&active)
                .ok()
                .and_then(|p| p.trim().parse::<u16>().ok());
            if let Some(port) = port {
                if let Ok(s) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).await {
                    break s;
                }
            }
            let exited = firefox.0.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < end,
                "Firefox never listened for Marionette (exit: {exited:?}); its output:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut conn = Marionette {
            stream,
            buf: Vec::new(),
            next: 0,
        };
        let hello = timeout(COMMAND, conn.frame())
            .await
            .map_err(|_| "no greeting".to_string())
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("Marionette: {e}"));
        assert_eq!(hello["marionetteProtocol"], 3, "Marionette greeted {hello}");
        let b = Browser {
            kind: Kind::Firefox,
            backend: Backend::Marionette {
                firefox: firefox.0.take().unwrap(),
                conn: Mutex::new(conn),
            },
            profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {"acceptInsecureCerts": false}}});
        let v = b
            .exec(Cmd::new("POST", "", "WebDriver:NewSession", caps))
            .await
            .unwrap_or_else(|e| panic!("Marionette WebDriver:NewSession: {e:?}"));
        assert!(v["sessionId"].is_string(), "no session: {v}");
        b
    }

    /// One command of the session: its value, or the browser's refusal. A broken connection
    /// or a command that never ends fails the test.
    async fn exec(&self, c: Cmd) -> Result<Value, Refused> {
        match &self.backend {
            Backend::Chromedriver { addr, session, .. } => {
                let full = format!("/session/{session}{}", c.path);
                let body = (c.method != "GET").then_some(c.params);
                let v = http(*addr, c.method, &full, body)
                    .await
                    .unwrap_or_else(|e| panic!("WebDriver {} {full}: {e}", c.method));
                match v["value"]["error"].as_str() {
                    Some(error) => Err(Refused {
                        error: error.to_string(),
                        message: v["value"]["message"].to_string(),
                    }),
                    None => Ok(v["value"].clone()),
                }
            }
            Backend::Marionette { conn, .. } => {
                let mut params = c.params;
                if let Some(id) = c.element {
                    params["id"] = json!(id);
                }
                let mut conn = conn.lock().await;
                timeout(COMMAND, conn.call(c.name, params))
                    .await
                    .unwrap_or_else(|_| panic!("Marionette {}: no answer", c.name))
                    .unwrap_or_else(|e| panic!("Marionette {}: {e}", c.name))
            }
        }
    }

    /// [`Browser::exec`], where a refusal fails the test.
    async fn cmd(&self, c: Cmd) -> Value {
        let what = format!("{} {} ({})", c.method, c.path, c.name);
        self.exec(c).await.unwrap_or_else(|r| {
            panic!(
                "{} refused {what}: {}: {}",
                self.kind.name(),
                r.error,
                r.message
            )
        })
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(Cmd::new(
            "POST",
            "/url",
            "WebDriver:Navigate",
            json!({ "url": url }),
        ))
        .await;
    }

    pub async fn url(&self) -> String {
        let v = self
            .cmd(Cmd::new(
                "GET",
                "/url",
                "WebDriver:GetCurrentURL",
                json!({}),
            ))
            .await;
        v.as_str().unwrap().to_string()
    }

    pub async fn source(&self) -> String {
        let v = self
            .cmd(Cmd::new(
                "GET",
                "/source",
                "WebDriver:GetPageSource",
                json!({}),
            ))
            .await;
        v.as_str().unwrap().to_string()
    }

    /// Every element matching a CSS selector (none is no error).
    pub async fn all(&self, css: &str) -> Vec<El> {
        let v = self
            .cmd(Cmd::new(
                "POST",
                "/elements",
                "WebDriver:FindElements",
                json!({"using": "css selector", "value": css}),
            ))
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

    fn text_cmd(e: &El) -> Cmd {
        Cmd::on(e, "GET", "/text", "WebDriver:GetElementText", json!({}))
    }

    pub async fn text(&self, e: &El) -> String {
        let v = self.cmd(Browser::text_cmd(e)).await;
        v.as_str().unwrap().to_string()
    }

    /// The element's text, or `None` when the page has replaced it since it was found (htmx
    /// swaps a polled fragment whole, so an element read while it polls may be gone): the
    /// caller finds it again. Any other refusal fails the test.
    pub async fn text_unless_replaced(&self, e: &El) -> Option<String> {
        match self.exec(Browser::text_cmd(e)).await {
            Ok(v) => Some(v.as_str().unwrap().to_string()),
            Err(r) if r.error == "stale element reference" => None,
            Err(r) => panic!(
                "{} refused the text of {e:?}: {}: {}",
                self.kind.name(),
                r.error,
                r.message
            ),
        }
    }

    pub async fn click(&self, e: &El) {
        self.cmd(Cmd::on(
            e,
            "POST",
            "/click",
            "WebDriver:ElementClick",
            json!({}),
        ))
        .await;
    }

    pub async fn clear(&self, e: &El) {
        self.cmd(Cmd::on(
            e,
            "POST",
            "/clear",
            "WebDriver:ElementClear",
            json!({}),
        ))
        .await;
    }

    pub async fn type_in(&self, e: &El, text: &str) {
        self.cmd(Cmd::on(
            e,
            "POST",
            "/value",
            "WebDriver:ElementSendKeys",
            json!({ "text": text }),
        ))
        .await;
    }

    /// Run `script` in the page; it calls `arguments[arguments.length - 1]` with its result.
    pub async fn run_async(&self, script: &str) -> Value {
        self.cmd(Cmd::new(
            "POST",
            "/execute/async",
            "WebDriver:ExecuteAsyncScript",
            json!({"script": script, "args": []}),
        ))
        .await
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(Cmd::new(
            "POST",
            "/window/rect",
            "WebDriver:SetWindowRect",
            json!({"width": width, "height": height}),
        ))
        .await;
    }

    /// A PNG of the viewport, saved as `name.png` in this browser's folder of
    /// [`screenshot_dir`] (`chromium/`, `firefox/`); returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        // Marionette's default is the whole document; W3C's is the viewport.
        let v = self
            .cmd(Cmd::new(
                "GET",
                "/screenshot",
                "WebDriver:TakeScreenshot",
                json!({"full": false}),
            ))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let d = screenshot_dir().join(self.kind.name());
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("{name}.png"));
        std::fs::write(&p, png).unwrap();
        p
    }
}

impl Marionette {
    /// Send `[0, id, name, params]` and wait for its answer `[1, id, error, result]`. The
    /// result is unwrapped the way geckodriver does: a lone `value` is the value.
    async fn call(&mut self, name: &str, params: Value) -> Result<Result<Value, Refused>, String> {
        self.next += 1;
        let id = self.next;
        let msg = json!([0, id, name, params]).to_string();
        self.stream
            .write_all(format!("{}:{msg}", msg.len()).as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let f = self.frame().await?;
        // Commands go one at a time and each waits for its answer: anything else here is
        // a protocol error, not something to skip.
        if f[0] != 1 || f[1] != id {
            return Err(format!("answer {f} while waiting for command {id}"));
        }
        if !f[2].is_null() {
            return Ok(Err(Refused {
                error: f[2]["error"].as_str().unwrap_or("?").to_string(),
                message: f[2]["message"].to_string(),
            }));
        }
        let mut r = f[3].clone();
        if r.as_object().is_some_and(|o| o.len() == 1) && r.get("value").is_some() {
            r = r["value"].take();
        }
        Ok(Ok(r))
    }

    /// One `length:json` frame (the length counts bytes).
    async fn frame(&mut self) -> Result<Value, String> {
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(colon) = self.buf.iter().position(|&c| c == b':') {
                let len: usize = std::str::from_utf8(&self.buf[..colon])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| {
                        format!(
                            "bad frame length {:?}",
                            String::from_utf8_lossy(&self.buf[..colon])
                        )
                    })?;
                if self.buf.len() > colon + len {
                    let body: Vec<u8> = self.buf.drain(..=colon + len).skip(colon + 1).collect();
                    return serde_json::from_slice(&body)
                        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&body)));
                }
            }
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("Firefox closed the connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// One request to chromedriver; `Err` when the connection fails.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut s = timeout(WAIT, TcpStream::connect(addr))
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
    let raw: Vec<u8> = timeout(COMMAND, read)
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
