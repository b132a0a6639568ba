//! Raw config -> validated `Config`, collecting every error with its key path.

use super::raw::*;
use super::*;
use std::collections::HashSet;
use std::net::ToSocketAddrs;

/// Weights are 1..=256, as HAProxy's: large enough for any real ratio, small
/// enough that the precomputed round-robin schedule and hash ring stay small.
pub const MAX_WEIGHT: i64 = 256;

struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, path: &str, value: &Option<String>, default: &str) -> Duration {
        let text = value.as_deref().unwrap_or(default);
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.push(
                    path,
                    format!("duration must be greater than zero, got {text:?}"),
                );
                Duration::from_secs(1)
            }
            Ok(d) => d,
            Err(_) => {
                self.push(
                    path,
                    format!("invalid duration {text:?} (expected a number with a unit, e.g. \"250ms\", \"5s\", \"2m\")"),
                );
                Duration::from_secs(1)
            }
        }
    }

    fn int(&mut self, path: &str, value: Option<i64>, default: i64, min: i64, max: i64) -> i64 {
        let v = value.unwrap_or(default);
        if v < min || v > max {
            self.push(path, format!("must be between {min} and {max}, got {v}"));
            return default.clamp(min, max);
        }
        v
    }

    fn bind(&mut self, path: &str, value: &Option<String>) -> Option<SocketAddr> {
        match value {
            None => {
                self.push(path, "required key is missing");
                None
            }
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.push(path, format!("invalid socket address {text:?}"));
                    None
                }
            },
        }
    }

    fn rate_limit(
        &mut self,
        path: &str,
        raw: &Option<RawRateLimit>,
        rps: f64,
        burst: i64,
    ) -> Option<RateLimitConfig> {
        let raw = raw.as_ref()?;
        let requests_per_second = raw.requests_per_second.unwrap_or(rps);
        if !(requests_per_second.is_finite() && requests_per_second > 0.0) {
            self.push(
                format!("{path}.requests_per_second"),
                format!("must be a positive number, got {requests_per_second}"),
            );
        }
        let burst = self.int(&format!("{path}.burst"), raw.burst, burst, 1, 1_000_000_000) as u32;
        Some(RateLimitConfig {
            requests_per_second,
            burst,
        })
    }
}

pub(super) fn validate(raw: RawConfig, opts: LoadOptions) -> Result<Config, ConfigErrors> {
    let mut e = Errors(Vec::new());

    let runtime = RuntimeConfig {
        worker_threads: e.int(
            "runtime.worker_threads",
            raw.runtime.worker_threads,
            0,
            0,
            1024,
        ) as usize,
        shutdown_grace: e.duration("runtime.shutdown_grace", &raw.runtime.shutdown_grace, "30s"),
    };

    let admin = raw.admin.as_ref().and_then(|a| {
        let bind = a.bind.clone().or_else(|| Some("127.0.0.1:9901".into()));
        e.bind("admin.bind", &bind).map(|bind| AdminConfig { bind })
    });

    let level = raw.log.level.clone().unwrap_or_else(|| "info".into());
    if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        e.push(
            "log.level",
            format!("unknown level {level:?} (expected error | warn | info | debug | trace)"),
        );
    }
    let format = match raw.log.format.as_deref().unwrap_or("json") {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            e.push(
                "log.format",
                format!("unknown format {other:?} (expected json | text)"),
            );
            LogFormat::Json
        }
    };
    let log = LogConfig {
        level,
        format,
        access_log: raw.log.access_log.unwrap_or(true),
    };

    let listeners = validate_listeners(&mut e, &raw.listener, admin.as_ref());
    let pools = validate_pools(&mut e, &raw.pool, opts);
    let routes = validate_routes(&mut e, &raw.route, &listeners, &raw.pool);

    if e.0.is_empty() {
        Ok(Config {
            runtime,
            admin,
            log,
            listeners,
            routes,
            pools,
            warnings: Vec::new(),
        })
    } else {
        Err(ConfigErrors(e.0))
    }
}

