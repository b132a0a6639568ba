//! Scrapes /metrics, parses the exposition format, and checks every metric
//! of the spec by name, type and label set, and that counters moved by the
//! right amounts after known traffic.

mod support;
use std::collections::{BTreeSet, HashMap};
use support::*;

/// One sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// name -> TYPE, and every sample.
struct Exposition {
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

fn parse(text: &str) -> Exposition {
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            types.insert(
                it.next().unwrap().to_string(),
                it.next().unwrap().to_string(),
            );
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match head.split_once('{') {
            None => (head.to_string(), Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap();
                let labels = body
                    .split("\",")
                    .filter(|s| !s.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").unwrap();
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
        };
        samples.push((name, labels, value));
    }
    Exposition { types, samples }
}

impl Exposition {
    fn label_sets(&self, name: &str) -> BTreeSet<Vec<String>> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, _)| {
                let mut keys: Vec<String> = l
                    .iter()
                    .map(|(k, _)| k.clone())
                    .filter(|k| k != "le")
                    .collect();
                keys.sort();
                keys
            })
            .collect()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v))
            })
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spec_metric_with_its_type_labels_and_counts() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    let dead = dead_addr().await;
    let toml = format!(
        r#"
[log]
access_log = false
[admin]
bind = "127.0.0.1:0"
[[listener]]
name = "public"
bind = "127.0.0.1:0"
[[route]]
name = "api"
path_prefix = "/api"
pool = "api"
[route.rate_limit]
requests_per_second = 0.01
burst = 5
[[route]]
path_prefix = "/lim"
pool = "lim"
[pool.api]
backends = [{{ addr = "{dead}" }}, {{ addr = "{a}" }}]
[pool.api.retry]
attempts = 1
backoff = "1ms"
[pool.api.circuit_breaker]
failure_threshold = 100
[pool.lim]
backends = [{{ addr = "{b}" }}]
[pool.lim.rate_limit]
requests_per_second = 0.01
burst = 1
"#,
        a = a.addr,
        b = b.addr
    );
    let s = sluice(&toml).await;
    let addr = addr(&s, "public").await;
    let admin = s.admin_addr().await.unwrap();
    let c = client();
    for _ in 0..5 {
        assert_eq!(get(&c, addr, "x", "/api/v").await.status, 200);
    }
    assert_eq!(get(&c, addr, "x", "/api/v").await.status, 429);
    assert_eq!(get(&c, addr, "x", "/nope").await.status, 404);
    assert_eq!(get(&c, addr, "x", "/lim").await.status, 200);
    assert_eq!(get(&c, addr, "x", "/lim").await.status, 503);
    let bad = temp_file("bad.toml", "nonsense = true\n");
    assert!(s.reload_from(&bad).await.is_err());

    let text = get(&c, admin, "x", "/metrics").await.body;
    let m = parse(&text);
    let spec: &[(&str, &str, &[&str])] = &[
        (
            "sluice_requests_total",
            "counter",
            &["listener", "route", "code"],
        ),
        ("sluice_request_duration_seconds", "histogram", &["route"]),
        (
            "sluice_upstream_requests_total",
            "counter",
            &["pool", "backend", "code"],
        ),
        (
            "sluice_upstream_request_duration_seconds",
            "histogram",
            &["pool", "backend"],
        ),
        ("sluice_backend_up", "gauge", &["pool", "backend"]),
        ("sluice_backend_in_flight", "gauge", &["pool", "backend"]),
        (
            "sluice_circuit_breaker_state",
            "gauge",
            &["pool", "backend"],
        ),
        ("sluice_rate_limited_total", "counter", &["scope", "name"]),
        ("sluice_retries_total", "counter", &["pool"]),
        ("sluice_connections_active", "gauge", &["listener"]),
        ("sluice_config_reloads_total", "counter", &["result"]),
        (
            "sluice_config_last_reload_success_timestamp_seconds",
            "gauge",
            &[],
        ),
    ];
    for (name, kind, labels) in spec {
        assert_eq!(
            m.types.get(*name).map(String::as_str),
            Some(*kind),
            "TYPE of {name}"
        );
        let sample_name = if *kind == "histogram" {
            format!("{name}_bucket")
        } else {
            name.to_string()
        };
        let mut want: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        want.sort();
        let sets = m.label_sets(&sample_name);
        assert!(!sets.is_empty(), "{name} has no samples");
        assert!(
            sets.iter().all(|s| *s == want),
            "{name} labels {sets:?}, want {want:?}"
        );
    }
    // Buckets from 0.5 ms to 10 s.
    assert!(text.contains("sluice_request_duration_seconds_bucket{route=\"api\",le=\"0.0005\"}"));
    assert!(text.contains("sluice_request_duration_seconds_bucket{route=\"api\",le=\"10\"}"));
    // Process metrics of the prometheus crate.
    assert!(m.types.contains_key("process_resident_memory_bytes"));

    // Counts after the known traffic.
    let req = |route: &str, code: &str| {
        m.value(
            "sluice_requests_total",
            &[("listener", "public"), ("route", route), ("code", code)],
        )
    };
    assert_eq!(req("api", "200"), 5.0);
    assert_eq!(req("api", "429"), 1.0);
    assert_eq!(req("none", "404"), 1.0);
    assert_eq!(req("lim", "200"), 1.0);
    assert_eq!(req("lim", "503"), 1.0);
    assert_eq!(
        m.value("sluice_request_duration_seconds_count", &[("route", "api")]),
        6.0
    );
    let up = |backend: &str, code: &str| {
        m.samples
            .iter()
            .find(|(n, l, _)| {
                n == "sluice_upstream_requests_total"
                    && l.contains(&("backend".into(), backend.into()))
                    && l.contains(&("code".into(), code.into()))
            })
            .map_or(0.0, |s| s.2)
    };
    let dead_tries = up(&dead.to_string(), "502");
    assert!(
        dead_tries >= 1.0,
        "round robin sends some tries to the dead backend"
    );
    assert_eq!(up(&a.addr.to_string(), "200"), 5.0);
    assert_eq!(
        m.value("sluice_retries_total", &[("pool", "api")]),
        dead_tries,
        "every failed try was retried"
    );
    assert_eq!(
        m.value(
            "sluice_rate_limited_total",
            &[("scope", "client"), ("name", "api")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "sluice_rate_limited_total",
            &[("scope", "backend"), ("name", "lim")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "sluice_backend_up",
            &[("pool", "api"), ("backend", &a.addr.to_string())]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "sluice_circuit_breaker_state",
            &[("pool", "api"), ("backend", &a.addr.to_string())]
        ),
        0.0
    );
    assert_eq!(
        m.value(
            "sluice_backend_in_flight",
            &[("pool", "lim"), ("backend", &b.addr.to_string())]
        ),
        0.0
    );
    assert_eq!(
        m.value("sluice_config_reloads_total", &[("result", "failure")]),
        1.0
    );
    assert_eq!(
        m.value("sluice_config_reloads_total", &[("result", "success")]),
        0.0
    );
    assert!(m.value("sluice_config_last_reload_success_timestamp_seconds", &[]) > 1.7e9);
    assert!(m.value("sluice_connections_active", &[("listener", "public")]) >= 1.0);
}
