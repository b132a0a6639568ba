//! TLS to backends on real sockets, with certificates made by rcgen: a CA,
//! a backend certificate it signs, and a client certificate for mutual TLS.
//! Verification by CA and name, pooled TLS connections, `verify = false`,
//! mTLS required by the backend, health checks over TLS, and `--check`
//! naming a bad file by its key.

mod support;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;

struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    server_cert: String,
    server_key: String,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn pki() -> Pki {
    let dir = std::env::temp_dir().join(format!(
        "sluice-up-tls-{}-{}",
        std::process::id(),
        fastrand_u()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["backend.test".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["sluice.test".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: write("client.pem", &client.pem()),
        client_key: write("client.key", &client_key.serialize_pem()),
        dir,
    }
}

fn fastrand_u() -> u64 {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst) as u64
}

/// An HTTPS backend answering "secure" (and /healthz), counting TCP
/// connections and health checks; `client_ca`: it requires a client
/// certificate signed by that CA.
struct TlsBackend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    checks: Arc<AtomicUsize>,
}

async fn tls_backend(p: &Pki, client_ca: Option<&Path>) -> TlsBackend {
    let chain = vec![CertificateDer::from_pem_slice(p.server_cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(p.server_key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = Arc::new(builder.with_single_cert(chain, key).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let checks = Arc::new(AtomicUsize::new(0));
    let (conns, chk) = (connections.clone(), checks.clone());
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            conns.fetch_add(1, Ordering::SeqCst);
            let (acceptor, chk) = (acceptor.clone(), chk.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let chk = chk.clone();
                        async move {
                            if req.uri().path() == "/healthz" {
                                chk.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"secure")),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    TlsBackend {
        addr,
        connections,
        checks,
    }
}

fn config(backend: SocketAddr, tls: &str, extra: &str) -> String {
    format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         [[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{backend}\" }}]\n{extra}\n[pool.p.tls]\n{tls}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_over_tls_are_verified_pooled_and_checked() {
    let p = pki();
    let b = tls_backend(&p, None).await;
    let ca = format!("ca = {:?}\n", p.ca);
    // Verified against the CA, as the name the certificate carries.
    let s = sluice(&config(
        b.addr,
        &format!("{ca}server_name = \"backend.test\""),
        "[pool.p.health_check]\ninterval = \"50ms\"\n",
    ))
    .await;
    let a = addr(&s, "public").await;
    let c = client();
    for _ in 0..5 {
        let got = get(&c, a, "x", "/").await;
        assert_eq!((got.status, got.body.as_str()), (200, "secure"));
    }
    // Health checks go over TLS too (and the backend is up by them).
    eventually(5, || b.checks.load(Ordering::SeqCst) >= 2).await;
    // Five requests, one pooled connection for them (plus the checks').
    let requests_conns = b.connections.load(Ordering::SeqCst) - b.checks.load(Ordering::SeqCst);
    assert!(
        requests_conns <= 2,
        "TLS connections are pooled: {requests_conns}"
    );
    s.shutdown(Duration::from_secs(1)).await;

    // The wrong name, or the webpki roots for a private CA: 502.
    for tls in [
        format!("{ca}server_name = \"other.test\""),
        "server_name = \"backend.test\"".to_string(),
    ] {
        let s = sluice(&config(b.addr, &tls, "")).await;
        let got = get(&client(), addr(&s, "public").await, "x", "/").await;
        assert_eq!(got.status, 502, "{tls}");
        s.shutdown(Duration::from_secs(1)).await;
    }
    // verify = false: served, and warned about.
    let text = config(b.addr, "verify = false", "");
    let (cfg, _) = sluice::load_config_text(&text).unwrap();
    assert!(
        cfg.warnings.iter().any(|w| w.path == "pool.p.tls.verify"),
        "{:?}",
        cfg.warnings
    );
    let s = sluice(&text).await;
    assert_eq!(
        get(&client(), addr(&s, "public").await, "x", "/")
            .await
            .status,
        200
    );
    s.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&p.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_presents_the_client_certificate() {
    let p = pki();
    let b = tls_backend(&p, Some(&p.ca)).await;
    let base = format!("ca = {:?}\nserver_name = \"backend.test\"\n", p.ca);
    // Without a client certificate the backend refuses the handshake.
    let s = sluice(&config(b.addr, &base, "")).await;
    assert_eq!(
        get(&client(), addr(&s, "public").await, "x", "/")
            .await
            .status,
        502
    );
    s.shutdown(Duration::from_secs(1)).await;
    // With one it serves.
    let tls = format!(
        "{base}cert = {:?}\nkey = {:?}\n",
        p.client_cert, p.client_key
    );
    let s = sluice(&config(b.addr, &tls, "")).await;
    let got = get(&client(), addr(&s, "public").await, "x", "/").await;
    assert_eq!((got.status, got.body.as_str()), (200, "secure"));
    s.shutdown(Duration::from_secs(1)).await;
    // A file that cannot be read is an error naming its key.
    let bad = format!(
        "{base}cert = {:?}\nkey = \"/nonexistent/client.key\"\n",
        p.client_cert
    );
    let err = sluice::load_config_text(&config(b.addr, &bad, ""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pool.p.tls.key"), "{err}");
    let err = sluice::load_config_text(&config(b.addr, "ca = \"/nonexistent/ca.pem\"", ""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pool.p.tls.ca"), "{err}");
    let _ = std::fs::remove_dir_all(&p.dir);
}
