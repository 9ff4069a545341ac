//! Splices on received bytes: a list of (range, replacement) edits applied in one copy, so a
//! forwarded message keeps every byte we did not mean to change.
//!
//! Knows nothing of SIP; callers compute the ranges from the message index.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// Pending edits over one buffer. Inserts at the same position keep the order they were added.
#[derive(Debug, Default)]
pub struct Splice {
    edits: Vec<(Range<usize>, Vec<u8>)>,
}

impl Splice {
    pub fn new() -> Splice {
        Splice {
            edits: Vec::with_capacity(8),
        }
    }

    pub fn insert(&mut self, at: usize, text: impl Into<Vec<u8>>) {
        self.edits.push((at..at, text.into()));
    }

    pub fn replace(&mut self, r: Range<usize>, text: impl Into<Vec<u8>>) {
        self.edits.push((r, text.into()));
    }

    pub fn delete(&mut self, r: Range<usize>) {
        self.edits.push((r, Vec::new()));
    }

    /// Apply to `buf[..end]` (bytes past `end` are dropped). Overlapping edits are skipped.
    pub fn apply(mut self, buf: &[u8], end: usize) -> Bytes {
        self.edits.sort_by_key(|(r, _)| (r.start, r.end));
        let extra: usize = self.edits.iter().map(|(_, t)| t.len()).sum();
        let mut out = BytesMut::with_capacity(end + extra);
        let mut pos = 0;
        for (r, text) in &self.edits {
            if r.start < pos || r.end > end {
                continue;
            }
            out.extend_from_slice(&buf[pos..r.start]);
            out.extend_from_slice(text);
            pos = r.end;
        }
        out.extend_from_slice(&buf[pos..end]);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_in_order() {
        let buf = b"hello world, tail";
        let mut s = Splice::new();
        s.insert(0, "A:");
        s.replace(6..11, "there");
        s.insert(0, "B:");
        s.delete(11..12);
        assert_eq!(&s.apply(buf, 12)[..], b"A:B:hello there");
    }
}
