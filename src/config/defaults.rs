//! Every key's default, in one table, as it would be written in the file
//! (TOML). The validator takes its defaults from here, and
//! `tests/config_reference.rs` checks that `config/sluice.toml` and the
//! README's configuration reference list the same keys with the same
//! defaults. Keys without a literal default (required keys, a route's
//! name, its listeners) are not here.

/// (`section.key`, default). Sections as in the file: `listener` for
/// `[[listener]]`, `pool` for `[pool.NAME]`, `pool.retry` for
/// `[pool.NAME.retry]`.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("runtime.worker_threads", "0"),
    ("runtime.shutdown_grace", "\"30s\""),
    ("admin.bind", "\"127.0.0.1:9901\""),
    ("admin.token_file", "\"\""),
    ("log.level", "\"info\""),
    ("log.format", "\"json\""),
    ("log.access_log", "true"),
    ("dns.nameservers", "[]"),
    ("redis.url", "\"redis://127.0.0.1:6379/0\""),
    ("redis.timeout", "\"50ms\""),
    (
        "acme.directory",
        "\"https://acme-v02.api.letsencrypt.org/directory\"",
    ),
    ("acme.email", "\"\""),
    ("acme.state_dir", "\"/var/lib/sluice/acme\""),
    ("acme.ca", "\"\""),
    ("acme.challenge", "\"tls-alpn-01\""),
    ("acme.renew_before", "\"30d\""),
    ("listener.header_read_timeout", "\"10s\""),
    ("listener.idle_timeout", "\"60s\""),
    ("listener.max_header_bytes", "65536"),
    ("listener.max_connections", "10000"),
    ("listener.trusted_proxies", "[]"),
    ("listener.certificates", "[]"),
    ("listener.acme_domains", "[]"),
    ("listener.proxy_protocol", "false"),
    ("route.path_prefix", "\"/\""),
    ("route.methods", "[]"),
    ("route.headers", "{}"),
    ("route.query", "{}"),
    ("route.strip_prefix", "false"),
    ("route.rewrite_prefix", "\"\""),
    ("route.rewrite_host", "\"\""),
    ("route.request_headers", "{}"),
    ("route.response_headers", "{}"),
    ("route.max_body_bytes", "0"),
    ("route.timeout", "\"\""),
    ("route.allow", "[]"),
    ("route.deny", "[]"),
    ("route.compress", "false"),
    ("route.rate_limit.requests_per_second", "50.0"),
    ("route.rate_limit.burst", "100"),
    ("route.rate_limit.key", "\"client_ip\""),
    ("route.rate_limit.scope", "\"local\""),
    ("pool.strategy", "\"round_robin\""),
    ("pool.connect_timeout", "\"2s\""),
    ("pool.request_timeout", "\"30s\""),
    ("pool.max_in_flight", "0"),
    ("pool.max_connections", "1024"),
    ("pool.queue_timeout", "\"1s\""),
    ("pool.hash_key", "\"path\""),
    ("pool.hash_balance_factor", "0.0"),
    ("pool.send_proxy_protocol", "\"off\""),
    ("pool.protocol", "\"http1\""),
    ("pool.sticky", "{ cookie = \"\", ttl = \"\" }"),
    ("pool.slow_start", "\"\""),
    ("pool.dns_refresh", "\"\""),
    ("pool.tls.server_name", "\"\""),
    ("pool.tls.ca", "\"\""),
    ("pool.tls.verify", "true"),
    ("pool.tls.cert", "\"\""),
    ("pool.tls.key", "\"\""),
    ("pool.health_check.path", "\"/healthz\""),
    ("pool.health_check.host", "\"\""),
    ("pool.health_check.interval", "\"5s\""),
    ("pool.health_check.timeout", "\"2s\""),
    ("pool.health_check.healthy_threshold", "2"),
    ("pool.health_check.unhealthy_threshold", "3"),
    ("pool.health_check.expect_status", "\"200-399\""),
    ("pool.circuit_breaker.failure_threshold", "5"),
    ("pool.circuit_breaker.open_duration", "\"30s\""),
    ("pool.circuit_breaker.half_open_requests", "1"),
    ("pool.rate_limit.requests_per_second", "1000.0"),
    ("pool.rate_limit.burst", "200"),
    ("pool.retry.attempts", "2"),
    ("pool.retry.backoff", "\"25ms\""),
    ("pool.retry.backoff_max", "\"1s\""),
    (
        "pool.retry.on",
        "[\"connect_failure\", \"timeout\", \"502\", \"503\", \"504\"]",
    ),
    ("pool.retry.budget_ratio", "0.2"),
];

/// The default of `key` as written (TOML).
pub fn raw(key: &str) -> &'static str {
    DEFAULTS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("", |(_, v)| *v)
}

/// A string default, without its quotes.
pub fn text(key: &str) -> &'static str {
    raw(key).trim_matches('"')
}

/// A number default.
pub fn int(key: &str) -> i64 {
    raw(key).parse().unwrap_or(0)
}

pub fn float(key: &str) -> f64 {
    raw(key).parse().unwrap_or(0.0)
}

pub fn boolean(key: &str) -> bool {
    raw(key) == "true"
}

/// A list-of-strings default.
pub fn list(key: &str) -> Vec<String> {
    raw(key)
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_reads_back() {
        for (key, v) in DEFAULTS {
            let ok = v.starts_with('"')
                || v.starts_with('[')
                || v.starts_with('{')
                || v.parse::<f64>().is_ok()
                || *v == "true"
                || *v == "false";
            assert!(ok, "{key} = {v}");
        }
        assert_eq!(text("pool.queue_timeout"), "1s");
        assert_eq!(int("listener.max_header_bytes"), 65536);
        assert_eq!(list("pool.retry.on").len(), 5);
        assert_eq!(raw("no.such.key"), "");
    }
}
