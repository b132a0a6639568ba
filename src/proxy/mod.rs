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
pub mod mirror;
pub mod policy;
pub mod request_id;
pub mod retry;
pub mod upgrade;

use crate::balance::hash_bytes;
use crate::config::{HashKey, RateLimitKey, Strategy};
use crate::snapshot::{Forward, Pool, Route, Shared, Snapshot};
use error::ProxyError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One client connection, as the request path sees it.
pub struct Client {
    pub listener: Arc<str>,
    /// The client's address: the TCP peer, or the source of the PROXY
    /// protocol header on a `proxy_protocol` listener.
    pub peer: SocketAddr,
    /// The address the client connected to (for a PROXY header sent on).
    pub local: SocketAddr,
    pub tls: bool,
    pub shared: Arc<Shared>,
}

/// Where a request goes, decided before any backend is picked.
pub struct Target {
    pub route: Arc<Route>,
    /// The pool of this request (a split draws one per request).
    pub pool: Arc<Pool>,
    /// The client's address as limits and ip_hash see it (X-Forwarded-For
    /// believed only from trusted proxies).
    pub client_ip: IpAddr,
    /// The consistent-hash key, for the hash strategies.
    pub key: Option<u64>,
    /// How long the backend has for its response head: the route's
    /// `timeout` or the pool's `request_timeout`.
    pub timeout: Duration,
    /// The path and query the backend gets, when the route rewrites it.
    pub path: Option<String>,
    /// The sticky-session token of the request's cookie (sticky pools).
    pub sticky: Option<u64>,
}

impl Target {
    /// The `Set-Cookie` of a sticky pool for an answer from backend `addr`,
    /// unless the request's cookie already names it.
    pub fn sticky_cookie(&self, addr: &str) -> Option<String> {
        let s = self.pool.config.sticky.as_ref()?;
        let pinned_here = self
            .sticky
            .and_then(|t| self.pool.pinned_member(t))
            .is_some_and(|i| *self.pool.members[i].backend.addr == *addr);
        (!pinned_here).then(|| crate::sticky::cookie(s, &self.pool.name, addr))
    }
}

/// The parts of a request that routing and policy look at, whatever
/// protocol brought it.
pub trait Head {
    fn method(&self) -> &[u8];
    /// Whether a field `name` (lower case) has exactly `value`.
    fn has(&self, name: &str, value: &str) -> bool;
    /// The first value of the field `name` (lower case).
    fn first(&self, name: &str) -> Option<&[u8]>;
    /// Every value of the field `name` (lower case), in order.
    fn each(&self, name: &str, f: &mut dyn FnMut(&[u8]));
}

/// A request as `target` sees it.
pub struct Ask<'a> {
    pub host: Option<&'a str>,
    pub path_and_query: &'a str,
    pub head: &'a (dyn Head + Sync),
    /// The body's declared length (Content-Length), if any.
    pub content_length: Option<u64>,
}

/// Routes a request by host (any case, any port), path and the route's
/// method/header/query conditions, then applies the route's policy in
/// nginx's order: redirect, rate limit, allow/deny, basic auth, body size.
/// The route found is recorded in `done` even when its policy refuses the
/// request, so the refusal is counted under its route.
pub async fn target<'v>(
    snap: &Snapshot,
    client: &Client,
    ask: &Ask<'_>,
    forwarded_for: impl Iterator<Item = &'v [u8]>,
    done: &mut completion::Completion,
) -> Result<Target, ProxyError> {
    let view = snap.listener(&client.listener);
    let (path, query) = ask
        .path_and_query
        .split_once('?')
        .map_or((ask.path_and_query, None), |(p, q)| (p, Some(q)));
    let route = view
        .router
        .find_matching(ask.host, path, &|r: &Arc<Route>| {
            policy::conditions_hold(&r.config, ask.head, query)
        })
        .ok_or(ProxyError::NoRoute)?;
    done.route = Some(route.clone());
    let client_ip = headers::client_ip(
        client.peer.ip(),
        forwarded_for,
        &view.config.trusted_proxies,
    );
    let pool = match &route.forward {
        Forward::Redirect(r) => {
            return Err(policy::redirect(
                r,
                &route.config,
                client.tls,
                ask.host,
                path,
                query,
            ))
        }
        f => f.pick().ok_or(ProxyError::NoBackend {
            retry_after: Duration::from_secs(1),
        })?,
    };
    if let Some(r) = done.record.as_mut() {
        r.pool = Some(pool.name.clone());
    }
    if let (Some(limiter), Some(rl)) = (&route.limiter, &route.config.rate_limit) {
        let refused = |retry_after| {
            client
                .shared
                .metrics
                .rate_limited
                .with_label_values(&["client", &route.name])
                .inc();
            ProxyError::ClientRateLimited { retry_after }
        };
        let shared = match (&snap.redis, rl.global) {
            (Some(redis), true) => {
                let key = global_key(&route.name, &rl.key, client_ip, ask.head);
                redis.check(&key, rl.requests_per_second, rl.burst).await
            }
            _ => None,
        };
        match shared {
            Some(decided) => decided.map_err(refused)?,
            // Local, or Redis did not answer in time.
            None => {
                let key = match &rl.key {
                    RateLimitKey::ClientIp => limiter.ip_key(client_ip),
                    RateLimitKey::Header(name) => limiter.value_key(ask.head.first(name)),
                    RateLimitKey::Route => 0,
                };
                limiter
                    .check(key, Instant::now(), rl.requests_per_second, rl.burst)
                    .map_err(refused)?
            }
        }
    }
    policy::admit(&route.config, client_ip)?;
    if let (Some(users), Some(auth)) = (&route.users, &route.config.basic_auth) {
        if !users.check(ask.head.first("authorization")).await {
            return Err(ProxyError::Unauthorized {
                realm: auth.realm.clone(),
            });
        }
    }
    let max = route.config.max_body_bytes;
    if max > 0 && ask.content_length.is_some_and(|n| n > max) {
        return Err(ProxyError::BodyTooLarge);
    }
    Ok(Target {
        key: hash_key(pool, client_ip, path, ask.path_and_query),
        timeout: route.config.timeout.unwrap_or(pool.config.request_timeout),
        path: policy::rewrite_path(&route.config, path, query),
        sticky: pool
            .config
            .sticky
            .as_ref()
            .and_then(|s| headers::cookie_token(ask.head, &s.cookie)),
        pool: pool.clone(),
        route: route.clone(),
        client_ip,
    })
}

/// The Redis key of a global bucket: the same on every instance (a fixed
/// hash, never a per-process one), and no client value in clear.
fn global_key(route: &str, key: &RateLimitKey, ip: IpAddr, head: &dyn Head) -> String {
    let k = match key {
        RateLimitKey::ClientIp => match ip.to_canonical() {
            IpAddr::V4(v4) => hash_bytes(&v4.octets()),
            IpAddr::V6(v6) => hash_bytes(&v6.octets()),
        },
        RateLimitKey::Header(name) => hash_bytes(head.first(name).unwrap_or(b"")),
        RateLimitKey::Route => 0,
    };
    format!("sluice:rl:{route}:{k:016x}")
}

/// The consistent-hash key of a request, for the hash strategies.
pub fn hash_key(pool: &Pool, client_ip: IpAddr, path: &str, path_and_query: &str) -> Option<u64> {
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
