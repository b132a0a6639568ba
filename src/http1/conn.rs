//! The client connection's task: read a head, serve it, loop.
//!
//! - `header_read_timeout`: from the first byte of a head (from accept for
//!   the first request) until its end; on expiry: 408 and close.
//! - `idle_timeout`: a keep-alive connection with no request in progress is
//!   closed after this long. A request body that stalls this long gets 408,
//!   and a response the client does not take for this long is abandoned.
//! - Parking: a connection idle for `PARK_AFTER` (or that has sent nothing
//!   yet) returns its buffers and its task waits on the bare socket
//!   (`Ended::Parked`); it costs a few hundred bytes while it idles, as
//!   nginx's do.
//! - Refusals (400, 405, 408, 414, 431) are answered here, in order, with
//!   `Connection: close`, logged and counted like any request; the rest of
//!   what the client sends is read and dropped for a moment (lingering
//!   close) so that it reads the answer rather than a reset.
//! - A connection that opens with the HTTP/2 preface is handed to hyper.

use super::buf::{self, give_scratch, take_scratch, Buf, Scratch};
use super::codec::{self, Kind, Reject, RequestHead, ResponseHead};
use super::io::{self, Stream, Timer};
use super::request;
use crate::proxy::completion::{AccessRecord, Completion};
use crate::proxy::request_id::RequestId;
use crate::proxy::Client;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a keep-alive connection idles before it is parked. Long enough
/// that a busy connection (a next request within a round trip or two) keeps
/// its buffers, short enough that thousands of idle connections hold
/// almost nothing.
pub const PARK_AFTER: Duration = Duration::from_millis(10);

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The listener settings a connection enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
}

/// How a connection's task ended.
pub enum Ended<S> {
    Closed,
    /// Idle: wait for the socket, then `serve` again. `idle_since` is None
    /// before the first request (its head timer counts from accept).
    Parked {
        stream: S,
        idle_since: Option<Instant>,
    },
    /// The client spoke the HTTP/2 preface: these bytes and the stream
    /// belong to HTTP/2.
    H2 {
        stream: S,
        read: Vec<u8>,
    },
}

/// What the connection does after a request.
pub(super) enum After {
    KeepAlive,
    /// Shut the write side and close.
    Close,
    /// The client may still be sending: close lingering.
    Linger,
    /// Nothing more can be written (the client left, or a tunnel ended).
    Gone,
}

enum HeadRead {
    Ready,
    Closed,
    Park,
    H2,
    Refused(Reject),
}

/// The state of one client connection while it is busy.
pub(super) struct Conn<S> {
    pub io: S,
    pub client: Arc<Client>,
    pub limits: Limits,
    pub stop: watch::Receiver<bool>,
    /// Client bytes; the head being served is kept at its front.
    pub rbuf: Buf,
    /// Backend bytes of the exchange in progress.
    pub bbuf: Buf,
    /// Heads on their way out: the backend's request head, then (after
    /// it) the client's response head or sluice's answer.
    pub out: Vec<u8>,
    pub head: RequestHead,
    pub resp: ResponseHead,
    pub timer: Timer,
    pub stall_timer: Timer,
    scanned: usize,
}

