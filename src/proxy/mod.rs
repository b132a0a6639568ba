//! Handles one client request: route, pick and admit a backend, forward,
//! and stream the answer back.
//!
//! A plain `async fn` rather than a middleware stack: the steps and their
//! order are the product, and they read top to bottom here.

pub mod body;
pub mod error;
pub mod headers;
pub mod request_id;

use crate::balance::hash_bytes;
use crate::config::{HashKey, Strategy};
use crate::runtime::{Pool, Snapshot};
use crate::server::ConnInfo;
use body::{AccessRecord, Completion, RequestBody, ResponseBody};
use error::ProxyError;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Version};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Retry-After for a pool with no usable backend: about the time a health
/// check or breaker needs to let one back in.
const NO_BACKEND_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The service hyper calls for every request of a connection.
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
) -> Result<Response<ResponseBody>, Infallible> {
    // The completion guard exists from the first line: if the client goes
    // away and hyper drops this future, the request is still logged and the
    // connection still learns it ended.
    conn.request_started();
    let snap = conn.shared.snapshot();
    let request_id = request_id::from_headers(req.headers());
    let record = snap.config.log.access_log.then(|| {
        Box::new(AccessRecord {
            request_id: request_id.to_str().unwrap_or("-").to_string(),
            method: req.method().to_string(),
            host: req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri().authority().map(|a| a.as_str()))
                .unwrap_or("-")
                .to_string(),
            path: req.uri().path().to_string(),
            client: conn.peer.ip().to_string(),
            // What the log says if the client leaves before any answer
            // (nginx's 499).
            status: 499,
            ..Default::default()
        })
    });
    let mut done = Completion {
        conn: conn.clone(),
        lease: None,
        record,
        start: Instant::now(),
        bytes: 0,
        aborted: false,
    };
    let mut resp = match forward(&snap, &conn, req, &request_id, &mut done).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(request_id = ?request_id, error = %e, "request failed");
            e.response(&request_id)
        }
    };
    if let Some(r) = done.record.as_mut() {
        r.status = resp.status().as_u16();
    }
    resp.body_mut().set_completion(done);
    Ok(resp)
}

async fn forward(
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
    request_id: &HeaderValue,
    done: &mut Completion,
) -> Result<Response<ResponseBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let host = headers::request_host(&parts)?;
    let view = snap.listener(&conn.listener);
    let route = view
        .router
        .find(
            host.as_ref().and_then(|h| h.to_str().ok()),
            parts.uri.path(),
        )
        .ok_or(ProxyError::NoRoute)?;
    if let Some(r) = done.record.as_mut() {
        r.route = Some(route.name.clone());
        r.pool = Some(route.pool.name.clone());
    }
    let pool = &route.pool;
    let client_ip =
        headers::client_ip(conn.peer.ip(), &parts.headers, &view.config.trusted_proxies);
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let key = hash_key(pool, client_ip, &pq);

    headers::rewrite_request(
        &mut parts.headers,
        &headers::Forwarded {
            peer: conn.peer.ip(),
            https: conn.tls,
            host: host.as_ref(),
            request_id,
        },
    );
    parts.version = Version::HTTP_11;

    let (i, lease) = pool.pick(key, &[]).ok_or(ProxyError::NoBackend {
        retry_after: NO_BACKEND_RETRY_AFTER,
    })?;
    let backend = lease.backend().clone();
    if let Some(r) = done.record.as_mut() {
        r.backend = Some(backend.addr.clone());
        r.attempts = 1;
    }
    parts.uri = pool.upstream_uri(i, pq);
    let upstream_req = Request::from_parts(parts, RequestBody::Stream(body));
    let sent = tokio::time::timeout(
        pool.config.request_timeout,
        backend.upstream.client.request(upstream_req),
    )
    .await;
    lease.observe();
    let resp = match sent {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) if e.is_connect() => return Err(ProxyError::Connect(Box::new(e))),
        Ok(Err(e)) => return Err(ProxyError::Upstream(Box::new(e))),
        Err(_) => return Err(ProxyError::Timeout),
    };
    done.lease = Some(lease);
    let (mut rparts, rbody) = resp.into_parts();
    headers::rewrite_response(&mut rparts.headers, request_id);
    Ok(Response::from_parts(rparts, ResponseBody::stream(rbody)))
}

/// The consistent-hash key of a request, for the hash strategies.
fn hash_key(pool: &Pool, client_ip: IpAddr, pq: &PathAndQuery) -> Option<u64> {
    match pool.config.strategy {
        Strategy::IpHash => Some(match client_ip {
            IpAddr::V4(v4) => hash_bytes(&v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => hash_bytes(&v4.octets()),
                None => hash_bytes(&v6.octets()),
            },
        }),
        Strategy::UrlHash => Some(match pool.config.hash_key {
            HashKey::Path => hash_bytes(pq.path().as_bytes()),
            HashKey::PathAndQuery => hash_bytes(pq.as_str().as_bytes()),
        }),
        _ => None,
    }
}
