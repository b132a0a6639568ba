//! `[pool.NAME]` tables: backends, health checks, breakers, rate limits,
//! retries, connection caps.

use super::super::defaults;
use super::super::raw::*;
use super::super::*;
use super::upstream::{validate_upstream, Upstream};
use super::{Errors, MAX_WEIGHT};
use std::collections::HashSet;
use std::net::ToSocketAddrs;

pub(super) fn validate_pools(
    e: &mut Errors,
    raw: &std::collections::BTreeMap<String, RawPool>,
    opts: LoadOptions,
    nameservers: &[SocketAddr],
) -> Vec<PoolConfig> {
    let mut out = Vec::new();
    for (name, r) in raw {
        let p = format!("pool.{name}");
        let strategy = match r.strategy.as_deref() {
            None => {
                Strategy::parse(defaults::text("pool.strategy")).unwrap_or(Strategy::RoundRobin)
            }
            Some(s) => Strategy::parse(s).unwrap_or_else(|| {
                e.push(
                    format!("{p}.strategy"),
                    format!("unknown strategy {s:?} (expected {})", Strategy::NAMES),
                );
                Strategy::RoundRobin
            }),
        };
        let hash_key = match r
            .hash_key
            .as_deref()
            .unwrap_or(defaults::text("pool.hash_key"))
        {
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
        let backends = validate_backends(e, &p, r.backends.as_deref(), opts, nameservers);
        let hash_balance_factor = r
            .hash_balance_factor
            .unwrap_or(defaults::float("pool.hash_balance_factor"));
        if !(hash_balance_factor == 0.0 || (1.0..=100.0).contains(&hash_balance_factor)) {
            e.push(
                format!("{p}.hash_balance_factor"),
                format!("must be 0 (off) or between 1.0 and 100.0, got {hash_balance_factor}"),
            );
        }
        let Upstream {
            send_proxy_protocol,
            sticky,
            tls,
            protocol,
        } = validate_upstream(e, &p, r);
        let dns_refresh = r
            .dns_refresh
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| e.duration(&format!("{p}.dns_refresh"), &Some(s.clone()), "30s"));
        let slow_start = r
            .slow_start
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| e.duration(&format!("{p}.slow_start"), &Some(s.clone()), "30s"));
        out.push(PoolConfig {
            name: name.clone(),
            strategy,
            backends,
            connect_timeout: e.duration(
                &format!("{p}.connect_timeout"),
                &r.connect_timeout,
                defaults::text("pool.connect_timeout"),
            ),
            request_timeout: e.duration(
                &format!("{p}.request_timeout"),
                &r.request_timeout,
                defaults::text("pool.request_timeout"),
            ),
            max_in_flight: e.int(
                &format!("{p}.max_in_flight"),
                r.max_in_flight,
                defaults::int("pool.max_in_flight"),
                0,
                u32::MAX as i64,
            ) as u32,
            max_connections: e.int(
                &format!("{p}.max_connections"),
                r.max_connections,
                defaults::int("pool.max_connections"),
                1,
                1_000_000,
            ) as usize,
            queue_timeout: e.duration(
                &format!("{p}.queue_timeout"),
                &r.queue_timeout,
                defaults::text("pool.queue_timeout"),
            ),
            hash_key,
            hash_balance_factor,
            send_proxy_protocol,
            protocol,
            sticky,
            tls,
            dns_refresh,
            slow_start,
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
                        defaults::int("pool.circuit_breaker.failure_threshold"),
                        1,
                        1_000_000,
                    ) as u32,
                    open_duration: e.duration(
                        &format!("{q}.open_duration"),
                        &c.open_duration,
                        defaults::text("pool.circuit_breaker.open_duration"),
                    ),
                    half_open_requests: e.int(
                        &format!("{q}.half_open_requests"),
                        c.half_open_requests,
                        defaults::int("pool.circuit_breaker.half_open_requests"),
                        1,
                        1_000_000,
                    ) as u32,
                }
            }),
            rate_limit: e.rate_limit(&format!("{p}.rate_limit"), &r.rate_limit, "pool.rate_limit"),
            retry: r
                .retry
                .as_ref()
                .map(|rt| validate_retry(e, &format!("{p}.retry"), rt)),
        });
    }
    out
}

