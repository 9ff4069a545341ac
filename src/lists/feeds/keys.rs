//! Ed25519 keys and the signature scheme of feed answers: `base64(Ed25519(version || "\n" ||
//! body))`, so that a version header cannot be changed without breaking the signature.
//!
//! Keys are files written once by `scamguard feeds keygen` (the private one mode 0600, never
//! overwritten) or base64 text in config. Knows nothing of feeds' contents, HTTP or the store.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, Verifier};
pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// Write a new key pair into `dir`: `feed.key` (base64 seed, mode 0600) and `feed.pub`.
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    use std::io::{Read, Write};
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let priv_path = dir.join("feed.key");
    let pub_path = dir.join("feed.pub");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&priv_path).map_err(|e| {
        format!(
            "{}: {e} (an existing key is never overwritten)",
            priv_path.display()
        )
    })?;
    writeln!(f, "{}", B64.encode(seed)).map_err(|e| format!("{}: {e}", priv_path.display()))?;
    f.sync_all()
        .map_err(|e| format!("{}: {e}", priv_path.display()))?;
    std::fs::write(
        &pub_path,
        format!("{}\n", B64.encode(key.verifying_key().as_bytes())),
    )
    .map_err(|e| format!("{}: {e}", pub_path.display()))?;
    Ok((priv_path, pub_path))
}

/// Read a private key file written by [`keygen`].
pub fn load_signing_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let raw = B64.decode(text.trim()).map_err(|e| {
        format!(
            "{}:1: expected base64 of a 32-byte key: {e}",
            path.display()
        )
    })?;
    let seed: [u8; 32] = raw
        .try_into()
        .map_err(|_| format!("{}:1: expected base64 of exactly 32 bytes", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A public key as written in config: base64 of 32 bytes.
pub fn parse_public_key(b64: &str) -> Result<VerifyingKey, String> {
    let raw = B64
        .decode(b64.trim())
        .map_err(|e| format!("expected base64 of a 32-byte Ed25519 key: {e}"))?;
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|_| "expected base64 of exactly 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

fn signed_message(version: u64, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + 24);
    m.extend_from_slice(version.to_string().as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m
}

/// `base64(Ed25519(version || "\n" || body))`.
pub fn sign(key: &SigningKey, version: u64, body: &[u8]) -> String {
    B64.encode(key.sign(&signed_message(version, body)).to_bytes())
}

/// Does `sig` (base64) sign `version || "\n" || body` under `key`?
pub fn verify(key: &VerifyingKey, version: u64, body: &[u8], sig: &str) -> bool {
    let Ok(raw) = B64.decode(sig.trim()) else {
        return false;
    };
    let Ok(bytes) = <[u8; 64]>::try_from(raw.as_slice()) else {
        return false;
    };
    key.verify(
        &signed_message(version, body),
        &Signature::from_bytes(&bytes),
    )
    .is_ok()
}

/// A signing key behind a plain struct, so callers outside need not name the crate's types.
pub struct SigningKeyHolder(pub SigningKey);
