//! TLS termination: SNI certificate choice, protocol versions, ALPN (h2 and
//! http/1.1) end to end, the handshake timeout, and certificate renewal by
//! SIGHUP through the real binary. Certificates are made per test (rcgen).

mod support;
use std::time::Duration;
use support::tls::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS listener "secure" with `certs`, routing everything to `b`.
fn tls_config(b: &Backend, certs: &[&TestCert], extra_listener: &str) -> String {
    format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"secure\"\nbind = \"127.0.0.1:0\"\n{}\n{extra_listener}\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
        certificates_toml(certs),
        b.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_by_name_and_the_first_is_the_default() {
    let b = Backend::start("b").await;
    let dir = temp_dir();
    let default = make_cert(&dir, "default", &["default.test"], false);
    let api = make_cert(&dir, "api", &["api.test", "www.api.test"], false);
    let apps = make_cert(&dir, "apps", &["*.apps.test"], false);
    let s = sluice(&tls_config(&b, &[&default, &api, &apps], "")).await;
    let a = addr(&s, "secure").await;
    assert_eq!(cert_for(a, "api.test").await, api.der);
    assert_eq!(cert_for(a, "WWW.API.test").await, api.der);
    assert_eq!(cert_for(a, "one.apps.test").await, apps.der);
    // A wildcard covers exactly one label.
    assert_eq!(cert_for(a, "two.one.apps.test").await, default.der);
    assert_eq!(cert_for(a, "apps.test").await, default.der);
    assert_eq!(cert_for(a, "unknown.test").await, default.der);
    assert_eq!(cert_for(a, "default.test").await, default.der);
    // No SNI at all (an IP address as the server name).
    assert_eq!(cert_for(a, "127.0.0.1").await, default.der);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_and_http11_work_end_to_end_with_forwarded_proto_https() {
    let b = Backend::start("b").await;
    let dir = temp_dir();
    let cert = make_cert(&dir, "site", &["site.test"], false);
    let s = sluice(&tls_config(&b, &[&cert], "")).await;
    let a = addr(&s, "secure").await;

    let h2 = connect(
        a,
        "site.test",
        client_config(&[b"h2", b"http/1.1"], rustls::ALL_VERSIONS),
    )
    .await
    .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let got = tls_get(h2, "site.test", "/over/h2").await;
    assert_eq!((got.status, got.body.as_str()), (200, "b"));
    assert_eq!(got.version, http::Version::HTTP_2);
    let seen = b.last();
    assert_eq!(seen.uri, "/over/h2");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["host"], "site.test");
    // Backends are spoken to in HTTP/1.1 whatever the client used.
    assert_eq!(seen.version, http::Version::HTTP_11);

    let h1 = connect(
        a,
        "site.test",
        client_config(&[b"http/1.1"], rustls::ALL_VERSIONS),
    )
    .await
    .unwrap();
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let got = tls_get(h1, "site.test", "/over/h1").await;
    assert_eq!((got.status, got.version), (200, http::Version::HTTP_11));
    assert_eq!(b.last().headers["x-forwarded-proto"], "https");

    // No ALPN at all: HTTP/1.1.
    let none = connect(a, "site.test", client_config(&[], rustls::ALL_VERSIONS))
        .await
        .unwrap();
    assert_eq!(tls_get(none, "site.test", "/").await.status, 200);
    s.shutdown(Duration::from_secs(1)).await;
}

/// A ClientHello as a pre-TLS-1.3 client sends it: `version` as the
/// legacy_version, no supported_versions extension, ECDHE suites, and the
/// groups and signature algorithms a server needs to answer TLS 1.2.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    fn ext(id: u16, body: &[u8]) -> Vec<u8> {
        let mut e = id.to_be_bytes().to_vec();
        e.extend((body.len() as u16).to_be_bytes());
        e.extend(body);
        e
    }
    let mut hello = version.to_vec();
    hello.extend([7u8; 32]);
    hello.push(0);
    let suites = [0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x13, 0xc0, 0x14, 0x00, 0x2f];
    hello.extend((suites.len() as u16).to_be_bytes());
    hello.extend(suites);
    hello.extend([1, 0]);
    let mut exts = Vec::new();
    exts.extend(ext(0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17])); // x25519, P-256
    exts.extend(ext(0x000b, &[1, 0])); // uncompressed points
    exts.extend(ext(0x000d, &[0, 4, 0x04, 0x03, 0x08, 0x04])); // ecdsa, rsa-pss
    hello.extend((exts.len() as u16).to_be_bytes());
    hello.extend(exts);
    let mut handshake = vec![1];
    handshake.extend(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// The first bytes the server answers a raw ClientHello with.
async fn answer_to(a: std::net::SocketAddr, hello: &[u8]) -> Vec<u8> {
    let mut raw = tokio::net::TcpStream::connect(a).await.unwrap();
    raw.write_all(hello).await.unwrap();
    let mut answer = vec![0u8; 7];
    let _ = within(10, raw.read_exact(&mut answer)).await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls_12_and_13_are_spoken() {
    let b = Backend::start("b").await;
    let dir = temp_dir();
    let cert = make_cert(&dir, "site", &["site.test"], false);
    let s = sluice(&tls_config(&b, &[&cert], "")).await;
    let a = addr(&s, "secure").await;

    // The same hello as TLS 1.2 gets a ServerHello (a handshake record)...
    let tls12 = answer_to(a, &client_hello([3, 3])).await;
    assert_eq!(tls12[0], 22, "expected a ServerHello, got {tls12:?}");
    // ...as TLS 1.1 or 1.0 a fatal protocol_version alert (21, level 2, 70).
    for old in [[3, 2], [3, 1]] {
        let answer = answer_to(a, &client_hello(old)).await;
        assert_eq!(answer[0], 21, "expected an alert, got {answer:?}");
        assert_eq!(
            answer[5..7],
            [2, 70],
            "expected protocol_version, got {answer:?}"
        );
    }

    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let conn = connect(a, "site.test", client_config(&[b"http/1.1"], &[version]))
            .await
            .unwrap();
        assert_eq!(
            conn.get_ref().1.protocol_version(),
            Some(version.version),
            "{version:?}"
        );
        assert_eq!(tls_get(conn, "site.test", "/").await.status, 200);
    }
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_handshake_is_closed_after_header_read_timeout() {
    let b = Backend::start("b").await;
    let dir = temp_dir();
    let cert = make_cert(&dir, "site", &["site.test"], false);
    let s = sluice(&tls_config(&b, &[&cert], "header_read_timeout = \"300ms\"")).await;
    let a = addr(&s, "secure").await;
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(a).await.unwrap();
    let mut buf = [0u8; 16];
    let n = within(10, silent.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0, "the server closes a connection that never handshakes");
    assert!(started.elapsed() >= Duration::from_millis(250));
    // The listener still serves handshakes that do happen.
    let ok = connect(
        a,
        "site.test",
        client_config(&[b"http/1.1"], rustls::ALL_VERSIONS),
    )
    .await
    .unwrap();
    assert_eq!(tls_get(ok, "site.test", "/").await.status, 200);
    s.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn bad_certificate_files_are_config_errors_with_their_key_paths() {
    let dir = temp_dir();
    let good = make_cert(&dir, "good", &["good.test"], false);
    let other = make_cert(&dir, "other", &["other.test"], false);
    let listener = |cert: &str, key: &str| {
        format!("[[listener]]\nname = \"secure\"\nbind = \"127.0.0.1:0\"\ncertificates = [{{ cert = {cert:?}, key = {key:?} }}]\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"127.0.0.1:9\" }}]\n")
    };
    let s = |p: &std::path::Path| p.display().to_string();

    let missing = dir.join("missing.pem");
    let e = sluice::load_config_text(&listener(&s(&missing), &s(&good.key))).unwrap_err();
    assert_eq!(e.0[0].path, "listener[0].certificates[0].cert", "{e}");
    assert!(e.0[0].message.contains("cannot read"), "{e}");

    let e = sluice::load_config_text(&listener(&s(&good.cert), &s(&other.key))).unwrap_err();
    assert_eq!(e.0[0].path, "listener[0].certificates[0].key", "{e}");
    assert!(e.0[0].message.contains("does not match"), "{e}");

    let e = sluice::load_config_text(&listener(&s(&good.key), &s(&good.key))).unwrap_err();
    assert_eq!(e.0[0].path, "listener[0].certificates[0].cert", "{e}");

    let e = sluice::load_config_text(&listener(&s(&good.cert), &s(&good.cert))).unwrap_err();
    assert_eq!(e.0[0].path, "listener[0].certificates[0].key", "{e}");

    // Expired: a warning, and the config is still valid.
    let old = make_cert(&dir, "old", &["old.test"], true);
    let (c, _) = sluice::load_config_text(&listener(&s(&old.cert), &s(&old.key))).unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].path, "listener[0].certificates[0].cert");
    assert!(
        c.warnings[0].message.contains("expired"),
        "{}",
        c.warnings[0]
    );

    // --check through the binary: exit 1 naming the key, or 0 with the warning.
    let path = temp_file("sluice.toml", &listener(&s(&good.cert), &s(&other.key)));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("listener[0].certificates[0].key:"),
        "{stdout}"
    );
    std::fs::write(&path, listener(&s(&old.cert), &s(&old.key))).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("warning: listener[0].certificates[0].cert: certificate"),
        "{stdout}"
    );
    assert!(stdout.contains("config ok"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_is_served_after_sighup() {
    let b = Backend::start("b").await;
    let dir = temp_dir();
    let first = make_cert(&dir, "site", &["site.test"], false);
    let port = free_port();
    let path = temp_file(
        "sluice.toml",
        &format!(
            "[log]\naccess_log = false\n[[listener]]\nname = \"secure\"\nbind = \"127.0.0.1:{port}\"\n{}\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
            certificates_toml(&[&first]),
            b.addr
        ),
    );
    let child = Child::spawn(&["--config", path.to_str().unwrap()]);
    let a: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let served = loop {
        match tokio::net::TcpStream::connect(a).await {
            Ok(_) => break cert_for(a, "site.test").await,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("sluice not listening: {e}"),
        }
    };
    assert_eq!(served, first.der);
    // A connection made before the renewal keeps working after it.
    let before = connect(
        a,
        "site.test",
        client_config(&[b"http/1.1"], rustls::ALL_VERSIONS),
    )
    .await
    .unwrap();

    // Renewal: new files at the same paths (the key is new too), then SIGHUP.
    let renewed = make_cert(&dir, "site", &["site.test"], false);
    assert_ne!(renewed.der, first.der);
    child.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cert_for(a, "site.test").await != renewed.der {
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tls_get(before, "site.test", "/").await.status, 200);

    // A broken renewal (key of another certificate) changes nothing.
    let stray = make_cert(&dir, "stray", &["stray.test"], false);
    std::fs::copy(&stray.key, &renewed.key).unwrap();
    child.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cert_for(a, "site.test").await, renewed.der);
    let ok = connect(
        a,
        "site.test",
        client_config(&[b"h2"], rustls::ALL_VERSIONS),
    )
    .await
    .unwrap();
    assert_eq!(tls_get(ok, "site.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_certificate_served_has_its_expiry_on_metrics() {
    let b = Backend::start("b").await;
    let dir = temp_dir();
    let fresh = make_cert(&dir, "fresh", &["fresh.test", "www.fresh.test"], false);
    let old = make_cert(&dir, "old", &["old.test"], true);
    let s = sluice(&format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n{}",
        tls_config(&b, &[&fresh, &old], "")
    ))
    .await;
    let admin = s.admin_addr().await.unwrap();
    let text = get(&client(), admin, "x", "/metrics").await.body;
    let value = |name: &str| -> i64 {
        let needle = format!(
            "sluice_certificate_expiry_timestamp_seconds{{listener=\"secure\",name=\"{name}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .unwrap_or_else(|| panic!("no expiry for {name}:\n{text}"))
            .parse()
            .unwrap()
    };
    // rcgen's default validity ends in 4096; the expired one in 2020.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(value("fresh.test") > now + 365 * 86400);
    assert_eq!(value("old.test"), 1577836800);
    assert!(text.contains("# TYPE sluice_certificate_expiry_timestamp_seconds gauge"));
}
