//! TLS for SSL and SASL_SSL listeners (rustls with ring): the broker's
//! certificate chain and private key from PEM files; client certificates
//! none, requested or required (mTLS) against a PEM bundle of CAs; and
//! certificates reloaded without dropping a connection. No timer watches
//! the files: a handshake looks at their modification times, at most once
//! per `RELOAD_CHECK`, and a changed pair serves the handshakes after it
//! (connections already up keep the session they have).
//!
//! Each shard builds its own `ServerConfig`, so handshakes on one core
//! never wait on another.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};

/// How often, at most, a handshake looks whether the files changed.
const RELOAD_CHECK: Duration = Duration::from_secs(10);

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    None,
    /// Asked for; a client without one is still served.
    Requested,
    /// A client without a certificate the truststore vouches for is refused.
    Required,
}

/// The `[ssl]` config section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SslConfig {
    /// PEM: the broker's certificate, then its chain (Kafka's
    /// ssl.keystore.certificate.chain).
    pub certificate_chain_file: Option<PathBuf>,
    /// PEM: the certificate's private key, PKCS#8, PKCS#1 or SEC1
    /// (Kafka's ssl.keystore.key).
    pub private_key_file: Option<PathBuf>,
    /// PEM: the CAs client certificates must chain to (Kafka's
    /// ssl.truststore.certificates); needed unless client_auth is none.
    pub truststore_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

#[derive(Debug, thiserror::Error)]
#[error("ssl: {0}")]
pub struct TlsError(String);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("reading certificates from {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// The certificate chain and key, checked to belong together.
pub(crate) fn load_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_chain(cert)?;
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError(format!("reading the private key from {}: {e}", key.display())))?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError(format!("the private key in {} is not usable: {e}", key.display())))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        TlsError(format!(
            "the private key in {} does not belong to the certificate in {}: {e}",
            key.display(),
            cert.display()
        ))
    })?;
    Ok(Arc::new(certified))
}

fn stamps(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

/// Serves the certificate, reloading it when its files change.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    stamps: Option<(SystemTime, SystemTime)>,
    checked: Instant,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Each shard has its own resolver: the lock is never contended.
        let mut s = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if s.checked.elapsed() >= RELOAD_CHECK {
            s.checked = Instant::now();
            let now = stamps(&self.cert, &self.key);
            if now.is_some() && now != s.stamps {
                match load_key(&self.cert, &self.key) {
                    Ok(key) => {
                        s.key = key;
                        s.stamps = now;
                        tracing::info!(certificate = %self.cert.display(), "TLS certificate reloaded; new connections get it");
                    }
                    // A half-written pair (the cert replaced, the key not yet)
                    // is tried again at the next check; the old pair serves.
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS certificate changed but does not load; keeping the old one")
                    }
                }
            }
        }
        Some(s.key.clone())
    }
}

/// A server config for TLS listeners, or why there cannot be one.
pub fn server_config(ssl: &SslConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let (Some(cert), Some(key)) = (&ssl.certificate_chain_file, &ssl.private_key_file) else {
        return Err(TlsError(
            "an SSL or SASL_SSL listener needs ssl.certificate_chain_file and ssl.private_key_file".into(),
        ));
    };
    let resolver = Reloading {
        cert: cert.clone(),
        key: key.clone(),
        state: Mutex::new(Loaded {
            key: load_key(cert, key)?,
            stamps: stamps(cert, key),
            checked: Instant::now(),
        }),
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("protocol versions: {e}")))?;
    let builder = match ssl.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let path = ssl.truststore_file.as_ref().ok_or_else(|| {
                TlsError("ssl.client_auth requested or required needs ssl.truststore_file (the client CAs)".into())
            })?;
            let mut roots = RootCertStore::empty();
            for ca in read_chain(path)? {
                roots
                    .add(ca)
                    .map_err(|e| TlsError(format!("a CA in {} is not usable: {e}", path.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError(format!("client certificate verifier: {e}")))?,
            )
        }
    };
    Ok(Arc::new(builder.with_cert_resolver(Arc::new(resolver))))
}

/// `[cluster.tls]`: mutual TLS on the Raft transport between nodes. Every
/// node's certificate comes from the cluster's CA and holds the DNS name
/// `corestream-node-<node_id>` as a subject alternative name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerTlsConfig {
    /// PEM: the CA (or CAs) that signs the nodes' certificates.
    pub ca_file: PathBuf,
    /// PEM: this node's certificate, then its chain.
    pub certificate_chain_file: PathBuf,
    /// PEM: its private key.
    pub private_key_file: PathBuf,
}

/// The name a node's Raft certificate must hold.
pub fn peer_name(node_id: i32) -> String {
    format!("corestream-node-{node_id}")
}

/// The transport's TLS, or why there cannot be one.
pub fn peer_tls(cfg: &PeerTlsConfig) -> Result<corestream_shards::raft::transport::PeerTls, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in read_chain(&cfg.ca_file)? {
        roots
            .add(ca)
            .map_err(|e| TlsError(format!("a CA in {} is not usable: {e}", cfg.ca_file.display())))?;
    }
    let roots = Arc::new(roots);
    let key = load_key(&cfg.certificate_chain_file, &cfg.private_key_file)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| TlsError(format!("peer certificate verifier: {e}")))?;
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("protocol versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key.clone())));
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("protocol versions: {e}")))?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
    Ok(corestream_shards::raft::transport::PeerTls {
        server: Arc::new(server),
        client: Arc::new(client),
        name_of: |raft_id| peer_name(crate::config::node_of_raft_id(raft_id)),
    })
}

/// The principal of a client certificate: `User:` and its subject as
/// RFC 2253 writes it (most specific attribute first, `,` between), which
/// is Kafka's default for SSL clients (ssl.principal.mapping.rules DEFAULT),
/// so `super_users` and ACLs name certificate clients the same way.
pub fn certificate_principal(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(format!("User:{}", rfc2253(cert.subject())))
}

fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let key = match oid.as_str() {
                        "2.5.4.3" => "CN",
                        "2.5.4.6" => "C",
                        "2.5.4.7" => "L",
                        "2.5.4.8" => "ST",
                        "2.5.4.9" => "STREET",
                        "2.5.4.10" => "O",
                        "2.5.4.11" => "OU",
                        "0.9.2342.19200300.100.1.25" => "DC",
                        "0.9.2342.19200300.100.1.1" => "UID",
                        _ => oid.as_str(),
                    }
                    .to_string();
                    let value = atv.as_str().map(escape_dn_value).unwrap_or_default();
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 2253 section 2.4 escapes.
fn escape_dn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
