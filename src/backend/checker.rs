//! Active health checks: one task per checked backend, so a slow check of
//! one backend never delays another's.
//!
//! `Checkers::reconcile` runs after every snapshot is published: it starts
//! checkers for newly checked backends, retunes the running ones (a new
//! interval or path takes effect at the next check, without resetting the
//! backend's health), and stops the checkers of backends that left the
//! config or whose pool no longer has a `health_check`.

use super::Backend;
use crate::config::HealthCheckConfig;
use crate::proxy::body::RequestBody;
use crate::runtime::Snapshot;
use http::{HeaderValue, Request, Uri};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What one check needs, replaced as a whole on reload.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub config: HealthCheckConfig,
    /// The backend's resolved address.
    pub addr: SocketAddr,
    /// The check's path, in origin form.
    pub uri: Uri,
    /// The backend's address as written, sent as Host.
    pub host: HeaderValue,
}

struct Running {
    target: watch::Sender<Target>,
    task: JoinHandle<()>,
    backend: Arc<Backend>,
}

#[derive(Default)]
pub struct Checkers {
    running: HashMap<(String, String), Running>,
}

impl Checkers {
    pub fn reconcile(&mut self, snap: &Snapshot) {
        let mut wanted: HashMap<(String, String), (Arc<Backend>, Target)> = HashMap::new();
        for pool in snap.pools.values() {
            let Some(hc) = &pool.config.health_check else {
                continue;
            };
            for (i, m) in pool.members.iter().enumerate() {
                let uri = hc.path.parse().unwrap_or_else(|_| Uri::from_static("/"));
                let host = HeaderValue::from_str(&m.backend.addr)
                    .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
                let key = (pool.name.to_string(), m.backend.addr.to_string());
                wanted.insert(
                    key,
                    (
                        m.backend.clone(),
                        Target {
                            config: hc.clone(),
                            addr: pool.addrs[i],
                            uri,
                            host,
                        },
                    ),
                );
            }
        }
        self.running.retain(|key, r| {
            let keep = wanted
                .get(key)
                .is_some_and(|(b, _)| Arc::ptr_eq(b, &r.backend));
            if !keep {
                r.task.abort();
                r.backend.reset_health();
            }
            keep
        });
        for (key, (backend, target)) in wanted {
            match self.running.get(&key) {
                Some(r) => {
                    r.target.send_if_modified(|t| {
                        let changed = *t != target;
                        *t = target.clone();
                        changed
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(target);
                    let task = tokio::spawn(run(backend.clone(), rx));
                    self.running.insert(
                        key,
                        Running {
                            target: tx,
                            task,
                            backend,
                        },
                    );
                }
            }
        }
    }

    pub fn stop_all(&mut self) {
        for (_, r) in self.running.drain() {
            r.task.abort();
        }
    }
}

impl Drop for Checkers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

async fn run(backend: Arc<Backend>, mut target: watch::Receiver<Target>) {
    loop {
        let t = target.borrow_and_update().clone();
        let ok = check_once(&backend, &t).await;
        if let Some(up) =
            backend.observe_check(ok, t.config.healthy_threshold, t.config.unhealthy_threshold)
        {
            let (from, to) = if up { ("down", "up") } else { ("up", "down") };
            tracing::warn!(pool = %backend.pool, backend = %backend.addr, from, to, "backend health changed");
        }
        tokio::select! {
            _ = tokio::time::sleep(t.config.interval) => {}
            // A retuned check starts its new schedule at once.
            changed = target.changed() => if changed.is_err() { return },
        }
    }
}

async fn check_once(backend: &Backend, t: &Target) -> bool {
    let mut req = Request::new(RequestBody::Empty);
    *req.uri_mut() = t.uri.clone();
    req.headers_mut().insert(http::header::HOST, t.host.clone());
    req.headers_mut().insert(
        http::header::USER_AGENT,
        HeaderValue::from_static("sluice-health-check"),
    );
    match tokio::time::timeout(t.config.timeout, backend.upstream.probe(t.addr, req)).await {
        Ok(Ok(resp)) => t.config.expect_status.contains(&resp.status().as_u16()),
        Ok(Err(e)) => {
            tracing::debug!(backend = %backend.addr, error = %e, "health check failed");
            false
        }
        Err(_) => false,
    }
}