fn validate_listeners(
    e: &mut Errors,
    raw: &[RawListener],
    admin: Option<&AdminConfig>,
) -> Vec<ListenerConfig> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    let mut binds = HashSet::new();
    if raw.is_empty() {
        e.push("listener", "at least one [[listener]] is required");
    }
    for (i, l) in raw.iter().enumerate() {
        let p = format!("listener[{i}]");
        let name = match &l.name {
            Some(n) if n.is_empty() => {
                e.push(format!("{p}.name"), "must not be empty");
                continue;
            }
            Some(n) => n.clone(),
            None => {
                e.push(format!("{p}.name"), "required key is missing");
                continue;
            }
        };
        if !names.insert(name.clone()) {
            e.push(
                format!("{p}.name"),
                format!("duplicate listener name {name:?}"),
            );
        }
        let Some(bind) = e.bind(&format!("{p}.bind"), &l.bind) else {
            continue;
        };
        if bind.port() != 0 && !binds.insert(bind) {
            e.push(
                format!("{p}.bind"),
                format!("{bind} is already bound by another listener"),
            );
        }
        if let Some(a) = admin {
            if a.bind.port() != 0 && a.bind.port() == bind.port() {
                e.push(
                    format!("{p}.bind"),
                    format!("port {} is the admin listener's", bind.port()),
                );
            }
        }
        let mut trusted = Vec::new();
        for (j, cidr) in l.trusted_proxies.iter().flatten().enumerate() {
            match parse_cidr(cidr) {
                Some(net) => trusted.push(net),
                None => e.push(
                    format!("{p}.trusted_proxies[{j}]"),
                    format!("invalid CIDR {cidr:?}"),
                ),
            }
        }
        let mut certificates = Vec::new();
        for (j, c) in l.certificates.iter().flatten().enumerate() {
            let cert = c.cert.as_ref().map(PathBuf::from);
            let key = c.key.as_ref().map(PathBuf::from);
            if cert.is_none() {
                e.push(
                    format!("{p}.certificates[{j}].cert"),
                    "required key is missing",
                );
            }
            if key.is_none() {
                e.push(
                    format!("{p}.certificates[{j}].key"),
                    "required key is missing",
                );
            }
            if let (Some(cert), Some(key)) = (cert, key) {
                certificates.push(CertificateConfig { cert, key });
            }
        }
        out.push(ListenerConfig {
            name,
            bind,
            header_read_timeout: e.duration(
                &format!("{p}.header_read_timeout"),
                &l.header_read_timeout,
                "10s",
            ),
            idle_timeout: e.duration(&format!("{p}.idle_timeout"), &l.idle_timeout, "60s"),
            max_header_bytes: e.int(
                &format!("{p}.max_header_bytes"),
                l.max_header_bytes,
                65536,
                1024,
                1 << 20,
            ) as usize,
            max_connections: e.int(
                &format!("{p}.max_connections"),
                l.max_connections,
                10000,
                1,
                10_000_000,
            ) as usize,
            trusted_proxies: trusted,
            certificates,
        });
    }
    out
}

