//! `GET /api/v1/config`: the running, validated config as JSON, keys named
//! as in the file, every default filled in, durations as the file writes
//! them ("250ms", "30s"). Secrets never appear: certificate and key files
//! are shown by path only, a Redis password is replaced by `***`, and the
//! values of header rules on credential fields (Authorization, Cookie, API
//! keys) are redacted.

use crate::config::{
    Config, HeaderRules, HostMatch, ListenerConfig, PoolConfig, RateLimitConfig, RateLimitKey,
    RouteConfig, RouteTarget,
};
use serde_json::{json, Value};
use std::time::Duration;

fn dur(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn opt_dur(d: Option<Duration>) -> String {
    d.map(dur).unwrap_or_default()
}

/// Header names whose values are credentials.
fn secret(name: &str) -> bool {
    matches!(
        name,
        "authorization" | "proxy-authorization" | "cookie" | "x-api-key"
    ) || name.contains("token")
        || name.contains("secret")
}

fn rules(r: &HeaderRules) -> Value {
    let map = |pairs: &[(String, String)]| -> serde_json::Map<String, Value> {
        pairs
            .iter()
            .map(|(n, v)| {
                let v = if secret(n) { "<redacted>" } else { v.as_str() };
                (n.clone(), Value::from(v))
            })
            .collect()
    };
    json!({ "set": map(&r.set), "add": map(&r.add), "remove": r.remove })
}

fn rate_limit(r: &Option<RateLimitConfig>, route: bool) -> Value {
    let Some(r) = r else { return Value::Null };
    let mut v = json!({ "requests_per_second": r.requests_per_second, "burst": r.burst });
    if route {
        v["key"] = match &r.key {
            RateLimitKey::ClientIp => "client_ip".into(),
            RateLimitKey::Header(h) => format!("header:{h}").into(),
            RateLimitKey::Route => "route".into(),
        };
        v["scope"] = if r.global { "global" } else { "local" }.into();
    }
    v
}

fn listener(l: &ListenerConfig) -> Value {
    json!({
        "name": l.name,
        "bind": l.bind.to_string(),
        "header_read_timeout": dur(l.header_read_timeout),
        "idle_timeout": dur(l.idle_timeout),
        "max_header_bytes": l.max_header_bytes,
        "max_connections": l.max_connections,
        "trusted_proxies": l.trusted_proxies.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "certificates": l.certificates.iter().map(|c| json!({
            "cert": c.cert.display().to_string(),
            "key": c.key.display().to_string(),
        })).collect::<Vec<_>>(),
        "acme_domains": l.acme_domains,
        "proxy_protocol": l.proxy_protocol,
    })
}

fn route(r: &RouteConfig) -> Value {
    let mut v = json!({
        "name": r.name,
        "host": match &r.host {
            None => Value::Null,
            Some(HostMatch::Exact(h)) => h.as_str().into(),
            Some(HostMatch::Wildcard(s)) => format!("*{s}").into(),
        },
        "path_prefix": r.path_prefix,
        "listeners": r.listeners,
        "methods": r.methods,
        "headers": r.headers.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect::<serde_json::Map<String, Value>>(),
        "query": r.query.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect::<serde_json::Map<String, Value>>(),
        "strip_prefix": r.strip_prefix,
        "rewrite_prefix": r.rewrite_prefix.clone().unwrap_or_default(),
        "rewrite_host": r.rewrite_host.clone().unwrap_or_default(),
        "request_headers": rules(&r.request_headers),
        "response_headers": rules(&r.response_headers),
        "max_body_bytes": r.max_body_bytes,
        "timeout": opt_dur(r.timeout),
        "allow": r.allow.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "deny": r.deny.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "basic_auth": r.basic_auth.as_ref().map(|b| json!({
            "realm": b.realm,
            "users_file": b.users_file.display().to_string(),
        })),
        "compress": r.compress,
        "mirror": r.mirror.as_ref().map(|m| json!({ "pool": m.pool, "percent": m.percent })),
        "rate_limit": rate_limit(&r.rate_limit, true),
    });
    match &r.target {
        RouteTarget::Pool(p) => v["pool"] = p.as_str().into(),
        RouteTarget::Split(s) => {
            v["pools"] = s
                .iter()
                .map(|(p, w)| json!({ "pool": p, "weight": w }))
                .collect()
        }
        RouteTarget::Redirect(d) => {
            v["redirect"] = json!({
                "scheme": d.scheme, "host": d.host, "port": d.port,
                "path": d.path, "prefix": d.prefix, "code": d.code,
            })
        }
    }
    v
}

fn pool(p: &PoolConfig) -> Value {
    json!({
        "strategy": p.strategy.as_str(),
        "backends": p.backends.iter().map(|b| json!({
            "addr": b.addr, "resolved": b.resolved.to_string(), "weight": b.weight,
        })).collect::<Vec<_>>(),
        "connect_timeout": dur(p.connect_timeout),
        "request_timeout": dur(p.request_timeout),
        "max_in_flight": p.max_in_flight,
        "max_connections": p.max_connections,
        "queue_timeout": dur(p.queue_timeout),
        "hash_key": match p.hash_key {
            crate::config::HashKey::Path => "path",
            crate::config::HashKey::PathAndQuery => "path_and_query",
        },
        "hash_balance_factor": p.hash_balance_factor,
        "sticky": json!({
            "cookie": p.sticky.as_ref().map_or("", |s| s.cookie.as_str()),
            "ttl": p.sticky.as_ref().and_then(|s| s.ttl).map_or(String::new(), dur),
        }),
        "protocol": p.protocol.name(),
        "send_proxy_protocol": match p.send_proxy_protocol {
            None => "off",
            Some(crate::config::ProxyProtocolVersion::V1) => "v1",
            Some(crate::config::ProxyProtocolVersion::V2) => "v2",
        },
        "slow_start": p.slow_start.map_or(String::new(), dur),
        "health_check": p.health_check.as_ref().map(|h| json!({
            "path": h.path.as_str(),
            "host": h.host.clone().unwrap_or_default(),
            "interval": dur(h.interval),
            "timeout": dur(h.timeout),
            "healthy_threshold": h.healthy_threshold,
            "unhealthy_threshold": h.unhealthy_threshold,
            "expect_status": format!("{}-{}", h.expect_status.start(), h.expect_status.end()),
        })),
        "circuit_breaker": p.circuit_breaker.as_ref().map(|c| json!({
            "failure_threshold": c.failure_threshold,
            "open_duration": dur(c.open_duration),
            "half_open_requests": c.half_open_requests,
        })),
        "rate_limit": rate_limit(&p.rate_limit, false),
        "retry": p.retry.as_ref().map(|r| {
            let mut on: Vec<String> = Vec::new();
            if r.on_connect_failure { on.push("connect_failure".into()); }
            if r.on_timeout { on.push("timeout".into()); }
            on.extend(r.on_status.iter().map(|s| s.to_string()));
            json!({
                "attempts": r.attempts,
                "backoff": dur(r.backoff),
                "backoff_max": dur(r.backoff_max),
                "on": on,
                "budget_ratio": r.budget_ratio,
            })
        }),
    })
}

pub fn config_json(c: &Config) -> Value {
    json!({
        "runtime": {
            "worker_threads": c.runtime.worker_threads,
            "shutdown_grace": dur(c.runtime.shutdown_grace),
        },
        "admin": c.admin.as_ref().map(|a| json!({
            "bind": a.bind.to_string(),
            // The path only: the token itself never leaves the process.
            "token_file": a.token_file.as_ref().map(|f| f.display().to_string()),
        })),
        "log": {
            "level": c.log.level,
            "format": match c.log.format {
                crate::config::LogFormat::Json => "json",
                crate::config::LogFormat::Text => "text",
            },
            "access_log": c.log.access_log,
        },
        "redis": c.redis.as_ref().map(|r| json!({
            "url": r.url.redacted(),
            "timeout": dur(r.timeout),
        })),
        "acme": c.acme.as_ref().map(|a| json!({
            "directory": a.directory,
            "email": a.email.clone().unwrap_or_default(),
            "state_dir": a.state_dir.display().to_string(),
            "ca": a.ca.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "challenge": match a.challenge {
                crate::config::AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
                crate::config::AcmeChallenge::Http01 => "http-01",
            },
            "renew_before": dur(a.renew_before),
        })),
        "listener": c.listeners.iter().map(listener).collect::<Vec<_>>(),
        "route": c.routes.iter().map(route).collect::<Vec<_>>(),
        "pool": c.pools.iter().map(|p| (p.name.clone(), pool(p))).collect::<serde_json::Map<_, _>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_as_json_without_secrets() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sluice.toml"))
                .unwrap();
        let mut c = Config::parse(&text).unwrap();
        c.routes[0]
            .request_headers
            .set
            .push(("authorization".into(), "Bearer hunter2".into()));
        let v = config_json(&c);
        assert_eq!(v["pool"]["api"]["request_timeout"], "30s");
        assert_eq!(v["pool"]["api"]["retry"]["backoff"], "25ms");
        assert_eq!(v["route"][0]["rate_limit"]["key"], "client_ip");
        assert_eq!(v["route"][1]["pools"][0]["weight"], 90);
        assert_eq!(v["route"][2]["redirect"]["code"], 308);
        assert_eq!(
            v["listener"][1]["certificates"][0]["key"],
            "config/certs/example.key"
        );
        let text = v.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>"));
    }
}
