//! RTP media for warned calls: SDP rewrite, relay and announcement playback.
//!
//! For a call whose callee is to hear a spoken warning, the app hands every SDP body of the
//! dialog to [`MediaEngine`], which points both parties at its own RTP ports (leg A faces the
//! caller, leg B the callee), relays RTP/RTCP between them with symmetric-RTP latching, and when
//! the callee answers plays a prompt (G.711, 20 ms packets) to the callee before relaying.
//!
//! For a call whose *caller* is to hear a warning before anything rings (callback protection),
//! [`MediaEngine::early`] answers the caller's offer itself (early media), plays the prompt to
//! the caller, optionally waits for a digit ([`dtmf`]), and says how it went; the call may then
//! go on through the same session like any anchored call.
//!
//! Knows call ids, SDP and RTP only: nothing of SIP transactions, dialogs or blocklists.
//!
//! | file | what |
//! | --- | --- |
//! | [`sdp`] | parse/rewrite the audio parts of an SDP body |
//! | [`g711`] | PCMU/PCMA companding |
//! | [`wav`] | strict WAV reader for prompts |
//! | [`prompts`] | prompt set: load, pre-encode, select per callee |
//! | [`engine`] | sessions, ports, the relay/playback task |
//! | [`dtmf`] | RFC 4733 telephone-events in: the digits a party presses |
//! | [`rtp`] | RTP header fields |
//!
//! # How a caller of this module drives it
//!
//! | dialog event | call |
//! | --- | --- |
//! | initial INVITE with SDP | [`MediaEngine::offer`]`(id, Side::Caller, body)`: forward the returned body; on `Err` forward the original and play nothing |
//! | initial INVITE the agent answers with early media | [`MediaEngine::early`]`(id, body, prompt, gate, done)`: send the returned answer in a 183; `done` says when the call may go on; then `offer(id, Side::Caller, body)` for the INVITE forwarded |
//! | 183/200 with SDP from the callee | [`MediaEngine::answer`]`(id, Side::Callee, body)` |
//! | late offer (INVITE without SDP) | `offer(id, Side::Callee, body)` for the 200, `answer(id, Side::Caller, body)` for the ACK |
//! | 2xx to the initial INVITE | [`MediaEngine::connected`]`(id, callee_number, category)`: the prompt starts once the codec is known; [`MediaEngine::answered`] when the callee hears none |
//! | re-INVITE / UPDATE | `offer(id, sender_side, body)`, then `answer(id, responder_side, body)`: ports stay the same |
//! | BYE, CANCEL, failure | [`MediaEngine::release`]; forgotten sessions are freed by the setup/idle timers anyway |
//!
//! Limits: one callee per call id (parallel forks answering with different SDP overwrite each
//! other's address); only the first `m=audio` stream is anchored; RTCP passes unchanged.

pub mod dtmf;
pub mod engine;
pub mod g711;
pub mod prompts;
pub mod rtp;
pub mod sdp;
pub mod wav;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;

use crate::metrics::{Collect, Counter, Exposition, Gauge};

pub use engine::{Closing, Gate, Heard, MediaEngine, Release, Side};
pub use g711::Codec;
pub use prompts::{Prompt, PromptSet};
pub use sdp::SdpError;

