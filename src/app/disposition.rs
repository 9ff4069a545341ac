//! How a verdict becomes an answer on the wire: the `[disposition]` config section and the pure
//! mapping from a [`Verdict`] to a SIP [`Disposition`] (603+ or 608 for blocks, 433 for refused
//! anonymous callers, a tagged display name and a verdict header for warnings).
//!
//! Knows nothing of sockets or of how the verdict was reached.

use serde::Deserialize;

use crate::screening::{Action, Refusal, Verdict};
use crate::sip::Disposition;

/// Which response refuses a blocked call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum BlockResponse {
    /// `603 Network Blocked` with the ATIS-1000099 `Reason` header ("603+"): the form US
    /// carriers must send since the FCC's order in force on 2026-03-25.
    #[default]
    #[serde(rename = "603")]
    NetworkBlocked,
    /// `608 Rejected` with `Call-Info: <jCard URL>;purpose=jwscard` (RFC 8688).
    #[serde(rename = "608")]
    Rejected,
}

/// The `[disposition]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispositionConfig {
    /// `"603"` (603+ with a redress Reason) or `"608"` (Call-Info jwscard).
    pub block_response: BlockResponse,
    /// Where a wrongly blocked caller asks for redress; goes in the 603 Reason text.
    pub redress_url: String,
    /// The signed jCard (RFC 8688) naming who to contact; goes in the 608 Call-Info.
    pub jwscard_url: String,
    /// The caller name shown for a warned call; `{name}` is the original display name, or the
    /// caller's number when there is none. Keep it short: legacy displays show 15 characters.
    pub warn_display: String,
    /// Header carrying the verdict on every forwarded INVITE.
    pub verdict_header: String,
    /// `Alert-Info` value added to warned calls (a distinct ring), e.g.
    /// `<urn:alert:service:normal>`; empty for none.
    pub warn_alert_info: String,
    /// Stay in the dialog of passed calls too (Record-Route), so that call ends are seen for
    /// concurrency limits and short-call detection. Warned calls always stay.
    pub record_route_all: bool,
}

impl Default for DispositionConfig {
    fn default() -> Self {
        DispositionConfig {
            block_response: BlockResponse::NetworkBlocked,
            redress_url: "https://scamguard.invalid/redress".into(),
            jwscard_url: "https://scamguard.invalid/redress.jws".into(),
            warn_display: "SCAM? {name}".into(),
            verdict_header: "X-Scamguard-Verdict".into(),
            warn_alert_info: String::new(),
            record_route_all: true,
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

fn quoted_ok(s: &str) -> bool {
    !s.contains('"') && !s.contains(char::is_control)
}

/// `s` with every control character (a NUL, a tab, a line break) as a space: what goes into a
/// header came from lists, feeds and callers, and the checks on the way in are not the last word.
fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(char::is_control) {
        s.replace(char::is_control, " ").into()
    } else {
        s.into()
    }
}

impl DispositionConfig {
    /// Every problem, each "what is wrong, what was expected".
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (key, url) in [
            ("redress_url", &self.redress_url),
            ("jwscard_url", &self.jwscard_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) || !quoted_ok(url) {
                p.push(format!(
                    "disposition.{key} {url:?} is not a URL; expected https://..."
                ));
            }
        }
        if !is_token(&self.verdict_header) {
            p.push(format!(
                "disposition.verdict_header {:?} is not a header name; expected a token like X-Scamguard-Verdict",
                self.verdict_header
            ));
        }
        if self.warn_display.contains(char::is_control) || self.warn_display.chars().count() > 64 {
            p.push(
                "disposition.warn_display must be one line of at most 64 printable characters"
                    .to_string(),
            );
        }
        if self.warn_alert_info.contains(char::is_control) {
            p.push(
                "disposition.warn_alert_info must be one line of printable characters".to_string(),
            );
        }
        p
    }
}

/// What the mapping needs beyond the verdict.
pub struct CallView<'a> {
    /// The display name the caller presented, if any.
    pub display_name: Option<&'a str>,
    /// Whether the call's media will be anchored for an announcement.
    pub announce: bool,
    /// An out-of-dialog MESSAGE, not a call: no callee is alerted, so a warning can only
    /// travel in the verdict header (no display name, no Alert-Info, no dialog).
    pub message: bool,
}

