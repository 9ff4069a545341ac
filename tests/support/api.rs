//! The admin API tests' harness: a real agent-side stack (SQLite store in a temp dir, list files,
//! compiled rules, the hyper server on 127.0.0.1:0) without SIP, asked through the tests' HTTP
//! client over plain TCP or, when the agent serves HTTPS, over TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use scamguard::api::{self, ApiConfig, Checker, State};
use scamguard::lists::overlay::{Live, StoreRules};
use scamguard::lists::store::{Store, StoreConfig};
use scamguard::lists::watch::ListFiles;
use scamguard::lists::{ListSet, ListsConfig};
use scamguard::screening::signals::brands::Brands;
use scamguard::screening::signals::stir::NoCertificates;
use scamguard::screening::signals::{SignalState, SignalsConfig};
use scamguard::screening::{Engine, PolicyConfig, Scoring, ScreeningConfig, ScreeningPolicy};
use tokio::net::TcpStream;

use super::http::{enc, request, request_on, write_tokens, Resp, READER};

pub struct Agent {
    pub addr: std::net::SocketAddr,
    /// Set when the agent serves HTTPS: the client that trusts its certificate.
    pub tls: Option<tokio_rustls::TlsConnector>,
    pub live: Arc<Live>,
    pub files: Arc<ListFiles>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Agent {
    /// Start on `dir` (holding `data/`, `lists/` and `tokens`), as the agent would at boot.
    pub async fn start(dir: &Path) -> Agent {
        Agent::start_with(dir, |_| {}).await
    }

    /// Like [`Agent::start`], with `tweak` applied to the API config (TLS files, limits).
    pub async fn start_with(dir: &Path, tweak: impl FnOnce(&mut ApiConfig)) -> Agent {
        let (state, live, files) = state(dir, tweak);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(api::run(listener, Arc::new(state), async {
            let _ = rx.await;
        }));
        Agent {
            addr,
            tls: None,
            live,
            files,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    pub async fn req(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Resp {
        match &self.tls {
            None => request(self.addr, method, path, token, body).await,
            Some(c) => {
                let tcp = TcpStream::connect(self.addr).await.unwrap();
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let s = c.connect(name, tcp).await.expect("TLS handshake");
                request_on(s, method, path, token, body).await
            }
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.req("GET", path, Some(token), b"").await
    }

    /// The verdict action for a caller through `GET /v1/check`.
    pub async fn check(&self, caller: &str) -> String {
        let r = self
            .get(&format!("/v1/check?caller={}", enc(caller)), READER)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["action"].as_str().unwrap().to_string()
    }
}

/// The state [`Agent::start_with`] serves on `dir`, built without binding anything, with the
/// live rules and the list files it reads.
pub fn state(dir: &Path, tweak: impl FnOnce(&mut ApiConfig)) -> (State, Arc<Live>, Arc<ListFiles>) {
    std::fs::create_dir_all(lists_dir(dir)).unwrap();
    let tokens = dir.join("tokens");
    write_tokens(&tokens);
    let store = Arc::new(
        Store::open(&StoreConfig {
            data_dir: dir.join("data"),
            ..StoreConfig::default()
        })
        .unwrap(),
    );
    let rules = Arc::new(StoreRules::load(&store).unwrap());
    let set = Arc::new(ListSet::new(ListsConfig {
        dir: lists_dir(dir),
        ..ListsConfig::default()
    }));
    let files = Arc::new(ListFiles::new(set.clone()));
    files.reload_now();
    let live = Arc::new(Live::new(store, rules.clone(), Some(files.clone())));
    let checker = Arc::new(RulesChecker {
        files: set,
        store: rules,
        engine: lists_only_engine(),
    });
    let mut cfg = ApiConfig {
        listen: "127.0.0.1:0".into(),
        tokens_file: Some(tokens),
        max_body_bytes: 64 * 1024,
        max_import_bytes: 64 << 20,
        ..ApiConfig::default()
    };
    tweak(&mut cfg);
    let state = State::new(cfg, live.clone(), checker, vec![files.clone()]).unwrap();
    (state, live, files)
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn lists_dir(dir: &Path) -> PathBuf {
    dir.join("lists")
}

/// The agent's engine with every signal off: verdicts come from the lists (and the policy's
/// anonymity and emergency rules) alone.
pub fn lists_only_engine() -> Engine {
    let mut cfg = SignalsConfig::default();
    cfg.stir.enabled = false;
    cfg.velocity.enabled = false;
    cfg.wangiri.enabled = false;
    cfg.brands.enabled = false;
    cfg.dno.enabled = false;
    cfg.plausibility.enabled = false;
    Engine {
        screening: ScreeningPolicy::from_config(&ScreeningConfig::default()),
        scoring: Scoring::new(PolicyConfig::default()),
        signals: SignalState::new(
            cfg,
            Arc::new(Brands::from_toml("", "none").unwrap()),
            Arc::new(NoCertificates),
        ),
        international_gateways: Vec::new(),
    }
}

/// The API tests' checker: the lists alone (files and store, with their precedence), through
/// the agent's own engine with the signals off. The agent passes its real screener, which adds
/// the signals; these tests are about the API around it.
pub struct RulesChecker {
    pub files: Arc<ListSet>,
    pub store: Arc<StoreRules>,
    pub engine: Engine,
}

impl Checker for RulesChecker {
    fn check(
        &self,
        caller: &str,
        callee: Option<&str>,
        display: Option<&str>,
    ) -> serde_json::Value {
        let call =
            scamguard::screening::Call::question(caller, callee.unwrap_or(""), display, false);
        let snap = self.files.current();
        let rules = scamguard::lists::overlay::Layered {
            sources: &[&**snap, &*self.store],
        };
        let v = self.engine.decide(&call, &rules, scamguard::app::now_ms());
        serde_json::to_value(&v).unwrap_or(serde_json::Value::Null)
    }
}
