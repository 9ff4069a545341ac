//! Test helpers for STIR/SHAKEN: certificate parameters for rcgen, the P-256 signing key of a
//! generated key pair, and a local HTTP(S) server that serves certificate chains as an x5u host
//! would. Shared by the STIR tests of the verifier and of the agent; knows nothing of either.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

pub fn ca(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p
}

pub fn leaf(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p
}

pub fn p256_of(k: &KeyPair) -> SigningKey {
    SigningKey::from_pkcs8_der(&k.serialize_der()).unwrap()
}

/// Serves `files` by path over HTTP; `/hang` accepts and never answers.
pub async fn serve(files: HashMap<&'static str, String>) -> String {
    serve_on(files, None).await
}

/// Like [`serve`], over HTTPS with the server certificate chain and key in these PEM files.
pub async fn serve_tls(files: HashMap<&'static str, String>, cert: &Path, key: &Path) -> String {
    let cfg = scamguard::tls::server_config(cert, key).unwrap();
    serve_on(files, Some(tokio_rustls::TlsAcceptor::from(cfg))).await
}

pub async fn serve_on(
    files: HashMap<&'static str, String>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let files = Arc::new(files);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let files = files.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let files = files.clone();
                    async move {
                        if req.uri().path() == "/hang" {
                            // The scenario (a server that never answers), not a wait.
                            tokio::time::sleep(Duration::from_secs(3_600)).await;
                        }
                        let resp = match files.get(req.uri().path()) {
                            Some(body) => Response::builder()
                                .header("content-type", "application/pem-certificate-chain")
                                .body(Full::new(Bytes::from(body.clone()))),
                            None => Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::new())),
                        };
                        Ok::<_, Infallible>(resp.unwrap())
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    // A client that refuses our certificate ends here, as it should.
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                }
            });
        }
    });
    format!("{scheme}://{addr}")
}