/// A `generic-param` value: a token as is, anything else as an escaped quoted string in which
/// a control character is a space (RFC 3261 allows none raw, and a NUL or a line break must
/// never reach the wire).
fn param_value(s: &str) -> String {
    if is_token(s) {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                q.push('\\');
                q.push(c);
            }
            c if c.is_control() => q.push(' '),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// The verdict header's value: `pass`, or `warn;category=...;reason=...` (likewise `block` for
/// log-only reporting).
pub fn verdict_value(v: &Verdict) -> String {
    match v.reasons.first() {
        Some(r) if v.action != Action::Pass => format!(
            "{};category={};reason={}",
            v.action.as_str(),
            param_value(&r.category),
            param_value(&r.reason)
        ),
        _ => v.action.as_str().to_string(),
    }
}

/// RFC 9410: a call forwarded although its PASSporT failed verification carries the failure,
/// `Reason: STIR;cause=438;text="Invalid Identity Header"`, so the next hop need not verify
/// again to know. An absent Identity (428) is no failure and gets none.
fn stir_failure(v: &Verdict) -> Option<String> {
    let code = v.stir_failure?;
    Some(format!(
        "Reason: STIR;cause={};text=\"{}\"",
        code.status(),
        code.phrase()
    ))
}

impl DispositionConfig {
    /// The refusal of a blocked call (and of a failed challenge): 603+ with the redress URL in
    /// its `Reason`, or 608 with the jCard's `Call-Info`.
    pub fn blocked(&self) -> Disposition {
        match self.block_response {
            BlockResponse::NetworkBlocked => Disposition::Reject {
                code: 603,
                phrase: "Network Blocked".into(),
                headers: vec![format!(
                    "Reason: SIP;cause=603;text=\"v=analytics1;url={}\"",
                    self.redress_url
                )],
            },
            BlockResponse::Rejected => Disposition::Reject {
                code: 608,
                phrase: "Rejected".into(),
                headers: vec![format!("Call-Info: <{}>;purpose=jwscard", self.jwscard_url)],
            },
        }
    }

    /// The SIP answer to a verdict: what the proxy does with the call.
    pub fn answer(&self, v: &Verdict, call: &CallView) -> Disposition {
        match v.action {
            Action::Block => match v.refusal {
                Refusal::AnonymityDisallowed => Disposition::Reject {
                    code: 433,
                    phrase: "Anonymity Disallowed".into(),
                    headers: Vec::new(),
                },
                Refusal::Blocked => self.blocked(),
            },
            // The app holds a challenged call itself; one it cannot hold is warned.
            Action::Warn | Action::Challenge if call.message => Disposition::Forward {
                display_name: None,
                headers: std::iter::once(format!("{}: {}", self.verdict_header, verdict_value(v)))
                    .chain(stir_failure(v))
                    .collect(),
                record_route: false,
                anchor_media: false,
                offer: None,
                tag: None,
            },
            Action::Warn | Action::Challenge => {
                let name = call
                    .display_name
                    .filter(|d| !d.trim().is_empty())
                    .unwrap_or(&v.caller);
                let mut headers = vec![format!("{}: {}", self.verdict_header, verdict_value(v))];
                if !self.warn_alert_info.is_empty() {
                    headers.push(format!("Alert-Info: {}", self.warn_alert_info));
                }
                headers.extend(stir_failure(v));
                Disposition::Forward {
                    display_name: Some(self.warn_display.replace("{name}", &printable(name))),
                    headers,
                    record_route: true,
                    anchor_media: call.announce,
                    offer: None,
                    tag: None,
                }
            }
            Action::Pass => Disposition::Forward {
                display_name: None,
                headers: std::iter::once(format!("{}: pass", self.verdict_header))
                    .chain(stir_failure(v))
                    .collect(),
                record_route: self.record_route_all && !call.message,
                anchor_media: false,
                offer: None,
                tag: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screening::signals::stir::StirCode;
    use crate::screening::{Reason, Signal, Source};

    fn verdict(action: Action, refusal: Refusal, reason: &str) -> Verdict {
        Verdict {
            action,
            caller: "+12025550143".into(),
            reasons: vec![Reason {
                source: Source::list("example"),
                entry: "+12025550143".into(),
                category: "tech-support".into(),
                reason: reason.into(),
            }],
            refusal,
            stir_failure: None,
        }
    }

    fn reject(d: Disposition) -> (u16, String, Vec<String>) {
        match d {
            Disposition::Reject {
                code,
                phrase,
                headers,
            } => (code, phrase, headers),
            other => panic!("expected a reject, got {other:?}"),
        }
    }

    #[test]
    fn blocks_answer_603_plus_or_608_or_433() {
        let view = CallView {
            display_name: None,
            announce: false,
            message: false,
        };
        let mut c = DispositionConfig {
            redress_url: "https://carrier.example/redress".into(),
            ..Default::default()
        };
        let v = verdict(Action::Block, Refusal::Blocked, "listed");
        assert_eq!(
            reject(c.answer(&v, &view)),
            (
                603,
                "Network Blocked".into(),
                vec![
                    "Reason: SIP;cause=603;text=\"v=analytics1;url=https://carrier.example/redress\""
                        .into()
                ]
            )
        );
        c.block_response = BlockResponse::Rejected;
        c.jwscard_url = "https://carrier.example/r.jws".into();
        assert_eq!(
            reject(c.answer(&v, &view)),
            (
                608,
                "Rejected".into(),
                vec!["Call-Info: <https://carrier.example/r.jws>;purpose=jwscard".into()]
            )
        );
        let anon = verdict(Action::Block, Refusal::AnonymityDisallowed, "anonymous");
        assert_eq!(reject(c.answer(&anon, &view)).0, 433);
    }

    #[test]
    fn warn_tags_the_name_and_quotes_the_reason() {
        let c = DispositionConfig::default();
        let cases: &[(Option<&str>, &str, &str, &str)] = &[
            (
                Some("Microsoft"),
                "brand \"impersonation\"",
                "SCAM? Microsoft",
                "X-Scamguard-Verdict: warn;category=tech-support;reason=\"brand \\\"impersonation\\\"\"",
            ),
            (
                None,
                "listed",
                "SCAM? +12025550143",
                "X-Scamguard-Verdict: warn;category=tech-support;reason=listed",
            ),
            (
                Some("  "),
                "a;b",
                "SCAM? +12025550143",
                "X-Scamguard-Verdict: warn;category=tech-support;reason=\"a;b\"",
            ),
        ];
        for (display, reason, want_name, want_header) in cases {
            let v = verdict(Action::Warn, Refusal::Blocked, reason);
            let d = c.answer(
                &v,
                &CallView {
                    display_name: *display,
                    announce: true,
                    message: false,
                },
            );
            assert_eq!(
                d,
                Disposition::Forward {
                    display_name: Some(want_name.to_string()),
                    headers: vec![want_header.to_string()],
                    record_route: true,
                    anchor_media: true,
                    offer: None,
                    tag: None,
                },
                "{display:?} {reason}"
            );
        }
    }

    /// A MESSAGE has no callee to alert: a warning rides in the verdict header alone (no
    /// display name the sender would see echoed, no Alert-Info, no dialog); a block is the
    /// block response, as for a call.
    #[test]
    fn a_message_is_warned_by_header_and_blocked_as_a_call() {
        let c = DispositionConfig {
            warn_alert_info: "<urn:alert:service:normal>".into(),
            ..Default::default()
        };
        let view = CallView {
            display_name: Some("Bank"),
            announce: false,
            message: true,
        };
        let warn = verdict(Action::Warn, Refusal::Blocked, "listed");
        assert_eq!(
            c.answer(&warn, &view),
            Disposition::Forward {
                display_name: None,
                headers: vec![
                    "X-Scamguard-Verdict: warn;category=tech-support;reason=listed".into()
                ],
                record_route: false,
                anchor_media: false,
                offer: None,
                tag: None,
            }
        );
        let block = verdict(Action::Block, Refusal::Blocked, "listed");
        assert_eq!(reject(c.answer(&block, &view)).0, 603);
        let pass = Verdict {
            action: Action::Pass,
            reasons: vec![],
            ..warn
        };
        let Disposition::Forward { record_route, .. } = c.answer(&pass, &view) else {
            panic!("a passed MESSAGE is forwarded");
        };
        assert!(!record_route);
    }

    #[test]
    fn no_control_character_reaches_a_header() {
        let c = DispositionConfig::default();
        // However a reason got past the checks on the way in (a list, a feed, a signal), the
        // header carries a space where it had a control character.
        for (reason, category, want) in [
            (
                "evil\0\r\nVia: x",
                "scam",
                "X-Scamguard-Verdict: warn;category=scam;reason=\"evil   Via: x\"",
            ),
            (
                "tab\there\u{7f}\u{85}",
                "sc\u{0}am",
                "X-Scamguard-Verdict: warn;category=\"sc am\";reason=\"tab here  \"",
            ),
        ] {
            let mut v = verdict(Action::Warn, Refusal::Blocked, reason);
            v.reasons[0].category = category.into();
            let d = c.answer(
                &v,
                &CallView {
                    display_name: Some("Bob\0\r\nX: y"),
                    announce: false,
                    message: false,
                },
            );
            let Disposition::Forward {
                headers,
                display_name,
                ..
            } = d
            else {
                panic!("not forwarded");
            };
            assert_eq!(headers, [want.to_string()], "{reason:?}");
            assert_eq!(display_name.as_deref(), Some("SCAM? Bob   X: y"));
        }
        let bad = DispositionConfig {
            redress_url: "https://x.example/\0".into(),
            warn_display: "SCAM?\t{name}".into(),
            warn_alert_info: "<urn:x>\0".into(),
            ..Default::default()
        };
        assert_eq!(bad.validate().len(), 3, "{:?}", bad.validate());
    }

    #[test]
    fn pass_carries_the_verdict_header_only() {
        let c = DispositionConfig {
            record_route_all: false,
            ..Default::default()
        };
        let v = Verdict {
            action: Action::Pass,
            caller: "+14155550123".into(),
            reasons: vec![],
            refusal: Refusal::Blocked,
            stir_failure: None,
        };
        let d = c.answer(
            &v,
            &CallView {
                display_name: Some("Bob"),
                announce: true,
                message: false,
            },
        );
        assert_eq!(
            d,
            Disposition::Forward {
                display_name: None,
                headers: vec!["X-Scamguard-Verdict: pass".into()],
                record_route: false,
                anchor_media: false,
                offer: None,
                tag: None,
            }
        );
    }

    #[test]
    fn a_failed_passport_is_carried_on_as_an_rfc_9410_reason() {
        let c = DispositionConfig::default();
        let view = CallView {
            display_name: None,
            announce: false,
            message: false,
        };
        let stir = Reason {
            source: Source::Signal(Signal::Stir),
            entry: "438".into(),
            category: "stir".into(),
            reason: "(+60) ...".into(),
        };
        let cases: &[(Option<StirCode>, Action, Option<&str>)] = &[
            (
                Some(StirCode::Invalid),
                Action::Warn,
                Some("Reason: STIR;cause=438;text=\"Invalid Identity Header\""),
            ),
            (
                Some(StirCode::BadInfo),
                Action::Pass,
                Some("Reason: STIR;cause=436;text=\"Bad Identity Info\""),
            ),
            (
                Some(StirCode::Unsupported),
                Action::Warn,
                Some("Reason: STIR;cause=437;text=\"Unsupported Credential\""),
            ),
            (
                Some(StirCode::Stale),
                Action::Pass,
                Some("Reason: STIR;cause=403;text=\"Stale Date\""),
            ),
            // No failure (no Identity at all, a verified one, or one still being checked):
            // whatever the reasons say, nothing is carried on.
            (None, Action::Pass, None),
            (None, Action::Warn, None),
        ];
        for (failure, action, want) in cases {
            let v = Verdict {
                action: *action,
                caller: "+12025550143".into(),
                reasons: vec![stir.clone()],
                refusal: Refusal::Blocked,
                stir_failure: *failure,
            };
            let Disposition::Forward { headers, .. } = c.answer(&v, &view) else {
                panic!("{failure:?}: not forwarded");
            };
            let got = headers.iter().find(|h| h.starts_with("Reason:"));
            assert_eq!(got.map(String::as_str), *want, "{failure:?} {headers:?}");
        }
        // A blocked call is answered, not forwarded: its 603 keeps its own Reason.
        let v = Verdict {
            action: Action::Block,
            caller: "+12025550143".into(),
            reasons: vec![stir],
            refusal: Refusal::Blocked,
            stir_failure: Some(StirCode::Invalid),
        };
        assert_eq!(reject(c.answer(&v, &view)).2.len(), 1);
    }

    #[test]
    fn config_problems_are_named() {
        let c = DispositionConfig {
            redress_url: "ftp://x".into(),
            verdict_header: "X Bad".into(),
            ..Default::default()
        };
        let p = c.validate();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("disposition.redress_url"));
        assert!(p[1].starts_with("disposition.verdict_header"));
    }
}
