//! STIR/SHAKEN verification (RFC 8224, 8225, 8588): parse the `Identity` value, check the JOSE
//! header and PASSporT claims, the freshness of `iat`, that `orig.tn` is the screened caller and
//! `dest.tn` holds the callee, and the ES256 signature with the key of an `x5u` certificate whose
//! chain a [`CertLookup`] has already checked against the trust anchors. Also honours `verstat`
//! from trusted peers (3GPP TS 24.229 7.2A.20).
//!
//! A certificate not yet in the cache gives [`StirOutcome::Pending`] ("unknown, fetch pending"):
//! the lookup starts a background fetch and this call goes on unattested instead of waiting.
//! Knows nothing of HTTP, files, clocks or SIP syntax beyond the header value itself.

use std::fmt;
use std::sync::Arc;

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde::Deserialize;

pub use super::certchain::TrustedCert;

/// Base64url as JWS writes it (no padding), tolerating padding from sloppy signers.
const B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the certificate cache knows about an `x5u` URL.
#[derive(Debug, Clone)]
pub enum CertState {
    /// Fetched, chain checked against the trust anchors.
    Ready(Arc<TrustedCert>),
    /// Not known yet; a background fetch has been asked for.
    Pending,
    /// The fetch or the chain check failed (cached for a while, so one bad URL costs one fetch).
    Failed(String),
}

/// The certificate cache as the pure check sees it. Implementations must answer at once: no
/// network or file access inside `lookup` (see `crate::certs::CertCache`).
pub trait CertLookup: Send + Sync {
    fn lookup(&self, x5u: &str) -> CertState;
}

/// No certificate is ever at hand: every PASSporT stays pending. For engines that run with STIR
/// off, and for tests.
pub struct NoCertificates;

impl CertLookup for NoCertificates {
    fn lookup(&self, _: &str) -> CertState {
        CertState::Pending
    }
}

/// `[signals.stir]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StirConfig {
    pub enabled: bool,
    /// How old (or how far in the future) `iat` may be.
    pub max_age_secs: i64,
    /// Scores each outcome adds to the verdict.
    pub score_a: i32,
    pub score_b: i32,
    pub score_c: i32,
    pub score_failed: i32,
    pub score_absent: i32,
    /// No PASSporT and no `verstat` on a call from an origin that signs most of its calls
    /// (learned per source, see `origins`): the path that should have attested it did not,
    /// which is what a C attestation says, so it weighs the same by default.
    pub score_absent_signing_origin: i32,
    pub score_pending: i32,
    /// A PASSporT that verifies but was already verified on another call within its freshness
    /// window (`signals::replay`; fleet-wide with `[fleet]`). Its attestation is not credited;
    /// a B2BUA's route advance can present the same PASSporT on a new call, so this weighs like
    /// a C attestation and never warns alone.
    pub score_replayed: i32,
}

impl Default for StirConfig {
    fn default() -> Self {
        StirConfig {
            enabled: true,
            max_age_secs: 60,
            score_a: 0,
            score_b: 10,
            score_c: 20,
            score_failed: 60,
            score_absent: 0,
            score_absent_signing_origin: 20,
            score_pending: 0,
            score_replayed: 20,
        }
    }
}

/// SHAKEN attestation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attest {
    /// Full: the signer knows the customer and that it may use the number.
    A,
    /// Partial: the signer knows the customer, not the number.
    B,
    /// Gateway: the signer only knows where the call entered its network.
    C,
}

impl Attest {
    pub fn as_str(self) -> &'static str {
        match self {
            Attest::A => "A",
            Attest::B => "B",
            Attest::C => "C",
        }
    }
}

/// RFC 8224 failure codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StirCode {
    /// 428 Use Identity Header
    NoIdentity,
    /// 436 Bad Identity Info
    BadInfo,
    /// 437 Unsupported Credential
    Unsupported,
    /// 438 Invalid Identity Header
    Invalid,
    /// 403 Stale Date
    Stale,
}

impl StirCode {
    pub fn status(self) -> u16 {
        match self {
            StirCode::NoIdentity => 428,
            StirCode::BadInfo => 436,
            StirCode::Unsupported => 437,
            StirCode::Invalid => 438,
            StirCode::Stale => 403,
        }
    }

