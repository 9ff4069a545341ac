//! Folding display names into comparison words, so that look-alike spellings of a brand compare
//! equal and a brand word inside another word does not: case, accents and punctuation go,
//! confusable letters (Cyrillic, Greek, full-width, mathematical) become their Latin prototypes
//! through Unicode's confusable skeletons (UTS #39, the `unicode-security` crate), and digits and
//! symbols that stand in for letters become those letters. What stays is one run of lowercase
//! ASCII with the word boundaries marked, so a matcher can ask whether a hit starts and ends on
//! a word.
//!
//! Knows nothing of brands or calls; the same fold is applied to patterns and to names.

/// The longest folded text kept. Phones show a few dozen characters of a display name; what
/// lies beyond this is not read, so a hostile name costs no more than a short one.
pub const MAX_FOLDED: usize = 120;

/// A display name folded once: its letters, and where its words start and end.
#[derive(Clone)]
pub struct Folded {
    buf: [u8; MAX_FOLDED],
    len: usize,
    /// Bit `i` set: a word starts at byte `i`.
    starts: u128,
    /// Bit `i` set: a word ends just before byte `i`.
    ends: u128,
}

impl std::fmt::Debug for Folded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut words = Vec::new();
        let mut from = 0;
        for i in 1..=self.len {
            if self.ends_word(i) {
                words.push(String::from_utf8_lossy(&self.buf[from..i]).into_owned());
                from = i;
            }
        }
        f.debug_tuple("Folded").field(&words).finish()
    }
}

/// What one input character folds to.
enum Fold {
    /// Letters to keep (at most two: `ß` is `ss`).
    Keep([u8; 2], usize),
    /// Nothing, and no word boundary either: accents, zero-width and other invisible characters.
    Ignore,
    /// A word boundary: spaces, punctuation, and characters of scripts with no Latin look-alike.
    Break,
}

fn ascii(c: u8) -> Option<u8> {
    Some(match c {
        b'1' | b'|' | b'!' | b'l' | b'L' | b'I' => b'i',
        b'A'..=b'Z' => c.to_ascii_lowercase(),
        b'a'..=b'z' => c,
        b'0' => b'o',
        b'3' => b'e',
        b'4' | b'@' => b'a',
        b'5' | b'$' => b's',
        b'6' | b'8' => b'b',
        b'7' => b't',
        b'9' => b'g',
        b'2' => b'2',
        _ => return None,
    })
}

/// Cyrillic and Greek capitals whose lowercase forms UTS #39 maps to small capitals rather than
/// Latin letters; in a display name they read as the Latin letter all the same.
fn small_capital(c: char) -> Option<u8> {
    Some(match c {
        'в' | 'ʙ' | 'β' => b'b',
        'н' | 'ʜ' => b'h',
        'к' | 'ᴋ' | 'κ' => b'k',
        'м' | 'ᴍ' => b'm',
        'т' | 'ᴛ' | 'τ' => b't',
        'α' => b'a',
        'ε' => b'e',
        'ι' => b'i',
        'ο' => b'o',
        'ρ' => b'p',
        'χ' => b'x',
        'υ' => b'u',
        _ => return None,
    })
}

