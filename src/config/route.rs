//! The validated form of a `[[route]]`: how it matches, where it sends a
//! request, and the policy it applies on the way (see `proxy::policy`).

use ipnet::IpNet;
use std::path::PathBuf;
use std::time::Duration;

/// How a route matches the request's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Lower-cased host name, no port.
    Exact(String),
    /// Lower-cased suffix including its leading dot: `*.example.com` is
    /// stored as `.example.com` and matches any subdomain at any depth.
    Wildcard(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    pub host: Option<HostMatch>,
    /// Starts with `/`; no trailing `/` unless it is exactly `/`.
    pub path_prefix: String,
    /// `None` means every listener.
    pub listeners: Option<Vec<String>>,
    /// Match only these methods (upper case); empty: any.
    pub methods: Vec<String>,
    /// Match only when each named header (lower case) has exactly this value.
    pub headers: Vec<(String, String)>,
    /// Match only when each query parameter has exactly this value.
    pub query: Vec<(String, String)>,
    pub target: RouteTarget,
    pub strip_prefix: bool,
    /// Replaces `path_prefix` in the forwarded path.
    pub rewrite_prefix: Option<String>,
    /// The Host the backend gets.
    pub rewrite_host: Option<String>,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    /// 0: no limit.
    pub max_body_bytes: u64,
    /// Replaces the pool's request_timeout.
    pub timeout: Option<Duration>,
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub basic_auth: Option<BasicAuthConfig>,
    pub compress: bool,
    pub mirror: Option<MirrorConfig>,
    pub rate_limit: Option<RateLimitConfig>,
}

impl RouteConfig {
    /// How many method, header and query conditions the route has: among
    /// routes otherwise tied, the one with more wins.
    pub fn conditions(&self) -> usize {
        usize::from(!self.methods.is_empty()) + self.headers.len() + self.query.len()
    }

    /// The pools the route forwards to (none for a redirect).
    pub fn pools(&self) -> Vec<&str> {
        match &self.target {
            RouteTarget::Pool(p) => vec![p.as_str()],
            RouteTarget::Split(s) => s.iter().map(|(p, _)| p.as_str()).collect(),
            RouteTarget::Redirect(_) => Vec::new(),
        }
    }
}

/// Where a route sends a request.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteTarget {
    Pool(String),
    /// Weighted split across pools, decided per request (weights 0..1000).
    Split(Vec<(String, u32)>),
    Redirect(RedirectConfig),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedirectConfig {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Replaces the whole path.
    pub path: Option<String>,
    /// Replaces the route's path_prefix.
    pub prefix: Option<String>,
    pub code: u16,
}

/// Header rules of a route, parsed at load: names lower case, values
/// checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderRules {
    /// Replaces every value of the header.
    pub set: Vec<(String, String)>,
    /// Appends one more value.
    pub add: Vec<(String, String)>,
    /// Deletes every value.
    pub remove: Vec<String>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Whether a field of this name is dropped from the copy (set or removed).
    pub fn drops(&self, name: &[u8]) -> bool {
        self.set
            .iter()
            .any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            || self
                .remove
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuthConfig {
    pub realm: String,
    pub users_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    pub pool: String,
    /// 0..=100 of the matching requests.
    pub percent: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    pub requests_per_second: f64,
    pub burst: u32,
    /// What a bucket is per (routes only).
    pub key: RateLimitKey,
    /// Shared by every instance through Redis.
    pub global: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitKey {
    ClientIp,
    /// Lower-case header name; requests without it share one bucket.
    Header(String),
    Route,
}