    /// The code behind a status, as a verdict's `stir` reason names it.
    pub fn from_status(status: u16) -> Option<StirCode> {
        [
            StirCode::NoIdentity,
            StirCode::BadInfo,
            StirCode::Unsupported,
            StirCode::Invalid,
            StirCode::Stale,
        ]
        .into_iter()
        .find(|c| c.status() == status)
    }

    pub fn phrase(self) -> &'static str {
        match self {
            StirCode::NoIdentity => "Use Identity Header",
            StirCode::BadInfo => "Bad Identity Info",
            StirCode::Unsupported => "Unsupported Credential",
            StirCode::Invalid => "Invalid Identity Header",
            StirCode::Stale => "Stale Date",
        }
    }
}

/// The result of checking a call's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StirOutcome {
    /// Signature, chain, freshness and numbers all check out.
    Verified {
        attest: Attest,
        orig: String,
        origid: Option<String>,
        x5u: String,
    },
    /// No usable `Identity`, but a trusted peer says `verstat=TN-Validation-Passed`.
    PeerVerified,
    /// The certificate is being fetched; nothing can be said yet.
    Pending { x5u: String },
    /// Failed with an RFC 8224 code and a short why.
    Failed { code: StirCode, why: String },
    /// No `Identity` and no trusted `verstat` (RFC 8224's 428 if the operator requires one).
    Absent,
    /// The PASSporT verifies, but it was already verified on another call within its freshness
    /// window: on this agent, or (`fleet`) on another agent of the fleet. Its attestation is
    /// not credited; no RFC 8224 code, so no policy rejects it for this alone.
    Replayed {
        attest: Attest,
        x5u: String,
        fleet: bool,
    },
}

impl StirOutcome {
    pub fn attest(&self) -> Option<Attest> {
        match self {
            StirOutcome::Verified { attest, .. } => Some(*attest),
            _ => None,
        }
    }

    /// The RFC 8224 code to reject with or to carry in `Reason: STIR;cause=` (RFC 9410).
    pub fn code(&self) -> Option<StirCode> {
        match self {
            StirOutcome::Failed { code, .. } => Some(*code),
            StirOutcome::Absent => Some(StirCode::NoIdentity),
            _ => None,
        }
    }
}

impl fmt::Display for StirOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StirOutcome::Verified { attest, orig, .. } => {
                write!(f, "verified, attestation {} for +{orig}", attest.as_str())
            }
            StirOutcome::PeerVerified => f.write_str("TN-Validation-Passed from a trusted peer"),
            StirOutcome::Pending { x5u } => {
                write!(f, "unknown: certificate {x5u} is being fetched")
            }
            StirOutcome::Failed { code, why } => {
                write!(f, "{} {}: {why}", code.status(), code.phrase())
            }
            StirOutcome::Absent => f.write_str("no identity"),
            StirOutcome::Replayed { attest, fleet, .. } => write!(
                f,
                "replayed: this PASSporT (attestation {}) was verified on another call {} within its freshness window; its attestation is not credited",
                attest.as_str(),
                if *fleet { "on another agent of the fleet" } else { "here" }
            ),
        }
    }
}

/// What verification needs from a call.
#[derive(Debug, Clone, Copy, Default)]
pub struct StirInput<'a> {
    /// The `Identity` header value.
    pub identity: Option<&'a str>,
    /// The screened caller, E.164.
    pub caller: Option<&'a str>,
    /// The callee, E.164.
    pub callee: Option<&'a str>,
    /// The `Date` header as unix seconds (rebuilds the claims of a compact form).
    pub date_unix: Option<i64>,
    /// `verstat` as received, and whether its sender is a trusted peer.
    pub verstat: Option<&'a str>,
    pub from_trusted_peer: bool,
}

/// The parts of an `Identity` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeader<'a> {
    pub header: &'a str,
    /// Empty in the compact form.
    pub claims: &'a str,
    pub signature: &'a str,
    pub info: Option<&'a str>,
    pub alg: Option<&'a str>,
    pub ppt: Option<&'a str>,
}

fn fail(code: StirCode, why: impl Into<String>) -> StirOutcome {
    StirOutcome::Failed {
        code,
        why: why.into(),
    }
}

