//! The admin API over HTTPS on 127.0.0.1:0 with a certificate generated here (rcgen): tokens and
//! roles work over TLS, and clients that cannot complete a handshake (plain HTTP, a client that
//! does not trust the certificate) are refused cleanly, counted, and do not stop the server.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::api::*;
use crate::support::eventually;
use crate::support::http::{metric, ADMIN, READER, WRITER};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
    PKCS_ECDSA_P256_SHA256,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A CA and a server certificate it signed for 127.0.0.1, written as `api.crt` (chain) and
/// `api.key` in `dir`; returns the CA's PEM.
fn server_files(dir: &Path, ca_name: &str) -> String {
    let alg = &PKCS_ECDSA_P256_SHA256;
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate_for(alg).unwrap()).unwrap();
    let key = KeyPair::generate_for(alg).unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("api.crt"), format!("{}{}", cert.pem(), ca.pem())).unwrap();
    std::fs::write(dir.join("api.key"), key.serialize_pem()).unwrap();
    ca.pem()
}

/// A TLS client that trusts only `ca_pem`.
fn client(ca_pem: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn start_https(dir: &Path) -> Agent {
    let ca = server_files(dir, "scamguard test API CA");
    let (cert, key) = (dir.join("api.crt"), dir.join("api.key"));
    let mut a = Agent::start_with(dir, |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await;
    a.tls = Some(client(&ca));
    a
}

/// The handshake-failure counter from `/metrics`.
async fn handshake_failures(a: &Agent) -> u64 {
    let m = a.req("GET", "/metrics", None, b"").await;
    assert_eq!(m.status, 200);
    metric(&m.text, "scamguard_api_tls_handshake_failures_total")
}

/// Waits until the server has counted `n` failed handshakes (it counts them just after it drops
/// the connection, so a client may see the close first); then the count.
async fn until_failures(a: &Agent, n: u64) -> u64 {
    eventually(&format!("{n} failed handshakes counted"), || async {
        handshake_failures(a).await >= n
    })
    .await;
    handshake_failures(a).await
}

#[tokio::test]
async fn tokens_and_roles_work_over_https() {
    let dir = tempdir();
    let a = start_https(dir.path()).await;
    assert_eq!(a.req("GET", "/health", None, b"").await.status, 200);
    let entry =
        json!({"pattern": "+12025550143", "action": "block", "category": "scam", "reason": "r"});
    let body = entry.to_string();
    for (token, want) in [(None, 401), (Some(READER), 403), (Some(WRITER), 201)] {
        let r = a
            .req("POST", "/v1/lists/ops/entries", token, body.as_bytes())
            .await;
        assert_eq!(r.status, want, "{token:?}: {}", r.text);
    }
    assert_eq!(a.check("+12025550143").await, "block");
    let audit = a.get("/v1/audit?since=0&limit=10", ADMIN).await.json();
    assert_eq!(audit["records"][0]["who"], "bot", "{audit}");
    assert_eq!(handshake_failures(&a).await, 0);
    a.stop().await;
}

#[tokio::test]
async fn failed_handshakes_are_counted_and_the_server_keeps_serving() {
    let dir = tempdir();
    let a = start_https(dir.path()).await;

    // Plain HTTP to the TLS listener: no HTTP answer, the connection ends, nothing hangs.
    let mut s = TcpStream::connect(a.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "the server left a plain-HTTP client hanging");
    assert!(
        !raw.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(a.req("GET", "/health", None, b"").await.status, 200);
    assert_eq!(until_failures(&a, 1).await, 1);

    // A client that does not trust the server's CA refuses the server; the server counts it.
    let other = tempdir();
    let stranger = client(&server_files(other.path(), "some other CA"));
    let tcp = TcpStream::connect(a.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let e = stranger.connect(name, tcp).await.unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    assert_eq!(until_failures(&a, 2).await, 2);

    // A client that connects and closes without a word.
    drop(TcpStream::connect(a.addr).await.unwrap());
    assert_eq!(until_failures(&a, 3).await, 3);

    // Still serving, with tokens.
    assert_eq!(a.get("/v1/lists", READER).await.status, 200);
    a.stop().await;
}
