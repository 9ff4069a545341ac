//! Who is calling and whom: the translation from a new SIP call's identities (P-Asserted-Identity,
//! Privacy, From, the request target) to the plain strings the application screens.
//!
//! Order: a P-Asserted-Identity from a trusted peer (its tel URI first, then a SIP URI), else the
//! presented identity; the callee is the request target's user part. A withheld identity
//! (`Privacy: id`, an anonymous URI, no user part) marks the caller anonymous. Knows nothing of
//! lists or verdicts.

use std::borrow::Cow;

use super::uri::{NameAddr, Scheme, Uri};
use super::NewCall;

/// The caller and callee of a new call, as carried, before normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parties<'a> {
    /// The caller's number as carried (user part or tel number, unescaped, parameters removed).
    pub caller: Cow<'a, str>,
    /// The caller's display name, unquoted.
    pub display_name: Option<String>,
    pub callee: Cow<'a, str>,
    pub anonymous: bool,
    /// The caller came from a P-Asserted-Identity of a trusted peer.
    pub asserted: bool,
    /// `verstat` on the screened identity, only when it came from a trusted peer.
    pub verstat: Option<&'a str>,
}

/// The number-ish user of a URI: the tel number or the SIP user, unescaped, with any `;param`
/// suffix inside the user part removed (`+12025550143;verstat=...`).
pub(super) fn user_of<'a>(uri: &Uri<'a>) -> Option<Cow<'a, str>> {
    match uri.scheme {
        Scheme::Tel | Scheme::Sip | Scheme::Sips => {
            let base = uri.user_base()?;
            Some(super::uri::unescape(base))
        }
        Scheme::Other => None,
    }
}

/// `verstat` may sit on a tel URI, on a SIP URI's parameters, or inside its user part.
fn verstat_of<'a>(uri: &Uri<'a>) -> Option<&'a str> {
    uri.param("verstat").or_else(|| {
        let user = uri.user?;
        let (_, params) = user.split_once(';')?;
        super::uri::param_in(params, "verstat")
    })
}

fn is_anonymous(na: &NameAddr<'_>) -> bool {
    let user = na.uri.user.unwrap_or("");
    user.eq_ignore_ascii_case("anonymous") || na.uri.host.eq_ignore_ascii_case("anonymous.invalid")
}

/// `Privacy: id` (RFC 3325), possibly among other values (`Privacy: header;id`).
fn privacy_id(privacy: Option<&str>) -> bool {
    privacy.is_some_and(|p| {
        p.split([';', ','])
            .any(|v| v.trim().eq_ignore_ascii_case("id"))
    })
}

/// Work out the parties of `call`; `trusted` says whether the source is a trusted peer.
pub fn parties<'a>(call: &NewCall<'a>, trusted: bool) -> Parties<'a> {
    let mut p = Parties::default();
    let asserted = if trusted {
        // PAI may carry one SIP and one tel URI; the tel form is the number itself.
        call.asserted
            .iter()
            .find(|na| na.uri.scheme == Scheme::Tel)
            .or_else(|| call.asserted.first())
    } else {
        None
    };
    let presented = call.from.as_ref();
    let chosen = asserted
        .filter(|na| !is_anonymous(na))
        .and_then(|na| user_of(&na.uri).map(|u| (na, u)));
    match chosen {
        Some((na, user)) => {
            p.caller = user;
            p.asserted = true;
            p.verstat = verstat_of(&na.uri);
        }
        None => {
            if let Some(na) = presented.filter(|na| !is_anonymous(na)) {
                if let Some(user) = user_of(&na.uri) {
                    p.caller = user;
                }
            }
        }
    }
    p.display_name = presented
        .and_then(|na| na.display())
        .or_else(|| asserted.and_then(|na| na.display()))
        .filter(|d| !d.trim().is_empty());
    p.anonymous = privacy_id(call.privacy)
        || presented.map_or(true, is_anonymous) && !p.asserted
        || p.caller.trim().is_empty();
    p.callee = call
        .request_uri
        .as_ref()
        .and_then(user_of)
        .or_else(|| call.to.as_ref().and_then(|na| user_of(&na.uri)))
        .unwrap_or_default();
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{Limits, Message};
    use crate::sip::Transport;

    fn invite(headers: &str) -> Message {
        let text = format!(
            "INVITE sip:+12025550100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\n\
             To: <sip:+12025550100@192.0.2.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
             {headers}Content-Length: 0\r\n\r\n"
        );
        Message::parse(bytes::Bytes::from(text), &Limits::default(), true)
            .expect("test message parses")
    }

    #[test]
    fn identities_are_read_in_order() {
        // (headers, trusted, caller, display, anonymous, asserted, verstat)
        type Case<'a> = (
            &'a str,
            bool,
            &'a str,
            Option<&'a str>,
            bool,
            bool,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            ("From: \"Bob\" <sip:+1-202-555-0143@x>;tag=1\r\n", false, "+1-202-555-0143", Some("Bob"), false, false, None),
            ("From: <tel:+12025550143;verstat=TN-Validation-Passed>;tag=1\r\n", false, "+12025550143", None, false, false, None),
            ("From: <sip:%2B12025550143@x;user=phone>;tag=1\r\n", false, "+12025550143", None, false, false, None),
            ("From: <sip:+12025550143;verstat=No-TN-Validation@x;user=phone>;tag=1\r\n", false, "+12025550143", None, false, false, None),
            // PAI only counts from a trusted peer; its tel form wins over its SIP form.
            ("From: <sip:111@x>;tag=1\r\nP-Asserted-Identity: <sip:+442079460000@x>, <tel:+442079460001;verstat=TN-Validation-Passed>\r\n", true, "+442079460001", None, false, true, Some("TN-Validation-Passed")),
            ("From: <sip:111@x>;tag=1\r\nP-Asserted-Identity: <sip:+442079460000@x>\r\n", false, "111", None, false, false, None),
            ("From: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1\r\n", false, "", Some("Anonymous"), true, false, None),
            ("From: <sip:+12025550143@x>;tag=1\r\nPrivacy: id\r\n", false, "+12025550143", None, true, false, None),
            ("From: <sip:x.example>;tag=1\r\n", false, "", None, true, false, None),
            ("From: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1\r\nP-Asserted-Identity: \"Real\" <tel:+4930123456>\r\nPrivacy: id\r\n", true, "+4930123456", Some("Anonymous"), true, true, None),
        ];
        for (h, trusted, caller, display, anon, asserted, verstat) in cases {
            let m = invite(h);
            let call = NewCall::new(&m, "192.0.2.9:5060".parse().unwrap(), Transport::Udp, false);
            let p = parties(&call, *trusted);
            assert_eq!(p.caller, *caller, "{h}");
            assert_eq!(p.display_name.as_deref(), *display, "{h}");
            assert_eq!(p.anonymous, *anon, "{h}");
            assert_eq!(p.asserted, *asserted, "{h}");
            assert_eq!(p.verstat, *verstat, "{h}");
            assert_eq!(p.callee, "+12025550100", "{h}");
        }
    }
}
