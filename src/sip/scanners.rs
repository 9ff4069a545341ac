//! Scanners by name: the User-Agent deny list of `[sip] deny_user_agents`. A request whose
//! User-Agent names a scanning tool is dropped unanswered, so the tool learns nothing, not even
//! that something listens, and no answer of ours can be reflected at a spoofed source.
//!
//! A name matches as a whole word, case-insensitively: `sipv` catches `sipv/1.0` but not
//! `SIPVoice`, so a short name cannot take a genuine phone's calls with it.
//!
//! Knows nothing of why a request was sent, or of numbers; it reads one header value.

/// The default list: the names SIPVicious (`friendly-scanner`, `sipvicious`), sipcli, VaxSIP,
/// sundayddr, iWar, SIVuS, Gulp, `sipv` and smap send. `PortSIP VoIP SDK` is not on it: scans
/// use it, but so do genuine softphones built on that SDK, and a carrier switches off an agent
/// that drops real callers; an operator who sees no such phone may add it.
pub const DEFAULT_DENY: [&str; 10] = [
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "VaxSIPUserAgent",
    "sundayddr",
    "iWar",
    "SIVuS",
    "Gulp",
    "sipv",
    "smap",
];

/// The deny list, lower-cased once.
#[derive(Debug, Clone, Default)]
pub struct DenyList(Vec<String>);

impl DenyList {
    pub fn new(names: &[String]) -> DenyList {
        DenyList(
            names
                .iter()
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect(),
        )
    }

    /// The User-Agent value names a tool on the list.
    pub fn denies(&self, user_agent: &str) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let ua = user_agent.to_ascii_lowercase();
        self.0.iter().any(|name| word_in(&ua, name))
    }
}

/// `name` occurs in `hay` with no letter or digit right before or after it.
fn word_in(hay: &str, name: &str) -> bool {
    let edge = |c: Option<char>| c.map_or(true, |c| !c.is_ascii_alphanumeric());
    hay.match_indices(name).any(|(at, _)| {
        edge(hay[..at].chars().next_back()) && edge(hay[at + name.len()..].chars().next())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_of_the_default_list_only() {
        let names: Vec<String> = DEFAULT_DENY.iter().map(|s| (*s).to_owned()).collect();
        let deny = DenyList::new(&names);
        for ua in [
            "friendly-scanner",
            "Friendly-Scanner",
            "sipvicious 0.3.4",
            "sipcli/v1.8",
            "VaxSIPUserAgent/3.1",
            "sundayddr",
            "iWar",
            "SIVuS",
            "Gulp/1.0",
            "sipv",
            "smap 0.6.0",
            "pplsip (friendly-scanner)",
        ] {
            assert!(deny.denies(ua), "{ua} is a scanner");
        }
        for ua in [
            "Linphone/5.2.0 (belle-sip/5.2.0)",
            "SIPVoice 2.0",
            "Zoiper rv2.10",
            "PortSIP VoIP SDK 11.2",
            "Asterisk PBX 20.1",
            "smapper",
            "",
        ] {
            assert!(!deny.denies(ua), "{ua} is not a scanner");
        }
        assert!(!DenyList::new(&[]).denies("friendly-scanner"));
    }
}