fn fold_char(c: char) -> Fold {
    if c.is_ascii() {
        return match ascii(c as u8) {
            Some(b) => Fold::Keep([b, 0], 1),
            None => Fold::Break,
        };
    }
    if c == 'ß' || c == 'ẞ' {
        return Fold::Keep([b's', b's'], 2);
    }
    if unicode_normalization::char::is_combining_mark(c) {
        return Fold::Ignore;
    }
    if !c.is_alphanumeric() {
        // Symbols and spaces part words (`Microsoft™ Support`); invisible characters, which
        // UTS #39 skeletons drop, are read through (`Micro<zero-width space>soft`).
        let mut buf = [0u8; 4];
        let invisible = unicode_security::skeleton(c.encode_utf8(&mut buf))
            .next()
            .is_none();
        return if invisible { Fold::Ignore } else { Fold::Break };
    }
    let mut out = [0u8; 2];
    let mut n = 0;
    let mut other = false;
    let mut emit = |p: char| {
        let b = if p.is_ascii() {
            ascii(p as u8)
        } else if unicode_normalization::char::is_combining_mark(p) {
            return;
        } else {
            small_capital(p).or_else(|| small_capital(c))
        };
        match b {
            Some(b) if n < 2 => {
                out[n] = b;
                n += 1;
            }
            Some(_) => {}
            None => other = true,
        }
    };
    // Compatibility decomposition first (full-width, mathematical and ligature forms), then the
    // confusable prototype of whatever is still not ASCII.
    unicode_normalization::char::decompose_compatible(c, |d| {
        if d.is_ascii() || unicode_normalization::char::is_combining_mark(d) {
            emit(d);
        } else {
            let mut buf = [0u8; 4];
            for p in unicode_security::skeleton(d.encode_utf8(&mut buf)) {
                emit(p);
            }
        }
    });
    match (n, other) {
        (0, _) => Fold::Break,
        _ => Fold::Keep(out, n),
    }
}

impl Folded {
    /// Folds `s`. Words break at spaces and punctuation, at a lower-to-upper case change
    /// (`PayPal`, `MicrosoftSupport`), and a word of digits only is dropped: a number in a display
    /// name is not a name, and `0800` must not read as letters.
    pub fn new(s: &str) -> Folded {
        let mut f = Folded {
            buf: [0; MAX_FOLDED],
            len: 0,
            starts: 0,
            ends: 0,
        };
        // Where the current word started, whether it holds a letter, and the case of the last
        // letter seen (for camel-case breaks).
        let mut word: Option<(usize, bool)> = None;
        let mut last_lower = false;
        for c in s.chars() {
            let fold = fold_char(c);
            let camel = c.is_uppercase() && last_lower;
            if c.is_alphabetic() {
                last_lower = c.is_lowercase();
            } else if !matches!(fold, Fold::Ignore) {
                last_lower = false;
            }
            match fold {
                Fold::Ignore => {}
                Fold::Break => f.close(&mut word),
                Fold::Keep(bytes, n) => {
                    if camel {
                        f.close(&mut word);
                    }
                    if f.len + n > MAX_FOLDED {
                        // A word cut short could read as another word: drop it whole.
                        if let Some((start, _)) = word.take() {
                            f.len = start;
                        }
                        break;
                    }
                    let w = word.get_or_insert((f.len, false));
                    w.1 |= c.is_alphabetic();
                    let start = w.0;
                    for &b in &bytes[..n] {
                        f.push(b, start);
                    }
                }
            }
        }
        f.close(&mut word);
        f
    }

