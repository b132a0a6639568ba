//! The validated configuration: what the rest of sluice reads.
//!
//! Loading is parse (`raw`, a serde mirror of the TOML) then validate
//! (`validate`, into the distinct types below), and every problem found on the
//! way is reported with its key path (`pool.api.backends[1].addr: ...`), all
//! of them, not only the first, so `sluice --check` can list them at once.

pub mod defaults;
mod raw;
pub mod resolve;
mod route;
mod scale;
mod upstream;
mod validate;

pub use route::*;
pub use scale::*;
pub use upstream::*;

use ipnet::IpNet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One problem in a config file, named by its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `pool.api.backends[1].addr`; empty for file-level errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            path: path.into(),
            message: message.into(),
        }])
    }
}

/// What loading a config may do besides parsing: resolve host names and
/// read the files it names (certificates). Both are on for sluice; the
/// fuzzer turns them off, so that arbitrary input does not turn into DNS
/// lookups or reads of arbitrary paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    pub resolve_names: bool,
    pub read_files: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            resolve_names: true,
            read_files: true,
        }
    }
}

impl LoadOptions {
    /// Neither name resolution nor file reads.
    pub fn sandbox() -> LoadOptions {
        LoadOptions {
            resolve_names: false,
            read_files: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub runtime: RuntimeConfig,
    pub admin: Option<AdminConfig>,
    pub log: LogConfig,
    /// Where `scope = "global"` rate limits keep their buckets.
    pub redis: Option<RedisConfig>,
    /// Where listeners' `acme_domains` get their certificates.
    pub acme: Option<AcmeConfig>,
    /// The DNS servers of `dns_refresh` lookups (empty: the system's).
    pub dns_nameservers: Vec<SocketAddr>,
    pub listeners: Vec<ListenerConfig>,
    pub routes: Vec<RouteConfig>,
    /// Sorted by name.
    pub pools: Vec<PoolConfig>,
    /// What is legal but probably wrong (an expired certificate, found by
    /// `tls::load`): `--check` prints these and a reload logs them, and the
    /// config is used anyway.
    pub warnings: Vec<ConfigError>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// 0 means one per CPU.
    pub worker_threads: usize,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    /// The file holding the bearer token of write endpoints (read with the
    /// other files, see `files`); none: writes are refused.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// One of error, warn, info, debug, trace.
    pub level: String,
    pub format: LogFormat,
    pub access_log: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub trusted_proxies: Vec<IpNet>,
    /// Certificate files; loaded (and checked) by `tls::load`.
    pub certificates: Vec<CertificateConfig>,
    /// Names whose certificates sluice obtains and renews itself (ACME),
    /// lower case.
    pub acme_domains: Vec<String>,
    /// Every connection opens with a PROXY protocol header (v1 or v2).
    pub proxy_protocol: bool,
}

impl ListenerConfig {
    /// Whether the listener speaks TLS (it has certificates or ACME names).
    pub fn tls(&self) -> bool {
        !self.certificates.is_empty() || !self.acme_domains.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CertificateConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    RoundRobin,
    LeastConnections,
    LeastResponseTime,
    IpHash,
    UrlHash,
    Random,
}

impl Strategy {
    pub const NAMES: &'static str =
        "round_robin | least_connections | least_response_time | ip_hash | url_hash | random";

    pub fn parse(s: &str) -> Option<Strategy> {
        Some(match s {
            "round_robin" => Strategy::RoundRobin,
            "least_connections" => Strategy::LeastConnections,
            "least_response_time" => Strategy::LeastResponseTime,
            "ip_hash" => Strategy::IpHash,
            "url_hash" => Strategy::UrlHash,
            "random" => Strategy::Random,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastConnections => "least_connections",
            Strategy::LeastResponseTime => "least_response_time",
            Strategy::IpHash => "ip_hash",
            Strategy::UrlHash => "url_hash",
            Strategy::Random => "random",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKey {
    Path,
    PathAndQuery,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// The address as written in the config: the backend's identity (state
    /// key, metric label).
    pub addr: String,
    /// What `addr` resolved to at load time.
    pub resolved: SocketAddr,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub strategy: Strategy,
    pub backends: Vec<BackendConfig>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// 0 means unlimited.
    pub max_in_flight: u32,
    /// Open connections per backend, pooled and busy (HAProxy's maxconn).
    pub max_connections: usize,
    /// How long a request waits for a connection at max_connections.
    pub queue_timeout: Duration,
    pub hash_key: HashKey,
    /// Bounded loads for the hash strategies: 0 off, else at least 1.0.
    pub hash_balance_factor: f64,
    /// Open every backend connection with a PROXY header naming the client.
    pub send_proxy_protocol: Option<ProxyProtocolVersion>,
    /// HTTP/1.1, or HTTP/2 (over TLS, or cleartext) to the backends.
    pub protocol: UpstreamProtocol,
    /// Sticky sessions by cookie.
    pub sticky: Option<StickyConfig>,
    /// TLS to the backends (`[pool.X.tls]`).
    pub tls: Option<UpstreamTlsConfig>,
    /// Re-resolve backend host names this often (every address a backend).
    pub dns_refresh: Option<Duration>,
    /// The ramp of a backend that becomes usable; None: full weight at once.
    pub slow_start: Option<Duration>,
    pub health_check: Option<HealthCheckConfig>,
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    pub rate_limit: Option<RateLimitConfig>,
    pub retry: Option<RetryConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    /// The request target of a check, parsed at validation.
    pub path: http::uri::PathAndQuery,
    /// The Host header of checks; None: the backend's addr.
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub expect_status: RangeInclusive<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakerConfig {
    pub failure_threshold: u32,
    pub open_duration: Duration,
    pub half_open_requests: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    pub attempts: u32,
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub on_connect_failure: bool,
    pub on_timeout: bool,
    /// Response statuses that are retried.
    pub on_status: Vec<u16>,
    pub budget_ratio: f64,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::one("", format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text)
    }

    /// Parses and validates config text. Relative certificate paths are
    /// resolved against the working directory, as the example config assumes.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse_with(text, LoadOptions::default())
    }

    /// `parse`, with what loading may do.
    pub fn parse_with(text: &str, opts: LoadOptions) -> Result<Config, ConfigErrors> {
        let mut unknown = Vec::new();
        let de = toml::Deserializer::new(text);
        let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
        let ignoring = serde_ignored::Deserializer::new(de, &mut on_unknown);
        let parsed: Result<raw::RawConfig, _> = serde_path_to_error::deserialize(ignoring);
        let raw = match parsed {
            Ok(raw) => raw,
            Err(e) => {
                let path = e.path().iter().fold(String::new(), |mut acc, seg| {
                    push_segment(&mut acc, seg);
                    acc
                });
                let inner = e.into_inner();
                let msg = inner.message().trim().replace('\n', "; ");
                let msg = match inner.span() {
                    Some(span) => {
                        let before = &text[..span.start.min(text.len())];
                        let line = before.matches('\n').count() + 1;
                        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                        format!("line {line}, column {column}: {msg}")
                    }
                    None => msg,
                };
                return Err(ConfigErrors::one(path, msg));
            }
        };
        let mut errors: Vec<ConfigError> = unknown
            .into_iter()
            .map(|path| ConfigError {
                path,
                message: "unknown key".into(),
            })
            .collect();
        match validate::validate(raw, opts) {
            Ok(config) if errors.is_empty() => Ok(config),
            Ok(_) => Err(ConfigErrors(errors)),
            Err(mut more) => {
                errors.append(&mut more.0);
                Err(ConfigErrors(errors))
            }
        }
    }

    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    pub fn listener(&self, name: &str) -> Option<&ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// The one-line summary `--check` prints.
    pub fn summary(&self) -> String {
        let backends: usize = self.pools.iter().map(|p| p.backends.len()).sum();
        format!(
            "config ok: {} listener(s), {} route(s), {} pool(s), {} backend(s), admin {}",
            self.listeners.len(),
            self.routes.len(),
            self.pools.len(),
            backends,
            match &self.admin {
                Some(a) => a.bind.to_string(),
                None => "disabled".into(),
            }
        )
    }
}

/// Appends one path segment the way the TOML reads: `[[listener]]` entries
/// are `listener[0]`, tables are `pool.api`.
fn push_segment(acc: &mut String, seg: &serde_path_to_error::Segment) {
    use serde_path_to_error::Segment;
    match seg {
        Segment::Seq { index } => acc.push_str(&format!("[{index}]")),
        Segment::Map { key } => {
            if !acc.is_empty() {
                acc.push('.');
            }
            acc.push_str(key);
        }
        Segment::Enum { variant } => {
            if !acc.is_empty() {
                acc.push('.');
            }
            acc.push_str(variant);
        }
        Segment::Unknown => {}
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let p = ignored_path(parent);
            if p.is_empty() {
                key.to_string()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent } | Path::NewtypeStruct { parent } => ignored_path(parent),
        Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}
