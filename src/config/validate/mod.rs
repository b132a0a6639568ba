//! Raw config -> validated `Config`, collecting every error with its key path.

use super::defaults;
use super::raw::*;
use super::*;

mod listeners;
mod pools;
mod routes;
mod upstream;

use listeners::validate_listeners;
use pools::validate_pools;
use routes::validate_routes;

/// Weights are 1..=256, as HAProxy's: large enough for any real ratio, small
/// enough that the precomputed round-robin schedule and hash ring stay small.
pub const MAX_WEIGHT: i64 = 256;

pub(super) struct Errors(Vec<ConfigError>);

impl Errors {
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
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

    /// A rate-limit table; `section` names its defaults (`route.rate_limit`
    /// or `pool.rate_limit`).
    fn rate_limit(
        &mut self,
        path: &str,
        raw: &Option<RawRateLimit>,
        section: &str,
    ) -> Option<RateLimitConfig> {
        let raw = raw.as_ref()?;
        let rps = defaults::float(&format!("{section}.requests_per_second"));
        let burst = defaults::int(&format!("{section}.burst"));
        let requests_per_second = raw.requests_per_second.unwrap_or(rps);
        if !(requests_per_second.is_finite() && requests_per_second > 0.0) {
            self.push(
                format!("{path}.requests_per_second"),
                format!("must be a positive number, got {requests_per_second}"),
            );
        }
        let burst = self.int(&format!("{path}.burst"), raw.burst, burst, 1, 1_000_000_000) as u32;
        let route = section == "route.rate_limit";
        let key_text = raw
            .key
            .clone()
            .unwrap_or_else(|| defaults::text("route.rate_limit.key").to_string());
        let key = match key_text.as_str() {
            _ if !route && raw.key.is_some() => {
                self.push(format!("{path}.key"), "only a route's rate limit has a key");
                RateLimitKey::ClientIp
            }
            "client_ip" => RateLimitKey::ClientIp,
            "route" => RateLimitKey::Route,
            k => match k.strip_prefix("header:") {
                Some(name) if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                    RateLimitKey::Header(name.to_ascii_lowercase())
                }
                _ => {
                    self.push(
                        format!("{path}.key"),
                        format!("expected client_ip, route or header:NAME, got {k:?}"),
                    );
                    RateLimitKey::ClientIp
                }
            },
        };
        let scope = raw
            .scope
            .clone()
            .unwrap_or_else(|| defaults::text("route.rate_limit.scope").to_string());
        let global = match scope.as_str() {
            _ if !route && raw.scope.is_some() => {
                self.push(
                    format!("{path}.scope"),
                    "only a route's rate limit has a scope",
                );
                false
            }
            "local" => false,
            // Needs [redis]: checked once the whole file is read.
            "global" => true,
            s => {
                self.push(
                    format!("{path}.scope"),
                    format!("expected local or global, got {s:?}"),
                );
                false
            }
        };
        Some(RateLimitConfig {
            requests_per_second,
            burst,
            key,
            global,
        })
    }
}

