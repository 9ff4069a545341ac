//! What every fuzz target shares: the seeds, made at run time from the repository's own
//! corpora (the RFC 4475 torture messages in `tests/fixtures/rfc4475` and the generated
//! malformed corpus of `tests/support/malformed.rs`), so the fuzzer starts from the messages
//! the test suite already knows are hard instead of from nothing.
//!
//! A target writes its seeds when `SCAMGUARD_FUZZ_SEEDS` names a directory (`scripts/fuzz`
//! passes its corpus directory): libFuzzer calls the targets' `init` before it reads the
//! corpus, so the seeds are there when it looks. Knows nothing of what a target does with them.

#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use scamguard::sip::msg::{Hdr, Limits, Message};

#[allow(dead_code, clippy::all)]
#[path = "../../../tests/support/malformed.rs"]
mod malformed;

const RFC4475: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/rfc4475");

/// Seeds larger than this are left out: libFuzzer mutates every byte it is given, and the
/// cases past the agent's caps are refused at their first check anyway.
const MAX_SEED: usize = 16 * 1024;

/// Every message of both corpora, RFC 4475 first.
pub fn messages() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir(RFC4475) {
        let mut files: Vec<_> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "sip"))
            .collect();
        files.sort();
        out.extend(files.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    for transport in ["UDP", "TCP"] {
        let target = malformed::Target {
            transport,
            // The generator writes 127.0.0.1 into its messages and mutates it there.
            local: "127.0.0.1:5080".parse().expect("a literal address"),
        };
        out.extend(
            malformed::generate(target)
                .into_iter()
                .map(|c| c.data)
                .filter(|d| d.len() <= MAX_SEED),
        );
    }
    out
}

/// The messages that scan, for seeds taken from their parts.
pub fn parsed() -> Vec<Message> {
    let limits = Limits {
        max_size: 1 << 20,
        max_headers: 1024,
        max_line: 1 << 20,
    };
    messages()
        .into_iter()
        .filter_map(|m| Message::parse(Bytes::from(m), &limits, true).ok())
        .collect()
}

/// The URI-bearing values of the parsed messages: Request-URIs, name-addrs and Vias.
pub fn uris() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for m in parsed() {
        if let Some(r) = m.request_uri_str() {
            out.push(r.as_bytes().to_vec());
        }
        for h in [
            Hdr::From,
            Hdr::To,
            Hdr::Contact,
            Hdr::Route,
            Hdr::RecordRoute,
            Hdr::PAssertedIdentity,
            Hdr::Via,
        ] {
            out.extend(m.values_str(h).map(|v| v.as_bytes().to_vec()));
        }
    }
    out
}

/// The bodies of the parsed messages (SDP, and whatever else a peer puts there).
pub fn bodies() -> Vec<Vec<u8>> {
    parsed()
        .iter()
        .map(|m| m.body_bytes().to_vec())
        .filter(|b| !b.is_empty())
        .collect()
}

/// Writes `seeds` into `$SCAMGUARD_FUZZ_SEEDS` when it is set; without it, does nothing.
pub fn write_seeds(seeds: impl FnOnce() -> Vec<Vec<u8>>) {
    let Some(dir) = std::env::var_os("SCAMGUARD_FUZZ_SEEDS") else {
        return;
    };
    let dir = Path::new(&dir);
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    // The corpora's messages share most of their parts: each distinct seed once.
    let distinct: std::collections::BTreeSet<Vec<u8>> = seeds().into_iter().collect();
    for (i, s) in distinct.into_iter().enumerate() {
        // Names of their own, so a minimised corpus kept beside them is never overwritten.
        let _ = std::fs::write(dir.join(format!("seed-{i:05}")), s);
    }
}

/// Prefixes each seed with a selector byte, spread over `0..=255` so every path the byte
/// chooses starts with some seeds.
pub fn with_selectors(seeds: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    seeds
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = Vec::with_capacity(s.len() + 1);
            v.push((i.wrapping_mul(37) % 256) as u8);
            v.extend_from_slice(&s);
            v
        })
        .collect()
}
