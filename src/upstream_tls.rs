//! TLS to backends (`[pool.X.tls]`): the rustls client settings of a pool,
//! built when its files are loaded (start, reload, `--check`), with the
//! roots to trust (a `ca` file or the webpki roots), an optional client
//! certificate for mutual TLS, or no verification at all when the operator
//! says so (warned at load).

use crate::config::{UpstreamProtocol, UpstreamTlsConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// A pool's client settings, or an error naming the key whose file is bad.
pub fn client_config(
    pool: &str,
    tls: &UpstreamTlsConfig,
    protocol: UpstreamProtocol,
    read_files: bool,
) -> Result<Arc<ClientConfig>, (String, String)> {
    let key = |k: &str| format!("pool.{pool}.tls.{k}");
    let read = |k: &str, path: &std::path::Path| -> Result<Vec<u8>, (String, String)> {
        if !read_files {
            return Err((
                key(k),
                format!("cannot read {}: file access is off", path.display()),
            ));
        }
        crate::tls::read_small(path)
            .map_err(|e| (key(k), format!("cannot read {}: {e}", path.display())))
    };
    let provider = crate::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| (key("verify"), e.to_string()))?;
    let builder = if !tls.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        match &tls.ca {
            Some(path) => {
                let pem = read("ca", path)?;
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<_, _>>()
                    .map_err(|e| (key("ca"), format!("{} is not PEM: {e}", path.display())))?;
                if certs.is_empty() {
                    return Err((
                        key("ca"),
                        format!("{} holds no PEM certificate", path.display()),
                    ));
                }
                for c in certs {
                    roots.add(c).map_err(|e| {
                        (key("ca"), format!("{}: unusable root: {e}", path.display()))
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, private)) => {
            let pem = read("cert", cert)?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| (key("cert"), format!("{} is not PEM: {e}", cert.display())))?;
            if chain.is_empty() {
                return Err((
                    key("cert"),
                    format!("{} holds no PEM certificate", cert.display()),
                ));
            }
            let pem = read("key", private)?;
            let k = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                (
                    key("key"),
                    format!("{} holds no PEM private key: {e}", private.display()),
                )
            })?;
            builder
                .with_client_auth_cert(chain, k)
                .map_err(|e| (key("key"), format!("{}: {e}", private.display())))?
        }
    };
    // The one protocol the pool speaks: a backend that does not agree to
    // it by ALPN fails the connection (checked after the handshake).
    config.alpn_protocols = match protocol {
        UpstreamProtocol::H2 => vec![b"h2".to_vec()],
        _ => vec![b"http/1.1".to_vec()],
    };
    Ok(Arc::new(config))
}

/// The name a backend is verified as and sent in SNI: the pool's
/// `server_name`, else the host part of its addr (an IP address is verified
/// against the certificate's IP addresses).
pub fn server_name(tls: &UpstreamTlsConfig, addr: &str) -> Option<ServerName<'static>> {
    let host = match &tls.server_name {
        Some(n) => n.as_str(),
        None => addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']'),
    };
    ServerName::try_from(host.to_string()).ok()
}

/// `verify = false`: any certificate is accepted, signatures are still
/// checked (so the session is encrypted, just not authenticated). Public
/// for the tests' clients, which check what certificate they got instead.
#[derive(Debug)]
pub struct NoVerification(pub Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_configured_one_or_the_host_of_the_addr() {
        let mut t = UpstreamTlsConfig {
            server_name: None,
            ca: None,
            verify: true,
            client_cert: None,
        };
        let name =
            |t: &UpstreamTlsConfig, a: &str| server_name(t, a).map(|n| n.to_str().into_owned());
        assert_eq!(
            name(&t, "api.internal:443").as_deref(),
            Some("api.internal")
        );
        assert_eq!(name(&t, "10.0.0.1:443").as_deref(), Some("10.0.0.1"));
        assert_eq!(name(&t, "[::1]:443").as_deref(), Some("::1"));
        t.server_name = Some("backend.test".into());
        assert_eq!(name(&t, "10.0.0.1:443").as_deref(), Some("backend.test"));
    }
}
