//! TLS termination: loading certificates, choosing one by SNI, and the
//! rustls server settings every TLS listener shares.
//!
//! Certificates are read right after the config is validated (`load`), so
//! `--check` and a reload report a missing file, an unreadable key or a key
//! that does not match its certificate with the key path, and a reload
//! re-reads the files (renewal is "replace the files, send SIGHUP"). The
//! loaded keys live in the snapshot; each new connection takes the rustls
//! settings of the snapshot current at accept, so connections already open
//! keep the certificate they were handshaken with.
//!
//! Crypto comes from rustls' `ring` provider: TLS 1.2 and 1.3 only (rustls
//! implements nothing older) and only its default suites, which are all
//! ECDHE with AEAD ciphers: no RSA key exchange, no CBC, no SHA-1 MACs.

use crate::config::{Config, ConfigError, ConfigErrors, LoadOptions};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The protocols offered by ALPN, most preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The ALPN protocol of the tls-alpn-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One certificate chain with its key, as loaded from disk.
#[derive(Debug)]
pub struct Certificate {
    /// DNS names the certificate is valid for (subjectAltName, or the
    /// subject's common name when it has none), lower-cased. Wildcards keep
    /// their `*.` prefix.
    pub names: Vec<String>,
    /// Seconds since the epoch after which the certificate is expired.
    pub not_after: i64,
    pub key: Arc<CertifiedKey>,
}

impl Certificate {
    /// Reads a PEM chain (leaf first) and a PEM private key (PKCS#8, PKCS#1
    /// RSA or SEC1 EC) and checks that they belong together. The error says
    /// what is wrong in words an operator can act on.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        read_files: bool,
    ) -> Result<Certificate, CertError> {
        if !read_files {
            return Err(CertError::Cert(format!(
                "cannot read {}: file access is off",
                cert_path.display()
            )));
        }
        let chain_pem = read_small(cert_path)
            .map_err(|e| CertError::Cert(format!("cannot read {}: {e}", cert_path.display())))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                CertError::Cert(format!(
                    "{} is not a PEM certificate chain: {e}",
                    cert_path.display()
                ))
            })?;
        if chain.is_empty() {
            return Err(CertError::Cert(format!(
                "{} holds no PEM certificate",
                cert_path.display()
            )));
        }
        let key_pem = read_small(key_path)
            .map_err(|e| CertError::Key(format!("cannot read {}: {e}", key_path.display())))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            CertError::Key(format!(
                "{} holds no PEM private key (PKCS#8, RSA or EC): {e}",
                key_path.display()
            ))
        })?;
        let (names, not_after) = describe(&chain[0]).map_err(|e| {
            CertError::Cert(format!(
                "{}: cannot parse the certificate: {e}",
                cert_path.display()
            ))
        })?;
        let signing_key = provider().key_provider.load_private_key(key).map_err(|e| {
            CertError::Key(format!("{}: unusable private key: {e}", key_path.display()))
        })?;
        let key = CertifiedKey::new(chain, signing_key);
        match key.keys_match() {
            Ok(()) => {}
            // The provider cannot derive this key type's public half: the
            // handshake itself will tell.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(_) => {
                return Err(CertError::Key(format!(
                    "{} does not match the certificate in {}",
                    key_path.display(),
                    cert_path.display()
                )))
            }
        }
        Ok(Certificate {
            names,
            not_after,
            key: Arc::new(key),
        })
    }

    /// Whether the certificate's validity has ended at `now`.
    pub fn expired_at(&self, now: SystemTime) -> bool {
        let now = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as i64;
        now > self.not_after
    }
}

/// The most a certificate or key file may hold: real chains are a few KiB;
/// this stops a wrong path (a device, a log file) from being read whole.
const MAX_PEM_FILE: u64 = 1 << 20;

pub(crate) fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(std::io::Error::other("larger than 1 MiB"));
    }
    Ok(bytes)
}

/// Which of the two files a load error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertError {
    Cert(String),
    Key(String),
}

