//! TCP framing (`sip::framing`): a stream cut into messages by Content-Length, fed in chunks
//! of every size. The first byte sets the chunk size; the rest is the stream. No message
//! framed may exceed the cap, the bytes framed never exceed the bytes pushed, and nothing may
//! panic.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use scamguard::sip::framing::Framer;

/// Small, so that the cap is reached within the inputs libFuzzer makes.
const MAX: usize = 4096;

fn seeds() -> Vec<Vec<u8>> {
    // Two messages back to back: how a persistent connection carries them.
    let m = common::messages();
    let pairs = m
        .windows(2)
        .map(|w| [w[0].as_slice(), w[1].as_slice()].concat());
    common::with_selectors(pairs.collect())
}

fuzz_target!(
    init: common::write_seeds(seeds),
    |data: &[u8]| {
        let Some((&chunk, stream)) = data.split_first() else {
            return;
        };
        let chunk = usize::from(chunk).max(1);
        let mut f = Framer::new(MAX);
        let mut framed = 0usize;
        'feed: for piece in stream.chunks(chunk) {
            f.push(piece);
            loop {
                match f.next_message() {
                    Ok(Some(m)) => {
                        assert!(m.len() <= MAX, "a {} byte message over the {MAX} cap", m.len());
                        assert!(!m.is_empty(), "an empty message");
                        framed += m.len();
                        assert!(framed <= stream.len(), "framed more than was pushed");
                    }
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
);
