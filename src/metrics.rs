//! Prometheus metrics: the spec's families with exactly its names, types and
//! labels, plus the process metrics of the prometheus crate.
//!
//! Labels stay bounded: listener, route, pool and backend values come from
//! the config, `code` is a numeric status, and a request that matched no
//! route is counted under route `"none"`. Nothing a client sends becomes a
//! label. Per-backend gauges are computed from the snapshot at scrape time
//! (and the old series dropped), so a backend removed by a reload leaves no
//! stale series and the hot path writes no gauges.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// From 0.5 ms (a proxied request on loopback) to 10 s (a slow backend).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The route label of a request that matched no route.
pub const NO_ROUTE: &str = "none";

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    backend_up: IntGaugeVec,
    backend_in_flight: IntGaugeVec,
    breaker_state: IntGaugeVec,
    queue_length: IntGaugeVec,
    backend_weight: IntGaugeVec,
    connections_opened: IntCounterVec,
    admin_state: IntGaugeVec,
    pub upgrades: IntCounterVec,
    pub dns_lookups: IntCounterVec,
    certificate_expiry: IntGaugeVec,
    pub rate_limited: IntCounterVec,
    pub retries: IntCounterVec,
    pub mirrored: IntCounterVec,
    pub acme_renewals: IntCounterVec,
    pub connections_active: IntGaugeVec,
    pub reloads: IntCounterVec,
    pub last_reload_success: Gauge,
    /// Redis calls of global rate limits that failed or timed out.
    pub redis_errors: prometheus::IntCounter,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let h = HistogramVec::new(opts, labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(h.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    h
}

impl Default for Metrics {
    /// Builds the families. The names and label sets are constants of this
    /// file, so a failure here is a programming error caught by any test.
    fn default() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        if let Err(e) = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
        let last_reload_success = Gauge::new(
            "sluice_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load or reload",
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        r.register(Box::new(last_reload_success.clone()))
            .unwrap_or_else(|e| panic!("metric: {e}"));
        let redis_errors = prometheus::IntCounter::new(
            "sluice_redis_errors_total",
            "Redis calls of global rate limits that failed or timed out (the local limit was used instead)",
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        r.register(Box::new(redis_errors.clone()))
            .unwrap_or_else(|e| panic!("metric: {e}"));
        let m = Metrics {
            requests: counter(
                &r,
                "sluice_requests_total",
                "Client requests answered",
                &["listener", "route", "code"],
            ),
            request_duration: histogram(
                &r,
                "sluice_request_duration_seconds",
                "Time from request to the last byte of the response",
                &["route"],
            ),
            upstream_requests: counter(
                &r,
                "sluice_upstream_requests_total",
                "Tries sent to backends, by outcome (502/504 for failures without a response)",
                &["pool", "backend", "code"],
            ),
            upstream_duration: histogram(
                &r,
                "sluice_upstream_request_duration_seconds",
                "Time from sending a try to its response head (or failure)",
                &["pool", "backend"],
            ),
            backend_up: gauge(
                &r,
                "sluice_backend_up",
                "1 if the backend passes its health checks",
                &["pool", "backend"],
            ),
            backend_in_flight: gauge(
                &r,
                "sluice_backend_in_flight",
                "Requests in flight to the backend",
                &["pool", "backend"],
            ),
            breaker_state: gauge(
                &r,
                "sluice_circuit_breaker_state",
                "Circuit breaker state: 0 closed, 1 open, 2 half-open",
                &["pool", "backend"],
            ),
            queue_length: gauge(
                &r,
                "sluice_backend_queue_length",
                "Requests waiting for a connection to the backend (at max_connections)",
                &["pool", "backend"],
            ),
            backend_weight: gauge(
                &r,
                "sluice_backend_weight",
                "Effective weight of the backend now (runtime override or the file's)",
                &["pool", "backend"],
            ),
            connections_opened: counter(
                &r,
                "sluice_upstream_connections_opened_total",
                "New connections opened to the backend",
                &["pool", "backend"],
            ),
            admin_state: gauge(
                &r,
                "sluice_backend_admin_state",
                "Runtime state of the backend: 0 ready, 1 drain, 2 maint",
                &["pool", "backend"],
            ),
            dns_lookups: counter(
                &r,
                "sluice_dns_lookups_total",
                "Backend name lookups of dns_refresh pools",
                &["pool", "result"],
            ),
            upgrades: counter(
                &r,
                "sluice_upgrades_total",
                "Binary upgrades (SIGUSR2) this process started",
                &["result"],
            ),
            certificate_expiry: gauge(
                &r,
                "sluice_certificate_expiry_timestamp_seconds",
                "notAfter of each certificate served (Unix time)",
                &["listener", "name"],
            ),
            rate_limited: counter(
                &r,
                "sluice_rate_limited_total",
                "Requests refused by a rate limit",
                &["scope", "name"],
            ),
            retries: counter(&r, "sluice_retries_total", "Retries sent", &["pool"]),
            acme_renewals: counter(
                &r,
                "sluice_acme_renewals_total",
                "Certificates obtained by ACME: every issuance, the first and each renewal",
                &["result"],
            ),
            mirrored: counter(
                &r,
                "sluice_mirrored_requests_total",
                "Copies of requests sent to a route's mirror pool",
                &["route"],
            ),
            connections_active: gauge(
                &r,
                "sluice_connections_active",
                "Open client connections",
                &["listener"],
            ),
            reloads: counter(
                &r,
                "sluice_config_reloads_total",
                "Config reloads by result",
                &["result"],
            ),
            last_reload_success,
            redis_errors,
            registry: r,
        };
        // Both results exist from the start, at 0, so a failure rate can be
        // computed before the first failure.
        for result in ["success", "failure"] {
            m.reloads.with_label_values(&[result]);
            m.upgrades.with_label_values(&[result]);
            m.acme_renewals.with_label_values(&[result]);
        }
        m
    }
}

impl Metrics {
    /// The request-duration histogram of a route, resolved once per snapshot.
    pub fn route_duration(&self, route: &str) -> Histogram {
        self.request_duration.with_label_values(&[route])
    }

    /// The config in force was loaded now (at start, or by a reload).
    pub fn config_loaded(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_reload_success.set(now);
    }

    pub fn reload_succeeded(&self) {
        self.reloads.with_label_values(&["success"]).inc();
        self.config_loaded();
    }

    pub fn reload_failed(&self) {
        self.reloads.with_label_values(&["failure"]).inc();
    }

    /// The exposition text, with the per-backend gauges set from
    /// `backends` (the backends of the snapshot current at scrape time).
    pub fn render<'a>(
        &self,
        backends: impl Iterator<Item = BackendGauges<'a>>,
        certificates: impl Iterator<Item = CertificateGauge<'a>>,
    ) -> String {
        self.certificate_expiry.reset();
        for c in certificates {
            self.certificate_expiry
                .with_label_values(&[c.listener, c.name])
                .set(c.not_after);
        }
        self.backend_up.reset();
        self.backend_in_flight.reset();
        self.breaker_state.reset();
        self.queue_length.reset();
        self.backend_weight.reset();
        self.connections_opened.reset();
        self.admin_state.reset();
        for b in backends {
            let labels = [b.pool, b.addr];
            self.backend_up
                .with_label_values(&labels)
                .set(i64::from(b.up));
            self.backend_in_flight
                .with_label_values(&labels)
                .set(b.in_flight as i64);
            self.breaker_state
                .with_label_values(&labels)
                .set(i64::from(b.breaker));
            self.queue_length
                .with_label_values(&labels)
                .set(b.queue as i64);
            self.backend_weight
                .with_label_values(&labels)
                .set(i64::from(b.weight));
            self.admin_state
                .with_label_values(&labels)
                .set(i64::from(b.admin_state));
            // Counted in the backend's state (which outlives reloads) and
            // copied at scrape time, like the gauges.
            self.connections_opened
                .with_label_values(&labels)
                .inc_by(b.connections_opened);
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// One certificate served, at scrape time.
pub struct CertificateGauge<'a> {
    pub listener: &'a str,
    /// The certificate's first DNS name.
    pub name: &'a str,
    /// Unix time of its notAfter.
    pub not_after: i64,
}

/// One backend's gauges at scrape time.
pub struct BackendGauges<'a> {
    pub pool: &'a str,
    pub addr: &'a str,
    pub up: bool,
    pub in_flight: u64,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker: u8,
    /// Requests waiting for a connection.
    pub queue: usize,
    /// The weight the strategy uses now.
    pub weight: u32,
    /// 0 ready, 1 drain, 2 maint.
    pub admin_state: u8,
    /// Connections opened to it so far.
    pub connections_opened: u64,
}