/// The names and expiry of a DER certificate.
fn describe(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        // Legacy certificates name their host only in the subject's CN.
        for cn in cert.subject().iter_common_name() {
            if let Ok(n) = cn.as_str() {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

/// Picks the certificate for a handshake by its SNI name: an exact name
/// first, then a wildcard (`*.example.com` covers exactly one label, as RFC
/// 6125 says, so not `a.b.example.com` and not `example.com`), else the
/// first certificate of the listener. A client without SNI (an IP address,
/// an old client) also gets the first.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// The listener's `acme_domains`: served from the certificate store
    /// once obtained (a configured certificate for the name wins).
    acme: Vec<String>,
}

impl SniResolver {
    /// `certs` may be empty only when `acme` is not. Where two
    /// certificates claim a name, the earlier in the config wins.
    pub fn new(certs: &[Arc<Certificate>], acme: &[String]) -> Option<SniResolver> {
        if certs.is_empty() && acme.is_empty() {
            return None;
        }
        let default = certs.first().map(|c| c.key.clone());
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for c in certs {
            for name in &c.names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()),
                    None => exact.entry(name.clone()),
                }
                .or_insert_with(|| c.key.clone());
            }
        }
        Some(SniResolver {
            exact,
            wildcard,
            default,
            acme: acme.to_vec(),
        })
    }

    /// The certificate for an SNI name (already lower-cased by rustls):
    /// a configured one by exact name, then by wildcard, then an obtained
    /// (ACME) one, then the listener's first configured certificate, then
    /// the first ACME name's. None: nothing to serve yet.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni.map(|n| n.trim_end_matches('.')) {
            if let Some(k) = self.exact.get(name) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = self.wildcard.get(parent) {
                    return Some(k.clone());
                }
            }
            if self.acme.iter().any(|a| a == name) {
                if let Some(c) = crate::certstore::store().cert(name) {
                    return Some(c.key.clone());
                }
            }
        }
        self.default.clone().or_else(|| {
            self.acme
                .iter()
                .find_map(|n| crate::certstore::store().cert(n))
                .map(|c| c.key.clone())
        })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let challenge = !self.acme.is_empty()
            && hello
                .alpn()
                .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if challenge {
            // tls-alpn-01: only the challenge certificate of a name being
            // validated, never a real one.
            let name = hello.server_name()?;
            return crate::certstore::store().alpn_challenge(name);
        }
        self.pick(hello.server_name())
    }
}