/// The signature of an `Identity` value, which names the PASSporT: a signature is made once
/// per signing (ES256 signatures are randomised), so the same one on two calls is a replay.
pub fn identity_signature(value: &str) -> Option<&str> {
    let token = value.trim().split(';').next()?.trim();
    token.rsplit('.').next().filter(|s| !s.is_empty())
}

/// Splits `token;info=<url>;alg=ES256;ppt=shaken`.
pub fn parse_identity(value: &str) -> Result<IdentityHeader<'_>, StirOutcome> {
    let mut parts = value.trim().split(';');
    let token = parts.next().unwrap_or("").trim();
    let mut pieces = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(fail(
            StirCode::Invalid,
            "token is not header.claims.signature",
        ));
    };
    if header.is_empty() || signature.is_empty() {
        return Err(fail(StirCode::Invalid, "empty header or signature"));
    }
    let mut id = IdentityHeader {
        header,
        claims,
        signature,
        info: None,
        alg: None,
        ppt: None,
    };
    for p in parts {
        let (name, val) = p
            .split_once('=')
            .map_or((p.trim(), ""), |(n, v)| (n.trim(), v.trim()));
        match name.to_ascii_lowercase().as_str() {
            "info" => {
                let url = val.strip_prefix('<').and_then(|v| v.strip_suffix('>'));
                match url {
                    Some(u) if !u.is_empty() => id.info = Some(u),
                    _ => return Err(fail(StirCode::BadInfo, "info is not <url>")),
                }
            }
            "alg" => id.alg = Some(val),
            "ppt" => id.ppt = Some(val.trim_matches('"')),
            _ => {}
        }
    }
    Ok(id)
}

#[derive(Deserialize)]
struct Jose {
    alg: Option<String>,
    typ: Option<String>,
    ppt: Option<String>,
    x5u: Option<String>,
}

#[derive(Deserialize)]
struct Orig {
    tn: Option<String>,
}

#[derive(Deserialize)]
struct Dest {
    #[serde(default)]
    tn: Vec<String>,
}

#[derive(Deserialize)]
struct Claims {
    attest: Option<String>,
    orig: Option<Orig>,
    dest: Option<Dest>,
    iat: Option<i64>,
    origid: Option<String>,
}

/// Digits of a telephone number as PASSporT canonicalises it (RFC 8224 8.3): no `+`, no
/// separators.
fn tn_digits(s: &str) -> impl Iterator<Item = u8> + '_ {
    s.bytes().filter(u8::is_ascii_digit)
}

fn same_tn(a: &str, b: &str) -> bool {
    tn_digits(a).eq(tn_digits(b)) && tn_digits(a).next().is_some()
}

/// Canonical claims for a compact form (RFC 8225 section 9: keys sorted, no whitespace).
fn compact_claims(caller: &str, callee: &str, iat: i64) -> String {
    let d = |s: &str| String::from_utf8(tn_digits(s).collect()).unwrap_or_default();
    format!(
        "{{\"dest\":{{\"tn\":[\"{}\"]}},\"iat\":{iat},\"orig\":{{\"tn\":\"{}\"}}}}",
        d(callee),
        d(caller)
    )
}

fn trusted_verstat(input: &StirInput<'_>) -> Option<&'static str> {
    if !input.from_trusted_peer {
        return None;
    }
    match input.verstat.map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("TN-Validation-Passed") => Some("passed"),
        Some(v) if v.eq_ignore_ascii_case("TN-Validation-Failed") => Some("failed"),
        Some(v) if v.eq_ignore_ascii_case("No-TN-Validation") => Some("none"),
        _ => None,
    }
}

/// Verifies the call's identity. `now_unix` is the time to judge `iat` and certificates by.
pub fn verify(
    input: &StirInput<'_>,
    certs: &dyn CertLookup,
    cfg: &StirConfig,
    now_unix: i64,
) -> StirOutcome {
    let peer = trusted_verstat(input);
    let Some(value) = input.identity.filter(|v| !v.trim().is_empty()) else {
        return match peer {
            Some("passed") => StirOutcome::PeerVerified,
            Some("failed") => fail(
                StirCode::Invalid,
                "trusted peer reported TN-Validation-Failed",
            ),
            _ => StirOutcome::Absent,
        };
    };
    match verify_identity(value, input, certs, cfg, now_unix) {
        // A trusted peer that already verified covers for our cold cache.
        StirOutcome::Pending { .. } if peer == Some("passed") => StirOutcome::PeerVerified,
        other => other,
    }
}

