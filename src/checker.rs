//! Active health checks: one task per checked backend, so a slow check of
//! one backend never delays another's.
//!
//! `Checkers::apply` runs a plan's checker changes after every snapshot is
//! published (start and reload): it starts checkers for newly checked
//! backends, retunes the running ones (a new interval or path takes effect
//! at the next check, without resetting the backend's health), and stops
//! the checkers of backends that left the config or whose pool no longer
//! has a `health_check`.

use crate::backend::Backend;
use crate::config::HealthCheckConfig;
use crate::http1::buf::Buf;
use crate::http1::codec::{self, ResponseHead};
use crate::plan::Delta;
use crate::snapshot::Snapshot;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What one check needs, replaced as a whole on reload.
#[derive(Clone, Debug)]
pub struct Target {
    pub config: HealthCheckConfig,
    /// The backend's resolved address.
    pub addr: SocketAddr,
    /// The request the check sends (`GET path`, Host: the backend's addr
    /// as written), made once per reload.
    pub request: Vec<u8>,
    /// The pool's `send_proxy_protocol`: checks open with a header too.
    pub proxy_header: Option<crate::config::ProxyProtocolVersion>,
    /// The pool speaks HTTP/2 (h2 or h2c): so do its checks.
    pub h2: bool,
    /// The pool's TLS to the backend, if it has one: checks use it too.
    pub tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl PartialEq for Target {
    fn eq(&self, other: &Target) -> bool {
        let same_tls = match (&self.tls, &other.tls) {
            (None, None) => true,
            (Some((a, n)), Some((b, m))) => Arc::ptr_eq(a, b) && n == m,
            _ => false,
        };
        same_tls
            && self.config == other.config
            && self.addr == other.addr
            && self.request == other.request
            && self.proxy_header == other.proxy_header
            && self.h2 == other.h2
    }
}

impl Target {
    fn tls_target(&self) -> Option<crate::backend::stream::TlsTarget<'_>> {
        self.tls
            .as_ref()
            .map(|(config, name)| crate::backend::stream::TlsTarget { config, name })
    }
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
    /// Brings the running checkers in line with the members `snap` has
    /// (after DNS changed a pool's members): one per member of every pool
    /// with a `health_check`, keyed by (pool, member addr).
    pub fn sync(&mut self, snap: &Snapshot) {
        let wanted: std::collections::BTreeSet<(String, String)> = snap
            .pools
            .values()
            .filter(|p| p.config.health_check.is_some())
            .flat_map(|p| {
                p.members
                    .iter()
                    .map(move |m| (p.name.to_string(), m.backend.addr.to_string()))
            })
            .collect();
        let delta = Delta {
            start: wanted
                .iter()
                .filter(|k| !self.running.contains_key(*k))
                .cloned()
                .collect(),
            keep: wanted
                .iter()
                .filter(|k| self.running.contains_key(*k))
                .cloned()
                .collect(),
            stop: self
                .running
                .keys()
                .filter(|k| !wanted.contains(*k))
                .cloned()
                .collect(),
        };
        self.apply(&delta, snap);
    }

