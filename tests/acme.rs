//! Automatic certificates against Pebble, the ACME test server (Debian
//! package `pebble`), with real challenge validation on 127.0.0.1: Pebble
//! resolves every name to 127.0.0.1 through pebble-challtestsrv's DNS and
//! validates tls-alpn-01 on sluice's TLS listener and http-01 on its
//! plaintext one (Pebble's `tlsPort` and `httpPort` are set to them).

mod support;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::tls::*;
use support::*;

/// Pebble and its DNS server, killed when dropped.
struct Pebble {
    children: Vec<std::process::Child>,
    directory: String,
    ca: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts Pebble validating challenges on `http_port` and `tls_port`.
async fn pebble(dir: &Path, http_port: u16, tls_port: u16) -> Pebble {
    let cert = make_cert(dir, "pebble", &["localhost"], false);
    let (listen, manage, dns, dns_manage) = (free_port(), free_port(), free_port(), free_port());
    let config = dir.join("pebble.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{listen}", "managementListenAddress": "127.0.0.1:{manage}",
            "certificate": "{}", "privateKey": "{}", "httpPort": {http_port}, "tlsPort": {tls_port},
            "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
            cert.cert.display(),
            cert.key.display()
        ),
    )
    .unwrap();
    let dns_server = Command::new("pebble-challtestsrv")
        .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        .args(["-dns01", &format!("127.0.0.1:{dns}")])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
        .args(["-management", &format!("127.0.0.1:{dns_manage}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pebble-challtestsrv (Debian package pebble) is installed");
    let server = Command::new("pebble")
        .arg("-config")
        .arg(&config)
        .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pebble (Debian package pebble) is installed");
    let p = Pebble {
        children: vec![dns_server, server],
        directory: format!("https://localhost:{listen}/dir"),
        ca: cert.cert.clone(),
    };
    wait_port(listen, 20).await;
    p
}

fn config(
    p: &Pebble,
    state: &Path,
    plain: u16,
    secure: u16,
    challenge: &str,
    name: &str,
) -> String {
    format!(
        r#"
[log]
access_log = false
[admin]
bind = "127.0.0.1:0"
[acme]
directory = "{}"
ca = "{}"
state_dir = "{}"
email = "ops@example.com"
challenge = "{challenge}"
renew_before = "30d"
[[listener]]
name = "plain"
bind = "127.0.0.1:{plain}"
[[listener]]
name = "secure"
bind = "127.0.0.1:{secure}"
acme_domains = ["{name}"]
[[route]]
pool = "p"
[pool.p]
backends = [{{ addr = "127.0.0.1:1" }}]
"#,
        p.directory,
        p.ca.display(),
        state.display()
    )
}

/// Waits until `addr` completes a handshake for `name`; returns the leaf.
async fn served_cert(addr: SocketAddr, name: &str, secs: u64) -> Vec<u8> {
    within(secs, async {
        loop {
            let conn = connect(
                addr,
                name,
                client_config(&[b"http/1.1"], rustls::ALL_VERSIONS),
            )
            .await;
            if let Ok(s) = conn {
                return peer_cert(&s);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

fn describe(der: &[u8]) -> (Vec<String>, String) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let names = cert
        .subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|n| format!("{n}"))
                .collect()
        })
        .unwrap_or_default();
    (names, cert.issuer().to_string())
}

async fn metric(admin: SocketAddr, line_start: &str) -> Option<f64> {
    let text = get(&client(), admin, "x", "/metrics").await.body;
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_obtains_serves_renews_and_keeps_across_restarts() {
    let dir = temp_dir();
    let state = dir.join("acme");
    let (plain, secure) = (free_port(), free_port());
    let p = pebble(&dir, plain, secure).await;
    let text = config(&p, &state, plain, secure, "tls-alpn-01", "alpn.sluice.test");
    let s = sluice(&text).await;
    let a: SocketAddr = ([127, 0, 0, 1], secure).into();
    let der = served_cert(a, "alpn.sluice.test", 60).await;
    let (names, issuer) = describe(&der);
    assert!(
        names.iter().any(|n| n.contains("alpn.sluice.test")),
        "{names:?}"
    );
    assert!(issuer.contains("Pebble"), "{issuer}");
    let admin = s.admin_addr().await.unwrap();
    assert_eq!(
        metric(admin, "sluice_acme_renewals_total{result=\"success\"} ").await,
        Some(1.0)
    );
    let expiry = metric(
        admin,
        "sluice_certificate_expiry_timestamp_seconds{listener=\"secure\",name=\"alpn.sluice.test\"} ",
    )
    .await
    .expect("the obtained certificate's expiry is on /metrics");
    assert!(expiry > 1.7e9);
    for f in [
        "account.json",
        "alpn.sluice.test.pem",
        "alpn.sluice.test.key",
    ] {
        assert!(state.join(f).exists(), "{f} kept in state_dir");
    }
    // A renewal: a reload with renew_before longer than the certificate's
    // life makes it due at once; the new certificate replaces the old one
    // without a restart.
    s.reload(
        sluice::config::Config::parse(
            &text.replace("renew_before = \"30d\"", "renew_before = \"36500d\""),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    within(60, async {
        while metric(admin, "sluice_acme_renewals_total{result=\"success\"} ").await != Some(2.0) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let renewed = served_cert(a, "alpn.sluice.test", 10).await;
    assert_ne!(renewed, der, "the renewed certificate is served");
    s.shutdown(Duration::from_secs(1)).await;
    drop(p);

    // A restart (another process) with Pebble gone serves the kept
    // certificate at once.
    let file = temp_file("sluice.toml", &text);
    let _child = Child::spawn(&["--config", file.to_str().unwrap()]);
    let kept = served_cert(a, "alpn.sluice.test", 20).await;
    assert_eq!(kept, renewed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_is_answered_on_the_plaintext_listener_before_routing() {
    let dir = temp_dir();
    let state = dir.join("acme");
    let (plain, secure) = (free_port(), free_port());
    let p = pebble(&dir, plain, secure).await;
    let s = sluice(&config(
        &p,
        &state,
        plain,
        secure,
        "http-01",
        "web.sluice.test",
    ))
    .await;
    let a: SocketAddr = ([127, 0, 0, 1], secure).into();
    let der = served_cert(a, "web.sluice.test", 60).await;
    let (names, issuer) = describe(&der);
    assert!(
        names.iter().any(|n| n.contains("web.sluice.test")),
        "{names:?}"
    );
    assert!(issuer.contains("Pebble"), "{issuer}");
    // Unknown tokens are routed like any request (here: to a dead pool).
    let got = get(
        &client(),
        ([127, 0, 0, 1], plain).into(),
        "web.sluice.test",
        "/.well-known/acme-challenge/nope",
    )
    .await;
    assert_eq!(got.status, 502);
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_acme_server_is_counted_and_serving_goes_on() {
    let b = Backend::start("b").await;
    let dir = temp_dir();
    let dead = free_port();
    let text = format!(
        r#"
[log]
access_log = false
[admin]
bind = "127.0.0.1:0"
[acme]
directory = "https://127.0.0.1:{dead}/dir"
state_dir = "{}"
[[listener]]
name = "plain"
bind = "127.0.0.1:0"
[[listener]]
name = "secure"
bind = "127.0.0.1:0"
acme_domains = ["down.sluice.test"]
[[route]]
pool = "p"
[pool.p]
backends = [{{ addr = "{}" }}]
"#,
        dir.join("acme").display(),
        b.addr
    );
    let s = sluice(&text).await;
    let admin = s.admin_addr().await.unwrap();
    within(20, async {
        while metric(admin, "sluice_acme_renewals_total{result=\"failure\"} ")
            .await
            .unwrap_or(0.0)
            < 1.0
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(
        get(&client(), addr(&s, "plain").await, "x", "/").await.body,
        "b"
    );
    // No certificate yet for the name: the handshake fails cleanly.
    let secure = addr(&s, "secure").await;
    assert!(connect(
        secure,
        "down.sluice.test",
        client_config(&[b"http/1.1"], rustls::ALL_VERSIONS)
    )
    .await
    .is_err());
}