// Long on purpose: RFC 8224/8588 checks in the order the RFCs give them, each returning its own code.
#[allow(clippy::too_many_lines)]
fn verify_identity(
    value: &str,
    input: &StirInput<'_>,
    certs: &dyn CertLookup,
    cfg: &StirConfig,
    now_unix: i64,
) -> StirOutcome {
    let id = match parse_identity(value) {
        Ok(id) => id,
        Err(o) => return o,
    };
    let Some(info) = id.info else {
        return fail(StirCode::BadInfo, "no info parameter");
    };
    if id.alg.is_some_and(|a| a != "ES256") {
        return fail(
            StirCode::Unsupported,
            format!("alg={}", id.alg.unwrap_or("")),
        );
    }
    let Ok(jose) = B64.decode(id.header) else {
        return fail(StirCode::Invalid, "header is not base64url");
    };
    let Ok(jose) = serde_json::from_slice::<Jose>(&jose) else {
        return fail(StirCode::Invalid, "header is not JSON");
    };
    if jose.alg.as_deref() != Some("ES256") {
        return fail(
            StirCode::Unsupported,
            format!("header alg {:?}", jose.alg.as_deref().unwrap_or("")),
        );
    }
    if jose.typ.as_deref() != Some("passport") {
        return fail(
            StirCode::Invalid,
            format!("typ {:?}", jose.typ.as_deref().unwrap_or("")),
        );
    }
    if id.ppt.is_some() && id.ppt != jose.ppt.as_deref() {
        return fail(StirCode::Invalid, "ppt parameter differs from the header's");
    }
    let shaken = jose.ppt.as_deref() == Some("shaken");
    if jose.ppt.as_deref().is_some_and(|p| p != "shaken") {
        return fail(
            StirCode::Unsupported,
            format!("ppt {:?}", jose.ppt.as_deref().unwrap_or("")),
        );
    }
    let Some(x5u) = jose.x5u.as_deref() else {
        return fail(StirCode::BadInfo, "no x5u");
    };
    if x5u != info {
        return fail(StirCode::BadInfo, "x5u differs from info");
    }
    let (Some(caller), Some(callee)) = (input.caller, input.callee) else {
        return fail(StirCode::Invalid, "no caller or callee number to compare");
    };

    // Claims: carried (full form) or rebuilt from the call (compact form).
    let rebuilt;
    let claims_b64: &str = if id.claims.is_empty() {
        if shaken {
            return fail(StirCode::Invalid, "compact form cannot carry shaken claims");
        }
        let Some(date) = input.date_unix else {
            return fail(StirCode::Invalid, "compact form without a Date");
        };
        rebuilt = B64.encode(compact_claims(caller, callee, date));
        &rebuilt
    } else {
        id.claims
    };
    let Ok(raw) = B64.decode(claims_b64) else {
        return fail(StirCode::Invalid, "claims are not base64url");
    };
    let Ok(claims) = serde_json::from_slice::<Claims>(&raw) else {
        return fail(StirCode::Invalid, "claims are not JSON");
    };
    let Some(iat) = claims.iat else {
        return fail(StirCode::Invalid, "no iat");
    };
    if (now_unix - iat).abs() > cfg.max_age_secs {
        return fail(
            StirCode::Stale,
            format!("iat {iat} is {}s from now", now_unix - iat),
        );
    }
    let orig = claims.orig.and_then(|o| o.tn).unwrap_or_default();
    if !same_tn(&orig, caller) {
        return fail(
            StirCode::Invalid,
            format!("orig.tn {orig} is not the caller {caller}"),
        );
    }
    if !claims
        .dest
        .is_some_and(|d| d.tn.iter().any(|t| same_tn(t, callee)))
    {
        return fail(
            StirCode::Invalid,
            format!("dest.tn does not name the callee {callee}"),
        );
    }
    let attest = match (shaken, claims.attest.as_deref()) {
        (true, Some("A")) => Attest::A,
        (true, Some("B")) => Attest::B,
        (true, Some("C")) => Attest::C,
        (true, other) => {
            return fail(
                StirCode::Invalid,
                format!("attest {:?}", other.unwrap_or("")),
            )
        }
        // A plain PASSporT proves the number as a full attestation would.
        (false, _) => Attest::A,
    };
    if shaken && claims.origid.as_deref().map_or(true, str::is_empty) {
        return fail(StirCode::Invalid, "no origid");
    }

    let cert = match certs.lookup(x5u) {
        CertState::Ready(c) => c,
        CertState::Pending => {
            return StirOutcome::Pending {
                x5u: x5u.to_string(),
            }
        }
        CertState::Failed(why) => return fail(StirCode::BadInfo, why),
    };
    if now_unix < cert.not_before || now_unix > cert.not_after {
        return fail(
            StirCode::Unsupported,
            format!("certificate {} is outside its validity", cert.subject),
        );
    }
    let Ok(sig) = B64.decode(id.signature) else {
        return fail(StirCode::Invalid, "signature is not base64url");
    };
    if sig.len() != 64 {
        return fail(StirCode::Invalid, "signature is not 64 bytes r||s");
    }
    let mut signed = Vec::with_capacity(id.header.len() + 1 + claims_b64.len());
    signed.extend_from_slice(id.header.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(claims_b64.as_bytes());
    // The one ECDSA verification per signed call is the costliest step of a decision: ring's
    // P-256 takes a fraction of the pure-Rust p256 crate's time (which stays for the chain
    // checks, done once per certificate fetch). JWS ES256 is r||s, ring's FIXED encoding.
    let point = cert.key.to_encoded_point(false);
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point.as_bytes());
    if key.verify(&signed, &sig).is_err() {
        return fail(StirCode::Invalid, "signature does not verify");
    }
    StirOutcome::Verified {
        attest,
        orig: String::from_utf8(tn_digits(&orig).collect()).unwrap_or_default(),
        origid: claims.origid,
        x5u: x5u.to_string(),
    }
}