/// The rustls settings of one TLS listener.
pub fn server_config(
    certs: &[Arc<Certificate>],
    acme: &[String],
) -> Result<Arc<ServerConfig>, String> {
    let resolver = SniResolver::new(certs, acme).ok_or("no certificate")?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    if !acme.is_empty() {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    // Prefer the server's suite order (rustls': AES-GCM and ChaCha20 first).
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// A TLS listener's certificates, loaded, and the rustls settings made from
/// them. Two are equal when they hold the same certificate chains.
#[derive(Clone)]
pub struct ListenerTls {
    pub certificates: Vec<Arc<Certificate>>,
    /// The listener's `acme_domains`.
    pub acme: Vec<String>,
    pub server: Arc<ServerConfig>,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field(
                "names",
                &self
                    .certificates
                    .iter()
                    .map(|c| &c.names)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl PartialEq for ListenerTls {
    fn eq(&self, other: &Self) -> bool {
        self.acme == other.acme
            && self.certificates.len() == other.certificates.len()
            && self
                .certificates
                .iter()
                .zip(&other.certificates)
                .all(|(a, b)| a.key.cert == b.key.cert)
    }
}

/// Every TLS listener's certificates, loaded, by listener name.
pub type Tls = HashMap<String, Arc<ListenerTls>>;

/// Loads the certificates of every TLS listener of `config` and makes their
/// rustls settings. Errors name the `cert` or `key` key of the entry (so
/// `--check` and a reload report them like any config error); an expired
/// certificate, or one that names no DNS host, is a warning (`config`'s
/// warnings): it may be about to be replaced, and refusing to start would
/// turn a stale certificate into an outage.
pub fn load(config: &mut Config, opts: LoadOptions) -> Result<Tls, ConfigErrors> {
    let mut errors = Vec::new();
    let mut tls = Tls::new();
    for (i, l) in config.listeners.iter().enumerate() {
        if !l.tls() {
            continue;
        }
        let p = format!("listener[{i}]");
        let mut loaded = Vec::new();
        for (j, c) in l.certificates.iter().enumerate() {
            let at = |key: &str| format!("{p}.certificates[{j}].{key}");
            match Certificate::load(&c.cert, &c.key, opts.read_files) {
                Ok(cert) => {
                    if cert.expired_at(SystemTime::now()) {
                        config.warnings.push(ConfigError {
                            path: at("cert"),
                            message: format!(
                                "certificate {} has expired (not after {})",
                                c.cert.display(),
                                humantime::format_rfc3339_seconds(
                                    UNIX_EPOCH + Duration::from_secs(cert.not_after.max(0) as u64)
                                )
                            ),
                        });
                    }
                    if cert.names.is_empty() {
                        config.warnings.push(ConfigError {
                            path: at("cert"),
                            message: format!(
                                "certificate {} names no DNS host; it is served only as the default",
                                c.cert.display()
                            ),
                        });
                    }
                    loaded.push(Arc::new(cert));
                }
                Err(CertError::Cert(m)) => errors.push(ConfigError {
                    path: at("cert"),
                    message: m,
                }),
                Err(CertError::Key(m)) => errors.push(ConfigError {
                    path: at("key"),
                    message: m,
                }),
            }
        }
        if loaded.len() != l.certificates.len() {
            continue;
        }
        match server_config(&loaded, &l.acme_domains) {
            Ok(server) => {
                tls.insert(
                    l.name.clone(),
                    Arc::new(ListenerTls {
                        certificates: loaded,
                        acme: l.acme_domains.clone(),
                        server,
                    }),
                );
            }
            Err(m) => errors.push(ConfigError {
                path: format!("{p}.certificates"),
                message: m,
            }),
        }
    }
    if errors.is_empty() {
        Ok(tls)
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> Arc<Certificate> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let c = params.self_signed(&key).unwrap();
        let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let signing = provider().key_provider.load_private_key(der).unwrap();
        let (names, not_after) = describe(c.der()).unwrap();
        Arc::new(Certificate {
            names,
            not_after,
            key: Arc::new(CertifiedKey::new(vec![c.der().clone()], signing)),
        })
    }

    #[test]
    fn sni_picks_exact_then_one_label_wildcard_then_default() {
        let a = cert(&["a.example.com"]);
        let b = cert(&["*.example.com", "b.example.org"]);
        let c = cert(&["c.example.net"]);
        let r = SniResolver::new(&[a.clone(), b.clone(), c.clone()], &[]).unwrap();
        let is = |sni: Option<&str>, want: &Arc<Certificate>| {
            assert!(Arc::ptr_eq(&r.pick(sni).unwrap(), &want.key), "{sni:?}")
        };
        is(Some("a.example.com"), &a);
        is(Some("x.example.com"), &b);
        is(Some("b.example.org"), &b);
        is(Some("c.example.net"), &c);
        is(Some("x.y.example.com"), &a);
        is(Some("example.com"), &a);
        is(Some("other.test"), &a);
        is(None, &a);
    }

    #[test]
    fn names_come_from_the_subject_alt_names() {
        let c = cert(&["Mixed.Example.com", "*.wild.test"]);
        assert_eq!(c.names, vec!["mixed.example.com", "*.wild.test"]);
        assert!(!c.expired_at(SystemTime::now()));
        assert!(c.expired_at(UNIX_EPOCH + Duration::from_secs(c.not_after as u64 + 1)));
    }
}
