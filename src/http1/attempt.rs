//! The tries of one request on its pool, the same for an HTTP/1 request and
//! for an HTTP/2 one: pick and admit a backend, take a pooled connection
//! (or connect), send and read the response head (`exchange`), then let
//! the retry policy (`proxy::retry::Attempts`) decide whether to try again.
//!
//! A pooled connection that turns out closed before any byte of an answer
//! (the backend closed it while it idled) is not a failure of the backend:
//! the request goes again at once on a new connection to the same backend,
//! when its body can be sent again.

use super::body::{Source, SourceError};
use super::buf::Buf;
use super::exchange::{self, Failure, Try, Upload};
use super::h2_upstream::H2Exchange;
use super::io::Timer;
use super::response_head::ResponseHead;
use crate::backend::conns::{Conn, GetError};
use crate::backend::stream::UpStream;
use crate::backend::Backend;
use crate::config::UpstreamProtocol;
use crate::metrics::Metrics;
use crate::proxy::completion::Completion;
use crate::proxy::error::ProxyError;
use crate::proxy::retry::{Attempts, Next, Tried};
use crate::snapshot::Pool;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// Retry-After when a backend's connections stayed busy: about the time
/// one takes to come free.
const QUEUE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// What the tries need besides the policy.
pub struct Request<'a, S, P: ?Sized> {
    pub pool: &'a Pool,
    /// How long each try waits for the response head.
    pub timeout: std::time::Duration,
    /// The request head for the backend.
    pub head: &'a [u8],
    pub body: &'a mut S,
    /// Where the body comes from (see `Source`).
    pub peer: &'a mut P,
    pub head_request: bool,
    pub upgrade: bool,
    pub resp_buf: &'a mut Buf,
    pub resp: &'a mut ResponseHead,
    pub timer: &'a mut Timer,
}

/// A response head in `resp`, on this connection to this backend.
pub struct Answered {
    pub conn: Conn,
    pub addr: SocketAddr,
    pub backend: Arc<Backend>,
    pub upload: Upload,
}

/// Why no response head: the client's body failed, or the pool's answer
/// (no backend, unreachable, broken, too slow).
pub enum Unanswered {
    Client(SourceError),
    Proxy(ProxyError),
}

/// Tries the request until a backend answers or the policy gives up. The
/// last try's lease goes into `done` (held until the request ends).
pub async fn run<S, P>(
    r: Request<'_, S, P>,
    attempts: &mut Attempts<'_>,
    metrics: &Metrics,
    done: &mut Completion,
) -> Result<Answered, Unanswered>
where
    S: Source<P>,
    P: ?Sized,
{
    let (mut i, mut lease) = attempts.first(metrics).map_err(Unanswered::Proxy)?;
    let mut fresh_only = false;
    loop {
        let backend = lease.backend().clone();
        done.set_backend(&backend.addr, attempts.retries + 1);
        let addr = r.pool.addrs[i];
        let config = &r.pool.config;
        let proxy_header = config.send_proxy_protocol;
        let tls = r.pool.tls_target(i);
        let got = match tls {
            Err(e) => Err(GetError::Connect(e)),
            Ok(tls) if config.protocol.is_h2() => {
                let got = backend.conns.stream(
                    addr,
                    tls,
                    fresh_only,
                    config.max_connections,
                    config.queue_timeout,
                );
                got.await.map(|(permit, slot)| {
                    let reused = slot.reused;
                    let https = config.protocol == UpstreamProtocol::H2;
                    let exchange = H2Exchange::new(slot, https, backend.addr.clone());
                    (Conn::mux(UpStream::Mux(Box::new(exchange)), permit), reused)
                })
            }
            Ok(tls) => {
                backend
                    .conns
                    .get(
                        addr,
                        tls,
                        // A connection that names its client serves that client's
                        // one request: never a pooled one.
                        fresh_only || proxy_header.is_some(),
                        config.max_connections,
                        config.queue_timeout,
                    )
                    .await
            }
        };
        fresh_only = false;
        let got = match (got, proxy_header) {
            (Ok((mut c, reused)), Some(version)) => {
                let client = &done.client;
                let header = crate::proxy_protocol::header(version, client.peer, client.local);
                c.reusable = false;
                match tokio::io::AsyncWriteExt::write_all(&mut c.stream, &header).await {
                    Ok(()) => Ok((c, reused)),
                    Err(e) => Err(GetError::Connect(e)),
                }
            }
            (got, _) => got,
        };
        let (mut conn, reused) = match got {
            Ok(c) => c,
            Err(GetError::Queue) => {
                done.lease = Some(lease);
                return Err(Unanswered::Proxy(ProxyError::Queue {
                    retry_after: QUEUE_RETRY_AFTER,
                }));
            }
            Err(GetError::Connect(e)) => {
                match attempts.after(i, &mut lease, Tried::ConnectFailed, metrics) {
                    Next::Retry { backoff, next } => {
                        (i, lease) = next;
                        sleep(backoff).await;
                        continue;
                    }
                    Next::Done => {
                        done.lease = Some(lease);
                        return Err(Unanswered::Proxy(ProxyError::Connect(Box::new(e))));
                    }
                }
            }
        };
        r.body.rewind();
        r.resp_buf.release();
        let sent = exchange::send(
            &mut conn.stream,
            Try {
                head: r.head,
                body: &mut *r.body,
                peer: &mut *r.peer,
                resp_buf: &mut *r.resp_buf,
                resp: &mut *r.resp,
                head_request: r.head_request,
                upgrade: r.upgrade,
                deadline: Instant::now() + r.timeout,
                timer: &mut *r.timer,
            },
        )
        .await;
        let tried = match &sent {
            Ok(_) => Tried::Response(r.resp.status),
            // A pooled connection the backend closed while it idled.
            Err(Failure::Closed(_)) if reused && r.body.rewind() => {
                fresh_only = true;
                continue;
            }
            // The client's fault, not the backend's: nothing recorded.
            Err(Failure::Client(e)) => return Err(Unanswered::Client(*e)),
            Err(Failure::Timeout) => Tried::Timeout,
            Err(Failure::Closed(_) | Failure::Broken(_)) => Tried::Broken,
        };
        match attempts.after(i, &mut lease, tried, metrics) {
            Next::Retry { backoff, next } => {
                (i, lease) = next;
                sleep(backoff).await;
            }
            Next::Done => {
                done.lease = Some(lease);
                return match sent {
                    Ok(upload) => Ok(Answered {
                        conn,
                        addr,
                        backend,
                        upload,
                    }),
                    Err(Failure::Timeout) => Err(Unanswered::Proxy(ProxyError::Timeout)),
                    Err(e) => Err(Unanswered::Proxy(ProxyError::Upstream(Box::new(e)))),
                };
            }
        }
    }
}

async fn sleep(d: std::time::Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}