/// Serves a client connection's HTTP/1 requests until it closes, parks or
/// turns out to be HTTP/2. `accepted`: when the connection was accepted
/// (the first head's timer counts from then). `resumed`: since when it was
/// idle, if it was parked before (the idle timeout counts on).
pub async fn serve<S: Stream>(
    io: S,
    client: Arc<Client>,
    limits: Limits,
    stop: watch::Receiver<bool>,
    accepted: Instant,
    resumed: Option<Instant>,
) -> Ended<S> {
    let scratch = take_scratch();
    let mut conn = Conn {
        io,
        client,
        limits,
        stop,
        rbuf: Buf::new(buf::HEAD),
        bbuf: Buf::new(buf::BODY),
        out: scratch.out,
        head: scratch.head,
        resp: scratch.resp,
        timer: Timer::default(),
        stall_timer: Timer::default(),
        scanned: 0,
    };
    let mut first = resumed.is_none();
    let mut idle_since = resumed.unwrap_or(accepted);
    loop {
        let after = match conn.read_head(first, accepted, idle_since).await {
            HeadRead::Ready => request::serve(&mut conn).await,
            HeadRead::Closed => return conn.end(Ended::Closed),
            HeadRead::Park => {
                let stream = conn.recycle();
                let idle_since = (!first).then_some(idle_since);
                return Ended::Parked { stream, idle_since };
            }
            HeadRead::H2 => {
                let read = conn.rbuf.unread().to_vec();
                let stream = conn.recycle();
                return Ended::H2 { stream, read };
            }
            HeadRead::Refused(r) => conn.refuse(r).await,
        };
        first = false;
        match after {
            After::KeepAlive => idle_since = Instant::now(),
            After::Close => {
                let _ = conn.io.shutdown().await;
                return conn.end(Ended::Closed);
            }
            After::Linger => {
                io::linger(&mut conn.io).await;
                return conn.end(Ended::Closed);
            }
            After::Gone => return conn.end(Ended::Closed),
        }
    }
}

impl<S: Stream> Conn<S> {
    /// Gives the working memory back (read buffers too, when dropped) and
    /// returns the stream.
    fn recycle(self) -> S {
        give_scratch(Scratch {
            head: self.head,
            resp: self.resp,
            out: self.out,
        });
        self.io
    }

    fn end(self, ended: Ended<S>) -> Ended<S> {
        drop(self.recycle());
        ended
    }

    /// Waits for the next request head and parses it into `self.head`.
    async fn read_head(&mut self, first: bool, accepted: Instant, idle_since: Instant) -> HeadRead {
        let limits = self.limits;
        let parkable = self.io.socket().is_some();
        let mut head_since = if first {
            Some(accepted)
        } else if !self.rbuf.is_empty() {
            Some(Instant::now())
        } else {
            None
        };
        let got = std::future::poll_fn(|cx| loop {
            if !self.rbuf.is_empty() {
                let unread = self.rbuf.unread();
                let n = unread.len().min(H2_PREFACE.len());
                if first && H2_PREFACE.starts_with(&unread[..n]) {
                    if n == H2_PREFACE.len() {
                        return Poll::Ready(HeadRead::H2);
                    }
                } else {
                    match codec::parse_request(
                        unread,
                        &mut self.head,
                        &mut self.scanned,
                        limits.max_header_bytes,
                    ) {
                        Ok(true) => return Poll::Ready(HeadRead::Ready),
                        Ok(false) => {}
                        Err(r) => return Poll::Ready(HeadRead::Refused(r)),
                    }
                }
            }
            // The buffer is taken when the first bytes are there to read,
            // so a connection that sends nothing holds none.
            let readable = self.rbuf.has_storage() || self.io.poll_readable(cx).is_ready();
            // parse_request refuses a head past the limit before this fails.
            if readable && !self.rbuf.reserve(1024, limits.max_header_bytes + 1024) {
                return Poll::Ready(HeadRead::Refused(Reject {
                    status: 431,
                    reason: "the request head is too large",
                }));
            }
            let polled = if readable {
                self.rbuf.poll_read(cx, &mut self.io)
            } else {
                Poll::Pending
            };
            match polled {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(HeadRead::Closed),
                Poll::Ready(Ok(_)) => {
                    head_since.get_or_insert_with(Instant::now);
                }
                Poll::Pending if first && parkable && self.rbuf.is_empty() => {
                    // Nothing sent yet: wait on the bare socket, holding
                    // none of this (the read just found it empty, so its
                    // readiness is real from here on), unless the time
                    // for the head is up.
                    if Instant::now() >= accepted + limits.header_read_timeout {
                        return Poll::Ready(HeadRead::Refused(Reject {
                            status: 408,
                            reason: "the request head did not arrive in time",
                        }));
                    }
                    return Poll::Ready(HeadRead::Park);
                }
                Poll::Pending => {
                    let (deadline, expired) = match head_since {
                        Some(since) => (
                            since + limits.header_read_timeout,
                            HeadRead::Refused(Reject {
                                status: 408,
                                reason: "the request head did not arrive in time",
                            }),
                        ),
                        None => {
                            // Idle between requests while draining: parked,
                            // it closes if it stays idle (see DRAIN_IDLE);
                            // a stream that cannot park closes now.
                            if *self.stop.borrow() && !parkable {
                                return Poll::Ready(HeadRead::Closed);
                            }
                            let idle = idle_since + limits.idle_timeout;
                            let park = idle_since + PARK_AFTER;
                            if parkable && park < idle {
                                (park, HeadRead::Park)
                            } else {
                                (idle, HeadRead::Closed)
                            }
                        }
                    };
                    if self.timer.poll_at(cx, deadline).is_ready() {
                        return Poll::Ready(expired);
                    }
                    return Poll::Pending;
                }
            }
        })
        .await;
        self.timer.disarm();
        got
    }