/// The `[media]` config section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Anchor media and play announcements for warned calls.
    pub enabled: bool,
    /// Address the RTP sockets bind to. `::` binds them dual-stack: parties of both families
    /// are served, and relayed across families.
    pub bind_ip: IpAddr,
    /// Address written into SDP (`c=`); defaults to `bind_ip` (required when that is a
    /// wildcard). Written to parties of its family, and to the other family's when that has
    /// no address of its own.
    pub advertise_ip: Option<IpAddr>,
    /// IPv6 address written into SDP (`c=IN IP6`) to IPv6 parties when `advertise_ip` is
    /// IPv4; needs `bind_ip = "::"`.
    pub advertise_ip6: Option<IpAddr>,
    /// RTP port range, inclusive; pairs (even RTP, odd RTCP) are taken from it.
    pub port_min: u16,
    pub port_max: u16,
    /// Concurrent anchored calls; each uses two port pairs.
    pub max_sessions: usize,
    /// A session with no media (RTP or RTCP) for this long after answer is released.
    pub idle_timeout_secs: u64,
    /// A session not yet answered is released after this long (covers ringing; above the 180 s
    /// a proxy waits for a final answer, RFC 3261 Timer C).
    pub setup_timeout_secs: u64,
    /// Drop the caller's audio to the callee while the prompt plays (else mix it in).
    pub hold_caller_during_prompt: bool,
    /// After answer, the prompt starts with the callee's first RTP packet, or after this long
    /// if none comes (its phone may need a moment to open the audio path; behind NAT its first
    /// packet is what tells us where to send).
    pub prompt_start_wait_ms: u64,
    /// Folder holding `<lang>.wav` and optional `<lang>-<category>.wav`.
    pub prompts_dir: String,
    /// Language used when the callee's country code has no entry.
    pub default_prompt: String,
    /// Country calling code -> language.
    pub prompts: BTreeMap<String, String>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        let prompts = [
            ("1", "en"),
            ("44", "en"),
            ("61", "en"),
            ("49", "de"),
            ("43", "de"),
            ("34", "es"),
            ("52", "es"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        MediaConfig {
            enabled: false,
            bind_ip: IpAddr::from([0, 0, 0, 0]),
            advertise_ip: None,
            advertise_ip6: None,
            port_min: 30000,
            port_max: 31999,
            max_sessions: 400,
            idle_timeout_secs: 60,
            setup_timeout_secs: 200,
            hold_caller_during_prompt: true,
            prompt_start_wait_ms: 500,
            prompts_dir: "prompts".into(),
            default_prompt: "en".into(),
            prompts,
        }
    }
}

impl MediaConfig {
    /// The address we put in SDP: `advertise_ip`, else `bind_ip` (which [`MediaConfig::validate`]
    /// refuses when it is a wildcard).
    pub fn advertised(&self) -> IpAddr {
        self.advertise_ip.unwrap_or(self.bind_ip)
    }

    /// The address written to parties of a family (`v6`), when one is configured for it.
    pub fn advertised_for(&self, v6: bool) -> Option<IpAddr> {
        let main = Some(self.advertised()).filter(|ip| !ip.is_unspecified());
        match v6 {
            false => main.filter(IpAddr::is_ipv4),
            true => main.filter(IpAddr::is_ipv6).or(self.advertise_ip6),
        }
    }

    /// Port pairs in the range.
    pub fn pairs(&self) -> usize {
        let first = self.port_min.saturating_add(self.port_min & 1) as usize;
        let max = self.port_max as usize;
        if max < first + 1 {
            0
        } else {
            (max - first).div_ceil(2)
        }
    }

    /// Every problem with the section, each naming the setting and what was expected, and
    /// whether every prompt it names loads (a prompt file's problem names the file). What
    /// `scamguard validate` and start-up report. A disabled section is not checked.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.enabled {
            return p;
        }
        if self.advertised_for(false).is_none() && self.advertised_for(true).is_none() {
            p.push(
                "media.advertise_ip: expected an address peers can reach (bind_ip is a wildcard)"
                    .into(),
            );
        }
        if let Some(ip) = self.advertise_ip6 {
            if !ip.is_ipv6() || ip.is_unspecified() {
                p.push(format!(
                    "media.advertise_ip6: expected an IPv6 address peers can reach, got {ip}"
                ));
            } else if self.bind_ip != IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED) {
                p.push(format!(
                    "media.advertise_ip6: needs bind_ip = \"::\" (dual-stack), got bind_ip = {}",
                    self.bind_ip
                ));
            }
        }
        if self.bind_ip.is_ipv4() && self.advertised().is_ipv6() {
            p.push(format!(
                "media.advertise_ip: {} is IPv6 but bind_ip {} is IPv4 (use bind_ip = \"::\")",
                self.advertised(),
                self.bind_ip
            ));
        }
        if self.port_min == 0 || self.port_min >= self.port_max {
            p.push(format!(
                "media.port_min {} / port_max {}: expected 0 < port_min < port_max",
                self.port_min, self.port_max
            ));
        } else if self.max_sessions == 0 || self.pairs() < self.max_sessions * 2 {
            p.push(format!(
                "media.max_sessions {}: expected 1..={} (each call takes 2 port pairs; the \
                 range {}-{} holds {} pairs)",
                self.max_sessions,
                self.pairs() / 2,
                self.port_min,
                self.port_max,
                self.pairs()
            ));
        }
        if self.prompt_start_wait_ms > 10_000 {
            p.push(format!(
                "media.prompt_start_wait_ms {}: expected at most 10000",
                self.prompt_start_wait_ms
            ));
        }
        if self.idle_timeout_secs == 0 || self.setup_timeout_secs == 0 {
            p.push("media.idle_timeout_secs / setup_timeout_secs: expected > 0".into());
        }
        if let Err(e) = PromptSet::load(self) {
            p.push(e.to_string());
        }
        p
    }
}

