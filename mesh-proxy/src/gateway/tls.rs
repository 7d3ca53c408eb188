//! TLS termination at gateway listeners: `Gateway` servers of protocol `HTTPS` with
//! `tls: {mode: SIMPLE, credentialName: NAME}`.
//!
//! # Where certificates come from
//!
//! The config names credentials only ([`ListenerTls`]); the gateway reads each one itself
//! from its credentials directory (`--credentials-dir DIR`, `MESH_GATEWAY_CREDENTIALS_DIR`):
//! `DIR/NAME/tls.crt` (PEM certificate chain, leaf first) and `DIR/NAME/tls.key` (PEM
//! private key: PKCS#8, PKCS#1 or SEC1). That is the layout of a `kubernetes.io/tls`
//! Secret mounted as a volume at `DIR/NAME`, so one code path serves both modes:
//!
//! - local mode: put the two files in `DIR/NAME/` yourself;
//! - Kubernetes: create the Secret in the gateway's namespace (`kubectl -n mesh-system
//!   create secret tls NAME --cert=... --key=...`) and mount it at `DIR/NAME` in the
//!   gateway's pod.
//!
//! Private keys therefore never leave the node that serves them: mesh-control needs no
//! access to Secrets and the discovery stream (and every config dump) carries only names.
//!
//! # Reloads and failures
//!
//! [`Source::read`] reads a listener's files; the gateway does so on every config change
//! and every [`RELOAD_INTERVAL`] (the kubelet updates mounted Secrets in place), and builds
//! a new acceptor ([`Source::build`]) only when the files or the listener changed.
//! Connections already open keep the certificate they were handshaken with. A credential
//! that is missing, unreadable, not PEM, or whose key does not match its certificate is
//! reported with the fix ([`Error`]) and left out; a listener none of whose credentials
//! load is not served at all, and the other listeners are unaffected.
//!
//! The certificate for a handshake is picked by SNI among the credentials' hosts
//! ([`ListenerTls::select`]: exact, longest `*.suffix`, `*`, else the first). ALPN offers
//! `h2` and `http/1.1`; what follows the handshake is routed exactly as plain HTTP.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mesh_api::model::ListenerTls;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often credentials are re-read to pick up rotated certificates.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The certificate file in a credential's directory (a `kubernetes.io/tls` Secret key).
pub const CERT_FILE: &str = "tls.crt";
/// The private key file in a credential's directory (a `kubernetes.io/tls` Secret key).
pub const KEY_FILE: &str = "tls.key";

/// Where the gateway finds credentials, by name.
#[derive(Debug, Clone)]
pub struct Credentials {
    dir: Option<PathBuf>,
    /// The gateway's namespace, for the `kubectl` hint of errors.
    namespace: String,
}

/// Why a credential cannot be served. Every message names the credential and the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway was started without a credentials directory.
    #[error(
        "credential {name:?}: this gateway has no credentials directory; start it with \
         --credentials-dir DIR (or MESH_GATEWAY_CREDENTIALS_DIR) holding {name}/{CERT_FILE} \
         and {name}/{KEY_FILE}"
    )]
    NoDirectory {
        /// The credential.
        name: String,
    },
    /// A file of the credential cannot be read (usually: it does not exist).
    #[error(
        "credential {name:?}: cannot read {}: {source}; create it with `kubectl -n {namespace} \
         create secret tls {name} --cert=CERT.pem --key=KEY.pem` mounted at {}, or (local \
         mode) put {CERT_FILE} and {KEY_FILE} there",
        path.display(),
        path.parent().unwrap_or(path).display()
    )]
    Read {
        /// The credential.
        name: String,
        /// The gateway's namespace.
        namespace: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate file holds no usable PEM certificate.
    #[error(
        "credential {name:?}: {} holds no PEM certificate ({reason}); it must start with \
         -----BEGIN CERTIFICATE-----",
        path.display()
    )]
    NoCertificate {
        /// The credential.
        name: String,
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The key file holds no usable PEM private key.
    #[error(
        "credential {name:?}: {} holds no PEM private key ({reason}); expected PKCS#8, \
         PKCS#1 (RSA) or SEC1 (EC)",
        path.display()
    )]
    NoKey {
        /// The credential.
        name: String,
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The key does not match the certificate, or is of an unsupported kind.
    #[error(
        "credential {name:?}: the private key in {KEY_FILE} cannot serve the certificate in \
         {CERT_FILE} ({reason}); recreate the credential from a matching certificate and key"
    )]
    Mismatch {
        /// The credential.
        name: String,
        /// What rustls said.
        reason: String,
    },
}

