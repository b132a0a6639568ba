//! Config of how sluice talks to backends beyond the address: TLS
//! (`[pool.X.tls]`), the PROXY protocol it sends, sticky sessions.

use std::path::PathBuf;
use std::time::Duration;

/// Sticky sessions: the cookie that pins a client to a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConfig {
    pub cookie: String,
    /// Max-Age of the cookie; None: a session cookie.
    pub ttl: Option<Duration>,
}

/// How sluice speaks HTTP to a pool's backends (`protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2 over TLS, agreed by ALPN.
    H2,
    /// Cleartext HTTP/2 by prior knowledge.
    H2c,
}

impl UpstreamProtocol {
    pub fn is_h2(self) -> bool {
        self != UpstreamProtocol::Http1
    }

    pub fn name(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2 => "h2",
            UpstreamProtocol::H2c => "h2c",
        }
    }
}

/// A PROXY protocol version sluice writes to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolVersion {
    V1,
    V2,
}

/// `[pool.X.tls]`: the backends speak TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsConfig {
    /// SNI and the name verified; None: the host part of each addr.
    pub server_name: Option<String>,
    /// PEM roots to trust; None: the webpki roots.
    pub ca: Option<PathBuf>,
    /// False skips verification (warned at load).
    pub verify: bool,
    /// A client certificate and key (mutual TLS).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}
