//! Body types of the proxy: what goes to a backend and what goes back to the
//! client. Both stream: nothing is buffered whole.
//!
//! `ResponseBody` carries the request's `Completion`, which runs when hyper
//! drops the body (after the last byte is written, or on abort): it ends the
//! backend lease (in-flight count), tells the connection the request is
//! over (its idle timer starts) and writes the access log line with the
//! bytes actually sent.

use crate::backend::upstream::Pooled;
use crate::backend::Lease;
use crate::runtime::Route;
use crate::server::ConnInfo;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::Instant;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body on its way to a backend.
pub enum RequestBody {
    Empty,
    /// A body held whole (small enough to keep for a retry).
    Full(Option<Bytes>),
    Stream(Incoming),
    /// A body of which the first part was read already (while trying to
    /// keep it for a retry), then the rest as it streams.
    Prefixed(Option<Bytes>, Incoming),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Stream(s) => Pin::new(s).poll_frame(cx),
            RequestBody::Prefixed(prefix, rest) => match prefix.take() {
                Some(p) => Poll::Ready(Some(Ok(Frame::data(p)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Full(b) => b.is_none(),
            RequestBody::Stream(s) => s.is_end_stream(),
            RequestBody::Prefixed(p, rest) => p.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RequestBody::Stream(s) => s.size_hint(),
            RequestBody::Prefixed(p, rest) => {
                let n = p.as_ref().map_or(0, |p| p.len() as u64);
                let mut h = rest.size_hint();
                h.set_lower(h.lower() + n);
                if let Some(u) = h.upper() {
                    h.set_upper(u + n);
                }
                h
            }
        }
    }
}

/// What the access log line says about one request, filled in along the way.
#[derive(Default)]
pub struct AccessRecord {
    pub request_id: String,
    pub method: String,
    pub host: String,
    pub path: String,
    pub backend: Option<Arc<str>>,
    pub client: String,
    pub attempts: u32,
}

/// Runs when the response is done (see module doc).
pub struct Completion {
    pub conn: Arc<ConnInfo>,
    /// The matched route (None: no route, counted as route "none").
    pub route: Option<Arc<Route>>,
    pub status: http::StatusCode,
    pub lease: Option<Lease>,
    pub record: Option<Box<AccessRecord>>,
    pub start: Instant,
    pub bytes: u64,
    pub aborted: bool,
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.lease.take();
        let metrics = &self.conn.shared.metrics;
        let route = self
            .route
            .as_ref()
            .map_or(crate::metrics::NO_ROUTE, |r| &*r.name);
        metrics
            .requests
            .with_label_values(&[&*self.conn.listener, route, self.status.as_str()])
            .inc();
        let secs = self.start.elapsed().as_secs_f64();
        match &self.route {
            Some(r) => r.duration.observe(secs),
            None => metrics
                .route_duration(crate::metrics::NO_ROUTE)
                .observe(secs),
        }
        if let Some(record) = self.record.take() {
            crate::accesslog::write(
                &self.conn,
                &record,
                self.route.as_deref(),
                self.status,
                self.bytes,
                self.start.elapsed(),
                self.aborted,
            );
        }
        self.conn.request_finished();
    }
}

enum Inner {
    Full(Option<Bytes>),
    Stream(Incoming),
}

/// A response body on its way to the client.
pub struct ResponseBody {
    inner: Inner,
    done: Option<Completion>,
    /// The backend connection the body comes from, back to its pool once
    /// the body has ended (and closed if it never does).
    conn: Option<Pooled>,
}

impl ResponseBody {
    pub fn full(b: impl Into<Bytes>) -> ResponseBody {
        ResponseBody {
            inner: Inner::Full(Some(b.into())),
            done: None,
            conn: None,
        }
    }

    pub fn stream(b: Incoming, conn: Option<Pooled>) -> ResponseBody {
        ResponseBody {
            inner: Inner::Stream(b),
            done: None,
            conn,
        }
    }

    /// The backend's body has ended: its connection may serve the next
    /// request while this one's last bytes go out to the client.
    fn release_conn(&mut self) {
        if let Some(c) = self.conn.take() {
            c.release();
        }
    }

    pub fn set_completion(&mut self, done: Completion) {
        self.done = Some(done);
    }

    fn finish(&mut self, aborted: bool) {
        if let Some(d) = self.done.as_mut() {
            d.aborted = aborted;
        }
        self.done.take();
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Stream(s) => Pin::new(s).poll_frame(cx).map_err(BoxError::from),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(d)) = (frame.data_ref(), this.done.as_mut()) {
                    d.bytes += data.len() as u64;
                }
            }
            // The backend broke off mid-body: hyper aborts the client's
            // connection instead of passing a truncated body as complete.
            Poll::Ready(Some(Err(_))) => this.finish(true),
            Poll::Ready(None) => {
                this.release_conn();
                this.finish(false)
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(b) => b.is_none(),
            Inner::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Stream(s) => s.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Dropped before its end (client went away, or hyper aborted). A
        // full body hyper never polled is a HEAD or 304 answer, not an abort.
        let unfinished = matches!(&self.inner, Inner::Stream(s) if !s.is_end_stream());
        if let Some(d) = self.done.as_mut() {
            d.aborted |= unfinished;
        }
        // hyper stops polling once a sized body is complete, and never polls
        // the body of a HEAD or 304 answer.
        if !unfinished {
            self.release_conn();
        }
    }
}