    fn push(&mut self, b: u8, word_start: usize) {
        // Two-letter look-alikes inside a word: `rn` reads as `m`, `vv` as `w`.
        if self.len > word_start {
            let prev = self.buf[self.len - 1];
            if (prev, b) == (b'r', b'n') {
                self.buf[self.len - 1] = b'm';
                return;
            }
            if (prev, b) == (b'v', b'v') {
                self.buf[self.len - 1] = b'w';
                return;
            }
        }
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn close(&mut self, word: &mut Option<(usize, bool)>) {
        if let Some((start, letter)) = word.take() {
            if !letter {
                self.len = start;
            } else if self.len > start {
                self.starts |= 1 << start;
                self.ends |= 1 << self.len;
            }
        }
    }

    /// The folded letters, words run together.
    pub fn text(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a word starts at byte `at`.
    pub fn starts_word(&self, at: usize) -> bool {
        at < MAX_FOLDED && self.starts & (1 << at) != 0
    }

    /// Whether a word ends just before byte `at`.
    pub fn ends_word(&self, at: usize) -> bool {
        at <= MAX_FOLDED && at > 0 && self.ends & (1 << at) != 0
    }
}

/// The skeleton of `s`: its folded letters with the word boundaries dropped. Patterns are
/// compared in this form.
pub fn skeleton(s: &str) -> String {
    String::from_utf8_lossy(Folded::new(s).text()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{skeleton, Folded};

    #[test]
    fn look_alikes_fold_together() {
        let same = [
            ("Microsoft", "Micr0soft"),
            ("Microsoft", "M1crosoft"),
            ("Microsoft", "Mícrosoft"),
            ("Microsoft", "Мicrosoft"),
            ("Microsoft", "MiCrOsOfT"),
            ("Microsoft", "Ｍｉｃｒｏｓｏｆｔ"),
            ("Microsoft", "𝐌𝐢𝐜𝐫𝐨𝐬𝐨𝐟𝐭"),
            ("Microsoft", "Micro\u{200B}soft"),
            ("Microsoft Support", "MICROSOFT  SUPPORT"),
            ("Microsoft Support", "microsoft-support"),
            ("Amazon", "Amaz0n"),
            ("Amazon", "Arnazon"),
            ("Amazon", "A.M.A.Z.O.N"),
            ("Amazon", "Ámazon"),
            ("Amazon", "Аmazon"),
            ("Amazon", "АМАΖОΝ"),
            ("PayPal", "PayPa1"),
            ("PayPal", "PаyPаl"),
            ("Windows Support", "W1ndows  Supp0rt"),
            ("Apple", "App1e"),
            ("Apple", "Αpple"),
            ("Straße", "Strasse"),
            ("Telefónica", "Telefonica"),
            ("Wells Fargo", "VVells Farg0"),
        ];
        for (a, b) in same {
            assert_eq!(skeleton(a), skeleton(b), "{a:?} vs {b:?}");
        }
        let different = [
            ("Microsoft", "Microtech"),
            ("Amazon", "Amazing"),
            ("Apple", "Ample"),
        ];
        for (a, b) in different {
            assert_ne!(skeleton(a), skeleton(b), "{a:?} vs {b:?}");
        }
    }

    fn words(s: &str) -> Vec<String> {
        let f = Folded::new(s);
        let t = f.text();
        let mut out = Vec::new();
        let mut from = None;
        for i in 0..=t.len() {
            if f.ends_word(i) {
                let s = from.take().expect("a word ends after it starts");
                out.push(String::from_utf8_lossy(&t[s..i]).into_owned());
            }
            if f.starts_word(i) {
                from = Some(i);
            }
        }
        assert!(from.is_none(), "every word ends: {s:?}");
        out
    }

    #[test]
    fn words_and_their_boundaries() {
        let cases: &[(&str, &[&str])] = &[
            ("Applebee's", &["appiebee", "s"]),
            ("Amazonas Grill", &["amazonas", "griii"]),
            ("MicrosoftSupport", &["microsoft", "support"]),
            ("PayPal", &["pay", "pai"]),
            ("AT&T", &["at", "t"]),
            ("I.R.S.", &["i", "r", "s"]),
            ("Call 0800 123 456", &["caii"]),
            ("O2 Kundenservice", &["o2", "kundenservice"]),
            ("Straße—Bäckerei", &["strasse", "backerei"]),
            ("山田 太郎", &[]),
            ("  ", &[]),
            ("", &[]),
            ("Micr\u{200B}osoft\u{301}", &["microsoft"]),
            ("HSBC UK", &["hsbc", "uk"]),
        ];
        for (s, want) in cases {
            assert_eq!(words(s), *want, "{s:?}");
        }
    }

    #[test]
    fn long_names_are_cut_not_refused() {
        let long = "Microsoft ".repeat(100);
        let f = Folded::new(&long);
        assert!(f.text().len() <= super::MAX_FOLDED);
        assert!(f.text().starts_with(b"microsoft"));
        let odd: String = (0..2000u32).filter_map(char::from_u32).collect();
        let f = Folded::new(&odd);
        assert!(f.text().len() <= super::MAX_FOLDED);
    }
}
