//! One HTTP/1 request from head to last byte: route and limit it, pick and
//! admit a backend, try it (and retry by the pool's policy), then relay the
//! answer, or switch to a WebSocket tunnel.
//!
//! The head stays where it was parsed, at the front of the connection's
//! read buffer, for the whole exchange; the request head for the backend is
//! written from its spans once and sent again as is on a retry. A body that
//! the pool may replay (small, of a replayable request) is read whole first
//! and stays in the buffer, so a retry sends the same bytes.

use super::attempt::{self, Answered, Unanswered};
use super::body::ClientBody;
use super::codec::{BodyKind, Kind, Method, Version};
use super::conn::{After, Conn};
use super::io::{self, Stall, Stream};
use super::relay::{relay, Reframe, Relay, RelayError};

use super::write::{self, Connection, Forwarded, Framing};
use crate::proxy::completion::{AccessRecord, Completion};
use crate::proxy::error::ProxyError;
use crate::proxy::request_id::RequestId;
use crate::proxy::retry::{Attempts, MAX_KEPT_BODY};
use tokio::time::Instant;

/// An HTTP/1 request head as routing and policy see it.
struct View<'a> {
    head: &'a super::codec::RequestHead,
    buf: &'a [u8],
}

impl crate::proxy::Head for View<'_> {
    fn method(&self) -> &[u8] {
        self.head.method_span.get(self.buf)
    }
    fn has(&self, name: &str, value: &str) -> bool {
        self.head.fields.iter().any(|f| {
            f.name.get(self.buf).eq_ignore_ascii_case(name.as_bytes())
                && f.value.get(self.buf) == value.as_bytes()
        })
    }
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.head.value(self.buf, name.as_bytes())
    }
    fn each(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for field in &self.head.fields {
            if field
                .name
                .get(self.buf)
                .eq_ignore_ascii_case(name.as_bytes())
            {
                f(field.value.get(self.buf));
            }
        }
    }
}

fn text(b: &[u8]) -> &str {
    // The codec lets only visible ASCII into targets and hosts.
    std::str::from_utf8(b).unwrap_or("")
}

