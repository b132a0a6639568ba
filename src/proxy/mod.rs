//! Handles one client request: route, pick and admit a backend, forward,
//! and stream the answer back.
//!
//! A plain `async fn` rather than a middleware stack: the steps and their
//! order are the product, and they read top to bottom here.

pub mod body;
pub mod error;
pub mod headers;
pub mod request_id;
pub mod retry;
pub mod upgrade;

use crate::backend::upstream::{Pooled, UpstreamError};
use crate::balance::hash_bytes;
use crate::config::{HashKey, Strategy};
use crate::runtime::{Pool, Refusal, Snapshot};
use crate::server::ConnInfo;
use body::{AccessRecord, Completion, RequestBody, ResponseBody};
use error::ProxyError;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri, Version};
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
    // A request the framing layer refused: hyper was handed a stand-in.
    if req.uri().path() == crate::server::io::REJECTED_PATH {
        if let Some(r) = conn.rejection() {
            let id = request_id::fresh();
            crate::accesslog::rejected(&conn, r.status, id.to_str().unwrap_or("-"));
            return Ok(ProxyError::Rejected(r).response(&id));
        }
    }
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
            ..Default::default()
        })
    });
    let mut done = Completion {
        conn: conn.clone(),
        route: None,
        // What is counted and logged if the client leaves before any
        // answer (nginx's 499).
        status: http::StatusCode::from_u16(499).unwrap_or(http::StatusCode::BAD_REQUEST),
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
    done.status = resp.status();
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
    let metrics = &conn.shared.metrics;
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
    done.route = Some(route.clone());
    let pool = &route.pool;
    let client_ip =
        headers::client_ip(conn.peer.ip(), &parts.headers, &view.config.trusted_proxies);
    if let (Some(limiter), Some(rl)) = (&route.limiter, &route.config.rate_limit) {
        limiter
            .check(client_ip, Instant::now(), rl.requests_per_second, rl.burst)
            .map_err(|retry_after| {
                metrics
                    .rate_limited
                    .with_label_values(&["client", &route.name])
                    .inc();
                ProxyError::ClientRateLimited { retry_after }
            })?;
    }
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let key = hash_key(pool, client_ip, &pq);

    // A WebSocket handshake keeps its Upgrade headers and hands over the
    // client connection when the backend agrees (see `upgrade`).
    let websocket = upgrade::websocket(&parts);
    let client_upgrade = websocket
        .as_ref()
        .and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
    headers::rewrite_request(
        &mut parts.headers,
        &headers::Forwarded {
            peer: conn.peer.ip(),
            https: conn.tls,
            host: host.as_ref(),
            request_id,
        },
    );
    if let Some(u) = &websocket {
        upgrade::restore_headers(&mut parts.headers, u.clone());
    }
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();

    // A request that may be retried keeps its body (up to 64 KiB) so that
    // it can be sent again; any other body streams straight through.
    let sec = retry::now_sec();
    let retry_policy = pool.config.retry.as_ref();
    if retry_policy.is_some() {
        pool.budget.deposit(sec);
    }
    let replayable = retry_policy.is_some_and(|r| r.attempts > 0)
        && retry::replay_safe(&parts.method, &parts.headers);
    let (kept, mut once) = if replayable {
        let kept = retry::keep_body(body).await;
        // The body broke the framing rules or stalled: nothing is sent.
        if let Some(r) = conn.rejection() {
            return Err(ProxyError::Rejected(r));
        }
        match kept {
            retry::Kept::Whole(b) => (Some(b), None),
            retry::Kept::Once(b) => (None, Some(b)),
        }
    } else {
        (None, Some(RequestBody::Stream(body)))
    };

    let mut tried: Vec<usize> = Vec::new();
    let mut retries = 0u32;
    let mut picked = pool.pick(key, &tried).map_err(|refusal| {
        if refusal == Refusal::RateLimited {
            metrics
                .rate_limited
                .with_label_values(&["backend", &pool.name])
                .inc();
        }
        ProxyError::NoBackend {
            retry_after: NO_BACKEND_RETRY_AFTER,
        }
    })?;
    loop {
        let (i, mut lease) = picked;
        // Only a request that can be retried needs the list (no allocation
        // per request otherwise).
        if kept.is_some() {
            tried.push(i);
        }
        let backend = lease.backend().clone();
        if let Some(r) = done.record.as_mut() {
            r.backend = Some(backend.addr.clone());
            r.attempts = retries + 1;
        }
        let body = match &kept {
            Some(b) => RequestBody::Full(Some(b.clone())),
            None => once.take().unwrap_or(RequestBody::Empty),
        };
        // Only a replayable request needs its head again.
        let head = if kept.is_some() {
            parts.clone()
        } else {
            std::mem::replace(&mut parts, Request::new(()).into_parts().0)
        };
        let mut upstream_req = Request::from_parts(head, body);
        // Origin form: the backend's address is the connection's, not the URI's.
        *upstream_req.uri_mut() = Uri::from(pq.clone());
        let sent = tokio::time::timeout(
            pool.config.request_timeout,
            backend.upstream.send(pool.addrs[i], upstream_req),
        )
        .await;
        let rtt = lease.observe();
        let mut pooled = None;
        let outcome = match sent {
            Ok(Ok((resp, conn))) => {
                pooled = Some(conn);
                Ok(resp)
            }
            Ok(Err(e)) => match conn.rejection() {
                // The client's body broke off (framing error, stall): the
                // client's fault, not the backend's.
                Some(r) => return Err(ProxyError::Rejected(r)),
                None => Err(match e {
                    UpstreamError::Connect(_) => ProxyError::Connect(Box::new(e)),
                    UpstreamError::Http(_) => ProxyError::Upstream(Box::new(e)),
                }),
            },
            Err(_) => Err(ProxyError::Timeout),
        };
        let (success, retryable) = classify(&outcome, retry_policy);
        lease.record(success, pool.breaker.as_ref());
        backend.count_try(!success);
        let code = match &outcome {
            Ok(r) => r.status(),
            Err(e) => e.status(),
        };
        metrics
            .upstream_requests
            .with_label_values(&[&*pool.name, &*backend.addr, code.as_str()])
            .inc();
        pool.upstream_duration[i].observe(rtt.as_secs_f64());

        if let Some(policy) =
            retry_policy.filter(|p| retryable && kept.is_some() && retries < p.attempts)
        {
            if pool.budget.try_withdraw(sec, policy.budget_ratio) {
                drop(lease);
                tokio::time::sleep(retry::backoff(retries, policy.backoff, policy.backoff_max))
                    .await;
                // Another backend if one is left, else any usable one.
                if let Ok(next) = pool.pick(key, &tried).or_else(|_| pool.pick(key, &[])) {
                    tracing::debug!(pool = %pool.name, backend = %backend.addr, retry = retries + 1, "retrying");
                    metrics.retries.with_label_values(&[&*pool.name]).inc();
                    picked = next;
                    retries += 1;
                    continue;
                }
                let resp = outcome?;
                return Ok(client_response(resp, pooled, request_id));
            }
        }
        let mut resp = outcome?;
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            // Only an upgrade the client asked for may be switched to.
            let Some(client_upgrade) = client_upgrade else {
                return Err(ProxyError::Upstream(
                    "backend switched protocols unasked".into(),
                ));
            };
            let upgrade_header = resp.headers().get(http::header::UPGRADE).cloned();
            let backend_upgrade = hyper::upgrade::on(&mut resp);
            // From here the client's bytes belong to the tunnel, not to a
            // next request head.
            conn.set_upgraded();
            tokio::spawn(upgrade::tunnel(
                client_upgrade,
                backend_upgrade,
                lease,
                view.config.idle_timeout,
            ));
            // The backend connection belongs to the tunnel now.
            let mut resp = client_response(resp, None, request_id);
            if let Some(u) = upgrade_header {
                upgrade::restore_headers(resp.headers_mut(), u);
            }
            return Ok(resp);
        }
        done.lease = Some(lease);
        return Ok(client_response(resp, pooled, request_id));
    }
}

/// Whether an outcome counts as a success for the breaker, and whether the
/// pool's retry policy retries it.
fn classify(
    outcome: &Result<Response<Incoming>, ProxyError>,
    policy: Option<&crate::config::RetryConfig>,
) -> (bool, bool) {
    let on_status = |s: u16| policy.is_some_and(|p| p.on_status.contains(&s));
    match outcome {
        Ok(r) => {
            let s = r.status().as_u16();
            (s < 500, on_status(s))
        }
        Err(ProxyError::Connect(_)) => (false, policy.is_some_and(|p| p.on_connect_failure)),
        Err(ProxyError::Timeout) => (false, policy.is_some_and(|p| p.on_timeout)),
        Err(_) => (false, on_status(502)),
    }
}

fn client_response(
    resp: Response<Incoming>,
    conn: Option<Pooled>,
    request_id: &HeaderValue,
) -> Response<ResponseBody> {
    let (mut parts, body) = resp.into_parts();
    headers::rewrite_response(&mut parts.headers, request_id);
    Response::from_parts(parts, ResponseBody::stream(body, conn))
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
