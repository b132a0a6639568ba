//! An HTTP/2 request forwarded: routed and admitted like any other
//! (`proxy`), written as HTTP/1.1 for the backend (`http1::bridge`), tried
//! by the pool's policy, and its response turned back into an HTTP/2 head
//! and body (compressed when the route says so).

use super::h2::H2Body;
use crate::http1::attempt::{self, Answered, Unanswered};
use crate::http1::bridge::{self, H2Source};
use crate::http1::bridge_body::{self, ResponseBody};
use crate::http1::buf::Buf;
use crate::http1::codec::ResponseHead;
use crate::http1::io::Timer;
use crate::http1::write::Forwarded;
use crate::proxy::completion::Completion;
use crate::proxy::error::ProxyError;
use crate::proxy::request_id::RequestId;
use crate::proxy::retry::{Attempts, MAX_KEPT_BODY};
use crate::proxy::Client;
use http::{HeaderName, HeaderValue, Method, Response};
use hyper::body::Incoming;
use std::sync::Arc;

/// An HTTP/2 request head as routing and policy see it.
struct View<'a>(&'a http::request::Parts);

impl crate::proxy::Head for View<'_> {
    fn method(&self) -> &[u8] {
        self.0.method.as_str().as_bytes()
    }
    fn has(&self, name: &str, value: &str) -> bool {
        self.0
            .headers
            .get_all(name)
            .iter()
            .any(|v| v.as_bytes() == value.as_bytes())
    }
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.0.headers.get(name).map(|v| v.as_bytes())
    }
    fn each(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for v in self.0.headers.get_all(name) {
            f(v.as_bytes());
        }
    }
}

/// A response head (status, fields) and the backend body behind it.
pub(super) type Upstream = (u16, http::response::Builder, H2Body);

pub(super) async fn forward(
    snap: &crate::snapshot::Snapshot,
    client: &Arc<Client>,
    parts: http::request::Parts,
    body: Incoming,
    id: &RequestId,
    done: &mut Completion,
) -> Result<Upstream, ProxyError> {
    let refused = |reason| ProxyError::Refused {
        status: 400,
        reason,
    };
    if parts.method == Method::CONNECT {
        return Err(ProxyError::Refused {
            status: 405,
            reason: "CONNECT is not supported",
        });
    }
    let host = bridge::request_host(&parts).map_err(refused)?;
    let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let xff = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes());
    let content_length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let ask = crate::proxy::Ask {
        host,
        path_and_query: pq,
        head: &View(&parts),
        content_length,
    };
    let target = crate::proxy::target(snap, client, &ask, xff, done).await?;
    let pool = &target.pool;
    let route = &target.route.config;
    let metrics = &client.shared.metrics;
    let accept_encoding = match route.compress {
        true => parts
            .headers
            .get(http::header::ACCEPT_ENCODING)
            .and_then(|v| crate::compress::negotiate(v.as_bytes())),
        false => None,
    };
    let framing = bridge::request_framing(&parts, &body);
    let mut out = Vec::new();
    bridge::request_head(
        &mut out,
        &parts,
        host,
        framing,
        &Forwarded {
            peer: client.peer.ip(),
            https: client.tls,
            request_id: id.as_bytes(),
        },
        &crate::http1::write::Rewrite {
            path: target.path.as_deref().map(str::as_bytes),
            host: route.rewrite_host.as_deref().map(str::as_bytes),
            rules: (!route.request_headers.is_empty()).then_some(&route.request_headers),
            drop_authorization: route.basic_auth.is_some(),
            // An HTTP/2 client's TE: trailers is passed on to every pool
            // (`bridge::request_head`).
            te_trailers: true,
        },
    );
    let replayable = Attempts::may_replay(pool)
        && (matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        ) || parts.headers.contains_key("idempotency-key"));
    let too_large = |e| match e {
        crate::http1::body::SourceError::Refused(r) if r.status == 413 => ProxyError::BodyTooLarge,
        _ => refused("the request body broke off"),
    };
    let max_body = route.max_body_bytes;
    let mirroring = crate::proxy::mirror::wanted(&target.route);
    let mut source = if replayable || mirroring {
        H2Source::keep(body, framing, MAX_KEPT_BODY, max_body)
            .await
            .map_err(too_large)?
    } else {
        H2Source::stream(body, framing, max_body)
    };
    let replayable = replayable && matches!(source, H2Source::Kept { .. });
    if let (true, H2Source::Kept { bytes, .. }) = (mirroring, &source) {
        crate::proxy::mirror::send(&target.route, &out, bytes);
    }
    let head_request = parts.method == Method::HEAD;
    let mut attempts = Attempts::new(pool, target.key, replayable).pinned(target.sticky);
    let mut resp_buf = Buf::new(crate::http1::buf::BODY);
    let mut resp = ResponseHead::new();
    let mut timer = Timer::default();
    let tried = attempt::run(
        attempt::Request {
            pool,
            timeout: target.timeout,
            head: &out,
            body: &mut source,
            peer: &mut (),
            head_request,
            upgrade: false,
            resp_buf: &mut resp_buf,
            resp: &mut resp,
            timer: &mut timer,
        },
        &mut attempts,
        metrics,
        done,
    )
    .await;
    let Answered {
        conn,
        addr,
        backend,
        upload,
    } = match tried {
        Ok(a) => a,
        Err(Unanswered::Client(e)) => return Err(too_large(e)),
        Err(Unanswered::Proxy(e)) => return Err(e),
    };
    let mut builder = Response::builder().status(resp.status);
    let head = resp_buf.unread();
    let (vary, encoder) = match route.compress {
        true => crate::http1::relay::compression(&resp, head, accept_encoding, head_request),
        false => (false, None),
    };
    let rules = &route.response_headers;
    for f in &resp.fields {
        use crate::http1::codec::Kind;
        let name = f.name.get(head);
        match f.kind {
            Kind::Other if !rules.drops(name) => {}
            Kind::ContentLength if encoder.is_none() => {}
            _ => continue,
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(f.value.get(head)),
        ) {
            builder = builder.header(n, v);
        }
    }
    builder = builder.header("x-request-id", id.as_bytes());
    if let Some((coding, _)) = &encoder {
        builder = builder.header("content-encoding", coding.name());
    }
    if vary {
        builder = builder.header("vary", "accept-encoding");
    }
    if let Some(cookie) = target.sticky_cookie(&backend.addr) {
        builder = builder.header("set-cookie", cookie);
    }
    for (n, v) in rules.set.iter().chain(&rules.add) {
        builder = builder.header(n.as_str(), v.as_str());
    }
    resp_buf.consume(resp.len);
    let release: bridge_body::Release = Box::new(move |conn| {
        if let Some(c) = conn {
            backend.conns.release(c, addr);
        }
    });
    let sending = bridge_body::Sending {
        upload,
        head: out,
        source,
    };
    let body = ResponseBody::new(conn, resp_buf, resp.body, resp.keep_alive, sending, release);
    let body = match encoder {
        Some((_, e)) => H2Body::Compressed(Box::new(crate::compress::Compressed::new(body, e))),
        None => H2Body::Backend(Box::new(body)),
    };
    Ok((resp.status, builder, body))
}
