//! The one map from what went wrong to the status the client gets.
//!
//! Every answer sluice makes itself is a short text/plain body that names
//! the request id, so a client's bug report leads straight to the log line.
//! The front ends (`http1`, `server::h2`) write it in their protocol.

use std::time::Duration;

#[derive(Debug)]
pub enum ProxyError {
    /// The client broke the protocol or a limit: malformed or ambiguous
    /// framing (400), a head too large (431) or too slow (408), a target too
    /// long (414), a method sluice does not serve (405). The connection
    /// closes after the answer.
    Refused {
        status: u16,
        reason: &'static str,
    },
    NoRoute,
    /// The client's rate limit on this route is spent.
    ClientRateLimited {
        retry_after: Duration,
    },
    /// No backend of the pool may take the request now.
    NoBackend {
        retry_after: Duration,
    },
    /// The backend's connections stayed busy (at max_connections) for the
    /// whole queue_timeout.
    Queue {
        retry_after: Duration,
    },
    /// The backend could not be reached (refused, unreachable, connect timeout).
    Connect(BoxedSource),
    /// The backend broke the exchange (closed early, malformed response).
    Upstream(BoxedSource),
    /// No response head within the route's timeout (or the pool's
    /// request_timeout).
    Timeout,
    /// The route's `allow`/`deny` refuses the client's address.
    Forbidden,
    /// The route's `basic_auth` found no valid credentials.
    Unauthorized {
        realm: String,
    },
    /// The body is over the route's `max_body_bytes`.
    BodyTooLarge,
    /// The route redirects: `code` with this Location.
    Redirect {
        code: u16,
        location: Box<str>,
    },
}

pub type BoxedSource = Box<dyn std::error::Error + Send + Sync>;

impl ProxyError {
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::Refused { status, .. } => *status,
            ProxyError::NoRoute => 404,
            ProxyError::ClientRateLimited { .. } => 429,
            ProxyError::NoBackend { .. } | ProxyError::Queue { .. } => 503,
            ProxyError::Connect(_) | ProxyError::Upstream(_) => 502,
            ProxyError::Timeout => 504,
            ProxyError::Forbidden => 403,
            ProxyError::Unauthorized { .. } => 401,
            ProxyError::BodyTooLarge => 413,
            ProxyError::Redirect { code, .. } => *code,
        }
    }

    pub fn detail(&self) -> &'static str {
        match self {
            ProxyError::Refused { reason, .. } => reason,
            ProxyError::NoRoute => "no route matches this request",
            ProxyError::ClientRateLimited { .. } => "rate limit exceeded",
            ProxyError::NoBackend { .. } => "no backend available",
            ProxyError::Queue { .. } => "no connection to the backend came free in time",
            ProxyError::Connect(_) => "backend unreachable",
            ProxyError::Upstream(_) => "backend sent a broken response",
            ProxyError::Timeout => "backend too slow",
            ProxyError::Forbidden => "this address may not use this route",
            ProxyError::Unauthorized { .. } => "valid credentials are needed",
            ProxyError::BodyTooLarge => "the request body is too large",
            ProxyError::Redirect { .. } => "moved",
        }
    }

    /// The field the answer needs besides the usual ones (name, value).
    pub fn field(&self) -> Option<(&'static str, String)> {
        match self {
            ProxyError::Unauthorized { realm } => Some((
                "www-authenticate",
                format!("Basic realm=\"{realm}\", charset=\"UTF-8\""),
            )),
            ProxyError::Redirect { location, .. } => Some(("location", location.to_string())),
            _ => None,
        }
    }

    /// Retry-After in whole seconds, rounded up: 0 would invite a storm.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ProxyError::ClientRateLimited { retry_after }
            | ProxyError::NoBackend { retry_after }
            | ProxyError::Queue { retry_after } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Some(secs.max(1))
            }
            _ => None,
        }
    }

    /// After a malformed request the connection's state is in doubt: close
    /// it (as nginx does).
    pub fn closes(&self) -> bool {
        matches!(self, ProxyError::Refused { .. } | ProxyError::BodyTooLarge)
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
    fn statuses() {
        let e = ProxyError::NoBackend {
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!((e.status(), e.retry_after()), (503, Some(2)));
        assert_eq!(ProxyError::Timeout.status(), 504);
        assert_eq!(ProxyError::NoRoute.status(), 404);
        let r = ProxyError::Refused {
            status: 400,
            reason: "x",
        };
        assert!(r.closes() && r.status() == 400);
    }
}
