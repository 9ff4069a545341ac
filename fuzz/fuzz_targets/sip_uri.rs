//! URIs, name-addrs and Vias (`sip::uri`, `sip::msg::Via`): every value a header can hand the
//! proxy, with every accessor the proxy and the caller-id code call on them. A parse may fail;
//! nothing may panic, and what parses must say the same thing when written back and parsed
//! again.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use scamguard::sip::msg::Via;
use scamguard::sip::uri::{param_in, quote_display, unescape, NameAddr, Uri};

fuzz_target!(
    init: common::write_seeds(common::uris),
    |data: &[u8]| {
        let Ok(s) = std::str::from_utf8(data) else {
            return;
        };
        let _ = unescape(s);
        let _ = param_in(s, "tag");
        if let Ok(u) = Uri::parse(s) {
            let _ = (u.is_sip(), u.param("transport"), u.param("lr"), u.user_base());
            let _ = u.user_unescaped();
        }
        if let Ok(na) = NameAddr::parse(s) {
            let _ = (na.param("tag"), na.tag(), na.uri.user_base());
            if let Some(d) = na.display() {
                // The display name the agent writes back (warn tag) must read as the same name, less
                // the control characters it drops.
                let quoted = quote_display(&d);
                let again = format!("{quoted} <sip:x@example.com>");
                let back = NameAddr::parse(&again)
                    .unwrap_or_else(|_| panic!("quote_display({d:?}) = {quoted:?} does not parse"));
                let shown: String = d.chars().filter(|c| !c.is_control()).collect();
                assert_eq!(back.display(), Some(shown), "{quoted:?}");
            }
        }
        if let Ok(v) = Via::parse(s) {
            let _ = v.sent_by();
        }
    }
);