/// The raw files of one credential. Its `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
struct Pem {
    /// The credential's directory.
    dir: PathBuf,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pem")
            .field("dir", &self.dir)
            .field("cert_bytes", &self.cert.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// What a TLS listener is built from: its config and the current contents of its
/// credentials' files (or why they cannot be read). Equal sources build equal acceptors.
#[derive(Debug)]
pub struct Source {
    tls: ListenerTls,
    files: Vec<Result<Pem, Arc<Error>>>,
}

/// A built TLS listener: the server config, or `None` when no credential could be loaded;
/// and the credentials left out, with why.
#[derive(Debug)]
pub struct Built {
    /// The server config (SNI-picked certificates, ALPN `h2` and `http/1.1`).
    pub config: Option<Arc<rustls::ServerConfig>>,
    /// The credentials that could not be loaded.
    pub errors: Vec<Arc<Error>>,
}

// === impl Credentials ===

impl Credentials {
    /// Credentials under `dir` (none without one) for a gateway in `namespace`.
    pub fn new(dir: Option<PathBuf>, namespace: impl Into<String>) -> Self {
        Self {
            dir,
            namespace: namespace.into(),
        }
    }

    /// The directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    async fn read(&self, name: &str) -> Result<Pem, Error> {
        let Some(dir) = &self.dir else {
            return Err(Error::NoDirectory {
                name: name.to_owned(),
            });
        };
        let dir = dir.join(name);
        let read = |file: &'static str| {
            let path = dir.join(file);
            async move {
                tokio::fs::read(&path).await.map_err(|source| Error::Read {
                    name: name.to_owned(),
                    namespace: self.namespace.clone(),
                    path,
                    source,
                })
            }
        };
        Ok(Pem {
            cert: read(CERT_FILE).await?,
            key: read(KEY_FILE).await?,
            dir,
        })
    }
}

// === impl Source ===

impl Source {
    /// Reads the files of every credential of `tls`.
    pub async fn read(credentials: &Credentials, tls: &ListenerTls) -> Self {
        let mut files = Vec::with_capacity(tls.certificates.len());
        for c in &tls.certificates {
            files.push(credentials.read(&c.credential_name).await.map_err(Arc::new));
        }
        Self {
            tls: tls.clone(),
            files,
        }
    }

    /// Whether `self` and `other` build the same listener (same config, same file
    /// contents, same failures).
    pub fn same(&self, other: &Self) -> bool {
        self.tls == other.tls
            && self.files.len() == other.files.len()
            && self
                .files
                .iter()
                .zip(&other.files)
                .all(|(a, b)| match (a, b) {
                    (Ok(a), Ok(b)) => a == b,
                    (Err(a), Err(b)) => a.to_string() == b.to_string(),
                    _ => false,
                })
    }

    /// Parses the credentials and builds the listener's TLS config from those that load.
    pub fn build(&self, provider: &Arc<CryptoProvider>) -> Built {
        let mut keys = HashMap::new();
        let mut errors = Vec::new();
        for (c, file) in self.tls.certificates.iter().zip(&self.files) {
            let name = &c.credential_name;
            let loaded = match file {
                Ok(pem) => certified_key(name, pem, provider).map_err(Arc::new),
                Err(e) => Err(e.clone()),
            };
            match loaded {
                Ok(key) => {
                    keys.insert(name.clone(), Arc::new(key));
                }
                Err(e) => errors.push(e),
            }
        }
        if keys.is_empty() {
            return Built {
                config: None,
                errors,
            };
        }
        let tls = ListenerTls {
            certificates: self
                .tls
                .certificates
                .iter()
                .filter(|c| keys.contains_key(&c.credential_name))
                .cloned()
                .collect(),
        };
        let config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                let mut config = b
                    .with_no_client_auth()
                    .with_cert_resolver(Arc::new(Sni { tls, keys }));
                config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                Arc::new(config)
            });
        match config {
            Ok(config) => Built {
                config: Some(config),
                errors,
            },
            Err(e) => unreachable!("the crypto provider supports the default TLS versions: {e}"),
        }
    }
}

