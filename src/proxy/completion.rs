//! The end of a request: counted in `sluice_requests_total` and its route's
//! duration histogram, logged as one access log line (target
//! `sluice::access`), and its backend lease given back. All of it happens
//! when the `Completion` drops, so a request that ends early, fails, or is
//! abandoned by its client is accounted exactly once.

use super::Client;
use crate::backend::Lease;
use crate::snapshot::Route;
use std::sync::Arc;
use tokio::time::Instant;

pub const TARGET: &str = "sluice::access";

/// What the access log line says about one request, filled in along the
/// way. Only made when the access log is on.
#[derive(Default)]
pub struct AccessRecord {
    pub request_id: String,
    pub method: String,
    pub host: String,
    pub path: String,
    /// The pool the request went to (a split picks one per request).
    pub pool: Option<Arc<str>>,
    pub backend: Option<Arc<str>>,
    pub client: String,
    pub attempts: u32,
}

/// Accounts for one request when dropped (see module doc).
pub struct Completion {
    pub client: Arc<Client>,
    /// The matched route (None: no route, counted as route "none").
    pub route: Option<Arc<Route>>,
    /// What is counted and logged: 499 until an answer is chosen (the
    /// client left before any, as nginx counts it).
    pub status: u16,
    pub lease: Option<Lease>,
    pub record: Option<Box<AccessRecord>>,
    pub start: Instant,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// The response did not reach the client whole.
    pub aborted: bool,
}

impl Completion {
    pub fn new(client: Arc<Client>, start: Instant) -> Completion {
        Completion {
            client,
            route: None,
            status: 499,
            lease: None,
            record: None,
            start,
            bytes: 0,
            aborted: false,
        }
    }

    /// Whether the access log is on (a record is worth filling).
    pub fn logging(&self) -> bool {
        self.record.is_some()
    }

    pub fn set_backend(&mut self, backend: &Arc<str>, attempts: u32) {
        if let Some(r) = self.record.as_mut() {
            r.backend = Some(backend.clone());
            r.attempts = attempts;
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.lease.take();
        let metrics = &self.client.shared.metrics;
        let route = self
            .route
            .as_ref()
            .map_or(crate::metrics::NO_ROUTE, |r| &*r.name);
        let mut code = itoa::Buffer::new();
        metrics
            .requests
            .with_label_values(&[&*self.client.listener, route, code.format(self.status)])
            .inc();
        let elapsed = self.start.elapsed();
        match &self.route {
            Some(r) => r.duration.observe(elapsed.as_secs_f64()),
            None => metrics
                .route_duration(crate::metrics::NO_ROUTE)
                .observe(elapsed.as_secs_f64()),
        }
        if let Some(r) = self.record.take() {
            tracing::info!(
                target: TARGET,
                request_id = %r.request_id,
                listener = %self.client.listener,
                client = %r.client,
                method = %r.method,
                host = %r.host,
                path = %r.path,
                status = self.status,
                bytes = self.bytes,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                route = self.route.as_ref().map_or("-", |r| &*r.name),
                pool = r.pool.as_deref().unwrap_or("-"),
                backend = r.backend.as_deref().unwrap_or("-"),
                attempts = r.attempts,
                aborted = self.aborted,
            );
        }
    }
}