    /// Answers a head the codec refused, counts and logs it.
    async fn refuse(&mut self, r: Reject) -> After {
        let sent = self
            .head
            .fields
            .iter()
            .find(|f| f.kind == Kind::XRequestId)
            .map(|f| f.value.get(self.rbuf.unread()));
        let id = RequestId::from_client(sent);
        let mut done = Completion::new(self.client.clone(), Instant::now());
        if self.client.shared.snapshot().config.log.access_log {
            done.record = Some(Box::new(AccessRecord {
                request_id: id.as_str().to_string(),
                method: "-".into(),
                host: "-".into(),
                path: "-".into(),
                client: self.client.peer.ip().to_string(),
                ..Default::default()
            }));
        }
        let e = crate::proxy::error::ProxyError::Refused {
            status: r.status,
            reason: r.reason,
        };
        self.answer(&e, &id, &mut done, false, false).await
    }

    /// Writes an answer of sluice's own for `e`. `body_read`: the request's
    /// body was read whole, so the connection may go on unless `e` closes it.
    pub(super) async fn answer(
        &mut self,
        e: &crate::proxy::error::ProxyError,
        id: &RequestId,
        done: &mut Completion,
        body_read: bool,
        head_only: bool,
    ) -> After {
        done.status = e.status();
        let draining = *self.stop.borrow();
        // The client's own Connection: close (or HTTP/1.0) holds for
        // sluice's answers as for a backend's.
        let close = e.closes() || !body_read || draining || !self.head.keep_alive;
        let mut extra = Vec::new();
        if e.status() == 405 {
            extra.extend_from_slice(
                b"allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n",
            );
        }
        if let Some((name, value)) = e.field() {
            extra.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        self.out.clear();
        super::write::answer(
            &mut self.out,
            &super::write::Answer {
                status: e.status(),
                detail: e.detail(),
                request_id: id.as_bytes(),
                close,
                retry_after: e.retry_after(),
                extra: &extra,
                head_only,
            },
        );
        let mut stall = io::Stall::new(self.limits.idle_timeout);
        if io::write_all(&mut self.io, &[&self.out], &mut self.timer, &mut stall)
            .await
            .is_err()
        {
            done.aborted = true;
            return After::Gone;
        }
        match (close, e.closes() || !body_read) {
            (false, _) => After::KeepAlive,
            (true, true) => After::Linger,
            (true, false) => After::Close,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_future_stays_small() {
        fn size<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, _b) = tokio::io::duplex(64);
            let config = crate::config::Config::parse(
                "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{ addr = \"127.0.0.1:1\" }]\n",
            )
            .unwrap();
            let metrics = crate::metrics::Metrics::default();
            let snap = crate::snapshot::Snapshot::build(config, Default::default(), None, &metrics);
            let shared = Arc::new(crate::snapshot::Shared::new(snap, metrics));
            let client = Arc::new(Client {
                listener: "l".into(),
                peer: ([127, 0, 0, 1], 1).into(),
                local: ([127, 0, 0, 1], 2).into(),
                tls: false,
                shared,
            });
            let (_tx, rx) = watch::channel(false);
            let limits = Limits {
                header_read_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(1),
                max_header_bytes: 1024,
            };
            let f = serve(a, client, limits, rx, Instant::now(), None);
            // Boxed while a connection is busy; dropped when it parks.
            assert!(size(&f) <= 6 * 1024, "engine future: {} bytes", size(&f));
        });
    }
}
