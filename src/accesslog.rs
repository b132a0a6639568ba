//! Structured access log: one line per request, target `sluice::access`,
//! in the log format of the config (JSON by default).

use crate::proxy::body::AccessRecord;
use crate::runtime::Route;
use crate::server::ConnInfo;
use std::time::Duration;

pub const TARGET: &str = "sluice::access";

/// Writes the line for a request that reached the request path.
#[allow(clippy::too_many_arguments)]
pub fn write(
    conn: &ConnInfo,
    r: &AccessRecord,
    route: Option<&Route>,
    status: http::StatusCode,
    bytes: u64,
    duration: Duration,
    aborted: bool,
) {
    tracing::info!(
        target: TARGET,
        request_id = %r.request_id,
        listener = %conn.listener,
        client = %r.client,
        method = %r.method,
        host = %r.host,
        path = %r.path,
        status = status.as_u16(),
        bytes,
        duration_ms = duration.as_secs_f64() * 1000.0,
        route = route.map_or("-", |r| &*r.name),
        pool = route.map_or("-", |r| &*r.pool.name),
        backend = r.backend.as_deref().unwrap_or("-"),
        attempts = r.attempts,
        aborted,
    );
}

/// Writes the line for a connection rejected before its request reached the
/// request path (408 slow head, 431 head too large).
pub fn rejected(conn: &ConnInfo, status: u16, request_id: &str) {
    let code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    conn.shared
        .metrics
        .requests
        .with_label_values(&[&*conn.listener, crate::metrics::NO_ROUTE, code.as_str()])
        .inc();
    if !conn.shared.snapshot().config.log.access_log {
        return;
    }
    tracing::info!(
        target: TARGET,
        request_id,
        listener = %conn.listener,
        client = %conn.peer.ip(),
        method = "-",
        host = "-",
        path = "-",
        status,
        bytes = 0u64,
        duration_ms = 0.0,
        route = "-",
        pool = "-",
        backend = "-",
        attempts = 0u32,
        aborted = false,
    );
}
