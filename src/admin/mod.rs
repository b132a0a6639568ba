//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/api/v1/pools`
//! and `/status`, on its own port (loopback by default).

mod config_json;
mod control;
mod explain;
mod status;

use crate::snapshot::{Shared, Snapshot};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running admin listener.
pub struct Admin {
    pub bind: SocketAddr,
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// A copy of the listening socket, for a binary upgrade to hand over.
    pub handover: std::net::TcpListener,
}

impl Admin {
    pub fn spawn(
        bind: SocketAddr,
        socket: std::net::TcpListener,
        shared: Arc<Shared>,
    ) -> std::io::Result<Admin> {
        let handover = socket.try_clone()?;
        let listener = TcpListener::from_std(socket)?;
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let graceful = GracefulShutdown::new();
            // The same accept loop as the listeners'.
            crate::server::accept_loop(listener, "admin", stopped, |stream, _| {
                let shared = shared.clone();
                let svc = service_fn(move |req| handle(req, shared.clone()));
                let conn = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned();
                let watched = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = watched.await {
                        tracing::debug!(error = %e, "admin connection ended with an error");
                    }
                });
                std::future::ready(true)
            })
            .await;
            // Browsers keep admin connections open; do not wait for them long.
            let _in_time = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
        });
        Ok(Admin {
            bind,
            local_addr,
            stop,
            task,
            handover,
        })
    }

    pub async fn stop(self) {
        drop(self.handover);
        self.stop.send_replace(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "admin task failed");
        }
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if let Some(rest) = req.uri().path().strip_prefix("/api/v1/pools/") {
        if req.method() != Method::PUT {
            return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only PUT\n"));
        }
        let rest = rest.to_string();
        return Ok(control::put_backend(req, &rest, &shared).await);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n"));
    }
    let snap = shared.snapshot();
    // Certificates obtained by ACME, by the listeners that serve them.
    let acme_certs: Vec<(&str, &str, i64)> = snap
        .config
        .listeners
        .iter()
        .flat_map(|l| l.acme_domains.iter().map(move |n| (l, n)))
        .filter_map(|(l, n)| {
            let c = crate::certstore::store().cert(n)?;
            Some((l.name.as_str(), n.as_str(), c.not_after))
        })
        .collect();
    Ok(match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(
                snap.pools.values().flat_map(|pool| {
                    pool.members.iter().enumerate().map(|(i, m)| crate::metrics::BackendGauges {
                        weight: pool.effective_weight(i, tokio::time::Instant::now()),
                        admin_state: m.backend.admin_state() as u8,
                        connections_opened: m.backend.conns.opened(),
                        pool: &pool.name,
                        addr: &m.backend.addr,
                        up: m.backend.is_up(),
                        in_flight: m.backend.in_flight(),
                        breaker: m.backend.breaker.code(),
                        queue: m.backend.conns.waiting(),
                    })
                }),
                snap.certificates()
                    .map(|(listener, c)| crate::metrics::CertificateGauge {
                        listener,
                        name: c.names.first().map_or("", String::as_str),
                        not_after: c.not_after,
                    })
                    .chain(acme_certs.iter().map(|&(listener, name, not_after)| {
                        crate::metrics::CertificateGauge {
                            listener,
                            name,
                            not_after,
                        }
                    })),
            ),
        ),
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" if shared.is_draining() => {
            reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "draining\n")
        }
        "/readyz" => reply(StatusCode::OK, TEXT, "ready\n"),
        "/api/v1/pools" => reply(
            StatusCode::OK,
            "application/json",
            pools_json(&snap).to_string(),
        ),
        "/api/v1/explain" => match explain::Question::parse(req.uri().query().unwrap_or("")) {
            Ok(q) => reply(
                StatusCode::OK,
                "application/json",
                explain::explain(&snap, &q).to_string(),
            ),
            Err(e) => reply(StatusCode::BAD_REQUEST, TEXT, format!("{e}\n")),
        },
        "/api/v1/config" => reply(
            StatusCode::OK,
            "application/json",
            config_json::config_json(&snap.config).to_string(),
        ),
        "/status" => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            status::page(&snap, &shared.history),
        ),
        "/" => reply(
            StatusCode::OK,
            TEXT,
            "sluice admin: /status /metrics /api/v1/pools /api/v1/config /api/v1/explain /healthz /readyz\n",
        ),
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    })
}

/// Every pool and backend with its live state.
pub fn pools_json(snap: &Snapshot) -> serde_json::Value {
    let pools: Vec<serde_json::Value> = snap
        .pools
        .values()
        .map(|p| {
            let backends: Vec<serde_json::Value> =
                (0..p.members.len()).map(|i| backend_json(p, i)).collect();
            serde_json::json!({
                "name": &*p.name,
                "strategy": p.config.strategy.as_str(),
                "backends": backends,
            })
        })
        .collect();
    serde_json::json!({ "pools": pools })
}

/// One backend of a pool with its live state, runtime control included.
pub fn backend_json(p: &crate::snapshot::Pool, i: usize) -> serde_json::Value {
    let m = &p.members[i];
    let b = &m.backend;
    let (requests, errors) = b.totals();
    serde_json::json!({
        "addr": &*b.addr,
        "weight": p.effective_weight(i, tokio::time::Instant::now()),
        "config_weight": p.config_weight(i),
        "admin_state": b.admin_state().name(),
        "health": if b.is_up() { "up" } else { "down" },
        "health_checked": p.config.health_check.is_some(),
        "breaker": b.breaker.state().name(),
        "in_flight": b.in_flight(),
        "connections": b.conns.open(),
        "idle_connections": b.conns.idle(),
        "queue": b.conns.waiting(),
        "latency_ms": (b.latency_ns() / 1e6 * 1000.0).round() / 1000.0,
        "requests": requests,
        "errors": errors,
    })
}

/// Decodes `%XX` escapes (an IPv6 address's brackets, for one); None if an
/// escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    crate::proxy::policy::percent_decode(s, true).map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_are_percent_decoded() {
        use super::percent_decode;
        assert_eq!(
            percent_decode("%5B%3A%3A1%5D:80").as_deref(),
            Some("[::1]:80")
        );
        assert_eq!(
            percent_decode("10.0.0.1:80").as_deref(),
            Some("10.0.0.1:80")
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%5"), None);
    }
}