pub(super) async fn serve<S: Stream>(conn: &mut Conn<S>) -> After {
    let snap = conn.client.shared.snapshot();
    let start = Instant::now();
    let metrics = &conn.client.shared.metrics;
    // The head stays put at the front of the buffer; its spans are
    // relative to `base`.
    let base = conn.rbuf.start();
    conn.rbuf.consume_and_keep(conn.head.len);
    let head = &conn.head;
    let buf = &conn.rbuf.all()[base..];
    let id = RequestId::from_client(head.request_id.map(|s| s.get(buf)));
    let mut done = Completion::new(conn.client.clone(), start);
    let host = head.host_span().map(|s| text(s.get(buf)));
    let path = match head.path.get(buf) {
        // OPTIONS * is routed as path "/"; an absolute-form target with no
        // path as "/" too.
        b"*" => "/",
        _ if head.path_needs_slash => "/",
        p => text(p),
    };
    if snap.config.log.access_log {
        done.record = Some(Box::new(AccessRecord {
            request_id: id.as_str().to_string(),
            method: text(head.method_span.get(buf)).to_string(),
            host: host.unwrap_or("-").to_string(),
            path: path.split('?').next().unwrap_or("/").to_string(),
            client: conn.client.peer.ip().to_string(),
            ..Default::default()
        }));
    }
    let head_only = head.method == Method::Head;
    if !conn.client.tls {
        if let Some(token) = path.strip_prefix("/.well-known/acme-challenge/") {
            if let Some(answer) = crate::certstore::store().http_answer(token) {
                return acme_answer(conn, answer.as_bytes(), &mut done, head_only).await;
            }
        }
    }
    let view = View { head, buf };
    let ask = crate::proxy::Ask {
        host,
        path_and_query: path,
        head: &view,
        content_length: match head.body {
            BodyKind::Length(n) => Some(n),
            _ => None,
        },
    };
    let target = match crate::proxy::target(
        &snap,
        &conn.client,
        &ask,
        head.values(buf, Kind::XForwardedFor),
        &mut done,
    )
    .await
    {
        Ok(t) => t,
        Err(e) => return finish_with(conn, &e, &id, &mut done, head_only).await,
    };
    let pool = &target.pool;
    let route = &target.route.config;
    conn.out.clear();
    write::request_head(
        &mut conn.out,
        buf,
        head,
        &Forwarded {
            peer: conn.client.peer.ip(),
            https: conn.client.tls,
            request_id: id.as_bytes(),
        },
        &write::Rewrite {
            path: target.path.as_deref().map(str::as_bytes),
            host: route.rewrite_host.as_deref().map(str::as_bytes),
            rules: (!route.request_headers.is_empty()).then_some(&route.request_headers),
            drop_authorization: route.basic_auth.is_some(),
            te_trailers: pool.config.protocol.is_h2(),
        },
    );
    let replayable = Attempts::may_replay(pool)
        && (head.method.idempotent() || head.value(buf, b"idempotency-key").is_some());
    let (kind, expect, upgrade) = (head.body, head.expect_continue, head.upgrade.is_some());
    let (http10, keep_alive) = (head.version == Version::Http10, head.keep_alive);
    let accept_encoding = match route.compress {
        true => head
            .value(buf, b"accept-encoding")
            .and_then(crate::compress::negotiate),
        false => None,
    };

    let mut body = ClientBody::new(
        &mut conn.rbuf,
        kind,
        expect,
        &mut conn.stall_timer,
        conn.limits.idle_timeout,
        conn.limits.max_header_bytes,
    );
    body.limit_body(route.max_body_bytes);
    if let Err(e) = body.check_buffered() {
        return client_failed(conn, e, &id, &mut done).await;
    }
    // A body that may be replayed or mirrored is read whole first (up to
    // 64 KiB).
    let mirroring = !upgrade && crate::proxy::mirror::wanted(&target.route);
    let whole = (replayable || mirroring)
        && match kind {
            BodyKind::None => true,
            _ => match body.fill(&mut conn.io, MAX_KEPT_BODY).await {
                Ok(whole) => whole,
                Err(e) => {
                    return client_failed(conn, e, &id, &mut done).await;
                }
            },
        };
    let replayable = replayable && whole;
    if mirroring && whole {
        crate::proxy::mirror::send(&target.route, &conn.out, body.kept());
    }
    let mut attempts = Attempts::new(pool, target.key, replayable).pinned(target.sticky);
    let tried = attempt::run(
        attempt::Request {
            pool,
            timeout: target.timeout,
            head: &conn.out,
            body: &mut body,
            peer: &mut conn.io,
            head_request: head_only,
            upgrade,
            resp_buf: &mut conn.bbuf,
            resp: &mut conn.resp,
            timer: &mut conn.timer,
        },
        &mut attempts,
        metrics,
        &mut done,
    )
    .await;
    let Answered {
        conn: mut upstream,
        addr,
        backend,
        mut upload,
    } = match tried {
        Ok(a) => a,
        Err(Unanswered::Client(e)) => return client_failed(conn, e, &id, &mut done).await,
        Err(Unanswered::Proxy(e)) => {
            tracing::debug!(request_id = ?id, error = %e, "request failed");
            let (read, taken) = (body.complete(), body.taken());
            if read {
                conn.rbuf.consume(taken);
            }
            return finish_with_read(conn, &e, &id, &mut done, head_only, read).await;
        }
    };
    let resp = &conn.resp;
    done.status = resp.status;
    let draining = *conn.stop.borrow();
    let mut stall = Stall::new(conn.limits.idle_timeout);
    if resp.status == 101 {
        // A WebSocket handshake has no body: the bytes after it are the
        // tunnel's.
        conn.out.clear();
        write::response_head(
            &mut conn.out,
            conn.bbuf.unread(),
            resp,
            id.as_bytes(),
            Framing::Announced(None),
            Connection::Upgrade,
            &write::Edits::default(),
        );
        conn.bbuf.consume(resp.len);
        if io::write_all(&mut conn.io, &[&conn.out], &mut conn.timer, &mut stall)
            .await
            .is_err()
        {
            done.aborted = true;
            return After::Gone;
        }
        // From here the bytes on both sides belong to the tunnel.
        let from_client = conn.rbuf.unread();
        // A drain lets the tunnel run for shutdown_grace, less a moment so
        // that it ends (and is logged) before the process exits.
        let grace = conn.client.shared.snapshot().config.runtime.shutdown_grace;
        let mut stop = conn.stop.clone();
        let ends_by = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(grace.saturating_sub(std::time::Duration::from_millis(250))).await;
        };
        let tunneled = crate::proxy::upgrade::tunnel(
            &mut conn.io,
            &mut upstream.stream,
            from_client,
            conn.bbuf.unread(),
            conn.limits.idle_timeout,
            ends_by,
        )
        .await;
        done.bytes = tunneled.down;
        if let Err(e) = tunneled.ended {
            tracing::debug!(backend = %backend.addr, error = %e, "websocket ended");
        }
        return After::Gone;
    }
    let (mut framing, reframe) = match resp.body {
        BodyKind::None if head_only || matches!(resp.status, 204 | 304) => {
            (Framing::Announced(resp.length), Reframe::Pass)
        }
        BodyKind::None => (Framing::Length(0), Reframe::Pass),
        BodyKind::Length(n) => (Framing::Length(n), Reframe::Pass),
        BodyKind::Chunked if http10 => (Framing::Close, Reframe::Dechunk),
        BodyKind::Chunked => (Framing::Chunked, Reframe::Pass),
        BodyKind::Close if http10 => (Framing::Close, Reframe::Pass),
        BodyKind::Close => (Framing::Chunked, Reframe::Chunk),
    };
    let route = &target.route.config;
    let (vary, encoder) = match route.compress {
        true => super::relay::compression(
            resp,
            conn.bbuf.unread(),
            accept_encoding,
            head_only || http10,
        ),
        false => (false, None),
    };
    if encoder.is_some() {
        framing = Framing::Chunked;
    }
    // The client's connection goes on only if its request was read whole;
    // an answer that came first leaves the rest of the body unread.
    let keep = keep_alive && body.complete() && framing != Framing::Close && !draining;
    let connection = match (keep, http10) {
        (false, _) => Connection::Close,
        (true, true) => Connection::KeepAlive,
        (true, false) => Connection::Default,
    };
    // The response head goes after the request head, which the rest of
    // the upload may still need.
    let request_len = conn.out.len();
    let set_cookie = target.sticky_cookie(&backend.addr);
    write::response_head(
        &mut conn.out,
        conn.bbuf.unread(),
        resp,
        id.as_bytes(),
        framing,
        connection,
        &write::Edits {
            rules: (!route.response_headers.is_empty()).then_some(&route.response_headers),
            encoding: encoder.as_ref().map(|(c, _)| c.name()),
            vary,
            set_cookie: set_cookie.as_deref(),
        },
    );
    let (resp_len, resp_kind, backend_keeps) = (resp.len, resp.body, resp.keep_alive);
    conn.bbuf.consume(resp_len);
    let relayed = relay(Relay {
        client: &mut conn.io,
        backend: &mut upstream.stream,
        bbuf: &mut conn.bbuf,
        head: &conn.out[request_len..],
        kind: resp_kind,
        reframe,
        timer: &mut conn.timer,
        stall: conn.limits.idle_timeout,
        upload: &mut upload,
        request_head: &conn.out[..request_len],
        body: &mut body,
        encoder: encoder.map(|(_, e)| e),
    })
    .await;
    match relayed {
        Ok(n) => {
            done.bytes = n;
            // The connection may serve another request only if this one
            // ended cleanly on both sides.
            if backend_keeps && upload.body_done && conn.bbuf.is_empty() {
                backend.conns.release(upstream, addr);
            }
        }
        Err(RelayError::Client(e)) => {
            tracing::debug!(request_id = ?id, error = %e, "client stopped reading");
            done.aborted = true;
            return After::Gone;
        }
        Err(RelayError::Source(e)) => {
            return client_failed(conn, e, &id, &mut done).await;
        }
        Err(RelayError::Backend(why)) => {
            tracing::debug!(request_id = ?id, backend = %backend.addr, why, "response cut off");
            // The client sees the connection close short of the framing's end.
            done.aborted = true;
            return After::Gone;
        }
    }
    let (body_read, taken) = (body.complete(), body.taken());
    conn.bbuf.release();
    conn.rbuf.consume(taken);
    conn.rbuf.unkeep();
    match (keep, body_read) {
        (true, _) => After::KeepAlive,
        (false, true) => After::Close,
        (false, false) => After::Linger,
    }
}