/// Parses a credential's PEM files and checks that the key matches the leaf certificate.
fn certified_key(name: &str, pem: &Pem, provider: &CryptoProvider) -> Result<CertifiedKey, Error> {
    let chain = CertificateDer::pem_slice_iter(&pem.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
        .and_then(|c| {
            if c.is_empty() {
                Err("no CERTIFICATE block".to_owned())
            } else {
                Ok(c)
            }
        })
        .map_err(|reason| Error::NoCertificate {
            name: name.to_owned(),
            path: pem.dir.join(CERT_FILE),
            reason,
        })?;
    let key = PrivateKeyDer::from_pem_slice(&pem.key).map_err(|e| Error::NoKey {
        name: name.to_owned(),
        path: pem.dir.join(KEY_FILE),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| Error::Mismatch {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Picks a listener's certificate by SNI.
#[derive(Debug)]
struct Sni {
    /// The certificates that loaded.
    tls: ListenerTls,
    keys: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Sni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands over SNI as a validated DNS name; compare case-insensitively.
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        let c = self.tls.select(sni.as_deref())?;
        self.keys.get(&c.credential_name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use mesh_api::model::ServerCertificate;

    use super::*;

    fn write(dir: &Path, name: &str, cert: &str, key: &str) {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(CERT_FILE), cert).unwrap();
        std::fs::write(d.join(KEY_FILE), key).unwrap();
    }

    fn self_signed(host: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn listener(names: &[&str]) -> ListenerTls {
        ListenerTls {
            certificates: names
                .iter()
                .map(|n| ServerCertificate {
                    credential_name: (*n).to_owned(),
                    hosts: vec!["*".into()],
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn credentials_load_and_failures_name_the_fix() {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("shop.example.com");
        let (_, other_key) = self_signed("other.example.com");
        write(dir.path(), "good", &cert, &key);
        write(dir.path(), "mismatch", &cert, &other_key);
        write(dir.path(), "garbage", "not pem", &key);
        let creds = Credentials::new(Some(dir.path().to_owned()), "mesh-system");

        let source = Source::read(
            &creds,
            &listener(&["good", "mismatch", "garbage", "missing"]),
        )
        .await;
        let built = source.build(&provider);
        assert!(built.config.is_some(), "the good credential is served");
        let errors: Vec<String> = built.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].contains("\"mismatch\"") && errors[0].contains("matching"));
        assert!(errors[1].contains("\"garbage\"") && errors[1].contains("no PEM certificate"));
        assert!(
            errors[2].contains("kubectl -n mesh-system create secret tls missing"),
            "{}",
            errors[2]
        );
        assert!(
            !format!("{source:?}").contains("PRIVATE KEY"),
            "keys stay out of debug output"
        );

        // Nothing loads: nothing is served.
        let none = Source::read(&creds, &listener(&["missing"]))
            .await
            .build(&provider);
        assert!(none.config.is_none());
        let no_dir = Credentials::new(None, "mesh-system");
        let err = Source::read(&no_dir, &listener(&["good"]))
            .await
            .build(&provider)
            .errors
            .remove(0)
            .to_string();
        assert!(err.contains("--credentials-dir"), "{err}");

        // A rotated certificate is a different source.
        let again = Source::read(&creds, &listener(&["good"])).await;
        assert!(again.same(&Source::read(&creds, &listener(&["good"])).await));
        let (cert2, key2) = self_signed("shop.example.com");
        write(dir.path(), "good", &cert2, &key2);
        assert!(!again.same(&Source::read(&creds, &listener(&["good"])).await));
    }
}