/// What the media engine can refuse; the app passes the call on without an announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaError {
    /// `media.enabled` is false.
    Disabled,
    Sdp(SdpError),
    /// Neither PCMU nor PCMA was offered (or answered), so no prompt can be played.
    NoG711,
    /// The audio is encrypted (SRTP/DTLS) or not RTP: it cannot be announced into.
    NotPlainRtp(String),
    /// No session for this call id (never offered, released or idled out).
    UnknownCall,
    /// `max_sessions` reached.
    Full(usize),
    /// No free port pair could be bound.
    NoPorts,
    /// Called outside a tokio runtime.
    NoRuntime,
    /// The offerer would not hear us (sendonly or inactive audio).
    NotListening,
    /// This call id already has a session.
    Exists,
    /// A config or prompt file problem: what, where and what was expected.
    Config(String),
}

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaError::Disabled => write!(f, "media anchoring is disabled"),
            MediaError::Sdp(e) => write!(f, "{e}"),
            MediaError::NoG711 => write!(
                f,
                "neither PCMU nor PCMA negotiated; announcement needs G.711"
            ),
            MediaError::NotPlainRtp(p) => write!(
                f,
                "audio is {p} or keyed for SRTP; announcement needs plain RTP/AVP"
            ),
            MediaError::UnknownCall => write!(f, "no media session for this call"),
            MediaError::Full(n) => write!(f, "media session limit of {n} reached"),
            MediaError::NoPorts => write!(f, "no free RTP port pair"),
            MediaError::NoRuntime => write!(f, "media engine used outside a tokio runtime"),
            MediaError::NotListening => write!(f, "the offer does not receive audio"),
            MediaError::Exists => write!(f, "a media session for this call exists already"),
            MediaError::Config(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for MediaError {}

impl From<SdpError> for MediaError {
    fn from(e: SdpError) -> Self {
        MediaError::Sdp(e)
    }
}

/// The media engine's counters.
#[derive(Debug, Default)]
pub struct MediaStats {
    pub sessions_active: Gauge,
    pub ports_in_use: Gauge,
    /// The limits the two above run into: `max_sessions`, and the ports of the configured
    /// range (two per pair). Set once at start; exported so an alert can say how close.
    pub sessions_max: Gauge,
    pub ports_total: Gauge,
    pub sessions_started: Counter,
    /// Refused for the session cap or lack of ports.
    pub sessions_refused: Counter,
    pub released_bye: Counter,
    pub released_cancel: Counter,
    pub released_failed: Counter,
    pub released_shutdown: Counter,
    pub released_idle: Counter,
    pub rtp_relayed: Counter,
    pub rtcp_relayed: Counter,
    pub prompts_started: Counter,
    /// Played to the end.
    pub prompts_played: Counter,
    /// Answer without G.711: relayed without a prompt.
    pub prompts_skipped: Counter,
    /// From a source other than the latched (or SDP) address of that leg.
    pub dropped_unrelated: Counter,
    /// Caller audio dropped while the prompt played.
    pub dropped_held: Counter,
    /// Early prompts that asked for a digit: pressed in time, or not.
    pub confirmed: Counter,
    pub unconfirmed: Counter,
    /// Not RTP/RTCP, or no address to send to yet, or the socket buffer was full.
    pub dropped_other: Counter,
}

impl MediaStats {
    /// Sessions and ports held now, and the limits they run into.
    fn collect_levels(&self, out: &mut Exposition) {
        for (name, help, g) in [
            (
                "scamguard_media_sessions",
                "Anchored calls with a live relay",
                &self.sessions_active,
            ),
            (
                "scamguard_media_ports_in_use",
                "UDP ports held by media sessions",
                &self.ports_in_use,
            ),
            (
                "scamguard_media_ports",
                "UDP ports of the configured media range: the limit of ports in use",
                &self.ports_total,
            ),
            (
                "scamguard_media_sessions_max",
                "Most media sessions at once (max_sessions)",
                &self.sessions_max,
            ),
        ] {
            out.gauge(name, help, &[], g.get());
        }
    }
}

impl Collect for MediaStats {
    fn collect(&self, out: &mut Exposition) {
        self.collect_levels(out);
        out.counter(
            "scamguard_media_sessions_started_total",
            "Media sessions opened",
            &[],
            self.sessions_started.get(),
        );
        out.counter(
            "scamguard_media_sessions_refused_total",
            "Media sessions refused (session cap or ports exhausted)",
            &[],
            self.sessions_refused.get(),
        );
        let h = "Media sessions released, by reason";
        for (why, c) in [
            ("bye", &self.released_bye),
            ("cancel", &self.released_cancel),
            ("failed", &self.released_failed),
            ("shutdown", &self.released_shutdown),
            ("idle", &self.released_idle),
        ] {
            out.counter(
                "scamguard_media_released_total",
                h,
                &[("reason", why)],
                c.get(),
            );
        }
        let h = "Packets relayed between caller and callee";
        out.counter(
            "scamguard_media_packets_relayed_total",
            h,
            &[("kind", "rtp")],
            self.rtp_relayed.get(),
        );
        out.counter(
            "scamguard_media_packets_relayed_total",
            h,
            &[("kind", "rtcp")],
            self.rtcp_relayed.get(),
        );
        let h = "Announcements, by outcome";
        for (what, c) in [
            ("started", &self.prompts_started),
            ("played", &self.prompts_played),
            ("skipped_no_g711", &self.prompts_skipped),
        ] {
            out.counter(
                "scamguard_media_prompts_total",
                h,
                &[("outcome", what)],
                c.get(),
            );
        }
        let h = "Early prompts that asked for a digit, by outcome";
        for (what, c) in [
            ("confirmed", &self.confirmed),
            ("timed_out", &self.unconfirmed),
        ] {
            out.counter(
                "scamguard_media_confirmations_total",
                h,
                &[("outcome", what)],
                c.get(),
            );
        }
        let h = "Packets dropped, by reason";
        for (why, c) in [
            ("unrelated_source", &self.dropped_unrelated),
            ("caller_held", &self.dropped_held),
            ("other", &self.dropped_other),
        ] {
            out.counter(
                "scamguard_media_packets_dropped_total",
                h,
                &[("reason", why)],
                c.get(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_and_refuses_unknown_fields() {
        let c: MediaConfig = toml::from_str(
            "enabled = true\nadvertise_ip = \"192.0.2.1\"\nport_min = 40000\nport_max = 40099\n\
             max_sessions = 10\n[prompts]\n\"33\" = \"fr\"\n",
        )
        .unwrap();
        assert_eq!(c.pairs(), 50);
        assert_eq!(c.prompts.get("33").map(String::as_str), Some("fr"));
        assert!(c.hold_caller_during_prompt);
        assert!(toml::from_str::<MediaConfig>("enable = true").is_err());
    }

    #[test]
    fn validate_names_the_problem() {
        let base = MediaConfig {
            enabled: true,
            advertise_ip: Some("192.0.2.1".parse().unwrap()),
            prompts_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/prompts").into(),
            ..MediaConfig::default()
        };
        assert_eq!(base.validate(), Vec::<String>::new());
        let names = PromptSet::load(&base).unwrap().names();
        for n in ["de", "en", "en-tech-support", "es"] {
            assert!(names.contains(&n.to_string()), "{names:?}");
        }
        let cases: Vec<(MediaConfig, &str)> = vec![
            (MediaConfig { advertise_ip: None, ..base.clone() }, "media.advertise_ip: expected an address peers can reach (bind_ip is a wildcard)"),
            (MediaConfig { port_min: 5000, port_max: 5000, ..base.clone() }, "media.port_min 5000 / port_max 5000: expected 0 < port_min < port_max"),
            (MediaConfig { port_min: 5000, port_max: 5009, max_sessions: 3, ..base.clone() }, "media.max_sessions 3: expected 1..=2 (each call takes 2 port pairs; the range 5000-5009 holds 5 pairs)"),
            (MediaConfig { default_prompt: "xx".into(), ..base.clone() }, "/prompts/xx.wav: No such file or directory (os error 2); expected an 8 kHz mono WAV (16-bit PCM or G.711)"),
            (MediaConfig { default_prompt: "../en".into(), ..base.clone() }, "media prompt name \"../en\": expected lowercase letters, digits, '-' or '_'"),
            (MediaConfig { prompts: [("+49".to_string(), "de".to_string())].into(), ..base.clone() }, "media.prompts: key \"+49\": expected a country calling code of 1-3 digits"),
            (MediaConfig { prompts_dir: "src".into(), ..base.clone() }, "expected an 8 kHz mono WAV"),
            (MediaConfig { advertise_ip6: Some("2001:db8::1".parse().unwrap()), ..base.clone() }, "media.advertise_ip6: needs bind_ip = \"::\" (dual-stack), got bind_ip = 0.0.0.0"),
            (MediaConfig { bind_ip: "::".parse().unwrap(), advertise_ip6: Some("192.0.2.9".parse().unwrap()), ..base.clone() }, "media.advertise_ip6: expected an IPv6 address peers can reach, got 192.0.2.9"),
            (MediaConfig { advertise_ip: Some("2001:db8::1".parse().unwrap()), ..base.clone() }, "media.advertise_ip: 2001:db8::1 is IPv6 but bind_ip 0.0.0.0 is IPv4 (use bind_ip = \"::\")"),
        ];
        for (cfg, want) in cases {
            let got = cfg.validate();
            assert!(
                got.len() == 1 && got[0].contains(want),
                "{got:?} should be one problem containing {want:?}"
            );
        }
        assert!(MediaConfig::default().validate().is_empty());
        // Dual-stack: an address per family, either alone enough.
        let dual = MediaConfig {
            bind_ip: "::".parse().unwrap(),
            advertise_ip6: Some("2001:db8::1".parse().unwrap()),
            ..base.clone()
        };
        assert_eq!(dual.validate(), Vec::<String>::new());
        assert_eq!(
            dual.advertised_for(false),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            dual.advertised_for(true),
            Some("2001:db8::1".parse().unwrap())
        );
        let v6_only = MediaConfig {
            advertise_ip: None,
            ..dual
        };
        assert_eq!(v6_only.validate(), Vec::<String>::new());
        assert_eq!(v6_only.advertised_for(false), None);
    }

    #[test]
    fn a_bad_prompt_file_is_named_with_what_was_expected() {
        let dir = std::env::temp_dir().join(format!("scamguard-badprompt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("en.wav"), b"ID3 this is an mp3").unwrap();
        let cfg = MediaConfig {
            enabled: true,
            advertise_ip: Some("192.0.2.1".parse().unwrap()),
            prompts_dir: dir.to_string_lossy().into_owned(),
            prompts: BTreeMap::new(),
            ..MediaConfig::default()
        };
        let want = format!(
            "prompt {}: not a RIFF/WAVE file",
            dir.join("en.wav").display()
        );
        assert_eq!(cfg.validate(), [want]);
        // a broken optional variant is an error too, not silently skipped
        std::fs::write(dir.join("en.wav"), wav::encode_pcm16(&[0; 160])).unwrap();
        std::fs::write(dir.join("en-tech-support.wav"), wav::encode_pcm16(&[])).unwrap();
        let want = format!(
            "prompt {}: no samples",
            dir.join("en-tech-support.wav").display()
        );
        assert_eq!(cfg.validate(), [want]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stats_render_as_prometheus() {
        let s = MediaStats::default();
        s.rtp_relayed.add(5);
        s.dropped_unrelated.inc();
        s.sessions_active.set(2);
        let text = crate::metrics::render(&[&s]);
        for line in [
            "scamguard_media_sessions 2\n",
            "scamguard_media_packets_relayed_total{kind=\"rtp\"} 5\n",
            "scamguard_media_packets_dropped_total{reason=\"unrelated_source\"} 1\n",
            "scamguard_media_prompts_total{outcome=\"played\"} 0\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }
}