/// Answers an ACME http-01 challenge before routing: the key
/// authorization as the body, as RFC 8555 section 8.3 wants it.
async fn acme_answer<S: Stream>(
    conn: &mut Conn<S>,
    answer: &[u8],
    done: &mut Completion,
    head_only: bool,
) -> After {
    let close = !conn.head.keep_alive || conn.head.body != BodyKind::None;
    conn.out.clear();
    conn.out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ",
    );
    write::number(&mut conn.out, answer.len() as u64);
    conn.out.extend_from_slice(if close {
        b"\r\nconnection: close\r\n\r\n"
    } else {
        b"\r\n\r\n"
    });
    if !head_only {
        conn.out.extend_from_slice(answer);
    }
    done.status = 200;
    let mut stall = Stall::new(conn.limits.idle_timeout);
    let written = io::write_all(&mut conn.io, &[&conn.out], &mut conn.timer, &mut stall).await;
    conn.rbuf.unkeep();
    match (written, close) {
        (Err(_), _) => After::Gone,
        (Ok(_), true) => After::Close,
        (Ok(_), false) => After::KeepAlive,
    }
}

/// Answers `e` for a request whose body was not read (none was expected
/// to be, or it does not matter because the connection closes).
async fn finish_with<S: Stream>(
    conn: &mut Conn<S>,
    e: &ProxyError,
    id: &RequestId,
    done: &mut Completion,
    head_only: bool,
) -> After {
    let no_body = conn.head.body == BodyKind::None;
    finish_with_read(conn, e, id, done, head_only, no_body).await
}

async fn finish_with_read<S: Stream>(
    conn: &mut Conn<S>,
    e: &ProxyError,
    id: &RequestId,
    done: &mut Completion,
    head_only: bool,
    body_read: bool,
) -> After {
    let after = conn.answer(e, id, done, body_read, head_only).await;
    conn.bbuf.release();
    conn.rbuf.unkeep();
    after
}

/// The client broke its body's framing, stalled or left.
async fn client_failed<S: Stream>(
    conn: &mut Conn<S>,
    e: super::body::SourceError,
    id: &RequestId,
    done: &mut Completion,
) -> After {
    match e {
        super::body::SourceError::Refused(r) => {
            let e = ProxyError::Refused {
                status: r.status,
                reason: r.reason,
            };
            finish_with_read(conn, &e, id, done, false, false).await
        }
        super::body::SourceError::Gone => {
            done.aborted = true;
            After::Gone
        }
    }
}