pub(super) fn validate_backends(
    e: &mut Errors,
    p: &str,
    raw: Option<&[RawBackend]>,
    opts: LoadOptions,
    nameservers: &[SocketAddr],
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
        match resolve(&addr, opts, nameservers) {
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
pub fn resolve(
    addr: &str,
    opts: LoadOptions,
    nameservers: &[SocketAddr],
) -> Result<SocketAddr, String> {
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
    if !nameservers.is_empty() {
        // [dns] nameservers: every backend name lookup goes to them.
        let port = port.parse::<u16>().map_err(|_| invalid())?;
        return super::super::resolve::lookup_blocking(host, port, nameservers)
            .map_err(|e| format!("cannot resolve {addr:?} through [dns] nameservers: {e}"))?
            .into_iter()
            .next()
            .ok_or_else(|| format!("host name in {addr:?} resolved to no address"));
    }
    match addr.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("host name in {addr:?} resolved to no address")),
        Err(err) => Err(format!("cannot resolve {addr:?}: {err}")),
    }
}

pub(super) fn validate_health(e: &mut Errors, p: &str, h: &RawHealthCheck) -> HealthCheckConfig {
    let text = h
        .path
        .clone()
        .unwrap_or_else(|| defaults::text("pool.health_check.path").into());
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
    let expect = h
        .expect_status
        .as_deref()
        .unwrap_or(defaults::text("pool.health_check.expect_status"));
    let expect_status = parse_status_range(expect).unwrap_or_else(|| {
        e.push(
            format!("{p}.expect_status"),
            format!("invalid status range {expect:?} (expected e.g. \"200-399\" or \"204\")"),
        );
        200..=399
    });
    let interval = e.duration(
        &format!("{p}.interval"),
        &h.interval,
        defaults::text("pool.health_check.interval"),
    );
    let timeout = e.duration(
        &format!("{p}.timeout"),
        &h.timeout,
        defaults::text("pool.health_check.timeout"),
    );
    let host = h.host.clone().filter(|s| !s.is_empty());
    if let Some(host) = &host {
        if http::HeaderValue::from_str(host).is_err() || host.contains(|c: char| c.is_whitespace())
        {
            e.push(
                format!("{p}.host"),
                format!("invalid Host header value {host:?}"),
            );
        }
    }
    HealthCheckConfig {
        path,
        host,
        interval,
        timeout,
        healthy_threshold: e.int(
            &format!("{p}.healthy_threshold"),
            h.healthy_threshold,
            defaults::int("pool.health_check.healthy_threshold"),
            1,
            1000,
        ) as u32,
        unhealthy_threshold: e.int(
            &format!("{p}.unhealthy_threshold"),
            h.unhealthy_threshold,
            defaults::int("pool.health_check.unhealthy_threshold"),
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

pub(super) fn validate_retry(e: &mut Errors, p: &str, r: &RawRetry) -> RetryConfig {
    let mut out = RetryConfig {
        attempts: e.int(
            &format!("{p}.attempts"),
            r.attempts,
            defaults::int("pool.retry.attempts"),
            0,
            10,
        ) as u32,
        backoff: e.duration(
            &format!("{p}.backoff"),
            &r.backoff,
            defaults::text("pool.retry.backoff"),
        ),
        backoff_max: e.duration(
            &format!("{p}.backoff_max"),
            &r.backoff_max,
            defaults::text("pool.retry.backoff_max"),
        ),
        on_connect_failure: false,
        on_timeout: false,
        on_status: Vec::new(),
        budget_ratio: r
            .budget_ratio
            .unwrap_or(defaults::float("pool.retry.budget_ratio")),
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
    let default_on = defaults::list("pool.retry.on");
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
