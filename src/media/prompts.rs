//! The announcement prompts: loaded once at start from `prompts_dir`, checked, and pre-encoded
//! into 20 ms PCMU and PCMA frames so playback costs no codec work; chosen per call by the
//! callee's country code and an optional category (e.g. `tech-support`).
//!
//! File naming: `<lang>.wav` and optional `<lang>-<category>.wav`. Knows nothing of sockets,
//! sessions or SIP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::g711::Codec;
use super::{wav, MediaConfig, MediaError};

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;

/// One prompt, ready to send.
#[derive(Debug)]
pub struct Prompt {
    /// File stem, e.g. `en-tech-support`.
    pub name: String,
    /// Decoded samples, padded with silence to whole frames.
    pub samples: Vec<i16>,
    pcmu: Vec<[u8; FRAME]>,
    pcma: Vec<[u8; FRAME]>,
}

impl Prompt {
    pub fn from_samples(name: &str, samples: &[i16]) -> Prompt {
        let mut samples = samples.to_vec();
        let pad = (FRAME - samples.len() % FRAME) % FRAME;
        samples.extend(std::iter::repeat(0).take(pad));
        let enc = |c: Codec| {
            samples
                .chunks_exact(FRAME)
                .map(|ch| {
                    let mut f = [0u8; FRAME];
                    for (o, &s) in f.iter_mut().zip(ch) {
                        *o = c.encode(s);
                    }
                    f
                })
                .collect::<Vec<_>>()
        };
        Prompt {
            name: name.to_string(),
            pcmu: enc(Codec::Pcmu),
            pcma: enc(Codec::Pcma),
            samples,
        }
    }

    /// The pre-encoded 20 ms frames in `codec`.
    pub fn frames(&self, codec: Codec) -> &[[u8; FRAME]] {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }
}

/// Every prompt the config refers to.
#[derive(Debug)]
pub struct PromptSet {
    by_name: HashMap<String, Arc<Prompt>>,
    /// country calling code -> language
    country: HashMap<String, String>,
    default: String,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn load_file(path: &Path) -> Result<Vec<i16>, MediaError> {
    let bad = |what: String| MediaError::Config(format!("prompt {}: {what}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| {
        bad(format!(
            "{e}; expected an 8 kHz mono WAV (16-bit PCM or G.711)"
        ))
    })?;
    // A 60 s 16-bit prompt is 960 kB; refuse anything much larger before reading it.
    if meta.len() > 1_100_000 {
        return Err(bad(format!(
            "{} bytes; expected at most 60 s of 8 kHz audio",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    wav::decode(&bytes).map_err(|e| bad(e.to_string()))
}

impl PromptSet {
    /// Load and check every prompt the config refers to: `<lang>.wav` for each language in
    /// `prompts` and `default_prompt` (required), and any `<lang>-<category>.wav` found beside
    /// them (optional variants).
    pub fn load(cfg: &MediaConfig) -> Result<PromptSet, MediaError> {
        let dir = PathBuf::from(&cfg.prompts_dir);
        let mut langs: Vec<&String> = cfg.prompts.values().collect();
        langs.push(&cfg.default_prompt);
        for cc in cfg.prompts.keys() {
            if cc.is_empty() || cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) {
                return Err(MediaError::Config(format!(
                    "media.prompts: key {cc:?}: expected a country calling code of 1-3 digits"
                )));
            }
        }
        let mut by_name = HashMap::new();
        for lang in langs {
            if !valid_name(lang) {
                return Err(MediaError::Config(format!(
                    "media prompt name {lang:?}: expected lowercase letters, digits, '-' or '_'"
                )));
            }
            if by_name.contains_key(lang.as_str()) {
                continue;
            }
            let path = dir.join(format!("{lang}.wav"));
            let samples = load_file(&path)?;
            by_name.insert(lang.clone(), Arc::new(Prompt::from_samples(lang, &samples)));
        }
        // Variants: only for languages we use, so stray files cannot bloat memory.
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| MediaError::Config(format!("prompts_dir {}: {e}", dir.display())))?;
        let mut variants = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".wav") else {
                continue;
            };
            if let Some((lang, cat)) = stem.split_once('-') {
                if by_name.contains_key(lang) && valid_name(cat) {
                    variants.push((stem.to_string(), e.path()));
                }
            }
        }
        for (stem, path) in variants.into_iter().take(256) {
            let samples = load_file(&path)?;
            by_name.insert(
                stem.clone(),
                Arc::new(Prompt::from_samples(&stem, &samples)),
            );
        }
        Ok(PromptSet {
            by_name,
            country: cfg.prompts.clone().into_iter().collect(),
            default: cfg.default_prompt.clone(),
        })
    }

    /// The prompt for a callee. `callee` is a country calling code or a whole E.164 number
    /// (with or without `+`): the longest configured code that prefixes it picks the language,
    /// else `default_prompt`. With a `category`, `<lang>-<category>` is used when it exists.
    pub fn select(&self, callee: &str, category: Option<&str>) -> Arc<Prompt> {
        let lang = self.language(callee);
        if let Some(cat) = category {
            if let Some(p) = self.by_name.get(&format!("{lang}-{cat}")) {
                return p.clone();
            }
        }
        self.by_name
            .get(lang)
            .or_else(|| self.by_name.get(&self.default))
            .cloned()
            // load() guarantees the default exists; an empty prompt is the harmless fallback.
            .unwrap_or_else(|| Arc::new(Prompt::from_samples("silence", &[])))
    }

    /// The language for a number: the longest configured country code that prefixes it, else
    /// `default_prompt`.
    fn language(&self, number: &str) -> &String {
        let digits = number.strip_prefix('+').unwrap_or(number);
        (1..=3.min(digits.len()))
            .rev()
            .find_map(|n| digits.get(..n).and_then(|p| self.country.get(p)))
            .unwrap_or(&self.default)
    }

    /// The prompt for `category` only, never the general warning: `<lang>-<category>` for the
    /// listener's number, else `<default_prompt>-<category>`, else `None`. For prompts that say
    /// something else than "this call is suspected to be a scam" (the callback prompts).
    pub fn select_exact(&self, number: &str, category: &str) -> Option<Arc<Prompt>> {
        [self.language(number), &self.default]
            .into_iter()
            .find_map(|lang| self.by_name.get(&format!("{lang}-{category}")))
            .cloned()
    }

    /// Whether any language has a prompt for `category` (`<lang>-<category>.wav`).
    pub fn has_category(&self, category: &str) -> bool {
        self.by_name
            .keys()
            .any(|n| n.split_once('-').is_some_and(|(_, cat)| cat == category))
    }

    /// Names of the loaded prompts, sorted (for `validate` output and logs).
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }
}
