//! Folding display names to a comparison skeleton so that look-alike spellings of a brand compare
//! equal: case, accents, spacing and punctuation go, digits and symbols that stand in for letters
//! become those letters, and a few Cyrillic/Greek homoglyphs become their Latin twins.
//!
//! Knows nothing of brands or calls; the same fold is applied to patterns and to names.

use unicode_normalization::UnicodeNormalization;

/// The skeleton of `s`: lowercase ASCII letters and digits only, look-alikes folded.
///
/// Confusable pairs fold to one letter (`l`, `1`, `|`, `!` -> `i`; `0` -> `o`; `rn` -> `m`; `vv` ->
/// `w`), as in Unicode's confusable skeletons: the fold only has to be the same on both sides.
pub fn skeleton(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.nfkd() {
        if unicode_normalization::char::is_combining_mark(c) {
            continue;
        }
        let folded = match c {
            '1' | '|' | '!' | 'l' | 'L' | 'I' => 'i',
            'A'..='Z' => c.to_ascii_lowercase(),
            'a'..='z' => c,
            '0' => 'o',
            '3' => 'e',
            '4' | '@' => 'a',
            '5' | '$' => 's',
            '7' => 't',
            '8' => 'b',
            '2'..='9' => c,
            // Cyrillic and Greek letters that render like Latin ones.
            'а' | 'А' | 'α' | 'Α' => 'a',
            'в' | 'В' | 'β' | 'Β' => 'b',
            'с' | 'С' => 'c',
            'е' | 'Е' | 'ε' | 'Ε' => 'e',
            'н' | 'Н' | 'Η' => 'h',
            'і' | 'І' | 'ι' | 'Ι' => 'i',
            'к' | 'К' | 'κ' | 'Κ' => 'k',
            'м' | 'М' | 'Μ' => 'm',
            'о' | 'О' | 'ο' | 'Ο' => 'o',
            'р' | 'Р' | 'ρ' | 'Ρ' => 'p',
            'т' | 'Т' | 'τ' | 'Τ' => 't',
            'х' | 'Х' | 'χ' | 'Χ' => 'x',
            'у' | 'У' | 'Υ' => 'y',
            'ѕ' | 'Ѕ' => 's',
            'ß' => {
                out.push('s');
                's'
            }
            _ => continue,
        };
        out.push(folded);
    }
    // Two-letter look-alikes, after the single letters are settled.
    if out.contains("rn") || out.contains("vv") {
        out = out.replace("rn", "m").replace("vv", "w");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::skeleton;

    #[test]
    fn look_alikes_fold_together() {
        let same = [
            ("Microsoft", "Micr0soft"),
            ("Microsoft", "M1crosoft"),
            ("Microsoft", "Mícrosoft"),
            ("Microsoft", "Мicrosoft"),
            ("Microsoft", "MiCrOsOfT"),
            ("Microsoft Support", "MICROSOFT  SUPPORT"),
            ("Microsoft Support", "microsoft-support"),
            ("Amazon", "Amaz0n"),
            ("Amazon", "Arnazon"),
            ("Amazon", "A.M.A.Z.O.N"),
            ("Amazon", "Ámazon"),
            ("Windows Support", "W1ndows  Supp0rt"),
            ("Apple", "App1e"),
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
}
