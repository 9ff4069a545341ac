//! STIR certificates: reading PEM chains and checking them against the configured trust anchors
//! (signatures up the chain, validity dates, P-256/ECDSA-SHA256 only, which is what SHAKEN
//! credentials use). Pure: the bytes are handed in by whoever fetched or read them.
//!
//! Knows nothing of HTTP, files or caches; `crate::certs` does that I/O and keeps the results.

use std::fmt;

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256,
};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;

/// Why a certificate chain was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    /// Not PEM/DER we can read.
    Malformed(String),
    /// A key or signature algorithm other than P-256 / ECDSA-SHA256.
    Unsupported(String),
    /// A signature in the chain does not verify, or no anchor signed it.
    Untrusted(String),
    /// Outside its validity dates.
    Expired(String),
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainError::Malformed(s) => write!(f, "malformed certificate: {s}"),
            ChainError::Unsupported(s) => write!(f, "unsupported credential: {s}"),
            ChainError::Untrusted(s) => write!(f, "untrusted chain: {s}"),
            ChainError::Expired(s) => write!(f, "certificate not valid now: {s}"),
        }
    }
}

impl std::error::Error for ChainError {}

/// A leaf certificate whose chain reached a trust anchor: what a PASSporT check needs from it.
#[derive(Debug, Clone)]
pub struct TrustedCert {
    pub key: VerifyingKey,
    /// The narrowest validity over the chain, unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub subject: String,
    /// The anchor's subject, for the reason text.
    pub anchor: String,
}

/// One trust anchor (a root or a pinned intermediate).
#[derive(Debug, Clone)]
pub struct Anchor {
    subject_raw: Vec<u8>,
    key: VerifyingKey,
    pub name: String,
}

/// The configured trust anchors.
#[derive(Debug, Clone, Default)]
pub struct Anchors {
    anchors: Vec<Anchor>,
}

impl Anchors {
    /// Adds every certificate of a PEM text; `file` names it in errors.
    pub fn add_pem(&mut self, pem: &[u8], file: &str) -> Result<usize, String> {
        let ders = pem_chain(pem).map_err(|e| format!("{file}: {e}"))?;
        for (i, der) in ders.iter().enumerate() {
            let cert = parse(der).map_err(|e| format!("{file}: certificate {}: {e}", i + 1))?;
            let key = p256_key(&cert).map_err(|e| format!("{file}: certificate {}: {e}", i + 1))?;
            self.anchors.push(Anchor {
                subject_raw: cert.subject().as_raw().to_vec(),
                key,
                name: cert.subject().to_string(),
            });
        }
        Ok(ders.len())
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }
}

/// The DER certificates of a PEM text, in order (leaf first, as `x5u` serves them).
pub fn pem_chain(pem: &[u8]) -> Result<Vec<Vec<u8>>, ChainError> {
    let mut out = Vec::new();
    for p in Pem::iter_from_buffer(pem) {
        let p = p.map_err(|e| ChainError::Malformed(e.to_string()))?;
        if p.label == "CERTIFICATE" {
            out.push(p.contents);
        }
    }
    if out.is_empty() {
        return Err(ChainError::Malformed("no CERTIFICATE block".into()));
    }
    Ok(out)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, ChainError> {
    match X509Certificate::from_der(der) {
        Ok((_, c)) => Ok(c),
        Err(e) => Err(ChainError::Malformed(e.to_string())),
    }
}

fn p256_key(cert: &X509Certificate<'_>) -> Result<VerifyingKey, ChainError> {
    let spki = cert.public_key();
    let curve_ok = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .is_some_and(|oid| oid == OID_EC_P256);
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || !curve_ok {
        return Err(ChainError::Unsupported(format!(
            "key of {} is not P-256 ({})",
            cert.subject(),
            spki.algorithm.algorithm.to_id_string()
        )));
    }
    VerifyingKey::from_sec1_bytes(&spki.subject_public_key.data)
        .map_err(|_| ChainError::Malformed(format!("bad P-256 point in {}", cert.subject())))
}

fn check_signed_by(cert: &X509Certificate<'_>, key: &VerifyingKey) -> Result<(), ChainError> {
    if cert.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256 {
        return Err(ChainError::Unsupported(format!(
            "{} signed with {}",
            cert.subject(),
            cert.signature_algorithm.algorithm.to_id_string()
        )));
    }
    let sig = Signature::from_der(&cert.signature_value.data).map_err(|_| {
        ChainError::Malformed(format!("bad signature encoding in {}", cert.subject()))
    })?;
    key.verify(cert.tbs_certificate.as_ref(), &sig)
        .map_err(|_| {
            ChainError::Untrusted(format!("signature on {} does not verify", cert.subject()))
        })
}

/// Depth limit: SHAKEN chains are leaf, intermediate, root; anything much longer is abuse.
const MAX_CHAIN: usize = 5;

/// Checks `chain` (leaf first) up to one of `anchors` at `now_unix`.
pub fn verify_chain(
    chain: &[Vec<u8>],
    anchors: &Anchors,
    now_unix: i64,
) -> Result<TrustedCert, ChainError> {
    if chain.is_empty() {
        return Err(ChainError::Malformed("empty chain".into()));
    }
    if chain.len() > MAX_CHAIN {
        return Err(ChainError::Untrusted(format!(
            "chain of {} certificates",
            chain.len()
        )));
    }
    let certs: Vec<X509Certificate<'_>> =
        chain.iter().map(|d| parse(d)).collect::<Result<_, _>>()?;
    let leaf_key = p256_key(&certs[0])?;
    let mut not_before = i64::MIN;
    let mut not_after = i64::MAX;
    for (i, cert) in certs.iter().enumerate() {
        let v = cert.validity();
        not_before = not_before.max(v.not_before.timestamp());
        not_after = not_after.min(v.not_after.timestamp());
        if now_unix < v.not_before.timestamp() || now_unix > v.not_after.timestamp() {
            return Err(ChainError::Expired(format!(
                "{} (valid {} to {})",
                cert.subject(),
                v.not_before,
                v.not_after
            )));
        }
        // An anchor that signed this certificate ends the walk.
        let issuer = cert.issuer().as_raw();
        let by_anchor: Vec<&Anchor> = anchors
            .anchors
            .iter()
            .filter(|a| a.subject_raw == issuer)
            .collect();
        let mut last_err = None;
        for a in &by_anchor {
            match check_signed_by(cert, &a.key) {
                Ok(()) => {
                    return Ok(TrustedCert {
                        key: leaf_key,
                        not_before,
                        not_after,
                        subject: certs[0].subject().to_string(),
                        anchor: a.name.clone(),
                    })
                }
                Err(e) => last_err = Some(e),
            }
        }
        // Otherwise the next certificate in the chain must be this one's issuer, and a CA.
        let Some(next) = certs.get(i + 1) else {
            return Err(last_err.unwrap_or_else(|| {
                ChainError::Untrusted(format!(
                    "no trust anchor issued {} (issuer {})",
                    cert.subject(),
                    cert.issuer()
                ))
            }));
        };
        if next.subject().as_raw() != issuer {
            return Err(ChainError::Untrusted(format!(
                "{} is not the issuer of {}",
                next.subject(),
                cert.subject()
            )));
        }
        if !next.is_ca() {
            return Err(ChainError::Untrusted(format!(
                "{} is not a CA",
                next.subject()
            )));
        }
        check_signed_by(cert, &p256_key(next)?)?;
    }
    Err(ChainError::Untrusted(
        "chain ended without an anchor".into(),
    ))
}