/// Accepts a CIDR (`10.0.0.0/8`) or a bare address (a /32 or /128).
fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn validate_routes(
    e: &mut Errors,
    raw: &[RawRoute],
    listeners: &[ListenerConfig],
    pools: &std::collections::BTreeMap<String, RawPool>,
) -> Vec<RouteConfig> {
    let mut out = Vec::new();
    let mut explicit_names = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        let p = format!("route[{i}]");
        let Some(pool) = r.pool.clone() else {
            e.push(format!("{p}.pool"), "required key is missing");
            continue;
        };
        if !pools.contains_key(&pool) {
            e.push(format!("{p}.pool"), format!("unknown pool {pool:?}"));
        }
        if let Some(n) = &r.name {
            if n.is_empty() {
                e.push(format!("{p}.name"), "must not be empty");
            } else if !explicit_names.insert(n.clone()) {
                e.push(format!("{p}.name"), format!("duplicate route name {n:?}"));
            }
        }
        let host = r.host.as_ref().and_then(|h| match parse_host(h) {
            Ok(m) => Some(m),
            Err(msg) => {
                e.push(format!("{p}.host"), msg);
                None
            }
        });
        let path_prefix = match r.path_prefix.as_deref().unwrap_or("/") {
            s if !s.starts_with('/') => {
                e.push(
                    format!("{p}.path_prefix"),
                    format!("must start with '/', got {s:?}"),
                );
                "/".to_string()
            }
            "/" => "/".to_string(),
            s => s.trim_end_matches('/').to_string(),
        };
        if let Some(ls) = &r.listeners {
            for (j, l) in ls.iter().enumerate() {
                if !listeners.iter().any(|x| &x.name == l) {
                    e.push(
                        format!("{p}.listeners[{j}]"),
                        format!("unknown listener {l:?}"),
                    );
                }
            }
        }
        let rate_limit = e.rate_limit(&format!("{p}.rate_limit"), &r.rate_limit, 50.0, 100);
        out.push(RouteConfig {
            name: r.name.clone().unwrap_or_else(|| pool.clone()),
            host,
            path_prefix,
            listeners: r.listeners.clone(),
            pool,
            rate_limit,
        });
    }
    out
}

fn parse_host(h: &str) -> Result<HostMatch, String> {
    let lower = h.to_ascii_lowercase();
    let valid = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if let Some(rest) = lower.strip_prefix("*.") {
        if valid(rest) {
            return Ok(HostMatch::Wildcard(format!(".{rest}")));
        }
    } else if valid(&lower) {
        return Ok(HostMatch::Exact(lower));
    }
    Err(format!(
        "invalid host {h:?} (expected a host name without port, or \"*.\" followed by one)"
    ))
}

fn validate_pools(
    e: &mut Errors,
    raw: &std::collections::BTreeMap<String, RawPool>,
    opts: LoadOptions,
) -> Vec<PoolConfig> {
    let mut out = Vec::new();
    for (name, r) in raw {
        let p = format!("pool.{name}");
        let strategy = match r.strategy.as_deref() {
            None => Strategy::RoundRobin,
            Some(s) => Strategy::parse(s).unwrap_or_else(|| {
                e.push(
                    format!("{p}.strategy"),
                    format!("unknown strategy {s:?} (expected {})", Strategy::NAMES),
                );
                Strategy::RoundRobin
            }),
        };
        let hash_key = match r.hash_key.as_deref().unwrap_or("path") {
            "path" => HashKey::Path,
            "path_and_query" => HashKey::PathAndQuery,
            other => {
                e.push(
                    format!("{p}.hash_key"),
                    format!("unknown hash_key {other:?} (expected path | path_and_query)"),
                );
                HashKey::Path
            }
        };
        let backends = validate_backends(e, &p, r.backends.as_deref(), opts);
        out.push(PoolConfig {
            name: name.clone(),
            strategy,
            backends,
            connect_timeout: e.duration(&format!("{p}.connect_timeout"), &r.connect_timeout, "2s"),
            request_timeout: e.duration(&format!("{p}.request_timeout"), &r.request_timeout, "30s"),
            max_in_flight: e.int(
                &format!("{p}.max_in_flight"),
                r.max_in_flight,
                0,
                0,
                u32::MAX as i64,
            ) as u32,
            max_connections: e.int(
                &format!("{p}.max_connections"),
                r.max_connections,
                1024,
                1,
                1_000_000,
            ) as usize,
            queue_timeout: e.duration(&format!("{p}.queue_timeout"), &r.queue_timeout, "1s"),
            hash_key,
            health_check: r
                .health_check
                .as_ref()
                .map(|h| validate_health(e, &format!("{p}.health_check"), h)),
            circuit_breaker: r.circuit_breaker.as_ref().map(|c| {
                let q = format!("{p}.circuit_breaker");
                CircuitBreakerConfig {
                    failure_threshold: e.int(
                        &format!("{q}.failure_threshold"),
                        c.failure_threshold,
                        5,
                        1,
                        1_000_000,
                    ) as u32,
                    open_duration: e.duration(
                        &format!("{q}.open_duration"),
                        &c.open_duration,
                        "30s",
                    ),
                    half_open_requests: e.int(
                        &format!("{q}.half_open_requests"),
                        c.half_open_requests,
                        1,
                        1,
                        1_000_000,
                    ) as u32,
                }
            }),
            rate_limit: e.rate_limit(&format!("{p}.rate_limit"), &r.rate_limit, 1000.0, 200),
            retry: r
                .retry
                .as_ref()
                .map(|rt| validate_retry(e, &format!("{p}.retry"), rt)),
        });
    }
    out
}

