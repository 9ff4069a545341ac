//! The typed config file, assembled from each module's own section.
//!
//! Each section is a `XxxConfig` struct that lives beside the code that uses it, with
//! `#[serde(default, deny_unknown_fields)]` and a `Default` impl, so defaults are written once
//! and a misspelt key is an error naming its line. Each has one `fn validate(&self) ->
//! Vec<String>` that names every problem; [`Config::validate`] gathers them all, once, when the
//! config is loaded, and nothing downstream checks again. To add a section: add a field here,
//! give it `validate()`, call that from [`Config::validate`], and document it in
//! `config/scamguard.toml`.
//!
//! Relative paths in the config (the lists directory, a log file) resolve against the current
//! directory of the process, not the directory of the config file, like paths given on the
//! command line.
//!
//! Knows nothing of behaviour: it only reads, defaults and validates settings.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::DispositionConfig;
use crate::lists::ListsConfig;
use crate::media::MediaConfig;
use crate::screening::ScreeningConfig;
use crate::sip::SipConfig;

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub screening: ScreeningConfig,
    pub lists: ListsConfig,
    pub store: crate::lists::store::StoreConfig,
    pub log: LogConfig,
    pub sip: SipConfig,
    pub disposition: DispositionConfig,
    pub media: MediaConfig,
    pub api: crate::api::ApiConfig,
    pub signals: crate::screening::signals::SignalsConfig,
    pub policy: crate::screening::PolicyConfig,
    pub certs: crate::certs::CertsConfig,
    pub peers: PeersConfig,
    /// `[[feeds]]`: partners' signed blocklists this agent subscribes to.
    pub feeds: Vec<crate::lists::feeds::FeedConfig>,
    /// `[publish]`: store lists this agent serves as signed feeds.
    pub publish: crate::lists::feeds::PublishConfig,
    /// `[fleet]`: velocity and wangiri counts shared with other agents through Redis.
    pub fleet: super::fleet::FleetConfig,
    /// `[health]`: when `/ready` calls the next hop dead.
    pub health: super::health::HealthConfig,
    /// `[callback]`: outbound calls of protected subscribers screened by their destination.
    pub callback: super::callback::CallbackConfig,
    /// `[challenge]`: how a challenged caller is asked for its digit.
    pub challenge: super::challenge::ChallengeConfig,
    /// `[redress]`: the public dispute form the 603+ `Reason` points at.
    pub redress: crate::api::redress::RedressConfig,
    /// `[dns]`: the servers that resolve host names of next hops and targets, and the bounds
    /// on requests waiting for them. Copied into `sip.dns` when the file is parsed.
    pub dns: crate::sip::DnsConfig,
    /// `[hep]`: HEP3 copies of the SIP messages and of each decision to a Homer collector.
    pub hep: crate::sip::HepConfig,
}

/// Where the decision log goes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// One JSON line per decision on standard output.
    #[default]
    Stdout,
    /// Append JSON lines to this file.
    File(PathBuf),
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `"stdout"` or `{ file = "/var/log/scamguard/decisions.jsonl" }`.
    pub decisions: LogTarget,
    /// Diagnostics filter in `tracing` env-filter syntax (`info`, `scamguard=debug`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            decisions: LogTarget::Stdout,
            level: "info".into(),
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let LogTarget::File(f) = &self.decisions {
            if f.as_os_str().is_empty() {
                p.push("log.decisions file is empty; expected a file path".to_string());
            }
        }
        if self.level.trim().is_empty() {
            p.push("log.level is empty; expected a filter such as \"info\"".to_string());
        }
        p
    }
}

/// The `[peers]` section: which source addresses are international gateways (a domestic caller
/// id arriving there is spoofed in the countries that enforce it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeersConfig {
    pub international_gateways: Vec<IpAddr>,
}

impl PeersConfig {
    /// Every problem with the section, each naming the setting and what was expected.
    pub fn validate(&self) -> Vec<String> {
        self.international_gateways
            .iter()
            .filter(|ip| ip.is_unspecified())
            .map(|ip| {
                format!(
                    "peers.international_gateways: {ip} is not a peer's address; expected the source IP of a gateway"
                )
            })
            .collect()
    }
}

/// A config file that could not be read or parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the problem is not tied to a line.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Command-line values that replace config values (`scamguard run --listen ...`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub next_hop: Option<String>,
    pub api: Option<String>,
    pub lists: Option<PathBuf>,
    pub data: Option<PathBuf>,
}

