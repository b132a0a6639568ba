//! The shipped Grafana dashboard and Prometheus alerts name only metrics
//! that sluice exposes: every name in `deploy/grafana/sluice.json` and
//! `deploy/prometheus/alerts.yml` is on `/metrics` of a running sluice.
//! (`promtool check rules` in CI checks the rules' syntax.)

mod support;

use std::collections::BTreeSet;
use std::time::Duration;
use support::*;

/// Every `sluice_...` metric name in `text`, histogram suffixes removed.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("sluice_") {
        let start = i + at;
        let mut end = start;
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end] == b'_' || b[end].is_ascii_digit())
        {
            end += 1;
        }
        let mut name = &text[start..end];
        for suffix in ["_bucket", "_sum", "_count"] {
            name = name.strip_suffix(suffix).unwrap_or(name);
        }
        if name.len() > "sluice_".len() {
            out.insert(name.to_string());
        }
        i = end;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_use_is_exposed() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard = std::fs::read_to_string(format!("{root}/deploy/grafana/sluice.json")).unwrap();
    let alerts = std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yml")).unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let wanted: BTreeSet<String> = names(&dashboard).union(&names(&alerts)).cloned().collect();
    assert!(wanted.len() >= 15, "too few names found: {wanted:?}");
    assert!(
        wanted.contains("sluice_request_duration_seconds"),
        "{wanted:?}"
    );

    // A sluice with a TLS listener, a limited route and a pool that has
    // served a request, so every labelled series has a member.
    let dir = std::env::temp_dir().join(format!("sluice-dash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = support::tls::make_cert(&dir, "site", &["site.test"], false);
    let b = Backend::start("b").await;
    let s = sluice(&format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\
         [[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         [[listener]]\nname = \"secure\"\nbind = \"127.0.0.1:0\"\ncertificates = [{{ cert = {:?}, key = {:?} }}]\n\
         [[route]]\nname = \"r\"\npool = \"p\"\n[route.rate_limit]\nrequests_per_second = 1000.0\nburst = 1\n\
         [pool.p]\nbackends = [{{ addr = \"{}\" }}]\n[pool.p.retry]\n",
        cert.cert, cert.key, b.addr
    ))
    .await;
    let public = addr(&s, "public").await;
    let c = client();
    for _ in 0..3 {
        get(&c, public, "x", "/").await;
    }
    let admin = s.admin_addr().await.unwrap();
    let metrics = get(&c, admin, "x", "/metrics").await.body;
    let exposed: BTreeSet<String> = metrics
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .filter_map(|l| l.split(' ').nth(2).map(str::to_string))
        .collect();
    let missing: Vec<&String> = wanted.iter().filter(|n| !exposed.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "named in deploy/ but not on /metrics: {missing:?}"
    );
    s.shutdown(Duration::from_secs(1)).await;
}
