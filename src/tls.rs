//! TLS plumbing shared by the admin API (server side), the x5u fetcher (client side) and SIP
//! over TLS (`sip::tls`): PEM
//! files and folders read into rustls configs with the `ring` provider, every failure a message
//! naming the file or folder and what was expected.
//!
//! The provider is always `ring`, passed explicitly, so the configs never depend on which
//! provider some other crate in the build happens to enable (aws-lc-rs needs cmake to build).
//! Knows nothing of HTTP, the API's routes, STIR or SIP.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// ALPN: both sides only speak HTTP/1.1 (hyper's http1); saying so lets a peer fail early.
const HTTP1: &[u8] = b"http/1.1";

/// The crypto provider of every config we build (see the module's note on `ring`).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => format!("cannot read: {e}"),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// The certificates of one PEM file, in order (end-entity first for a server chain).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let name = path.display();
    // Read first, so a missing or unreadable file says so rather than "no certificate".
    let bytes = fs::read(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{name}: {}", pem_error(e)))?;
    if certs.is_empty() {
        return Err(format!(
            "{name}: no certificate; expected PEM `-----BEGIN CERTIFICATE-----` blocks"
        ));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, SEC1 EC or PKCS#1 RSA) of one PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let name = path.display();
    let bytes = fs::read(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "{name}: no private key; expected a PEM `PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY` block"
        ),
        other => format!("{name}: {}", pem_error(other)),
    })
}

/// A server config from a certificate chain file and its key file. A key that does not belong
/// to the chain's first certificate is refused here, not at the first handshake.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = read_certs(cert)?;
    let key_der = read_key(key)?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| cert_key_error(cert, key, e))?;
    cfg.alpn_protocols = vec![HTTP1.to_vec()];
    Ok(Arc::new(cfg))
}

/// What rustls refusing a certificate and key pair means to the operator, naming both files.
pub fn cert_key_error(cert: &Path, key: &Path, e: rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "{}: this key does not match the certificate in {}",
            key.display(),
            cert.display()
        ),
        other => format!(
            "{} / {}: unusable certificate or key: {other}",
            cert.display(),
            key.display()
        ),
    }
}

/// Every CA certificate in the `*.pem`/`*.crt` files of `dir`. Files that hold no certificate
/// (a key, a README) are skipped; a file with broken PEM is an error naming it. Certificates
/// webpki cannot use as roots (rare, odd extensions in old system bundles) are skipped too,
/// since a system folder is not ours to fix; the count that loaded is returned beside them.
pub fn read_roots(dir: &Path) -> Result<(RootCertStore, usize), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: cannot read: {e}", dir.display()))?;
    let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    let mut store = RootCertStore::empty();
    let mut skipped = 0;
    for f in files {
        if !matches!(f.extension().and_then(|e| e.to_str()), Some("pem" | "crt")) {
            continue;
        }
        // A dangling symlink in a system folder is not worth refusing the folder for.
        let Ok(bytes) = fs::read(&f) else {
            continue;
        };
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {}", f.display(), pem_error(e)))?;
        let (_, bad) = store.add_parsable_certificates(certs);
        skipped += bad;
    }
    if store.is_empty() {
        return Err(format!(
            "{}: no CA certificates; expected *.pem or *.crt files with PEM certificates",
            dir.display()
        ));
    }
    Ok((store, skipped))
}

/// A client config that authenticates servers against `roots` (no client certificate).
pub fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, String> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![HTTP1.to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn put(&self, name: &str, text: &str) -> std::path::PathBuf {
            let p = self.dir.path().join(name);
            fs::write(&p, text).unwrap();
            p
        }
    }

    fn pair(name: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn server_config_names_the_file_at_fault() {
        let f = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        let (cert, key) = pair("localhost");
        let (_, other_key) = pair("elsewhere");
        let c = f.put("cert.pem", &cert);
        let k = f.put("key.pem", &key);
        let k2 = f.put("other.pem", &other_key);
        let junk = f.put("junk.pem", "hello\n");
        let missing = f.dir.path().join("missing.pem");
        assert!(server_config(&c, &k).is_ok());
        // (cert, key, the file the message must name, a word it must carry)
        let cases = [
            (&missing, &k, "missing.pem", "cannot read"),
            (&c, &missing, "missing.pem", "cannot read"),
            (&junk, &k, "junk.pem", "no certificate"),
            (&c, &junk, "junk.pem", "no private key"),
            (&k, &k, "key.pem", "no certificate"),
            (&c, &c, "cert.pem", "no private key"),
            (&c, &k2, "other.pem", "does not match"),
        ];
        for (cert, key, file, word) in cases {
            let e = server_config(cert, key).unwrap_err();
            assert!(
                e.contains(file) && e.contains(word),
                "{cert:?} {key:?}: {e}"
            );
        }
    }

    #[test]
    fn roots_folder_loads_certificates_and_refuses_an_empty_folder() {
        let f = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        let e = read_roots(f.dir.path()).unwrap_err();
        assert!(e.contains("no CA certificates"), "{e}");
        let (cert, key) = pair("ca.example");
        f.put("ca.crt", &cert);
        f.put("key.pem", &key);
        f.put("notes.txt", "not read");
        let (store, skipped) = read_roots(f.dir.path()).unwrap();
        assert_eq!((store.len(), skipped), (1, 0));
        assert!(client_config(store).is_ok());
        f.put("broken.pem", "-----BEGIN CERTIFICATE-----\nnot base64!\n");
        let e = read_roots(f.dir.path()).unwrap_err();
        assert!(e.contains("broken.pem"), "{e}");
        let e = read_roots(&f.dir.path().join("nope")).unwrap_err();
        assert!(e.contains("nope") && e.contains("cannot read"), "{e}");
    }
}