/// Builds a signed `Identity` value; for tests, benches and tools that need a real PASSporT.
pub fn sign_identity(
    key: &p256::ecdsa::SigningKey,
    x5u: &str,
    claims_json: &str,
    compact: bool,
) -> String {
    use p256::ecdsa::signature::Signer;
    let ppt = if claims_json.contains("\"attest\"") {
        ",\"ppt\":\"shaken\""
    } else {
        ""
    };
    let header = B64.encode(format!(
        "{{\"alg\":\"ES256\"{ppt},\"typ\":\"passport\",\"x5u\":\"{x5u}\"}}"
    ));
    let claims = B64.encode(claims_json);
    let sig: p256::ecdsa::Signature = key.sign(format!("{header}.{claims}").as_bytes());
    let sig = B64.encode(sig.to_bytes());
    let shown = if compact { "" } else { claims.as_str() };
    let ppt_param = if ppt.is_empty() { "" } else { ";ppt=shaken" };
    format!("{header}.{shown}.{sig};info=<{x5u}>;alg=ES256{ppt_param}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use std::collections::HashMap;

    struct Fixed(HashMap<String, CertState>);
    impl CertLookup for Fixed {
        fn lookup(&self, x5u: &str) -> CertState {
            self.0.get(x5u).cloned().unwrap_or(CertState::Pending)
        }
    }

    const NOW: i64 = 1_790_000_000;
    const URL: &str = "http://cert.example.net/sp.pem";

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32].into()).unwrap()
    }

    fn certs(k: &SigningKey) -> Fixed {
        let c = TrustedCert {
            key: *k.verifying_key(),
            not_before: NOW - 86_400,
            not_after: NOW + 86_400,
            subject: "CN=SHAKEN test SP".into(),
            anchor: "CN=test root".into(),
        };
        Fixed(HashMap::from([
            (URL.to_string(), CertState::Ready(Arc::new(c))),
            (
                "http://gone.example/x.pem".to_string(),
                CertState::Failed("HTTP 404".into()),
            ),
        ]))
    }

    fn claims(attest: &str, orig: &str, dest: &str, iat: i64) -> String {
        format!("{{\"attest\":\"{attest}\",\"dest\":{{\"tn\":[\"{dest}\"]}},\"iat\":{iat},\"orig\":{{\"tn\":\"{orig}\"}},\"origid\":\"de305d54-75b4-431b-adb2-eb6b9e546014\"}}")
    }

    fn run(identity: &str, caller: &str, callee: &str) -> StirOutcome {
        let k = key(7);
        let input = StirInput {
            identity: Some(identity),
            caller: Some(caller),
            callee: Some(callee),
            ..Default::default()
        };
        verify(&input, &certs(&k), &StirConfig::default(), NOW)
    }

    fn code(o: &StirOutcome) -> Option<u16> {
        o.code().map(StirCode::status)
    }

    #[test]
    fn passports_table() {
        let k = key(7);
        let forger = key(9);
        let good = sign_identity(
            &k,
            URL,
            &claims("A", "12027620143", "442071838750", NOW - 5),
            false,
        );
        let tampered = {
            // Same header and signature, claims swapped for another caller's.
            let other = sign_identity(
                &k,
                URL,
                &claims("A", "12027620199", "442071838750", NOW - 5),
                false,
            );
            let mut g: Vec<&str> = good.splitn(3, '.').collect();
            let o: Vec<&str> = other.splitn(3, '.').collect();
            g[1] = o[1];
            g.join(".")
        };
        type Case = (
            String,
            &'static str,
            &'static str,
            Option<Attest>,
            Option<u16>,
        );
        let cases: Vec<Case> = vec![
            (
                good.clone(),
                "+12027620143",
                "+442071838750",
                Some(Attest::A),
                None,
            ),
            (
                sign_identity(
                    &k,
                    URL,
                    &claims("B", "12027620143", "442071838750", NOW),
                    false,
                ),
                "+12027620143",
                "+442071838750",
                Some(Attest::B),
                None,
            ),
            (
                sign_identity(
                    &k,
                    URL,
                    &claims("C", "+1-202-762-0143", "442071838750", NOW + 30),
                    false,
                ),
                "+12027620143",
                "+442071838750",
                Some(Attest::C),
                None,
            ),
            (
                sign_identity(
                    &forger,
                    URL,
                    &claims("A", "12027620143", "442071838750", NOW),
                    false,
                ),
                "+12027620143",
                "+442071838750",
                None,
                Some(438),
            ),
            (
                tampered.clone(),
                "+12027620199",
                "+442071838750",
                None,
                Some(438),
            ),
            (
                sign_identity(
                    &k,
                    URL,
                    &claims("A", "12027620143", "442071838750", NOW - 61),
                    false,
                ),
                "+12027620143",
                "+442071838750",
                None,
                Some(403),
            ),
            (
                sign_identity(
                    &k,
                    URL,
                    &claims("A", "12027620143", "442071838750", NOW + 600),
                    false,
                ),
                "+12027620143",
                "+442071838750",
                None,
                Some(403),
            ),
            (
                good.clone(),
                "+12027620144",
                "+442071838750",
                None,
                Some(438),
            ),
            (
                good.clone(),
                "+12027620143",
                "+442071838751",
                None,
                Some(438),
            ),
            (
                sign_identity(
                    &k,
                    URL,
                    &claims("D", "12027620143", "442071838750", NOW),
                    false,
                ),
                "+12027620143",
                "+442071838750",
                None,
                Some(438),
            ),
            (
                sign_identity(
                    &k,
                    "http://gone.example/x.pem",
                    &claims("A", "12027620143", "442071838750", NOW),
                    false,
                ),
                "+12027620143",
                "+442071838750",
                None,
                Some(436),
            ),
            (
                good.replace(";info=<http://cert.example.net/sp.pem>", ""),
                "+12027620143",
                "+442071838750",
                None,
                Some(436),
            ),
            (
                good.replace(
                    ";info=<http://cert.example.net/sp.pem>",
                    ";info=<http://other.example/x.pem>",
                ),
                "+12027620143",
                "+442071838750",
                None,
                Some(436),
            ),
            (
                good.replace("alg=ES256", "alg=RS256"),
                "+12027620143",
                "+442071838750",
                None,
                Some(437),
            ),
            (
                good.replace("ppt=shaken", "ppt=div"),
                "+12027620143",
                "+442071838750",
                None,
                Some(438),
            ),
            (
                "garbage".into(),
                "+12027620143",
                "+442071838750",
                None,
                Some(438),
            ),
            (
                "a.b.c.d;info=<x>".into(),
                "+12027620143",
                "+442071838750",
                None,
                Some(438),
            ),
            (
                "!!!.e30.sig;info=<http://cert.example.net/sp.pem>".into(),
                "+12027620143",
                "+442071838750",
                None,
                Some(438),
            ),
        ];
        for (i, (id, caller, callee, attest, want_code)) in cases.iter().enumerate() {
            let o = run(id, caller, callee);
            assert_eq!(
                (o.attest(), code(&o)),
                (*attest, *want_code),
                "case {i}: {o}"
            );
        }
    }

    #[test]
    fn compact_form_and_pending_and_verstat() {
        let k = key(7);
        let compact = sign_identity(
            &k,
            URL,
            &compact_claims("+4930123456", "+34912345678", NOW - 2),
            true,
        );
        assert!(compact.contains(".."), "{compact}");
        let input = StirInput {
            identity: Some(&compact),
            caller: Some("+4930123456"),
            callee: Some("+34912345678"),
            date_unix: Some(NOW - 2),
            ..Default::default()
        };
        let c = certs(&k);
        assert_eq!(
            verify(&input, &c, &StirConfig::default(), NOW).attest(),
            Some(Attest::A)
        );
        let wrong_date = StirInput {
            date_unix: Some(NOW - 3),
            ..input
        };
        assert_eq!(
            code(&verify(&wrong_date, &c, &StirConfig::default(), NOW)),
            Some(438)
        );

        let unknown = sign_identity(
            &k,
            "http://new.example/c.pem",
            &claims("A", "61291234567", "61412345678", NOW),
            false,
        );
        let base = StirInput {
            identity: Some(&unknown),
            caller: Some("+61291234567"),
            callee: Some("+61412345678"),
            ..Default::default()
        };
        let cases: &[(StirInput<'_>, StirOutcome)] = &[
            (
                base,
                StirOutcome::Pending {
                    x5u: "http://new.example/c.pem".into(),
                },
            ),
            (
                StirInput {
                    verstat: Some("TN-Validation-Passed"),
                    from_trusted_peer: true,
                    ..base
                },
                StirOutcome::PeerVerified,
            ),
            (
                StirInput {
                    verstat: Some("TN-Validation-Passed"),
                    from_trusted_peer: false,
                    ..base
                },
                StirOutcome::Pending {
                    x5u: "http://new.example/c.pem".into(),
                },
            ),
            (
                StirInput {
                    identity: None,
                    verstat: Some("TN-Validation-Passed"),
                    from_trusted_peer: true,
                    ..base
                },
                StirOutcome::PeerVerified,
            ),
            (
                StirInput {
                    identity: None,
                    verstat: Some("TN-Validation-Passed"),
                    from_trusted_peer: false,
                    ..base
                },
                StirOutcome::Absent,
            ),
            (
                StirInput {
                    identity: None,
                    verstat: Some("No-TN-Validation"),
                    from_trusted_peer: true,
                    ..base
                },
                StirOutcome::Absent,
            ),
            (
                StirInput {
                    identity: None,
                    verstat: Some("TN-Validation-Failed"),
                    from_trusted_peer: true,
                    ..base
                },
                fail(
                    StirCode::Invalid,
                    "trusted peer reported TN-Validation-Failed",
                ),
            ),
            (
                StirInput {
                    identity: None,
                    ..base
                },
                StirOutcome::Absent,
            ),
        ];
        for (i, (input, want)) in cases.iter().enumerate() {
            assert_eq!(
                &verify(input, &c, &StirConfig::default(), NOW),
                want,
                "case {i}"
            );
        }
        assert_eq!(StirOutcome::Absent.code().map(StirCode::status), Some(428));
    }

    #[test]
    fn identity_header_parts() {
        let id = parse_identity(
            "aGVhZA.Y2xhaW1z.c2ln;info=<https://c.example/x.pem>;alg=ES256;ppt=\"shaken\"",
        )
        .unwrap();
        assert_eq!(
            (id.header, id.claims, id.signature, id.info, id.alg, id.ppt),
            (
                "aGVhZA",
                "Y2xhaW1z",
                "c2ln",
                Some("https://c.example/x.pem"),
                Some("ES256"),
                Some("shaken")
            )
        );
        let compact = parse_identity("aGVhZA..c2ln;info=<https://c.example/x.pem>").unwrap();
        assert_eq!(compact.claims, "");
        assert_eq!(
            code(&parse_identity("a.b.c;info=https://x").unwrap_err()),
            Some(436)
        );
    }
}