fn validate_backends(
    e: &mut Errors,
    p: &str,
    raw: Option<&[RawBackend]>,
    opts: LoadOptions,
) -> Vec<BackendConfig> {
    let mut out = Vec::new();
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        e.push(format!("{p}.backends"), "a pool needs at least one backend");
    }
    let mut seen = HashSet::new();
    for (i, b) in raw.iter().enumerate() {
        let q = format!("{p}.backends[{i}]");
        let weight = e.int(&format!("{q}.weight"), b.weight, 1, 1, MAX_WEIGHT) as u32;
        let Some(addr) = b.addr.clone() else {
            e.push(format!("{q}.addr"), "required key is missing");
            continue;
        };
        if !seen.insert(addr.clone()) {
            e.push(
                format!("{q}.addr"),
                format!("duplicate backend {addr:?} in this pool"),
            );
            continue;
        }
        match resolve(&addr, opts) {
            Ok(resolved) => out.push(BackendConfig {
                addr,
                resolved,
                weight,
            }),
            Err(msg) => e.push(format!("{q}.addr"), msg),
        }
    }
    out
}

/// `ip:port` parses directly; `host:port` is resolved now (at load and at
/// every reload), and the first address is used.
pub fn resolve(addr: &str, opts: LoadOptions) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    let invalid = || format!("invalid socket address {addr:?}");
    let (host, port) = addr.rsplit_once(':').ok_or_else(invalid)?;
    if host.is_empty()
        || port.parse::<u16>().is_err()
        || host.contains(':')
        || host.parse::<std::net::IpAddr>().is_ok()
    {
        return Err(invalid());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return Err(invalid());
    }
    if !opts.resolve_names {
        return Err(format!("cannot resolve {addr:?}: name resolution is off"));
    }
    match addr.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("host name in {addr:?} resolved to no address")),
        Err(err) => Err(format!("cannot resolve {addr:?}: {err}")),
    }
}

fn validate_health(e: &mut Errors, p: &str, h: &RawHealthCheck) -> HealthCheckConfig {
    let text = h.path.clone().unwrap_or_else(|| "/healthz".into());
    // Parsed here into the request target it becomes: a path the check
    // could not send (a space, a control character, a fragment) is a
    // config error, not a silent probe of "/".
    let parsed = text
        .parse::<http::uri::PathAndQuery>()
        .ok()
        .filter(|_| text.starts_with('/'))
        .filter(|_| {
            text.bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'#')
        });
    let path = parsed.unwrap_or_else(|| {
        e.push(
            format!("{p}.path"),
            format!("must be an origin-form path (starting with '/', visible ASCII, no spaces), got {text:?}"),
        );
        http::uri::PathAndQuery::from_static("/")
    });
    let expect = h.expect_status.as_deref().unwrap_or("200-399");
    let expect_status = parse_status_range(expect).unwrap_or_else(|| {
        e.push(
            format!("{p}.expect_status"),
            format!("invalid status range {expect:?} (expected e.g. \"200-399\" or \"204\")"),
        );
        200..=399
    });
    let interval = e.duration(&format!("{p}.interval"), &h.interval, "5s");
    let timeout = e.duration(&format!("{p}.timeout"), &h.timeout, "2s");
    HealthCheckConfig {
        path,
        interval,
        timeout,
        healthy_threshold: e.int(
            &format!("{p}.healthy_threshold"),
            h.healthy_threshold,
            2,
            1,
            1000,
        ) as u32,
        unhealthy_threshold: e.int(
            &format!("{p}.unhealthy_threshold"),
            h.unhealthy_threshold,
            3,
            1,
            1000,
        ) as u32,
        expect_status,
    }
}