impl Config {
    /// Read and parse a config file. Syntax errors and unknown keys name the file and line.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            message: format!("cannot read the config file: {e}"),
        })?;
        Config::parse(&file, &text)
    }

    /// Parse config text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0);
            ConfigError {
                file: file.to_string(),
                line,
                message: e.message().trim().to_string(),
            }
        })?;
        c.sip.dns = c.dns.clone();
        Ok(c)
    }

    /// Every problem in every section at once, each naming the setting and what was expected.
    /// Run once, when the config is loaded (with the command line applied): the constructors
    /// that take a section trust it. Files the config names (TLS, trust anchors, prompts, the
    /// brands table) are read here too, so that their problems are reported with the rest.
    pub fn validate(&self) -> Vec<String> {
        let mut p = self.screening.validate();
        p.extend(self.lists.validate());
        p.extend(self.store.validate());
        p.extend(self.api.validate());
        p.extend(self.log.validate());
        p.extend(self.disposition.validate());
        p.extend(self.sip.validate());
        p.extend(self.signals.validate());
        if let Err(e) = super::engine::brands(&self.signals.brands) {
            p.push(e);
        }
        p.extend(self.policy.validate());
        p.extend(self.media.validate());
        p.extend(crate::lists::feeds::validate_feeds(&self.feeds));
        p.extend(self.publish.validate());
        p.extend(self.certs.validate());
        p.extend(self.peers.validate());
        p.extend(self.fleet.validate());
        p.extend(self.health.validate());
        p.extend(self.callback.validate());
        p.extend(self.callback.validate_against(&self.policy, &self.media));
        p.extend(self.challenge.validate());
        p.extend(self.challenge.validate_against(&self.policy, &self.media));
        p.extend(self.redress.validate());
        p.extend(self.hep.validate());
        p
    }

    /// [`Config::validate`], and what `run` needs beyond it: somewhere to send the calls it
    /// passes (`check` and `lists` do without).
    pub fn validate_for_run(&self) -> Vec<String> {
        let mut p = self.validate();
        if self.sip.next_hop.is_none() {
            p.push("sip.next_hop is not set; expected the address or host name of the core or PBX that passed and warned calls go to (or --next-hop)".into());
        }
        p
    }

    /// Apply command-line overrides; a malformed address is an error naming the flag.
    pub fn apply(&mut self, o: &Overrides) -> Result<(), String> {
        let addr = |flag: &str, v: &str| {
            v.parse::<std::net::SocketAddr>().map_err(|_| {
                format!("--{flag} {v:?} is not an address; expected IP:PORT such as 127.0.0.1:5060")
            })
        };
        if let Some(l) = &o.listen {
            self.sip.listen = addr("listen", l)?.into();
        }
        if let Some(n) = &o.next_hop {
            self.sip.next_hop = Some(n.parse().map_err(|e| format!("--next-hop {e}"))?);
        }
        if let Some(a) = &o.api {
            addr("api", a)?;
            self.api.listen = a.clone();
        }
        if let Some(d) = &o.data {
            self.store.data_dir = d.clone();
        }
        if let Some(d) = &o.lists {
            self.lists.dir = d.clone();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_loads_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scamguard.toml");
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.validate(), Vec::<String>::new());
        assert_eq!(c.lists.dir, PathBuf::from("blocklists"));
        assert_eq!(c.screening.default_country, "US");
        // HEP capture ships off, every key at its default.
        assert_eq!(c.hep, crate::sip::HepConfig::default());
        assert!(!c.hep.enabled());
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Config::parse(
            "c.toml",
            "[screening]\ndefault_country = \"US\"\ncolour = 1\n",
        )
        .unwrap_err();
        assert_eq!(e.file, "c.toml");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("unknown field `colour`"), "{e}");
        let e = Config::parse("c.toml", "[lists]\ndir = \n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = Config::parse("c.toml", "[screening]\nanonymous = \"drop\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.to_string().starts_with("c.toml:2: "), "{e}");
    }

    #[test]
    fn empty_config_is_all_defaults_and_overrides_apply() {
        let mut c = Config::parse("c.toml", "").unwrap();
        assert!(c.validate().is_empty());
        assert_eq!(c.log.decisions, LogTarget::Stdout);
        c.apply(&Overrides {
            listen: Some("127.0.0.1:5060".into()),
            next_hop: Some("127.0.0.1:5070".into()),
            lists: Some("x".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(c.validate().is_empty());
        assert_eq!(c.lists.dir, PathBuf::from("x"));
        assert_eq!(c.sip.listen.to_string(), "127.0.0.1:5060");
        // A host name is a next hop too (resolved by DNS); a malformed one is not.
        c.apply(&Overrides {
            next_hop: Some("core:5060".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.sip.next_hop, Some("core:5060".parse().unwrap()));
        let e = c
            .apply(&Overrides {
                next_hop: Some("core:99999".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            e.starts_with("--next-hop \"core:99999\" is neither IP:PORT nor a host name"),
            "{e}"
        );
        let c = Config::parse("c.toml", "[log]\ndecisions = { file = \"d.jsonl\" }\n").unwrap();
        assert_eq!(c.log.decisions, LogTarget::File("d.jsonl".into()));
        let c = Config::parse("c.toml", "[screening]\ndefault_country = \"FR\"\n").unwrap();
        assert_eq!(c.validate().len(), 1);
    }

    #[test]
    fn every_bad_section_is_reported_at_once() {
        let c = Config::parse(
            "c.toml",
            "[sip]\nmax_calls = 0\n[policy]\nwarn_at = 0\n[api]\nmax_connections = 0\n",
        )
        .unwrap();
        assert_eq!(
            c.validate(),
            [
                "api.max_connections is 0; expected a positive number",
                "sip.max_calls: must be at least 1, got 0",
                "policy: need 0 < warn_at <= block_at, got warn_at 0 block_at 100",
            ]
        );
        // What `run` needs beyond that comes in the same list.
        let run = c.validate_for_run();
        assert_eq!(run.len(), 4, "{run:?}");
        assert!(run[3].starts_with("sip.next_hop is not set"), "{run:?}");
    }
}
