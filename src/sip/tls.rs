//! SIP over TLS, the parts that are not sockets: the `[sip]` TLS settings read into rustls
//! configs (the listener's, with client certificates asked for when `tls_client_roots` is set,
//! and the client's for next hops and targets), and the names a peer's certificate proves.
//!
//! The files are read once, when the config is validated and again when the agent starts; a
//! problem names the file and what was expected (`crate::tls`). A peer's certificate is checked
//! by rustls against the configured roots; the names it carries (its DNS subjectAltNames) are
//! what the core compares with `trusted_peer_names` (RFC 5922 section 7.1).
//!
//! Knows nothing of SIP messages, connections or the core: settings in, configs and names out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::config::SipConfig;

/// Where the system keeps its CA certificates (Debian's `ca-certificates`): the default of
/// `tls_roots`.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs";

/// The rustls configs of SIP over TLS.
#[derive(Clone)]
pub struct TlsSetup {
    /// For the listener (`tls_listen`), when there is one.
    pub server: Option<Arc<ServerConfig>>,
    /// For connections we open: servers verified against `tls_roots`, our certificate shown
    /// when a server asks for one and `tls_cert` is set.
    pub client: Arc<ClientConfig>,
}

/// The names a certificate is for: its DNS subjectAltNames in lower case, else (no SAN at all)
/// its subject's common names. Empty when it does not parse.
pub fn cert_names(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
        return Vec::new();
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        return san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(n) => Some(n.trim_end_matches('.').to_ascii_lowercase()),
                _ => None,
            })
            .collect();
    }
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .collect()
}