    /// Carries out a plan's checker changes (`delta`, keyed by (pool,
    /// addr as written)) against the snapshot just published: stops the
    /// removed (their backends forget their check results), retunes the kept
    /// in place (a new interval or path takes effect at the next check,
    /// without resetting the backend's health) and starts the new.
    pub fn apply(&mut self, delta: &Delta<(String, String)>, snap: &Snapshot) {
        for key in &delta.stop {
            if let Some(r) = self.running.remove(key) {
                r.task.abort();
                r.backend.reset_health();
            }
        }
        for key in delta.start.iter().chain(&delta.keep) {
            let Some((backend, target)) = target(snap, key) else {
                continue;
            };
            match self.running.get(key) {
                // Kept, and still the same backend: retune.
                Some(r) if Arc::ptr_eq(&r.backend, &backend) => {
                    r.target.send_if_modified(|t| {
                        let changed = *t != target;
                        *t = target.clone();
                        changed
                    });
                }
                _ => {
                    if let Some(old) = self.running.remove(key) {
                        old.task.abort();
                    }
                    let (tx, rx) = watch::channel(target);
                    let task = tokio::spawn(run(backend.clone(), rx));
                    self.running.insert(
                        key.clone(),
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

/// The backend behind `key` in `snap`, and what its check sends.
fn target(snap: &Snapshot, (pool, addr): &(String, String)) -> Option<(Arc<Backend>, Target)> {
    let pool = snap.pools.get(pool)?;
    let hc = pool.config.health_check.as_ref()?;
    let i = pool
        .members
        .iter()
        .position(|m| *m.backend.addr == **addr)?;
    let backend = pool.members[i].backend.clone();
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {}\r\nuser-agent: sluice-health-check\r\nconnection: close\r\n\r\n",
        hc.path,
        hc.host.as_deref().unwrap_or(&backend.addr)
    )
    .into_bytes();
    Some((
        backend,
        Target {
            config: hc.clone(),
            addr: pool.addrs[i],
            request,
            proxy_header: pool.config.send_proxy_protocol,
            h2: pool.config.protocol.is_h2(),
            tls: pool
                .tls_target(i)
                .ok()
                .flatten()
                .map(|t| (t.config.clone(), t.name.clone())),
        },
    ))
}

async fn run(backend: Arc<Backend>, mut target: watch::Receiver<Target>) {
    loop {
        let t = target.borrow_and_update().clone();
        // A backend in maintenance (admin API) is not checked: it is being
        // worked on, and its health is whatever the last checks said.
        if backend.admin_state() != crate::backend::AdminState::Maint {
            let ok = check_once(&backend, &t).await;
            if let Some(up) =
                backend.observe_check(ok, t.config.healthy_threshold, t.config.unhealthy_threshold)
            {
                let (from, to) = if up { ("down", "up") } else { ("up", "down") };
                tracing::warn!(pool = %backend.pool, backend = %backend.addr, from, to, "backend health changed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(t.config.interval) => {}
            // A retuned check starts its new schedule at once.
            changed = target.changed() => if changed.is_err() { return },
        }
    }
}

async fn check_once(backend: &Backend, t: &Target) -> bool {
    match tokio::time::timeout(t.config.timeout, probe(backend, t)).await {
        Ok(Ok(status)) => t.config.expect_status.contains(&status),
        Ok(Err(e)) => {
            tracing::debug!(backend = %backend.addr, error = %e, "health check failed");
            false
        }
        Err(_) => false,
    }
}

/// Sends the check on a new connection (closed after it: checks test that
/// the backend accepts connections, and leave the pool to requests) and
/// reads the status of the response head.
async fn probe(backend: &Backend, t: &Target) -> std::io::Result<u16> {
    use tokio::io::AsyncWriteExt;
    let mut stream = backend.conns.probe_connect(t.addr, t.tls_target()).await?;
    if t.h2 {
        let scheme = if t.tls.is_some() { "https" } else { "http" };
        let authority = t.config.host.as_deref().unwrap_or(&backend.addr);
        return crate::backend::h2::probe(stream, scheme, authority, t.config.path.as_str()).await;
    }
    if let Some(version) = t.proxy_header {
        // A check names no client: v2 LOCAL, or v1 "PROXY UNKNOWN".
        stream
            .write_all(&crate::proxy_protocol::local_header(version))
            .await?;
    }
    stream.write_all(&t.request).await?;
    let mut buf = Buf::new(crate::http1::buf::HEAD);
    let mut head = ResponseHead::new();
    let mut scanned = 0;
    const LIMIT: usize = 64 * 1024;
    loop {
        if !buf.reserve(1024, LIMIT + 1024) || buf.read(&mut stream).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        match codec::parse_response(buf.unread(), &mut head, &mut scanned, LIMIT, false) {
            Ok(true) if head.informational() => buf.consume(head.len),
            Ok(true) => return Ok(head.status),
            Ok(false) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
    }
}