fn parse_status_range(s: &str) -> Option<RangeInclusive<u16>> {
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (
            lo.trim().parse::<u16>().ok()?,
            hi.trim().parse::<u16>().ok()?,
        ),
        None => {
            let v = s.trim().parse::<u16>().ok()?;
            (v, v)
        }
    };
    ((100..=599).contains(&lo) && (100..=599).contains(&hi) && lo <= hi).then_some(lo..=hi)
}

fn validate_retry(e: &mut Errors, p: &str, r: &RawRetry) -> RetryConfig {
    let mut out = RetryConfig {
        attempts: e.int(&format!("{p}.attempts"), r.attempts, 2, 0, 10) as u32,
        backoff: e.duration(&format!("{p}.backoff"), &r.backoff, "25ms"),
        backoff_max: e.duration(&format!("{p}.backoff_max"), &r.backoff_max, "1s"),
        on_connect_failure: false,
        on_timeout: false,
        on_status: Vec::new(),
        budget_ratio: r.budget_ratio.unwrap_or(0.2),
    };
    if !(0.0..=1.0).contains(&out.budget_ratio) {
        e.push(
            format!("{p}.budget_ratio"),
            format!("must be between 0.0 and 1.0, got {}", out.budget_ratio),
        );
    }
    if out.backoff_max < out.backoff {
        e.push(
            format!("{p}.backoff_max"),
            "must not be shorter than backoff",
        );
    }
    let default_on = ["connect_failure", "timeout", "502", "503", "504"].map(String::from);
    let on = r.on.as_deref().unwrap_or(&default_on);
    for (i, cond) in on.iter().enumerate() {
        match cond.as_str() {
            "connect_failure" => out.on_connect_failure = true,
            "timeout" => out.on_timeout = true,
            s => match s.parse::<u16>() {
                Ok(code) if (400..=599).contains(&code) => out.on_status.push(code),
                _ => e.push(
                    format!("{p}.on[{i}]"),
                    format!("unknown retry condition {s:?} (expected connect_failure, timeout, or a 4xx/5xx status)"),
                ),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn errors(toml: &str) -> Vec<String> {
        match Config::parse(toml) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    const MIN: &str = r#"
[[listener]]
name = "public"
bind = "127.0.0.1:0"
[[route]]
pool = "api"
[pool.api]
backends = [{ addr = "127.0.0.1:9000" }]
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MIN).unwrap();
        assert_eq!(c.listeners[0].max_header_bytes, 65536);
        assert_eq!(
            c.listeners[0].idle_timeout,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(c.routes[0].name, "api");
        assert_eq!(c.routes[0].path_prefix, "/");
        assert_eq!(c.pools[0].backends[0].weight, 1);
        assert!(c.admin.is_none());
    }

    #[test]
    fn the_admin_listener_defaults_to_loopback_and_never_shares_a_listener_port() {
        let c = Config::parse(&format!("[admin]\n{MIN}")).unwrap();
        let admin = c.admin.unwrap().bind;
        assert!(admin.ip().is_loopback(), "{admin}");
        assert_eq!(admin.port(), 9901);
        let fixed = MIN.replace("127.0.0.1:0", "0.0.0.0:8080");
        let clash = format!("[admin]\nbind = \"127.0.0.1:8080\"\n{fixed}");
        let errs = errors(&clash);
        assert!(
            errs.iter().any(|e| e.contains("is the admin listener's")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_health_check_path_is_parsed_as_the_target_it_becomes() {
        let with = |path: &str| format!("{MIN}[pool.api.health_check]\npath = {path:?}\n");
        let c = Config::parse(&with("/health?full=1")).unwrap();
        let hc = c.pools[0].health_check.as_ref().unwrap();
        assert_eq!(hc.path.as_str(), "/health?full=1");
        for bad in ["/a b", "health", "/x#frag", "/a\tb"] {
            let errs = errors(&with(bad));
            assert!(
                errs.iter()
                    .any(|e| e.starts_with("pool.api.health_check.path: ")),
                "{bad:?}: {errs:?}"
            );
        }
    }

    #[test]
    fn spec_error_format_for_missing_port() {
        let t = MIN.replace("127.0.0.1:9000", "10.0.0.1");
        assert_eq!(
            errors(&t),
            vec![r#"pool.api.backends[0].addr: invalid socket address "10.0.0.1""#]
        );
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let t = r#"
[runtime]
shutdown_grace = "soon"
colour = "blue"
[[listener]]
name = "a"
bind = "nope"
[[listener]]
name = "a"
bind = "127.0.0.1:1"
idle_timeout = "5 parsecs"
bogus = 1
[[route]]
pool = "missing"
listeners = ["a", "zzz"]
[[route]]
pool = "empty"
host = "bad host"
[pool.empty]
backends = []
[pool.w]
strategy = "fastest"
backends = [{ addr = "127.0.0.1:1", weight = 0 }, { addr = "127.0.0.1:1" }]
"#;
        let errs = errors(t);
        let expect = [
            "runtime.colour: unknown key",
            "listener[1].bogus: unknown key",
            "runtime.shutdown_grace: invalid duration",
            "listener[0].bind: invalid socket address \"nope\"",
            "listener[1].name: duplicate listener name",
            "listener[1].idle_timeout: invalid duration",
            "route[0].pool: unknown pool \"missing\"",
            "route[0].listeners[1]: unknown listener \"zzz\"",
            "route[1].host: invalid host",
            "pool.empty.backends: a pool needs at least one backend",
            "pool.w.strategy: unknown strategy",
            "pool.w.backends[0].weight: must be between 1 and 256, got 0",
            "pool.w.backends[1].addr: duplicate backend",
        ];
        for x in expect {
            assert!(
                errs.iter().any(|e| e.starts_with(x)),
                "missing {x:?} in {errs:#?}"
            );
        }
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    }

    #[test]
    fn type_errors_name_their_path() {
        let t = MIN.replace(
            "backends = [{ addr = \"127.0.0.1:9000\" }]",
            "backends = [{ addr = 5 }]",
        );
        let errs = errors(&t);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("pool.api.backends[0].addr: line 8, column 22: invalid type"),
            "{errs:?}"
        );
    }

    #[test]
    fn hosts_and_prefixes_are_normalised() {
        let t = MIN.replace(
            "pool = \"api\"",
            "pool = \"api\"\nhost = \"*.Example.COM\"\npath_prefix = \"/v1/\"",
        );
        let c = Config::parse(&t).unwrap();
        assert_eq!(
            c.routes[0].host,
            Some(super::HostMatch::Wildcard(".example.com".into()))
        );
        assert_eq!(c.routes[0].path_prefix, "/v1");
    }

    #[test]
    fn unresolvable_host_is_an_error() {
        let t = MIN.replace("127.0.0.1:9000", "no-such-host.invalid:80");
        let errs = errors(&t);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("pool.api.backends[0].addr: cannot resolve"),
            "{errs:?}"
        );
    }
}
