//! One request, whatever protocol brought it: route it, apply the client's
//! limit, pick and admit a backend, decide on retries, and account for it
//! when it ends. The HTTP/1 engine (`http1`) and the HTTP/2 front end
//! (`server::h2`) both call these; the bytes on the wire are theirs.
//!
//! Plain functions rather than a middleware stack: the steps and their
//! order are the product, and they read top to bottom in the callers.

pub mod completion;
pub mod error;
pub mod headers;
pub mod request_id;
pub mod retry;
pub mod upgrade;

use crate::balance::hash_bytes;
use crate::config::{HashKey, Strategy};
use crate::snapshot::{Pool, Route, Shared, Snapshot};
use error::ProxyError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::time::Instant;

/// One client connection, as the request path sees it.
pub struct Client {
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    pub tls: bool,
    pub shared: Arc<Shared>,
}

/// Where a request goes, decided before any backend is picked.
pub struct Target {
    pub route: Arc<Route>,
    /// The client's address as limits and ip_hash see it (X-Forwarded-For
    /// believed only from trusted proxies).
    pub client_ip: IpAddr,
    /// The consistent-hash key, for the hash strategies.
    pub key: Option<u64>,
}

/// Routes a request by host (any case, any port) and `path_and_query`, and
/// takes a token from the route's per-client limit. The route found is
/// recorded in `done` even when the limit refuses the request, so the
/// refusal is counted under its route.
pub fn target<'v>(
    snap: &Snapshot,
    client: &Client,
    host: Option<&str>,
    path_and_query: &str,
    forwarded_for: impl Iterator<Item = &'v [u8]>,
    done: &mut completion::Completion,
) -> Result<Target, ProxyError> {
    let view = snap.listener(&client.listener);
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p);
    let route = view.router.find(host, path).ok_or(ProxyError::NoRoute)?;
    done.route = Some(route.clone());
    let client_ip = headers::client_ip(
        client.peer.ip(),
        forwarded_for,
        &view.config.trusted_proxies,
    );
    if let (Some(limiter), Some(rl)) = (&route.limiter, &route.config.rate_limit) {
        limiter
            .check(client_ip, Instant::now(), rl.requests_per_second, rl.burst)
            .map_err(|retry_after| {
                client
                    .shared
                    .metrics
                    .rate_limited
                    .with_label_values(&["client", &route.name])
                    .inc();
                ProxyError::ClientRateLimited { retry_after }
            })?;
    }
    Ok(Target {
        key: hash_key(&route.pool, client_ip, path, path_and_query),
        route: route.clone(),
        client_ip,
    })
}

/// The consistent-hash key of a request, for the hash strategies.
fn hash_key(pool: &Pool, client_ip: IpAddr, path: &str, path_and_query: &str) -> Option<u64> {
    match pool.config.strategy {
        Strategy::IpHash => Some(match client_ip {
            IpAddr::V4(v4) => hash_bytes(&v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => hash_bytes(&v4.octets()),
                None => hash_bytes(&v6.octets()),
            },
        }),
        Strategy::UrlHash => Some(match pool.config.hash_key {
            HashKey::Path => hash_bytes(path.as_bytes()),
            HashKey::PathAndQuery => hash_bytes(path_and_query.as_bytes()),
        }),
        _ => None,
    }
}