pub(super) fn validate(raw: RawConfig, opts: LoadOptions) -> Result<Config, ConfigErrors> {
    let mut e = Errors(Vec::new());

    let runtime = RuntimeConfig {
        worker_threads: e.int(
            "runtime.worker_threads",
            raw.runtime.worker_threads,
            defaults::int("runtime.worker_threads"),
            0,
            1024,
        ) as usize,
        shutdown_grace: e.duration(
            "runtime.shutdown_grace",
            &raw.runtime.shutdown_grace,
            defaults::text("runtime.shutdown_grace"),
        ),
    };

    let admin = raw.admin.as_ref().and_then(|a| {
        let bind = a
            .bind
            .clone()
            .or_else(|| Some(defaults::text("admin.bind").into()));
        let token_file = a
            .token_file
            .as_deref()
            .filter(|f| !f.is_empty())
            .map(std::path::PathBuf::from);
        e.bind("admin.bind", &bind)
            .map(|bind| AdminConfig { bind, token_file })
    });

    let level = raw
        .log
        .level
        .clone()
        .unwrap_or_else(|| defaults::text("log.level").into());
    if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        e.push(
            "log.level",
            format!("unknown level {level:?} (expected error | warn | info | debug | trace)"),
        );
    }
    let format = match raw
        .log
        .format
        .as_deref()
        .unwrap_or(defaults::text("log.format"))
    {
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
        access_log: raw
            .log
            .access_log
            .unwrap_or(defaults::boolean("log.access_log")),
    };

    let mut dns_nameservers = Vec::new();
    for (i, n) in raw
        .dns
        .as_ref()
        .and_then(|d| d.nameservers.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        // "ip:port", or a bare IP on port 53.
        let parsed = n.parse::<SocketAddr>().or_else(|_| {
            n.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        });
        match parsed {
            Ok(a) => dns_nameservers.push(a),
            Err(_) => e.push(
                format!("dns.nameservers[{i}]"),
                format!("invalid address {n:?} (expected \"ip:port\" or \"ip\")"),
            ),
        }
    }
    let redis = raw.redis.as_ref().map(|r| {
        let url = r
            .url
            .clone()
            .unwrap_or_else(|| defaults::text("redis.url").into());
        let host = url
            .strip_prefix("redis://")
            .or_else(|| url.strip_prefix("rediss://"))
            .map(|rest| rest.rsplit_once('@').map_or(rest, |(_, h)| h))
            .map(|h| h.split(['/', '?', '#']).next().unwrap_or(""));
        if host.is_none_or(str::is_empty) {
            let shown = RedisUrl::new(url.clone()).redacted();
            e.push(
                "redis.url",
                format!("expected redis://[user:password@]host[:port][/db] or rediss://..., got {shown:?}"),
            );
        }
        RedisConfig {
            url: RedisUrl::new(url),
            timeout: e.duration("redis.timeout", &r.timeout, defaults::text("redis.timeout")),
        }
    });

    let acme = raw.acme.as_ref().map(|a| {
        let text = |key: &str, v: &Option<String>| {
            v.clone()
                .unwrap_or_else(|| defaults::text(&format!("acme.{key}")).into())
        };
        let directory = text("directory", &a.directory);
        if !directory.starts_with("https://") {
            e.push(
                "acme.directory",
                format!("expected an https:// URL, got {directory:?}"),
            );
        }
        let state_dir = text("state_dir", &a.state_dir);
        if state_dir.is_empty() {
            e.push("acme.state_dir", "must not be empty");
        }
        let challenge = match text("challenge", &a.challenge).as_str() {
            "tls-alpn-01" => AcmeChallenge::TlsAlpn01,
            "http-01" => AcmeChallenge::Http01,
            other => {
                e.push(
                    "acme.challenge",
                    format!("expected tls-alpn-01 or http-01, got {other:?}"),
                );
                AcmeChallenge::TlsAlpn01
            }
        };
        AcmeConfig {
            directory,
            email: Some(text("email", &a.email)).filter(|s| !s.is_empty()),
            state_dir: PathBuf::from(state_dir),
            ca: Some(text("ca", &a.ca))
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            challenge,
            renew_before: e.duration(
                "acme.renew_before",
                &a.renew_before,
                defaults::text("acme.renew_before"),
            ),
        }
    });

    let listeners = validate_listeners(&mut e, &raw.listener, admin.as_ref());
    for (i, l) in listeners.iter().enumerate() {
        if !l.acme_domains.is_empty() && acme.is_none() {
            e.push(
                format!("listener[{i}].acme_domains"),
                "needs an [acme] section (the directory and where to keep certificates)",
            );
        }
    }
    if acme
        .as_ref()
        .is_some_and(|a| a.challenge == AcmeChallenge::Http01)
        && listeners.iter().any(|l| !l.acme_domains.is_empty())
        && listeners.iter().all(|l| l.tls())
    {
        e.push(
            "acme.challenge",
            "http-01 is answered on a plaintext listener, and there is none",
        );
    }
    let pools = validate_pools(&mut e, &raw.pool, opts, &dns_nameservers);
    let routes = validate_routes(&mut e, &raw.route, &listeners, &raw.pool);
    if redis.is_none() {
        for (i, r) in routes.iter().enumerate() {
            if r.rate_limit.as_ref().is_some_and(|l| l.global) {
                e.push(
                    format!("route[{i}].rate_limit.scope"),
                    "\"global\" needs a [redis] section to share the buckets through",
                );
            }
        }
    }

    if e.0.is_empty() {
        Ok(Config {
            runtime,
            admin,
            log,
            redis,
            acme,
            dns_nameservers,
            listeners,
            routes,
            warnings: pools
                .iter()
                .filter(|p| p.tls.as_ref().is_some_and(|t| !t.verify))
                .map(|p| ConfigError {
                    path: format!("pool.{}.tls.verify", p.name),
                    message: "false: the backends' certificates are not verified (anyone on the path can pose as them)".into(),
                })
                .collect(),
            pools,
        })
    } else {
        Err(ConfigErrors(e.0))
    }
}

#[cfg(test)]
mod tests;