/// A certificate name (possibly `*.example.net`, one label wide) covers `host`.
pub fn name_covers(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(rest) => host
            .split_once('.')
            .is_some_and(|(first, tail)| !first.is_empty() && tail.eq_ignore_ascii_case(rest)),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

fn roots(dir: Option<&PathBuf>) -> Result<RootCertStore, String> {
    match dir {
        Some(d) => crate::tls::read_roots(d).map(|(s, _)| s),
        None => crate::tls::read_roots(Path::new(SYSTEM_ROOTS)).map(|(s, _)| s),
    }
}

/// Read every TLS file `cfg` names into rustls configs. Without `tls_roots` the system's
/// folder is used; when it cannot be read the client config trusts nothing (every TLS hop
/// fails its handshake), which is reported by `validate` only when TLS is asked for.
pub fn load(cfg: &SipConfig) -> Result<TlsSetup, String> {
    let provider = crate::tls::provider();
    let server = match (&cfg.tls_listen, &cfg.tls_cert, &cfg.tls_key) {
        (None, _, _) => None,
        (Some(_), Some(cert), Some(key)) => Some(server_config(cfg, cert, key)?),
        (Some(_), _, _) => {
            return Err("sip.tls_listen: needs sip.tls_cert and sip.tls_key".into());
        }
    };
    let trust = match roots(cfg.tls_roots.as_ref()) {
        Ok(r) => r,
        Err(e) if cfg.tls_roots.is_some() => return Err(format!("sip.tls_roots: {e}")),
        Err(e) => {
            tracing::warn!("SIP TLS: no system CA certificates ({e}); TLS next hops will fail verification unless sip.tls_roots is set");
            RootCertStore::empty()
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(trust);
    let client = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            let chain = crate::tls::read_certs(cert)?;
            let key_der = crate::tls::read_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| crate::tls::cert_key_error(cert, key, e))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsSetup {
        server,
        client: Arc::new(client),
    })
}

fn server_config(cfg: &SipConfig, cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let provider = crate::tls::provider();
    let chain = crate::tls::read_certs(cert)?;
    let key_der = crate::tls::read_key(key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &cfg.tls_client_roots {
        None => builder.with_no_client_auth(),
        Some(dir) => {
            let (store, _) =
                crate::tls::read_roots(dir).map_err(|e| format!("sip.tls_client_roots: {e}"))?;
            let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider);
            if !cfg.tls_require_client_cert {
                // A client without a certificate is served as any other source; one that
                // shows a certificate the roots do not vouch for is still refused.
                v = v.allow_unauthenticated();
            }
            let v = v
                .build()
                .map_err(|e| format!("sip.tls_client_roots: {}: {e}", dir.display()))?;
            builder.with_client_cert_verifier(v)
        }
    };
    let c = builder
        .with_single_cert(chain, key_der)
        .map_err(|e| crate::tls::cert_key_error(cert, key, e))?;
    Ok(Arc::new(c))
}

/// The TLS settings' problems, each naming the setting (and the file) and what was expected.
pub fn validate(cfg: &SipConfig, p: &mut Vec<String>) {
    let uses_tls = cfg.tls_listen.is_some()
        || cfg.next_hop_transport == super::Transport::Tls
        || cfg.tls_cert.is_some();
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(_), None) => p.push("sip.tls_key: required with sip.tls_cert".into()),
        (None, Some(_)) => p.push("sip.tls_cert: required with sip.tls_key".into()),
        _ => {}
    }
    if cfg.tls_listen.is_some() && (cfg.tls_cert.is_none() || cfg.tls_key.is_none()) {
        p.push(
            "sip.tls_listen: needs sip.tls_cert and sip.tls_key (the certificate chain and key the listener shows)"
                .into(),
        );
    }
    if let Some(l) = cfg.tls_listen {
        if cfg.listen.0.contains(&l) && l.port() != 0 {
            p.push(format!(
                "sip.tls_listen: {l} is also sip.listen (TCP); expected another port such as 5061"
            ));
        }
    }
    if cfg.tls_handshake_secs == 0 {
        p.push("sip.tls_handshake_secs: must be at least 1, got 0".into());
    }
    if cfg.tls_client_roots.is_some() && cfg.tls_listen.is_none() {
        p.push("sip.tls_client_roots: only used by the TLS listener; set sip.tls_listen".into());
    }
    if cfg.tls_require_client_cert && cfg.tls_client_roots.is_none() {
        p.push(
            "sip.tls_require_client_cert: needs sip.tls_client_roots (the CAs client certificates are checked against)"
                .into(),
        );
    }
    if !cfg.trusted_peer_names.is_empty() && cfg.tls_client_roots.is_none() {
        p.push(
            "sip.trusted_peer_names: needs sip.tls_client_roots (a name is believed only from a certificate those CAs issued)"
                .into(),
        );
    }
    for (i, n) in cfg.trusted_peer_names.iter().enumerate() {
        if !super::config::is_host_name(n.strip_prefix("*.").unwrap_or(n)) {
            p.push(format!(
                "sip.trusted_peer_names[{i}]: {n:?} is not a host name; expected a name a peer's certificate carries, such as core.example.net"
            ));
        }
    }
    if let Some(dir) = &cfg.tls_roots {
        if let Err(e) = crate::tls::read_roots(dir) {
            p.push(format!("sip.tls_roots: {e}"));
        }
    }
    if let Some(dir) = &cfg.tls_client_roots {
        if let Err(e) = crate::tls::read_roots(dir) {
            p.push(format!("sip.tls_client_roots: {e}"));
        }
    }
    let chain = cfg
        .tls_cert
        .as_ref()
        .map(|c| (c, crate::tls::read_certs(c)));
    let key_der = cfg.tls_key.as_ref().map(|k| (k, crate::tls::read_key(k)));
    if let Some((_, Err(e))) = &chain {
        p.push(format!("sip.tls_cert: {e}"));
    }
    if let Some((_, Err(e))) = &key_der {
        p.push(format!("sip.tls_key: {e}"));
    }
    if let (Some((cert, Ok(chain))), Some((key, Ok(k)))) = (chain, key_der) {
        let matched = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))
            .and_then(|b| {
                b.with_root_certificates(RootCertStore::empty())
                    .with_client_auth_cert(chain.clone(), k)
                    .map_err(|e| crate::tls::cert_key_error(cert, key, e))
            });
        if let Err(e) = matched {
            p.push(format!("sip.tls_key: {e}"));
        }
        // Peers reach us by the host we advertise (Via, Record-Route): the certificate must
        // be for it, or every peer that checks will refuse us.
        let names = chain.first().map(cert_names).unwrap_or_default();
        let named = cfg
            .advertise
            .iter()
            .filter(|h| super::config::is_host_name(h) && h.parse::<std::net::IpAddr>().is_err());
        for host in named {
            if !names.iter().any(|n| name_covers(n, host)) {
                p.push(format!(
                    "sip.tls_cert: {} is for {names:?}, not for sip.advertise {host:?}; peers that check the name will refuse the connection",
                    cert.display()
                ));
            }
        }
    }
    if uses_tls && cfg.tls_roots.is_none() {
        // The system's folder: only its absence is worth saying, and only when TLS is used.
        if let Err(e) = crate::tls::read_roots(Path::new(SYSTEM_ROOTS)) {
            p.push(format!(
                "sip.tls_roots: not set and the system's CA folder is unusable ({e}); expected a folder of CA certificates"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_covers("*.example.net", "sbc.example.net"));
        assert!(!name_covers("*.example.net", "a.b.example.net"));
        assert!(!name_covers("*.example.net", "example.net"));
        assert!(name_covers("SBC.example.net", "sbc.example.net."));
        assert!(!name_covers("sbc.example.net", "sbc.example.org"));
    }

    #[test]
    fn names_of_a_certificate_are_its_dns_sans() {
        let c = rcgen::generate_simple_self_signed(vec![
            "Core.Example.net".to_string(),
            "10.0.0.1".to_string(),
        ])
        .unwrap();
        assert_eq!(cert_names(c.cert.der()), ["core.example.net"]);
        assert!(cert_names(&CertificateDer::from(vec![1u8, 2, 3])).is_empty());
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn validate_names_the_setting_and_file_at_fault() {
        let d = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["sbc.example.net".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["other.example.net".into()]).unwrap();
        let cert = write(d.path(), "sbc.pem", &a.cert.pem());
        let key = write(d.path(), "sbc.key", &a.signing_key.serialize_pem());
        let other_key = write(d.path(), "other.key", &b.signing_key.serialize_pem());
        let roots = tempfile::tempdir().unwrap();
        write(roots.path(), "ca.pem", &a.cert.pem());
        let good = SipConfig {
            tls_listen: Some("127.0.0.1:5061".parse().unwrap()),
            tls_cert: Some(cert.clone()),
            tls_key: Some(key.clone()),
            tls_roots: Some(roots.path().to_path_buf()),
            tls_client_roots: Some(roots.path().to_path_buf()),
            trusted_peer_names: vec!["core.example.net".into()],
            advertise: vec!["sbc.example.net".into()],
            ..SipConfig::default()
        };
        assert_eq!(good.validate(), Vec::<String>::new());
        assert!(load(&good).is_ok_and(|s| s.server.is_some()));
        let bad = SipConfig {
            tls_key: Some(other_key),
            tls_roots: Some(d.path().join("nope")),
            trusted_peer_names: vec!["not a name".into()],
            advertise: vec!["elsewhere.example.net".into()],
            ..good.clone()
        };
        let p = bad.validate();
        let has = |words: &[&str]| p.iter().any(|l| words.iter().all(|w| l.contains(w)));
        assert!(
            has(&["sip.tls_key", "other.key", "does not match"]),
            "{p:?}"
        );
        assert!(has(&["sip.tls_roots", "nope", "cannot read"]), "{p:?}");
        assert!(
            has(&["sip.trusted_peer_names[0]", "not a host name"]),
            "{p:?}"
        );
        assert!(has(&["sip.tls_cert", "elsewhere.example.net"]), "{p:?}");
        let half = SipConfig {
            tls_listen: Some("127.0.0.1:5061".parse().unwrap()),
            tls_cert: Some(d.path().join("missing.pem")),
            tls_require_client_cert: true,
            trusted_peer_names: vec!["core.example.net".into()],
            ..SipConfig::default()
        };
        let p = half.validate();
        assert!(
            p.iter().any(|l| l.starts_with("sip.tls_listen: needs")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("sip.tls_require_client_cert")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|l| l.starts_with("sip.trusted_peer_names:")),
            "{p:?}"
        );
        assert!(load(&half).is_err());
    }
}
