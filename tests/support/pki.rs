//! A test CA of the test's own (rcgen) and the certificates it issues, as PEM files in a folder
//! of their own: the TLS tests' proxy, servers and clients, and the interop tests' agent and the
//! CA file a real user agent is told to trust. Knows nothing of SIP.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A test CA and the certificates it issues, as PEM files in a folder of their own.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and key on disk.
#[derive(Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("roots")).unwrap();
        std::fs::write(dir.path().join("roots/ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    /// The folder holding only this CA's certificate (`tls_roots`, `tls_client_roots`).
    pub fn roots(&self) -> PathBuf {
        self.dir.path().join("roots")
    }

    /// The CA's certificate alone, as one PEM file (what a user agent's CA file names).
    pub fn ca_file(&self) -> PathBuf {
        self.roots().join("ca.pem")
    }

    /// A certificate for `names` (host names or IP addresses) issued by this CA.
    pub fn issue(&self, file: &str, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        let leaf = Leaf {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}
