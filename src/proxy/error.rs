//! The one map from what went wrong to the status the client gets.
//!
//! Every error sluice answers itself is a short text/plain body that names
//! the request id, so a client's bug report leads straight to the log line.

use super::body::ResponseBody;
use http::{header, HeaderValue, Response, StatusCode};
use std::time::Duration;

#[derive(Debug)]
pub enum ProxyError {
    /// Malformed or ambiguous request.
    BadRequest(&'static str),
    NoRoute,
    /// The client's rate limit on this route is spent.
    ClientRateLimited {
        retry_after: Duration,
    },
    /// No backend of the pool may take the request now.
    NoBackend {
        retry_after: Duration,
    },
    /// The backend could not be reached (refused, unreachable, connect timeout).
    Connect(BoxedSource),
    /// The backend broke the exchange (closed early, malformed response).
    Upstream(BoxedSource),
    /// No response head within the pool's request_timeout.
    Timeout,
    /// Refused by the connection's framing layer (malformed or ambiguous
    /// framing, a limit, a stall); the connection closes after the answer.
    Rejected(crate::server::framing::Reject),
}

pub type BoxedSource = Box<dyn std::error::Error + Send + Sync>;

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::ClientRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::NoBackend { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Rejected(r) => {
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST)
            }
        }
    }

    fn detail(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(why) => why,
            ProxyError::NoRoute => "no route matches this request",
            ProxyError::ClientRateLimited { .. } => "rate limit exceeded",
            ProxyError::NoBackend { .. } => "no backend available",
            ProxyError::Connect(_) => "backend unreachable",
            ProxyError::Upstream(_) => "backend sent a broken response",
            ProxyError::Timeout => "backend too slow",
            ProxyError::Rejected(r) => r.reason,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ProxyError::ClientRateLimited { retry_after }
            | ProxyError::NoBackend { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The response sluice sends for this error.
    pub fn response(&self, request_id: &HeaderValue) -> Response<ResponseBody> {
        let status = self.status();
        let body = format!(
            "{} {}: {} (request id {})\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.detail(),
            request_id.to_str().unwrap_or("-")
        );
        let mut resp = Response::new(ResponseBody::full(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert("x-request-id", request_id.clone());
        // After a malformed request, the connection's state is in doubt
        // (as nginx does, close it).
        if let ProxyError::Rejected(_) | ProxyError::BadRequest(_) = self {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(after) = self.retry_after() {
            // Whole seconds, rounded up: Retry-After: 0 would invite a storm.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.detail())?;
        match self {
            ProxyError::Connect(e) | ProxyError::Upstream(e) => {
                write!(f, ": {e}")?;
                let mut src = e.source();
                while let Some(s) = src {
                    write!(f, ": {s}")?;
                    src = s.source();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let id = HeaderValue::from_static("rid-1");
        let r = ProxyError::NoBackend {
            retry_after: Duration::from_millis(1500),
        }
        .response(&id);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers()["x-request-id"], "rid-1");
        assert_eq!(ProxyError::Timeout.status(), 504);
        assert_eq!(ProxyError::NoRoute.status(), 404);
        assert_eq!(ProxyError::BadRequest("x").status(), 400);
    }
}
