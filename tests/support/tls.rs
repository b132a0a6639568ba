//! TLS test helpers: certificates made at test time with rcgen, and a
//! rustls client that accepts any certificate (the tests assert which one
//! it was given instead) and can speak HTTP/1.1 or HTTP/2 over it.

use super::{within, Got};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A certificate and key written as PEM files.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

/// A self-signed certificate for `names`, written to `dir/stem.pem` and
/// `dir/stem.key`. `expired` makes one whose validity ended in 2020.
pub fn make_cert(dir: &Path, stem: &str, names: &[&str], expired: bool) -> TestCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    TestCert {
        cert: cert_path,
        key: key_path,
        der: cert.der().to_vec(),
    }
}

/// A fresh temporary directory.
pub fn temp_dir() -> PathBuf {
    let file = super::temp_file("marker", "");
    file.parent().unwrap().to_path_buf()
}

/// The TOML of a `certificates` list.
pub fn certificates_toml(certs: &[&TestCert]) -> String {
    let items: Vec<String> = certs
        .iter()
        .map(|c| {
            format!(
                "{{ cert = {:?}, key = {:?} }}",
                c.cert.display().to_string(),
                c.key.display().to_string()
            )
        })
        .collect();
    format!("certificates = [{}]", items.join(", "))
}

/// A client config offering `alpn`, limited to `versions`.
pub fn client_config(
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(sluice::upstream_tls::NoVerification(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Connects and handshakes with SNI `sni` (an IP address sends no SNI).
pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    within(
        10,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
}

/// The DER of the certificate the server presented.
pub fn peer_cert(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Which certificate a handshake with SNI `sni` gets.
pub async fn cert_for(addr: SocketAddr, sni: &str) -> Vec<u8> {
    let s = connect(
        addr,
        sni,
        client_config(&[b"http/1.1"], rustls::ALL_VERSIONS),
    )
    .await
    .unwrap();
    peer_cert(&s)
}

/// One GET over a TLS connection, by whatever protocol ALPN chose.
pub async fn tls_get(s: TlsStream<TcpStream>, host: &str, path: &str) -> Got {
    let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(s);
    let mut req = Request::get(path);
    if h2 {
        req = req.uri(format!("https://{host}{path}"));
    } else {
        req = req.header("host", host);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        within(10, send.send_request(req)).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        within(10, send.send_request(req)).await.unwrap()
    };
    let (parts, body) = resp.into_parts();
    let bytes = within(10, body.collect()).await.unwrap().to_bytes();
    Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        version: parts.version,
    }
}
