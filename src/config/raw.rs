//! The serde mirror of the TOML file: every key of the spec, as written.
//!
//! Values that need checking beyond their TOML type (durations, addresses,
//! CIDRs, enums) stay strings here so that `validate` can report every bad
//! value with its key path instead of stopping at the first one. Unknown keys
//! are collected by `serde_ignored` in `config::parse`, not rejected by serde,
//! for the same reason.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub runtime: RawRuntime,
    pub admin: Option<RawAdmin>,
    pub log: RawLog,
    pub redis: Option<RawRedis>,
    pub acme: Option<RawAcme>,
    pub dns: Option<RawDns>,
    pub listener: Vec<RawListener>,
    pub route: Vec<RawRoute>,
    /// BTreeMap so that pools are validated and reported in a stable order.
    pub pool: BTreeMap<String, RawPool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRuntime {
    pub worker_threads: Option<i64>,
    pub shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAdmin {
    pub bind: Option<String>,
    pub token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
    pub access_log: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRedis {
    pub url: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAcme {
    pub directory: Option<String>,
    pub email: Option<String>,
    pub state_dir: Option<String>,
    pub ca: Option<String>,
    pub challenge: Option<String>,
    pub renew_before: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawListener {
    pub name: Option<String>,
    pub bind: Option<String>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_header_bytes: Option<i64>,
    pub max_connections: Option<i64>,
    pub trusted_proxies: Option<Vec<String>>,
    pub certificates: Option<Vec<RawCertificate>>,
    pub acme_domains: Option<Vec<String>>,
    pub proxy_protocol: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawCertificate {
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub listeners: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub query: Option<BTreeMap<String, String>>,
    pub pool: Option<String>,
    pub pools: Option<Vec<RawSplit>>,
    pub redirect: Option<RawRedirect>,
    pub strip_prefix: Option<bool>,
    pub rewrite_prefix: Option<String>,
    pub rewrite_host: Option<String>,
    pub request_headers: Option<RawHeaderRules>,
    pub response_headers: Option<RawHeaderRules>,
    pub max_body_bytes: Option<i64>,
    pub timeout: Option<String>,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub basic_auth: Option<RawBasicAuth>,
    pub compress: Option<bool>,
    pub mirror: Option<RawMirror>,
    pub rate_limit: Option<RawRateLimit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawSplit {
    pub pool: Option<String>,
    pub weight: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRedirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub path: Option<String>,
    pub prefix: Option<String>,
    pub code: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawHeaderRules {
    pub set: Option<BTreeMap<String, String>>,
    pub add: Option<BTreeMap<String, String>>,
    pub remove: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawBasicAuth {
    pub realm: Option<String>,
    pub users_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawMirror {
    pub pool: Option<String>,
    pub percent: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRateLimit {
    pub requests_per_second: Option<f64>,
    pub burst: Option<i64>,
    pub key: Option<String>,
    pub scope: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawPool {
    pub strategy: Option<String>,
    pub backends: Option<Vec<RawBackend>>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub max_in_flight: Option<i64>,
    pub max_connections: Option<i64>,
    pub queue_timeout: Option<String>,
    pub hash_key: Option<String>,
    pub hash_balance_factor: Option<f64>,
    pub send_proxy_protocol: Option<String>,
    pub protocol: Option<String>,
    pub sticky: Option<RawSticky>,
    pub tls: Option<RawUpstreamTls>,
    pub dns_refresh: Option<String>,
    pub slow_start: Option<String>,
    pub health_check: Option<RawHealthCheck>,
    pub circuit_breaker: Option<RawCircuitBreaker>,
    pub rate_limit: Option<RawRateLimit>,
    pub retry: Option<RawRetry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawUpstreamTls {
    pub server_name: Option<String>,
    pub ca: Option<String>,
    pub verify: Option<bool>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawDns {
    pub nameservers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawSticky {
    pub cookie: Option<String>,
    pub ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawBackend {
    pub addr: Option<String>,
    pub weight: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawHealthCheck {
    pub path: Option<String>,
    pub host: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<i64>,
    pub unhealthy_threshold: Option<i64>,
    pub expect_status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawCircuitBreaker {
    pub failure_threshold: Option<i64>,
    pub open_duration: Option<String>,
    pub half_open_requests: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRetry {
    pub attempts: Option<i64>,
    pub backoff: Option<String>,
    pub backoff_max: Option<String>,
    pub on: Option<Vec<String>>,
    pub budget_ratio: Option<f64>,
}
