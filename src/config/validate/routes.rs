//! `[[route]]` tables.

use super::super::defaults;
use super::super::raw::*;
use super::super::*;
use super::Errors;
use std::collections::HashSet;

pub(super) fn validate_routes(
    e: &mut Errors,
    raw: &[RawRoute],
    listeners: &[ListenerConfig],
    pools: &std::collections::BTreeMap<String, RawPool>,
) -> Vec<RouteConfig> {
    let mut out = Vec::new();
    let mut explicit_names = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        let p = format!("route[{i}]");
        let known = |e: &mut Errors, key: String, pool: &str| {
            if !pools.contains_key(pool) {
                e.push(key, format!("unknown pool {pool:?}"));
            }
        };
        let target = match (&r.pool, &r.pools, &r.redirect) {
            (Some(pool), None, None) => {
                known(e, format!("{p}.pool"), pool);
                RouteTarget::Pool(pool.clone())
            }
            (None, Some(split), None) => {
                let mut out = Vec::new();
                for (j, s) in split.iter().enumerate() {
                    let q = format!("{p}.pools[{j}]");
                    let Some(pool) = s.pool.clone() else {
                        e.push(format!("{q}.pool"), "required key is missing");
                        continue;
                    };
                    known(e, format!("{q}.pool"), &pool);
                    let weight = e.int(&format!("{q}.weight"), s.weight, 1, 0, 1000) as u32;
                    out.push((pool, weight));
                }
                if out.is_empty() || out.iter().all(|(_, w)| *w == 0) {
                    e.push(format!("{p}.pools"), "needs a pool with a weight above 0");
                }
                RouteTarget::Split(out)
            }
            (None, None, Some(rd)) => RouteTarget::Redirect(validate_redirect(e, &p, rd)),
            (None, None, None) => {
                e.push(
                    format!("{p}.pool"),
                    "required key is missing (or pools, or redirect)",
                );
                continue;
            }
            _ => {
                e.push(p.clone(), "needs exactly one of pool, pools and redirect");
                continue;
            }
        };
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
        let path_prefix = match r
            .path_prefix
            .as_deref()
            .unwrap_or(defaults::text("route.path_prefix"))
        {
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
        let rate_limit = e.rate_limit(
            &format!("{p}.rate_limit"),
            &r.rate_limit,
            "route.rate_limit",
        );
        let methods = r.methods.clone().unwrap_or_default();
        for (j, m) in methods.iter().enumerate() {
            if m.is_empty()
                || !m
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
            {
                e.push(
                    format!("{p}.methods[{j}]"),
                    format!("expected a method in upper case (GET, POST, ...), got {m:?}"),
                );
            }
        }
        let mut headers = Vec::new();
        for (name, value) in r.headers.clone().unwrap_or_default() {
            let q = format!("{p}.headers.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                e.push(q, "invalid header name");
            } else if http::HeaderValue::from_str(&value).is_err() {
                e.push(q, format!("invalid header value {value:?}"));
            } else {
                headers.push((name.to_ascii_lowercase(), value));
            }
        }
        let query: Vec<(String, String)> =
            r.query.clone().unwrap_or_default().into_iter().collect();
        let strip_prefix = r.strip_prefix.unwrap_or(false);
        let rewrite_prefix = r.rewrite_prefix.clone().filter(|s| !s.is_empty());
        if let Some(rp) = &rewrite_prefix {
            if !rp.starts_with('/') || !visible(rp) {
                e.push(
                    format!("{p}.rewrite_prefix"),
                    format!("must be a path starting with '/', got {rp:?}"),
                );
            }
            if strip_prefix {
                e.push(
                    format!("{p}.rewrite_prefix"),
                    "not with strip_prefix = true",
                );
            }
        }
        let rewrite_host = r.rewrite_host.clone().filter(|s| !s.is_empty());
        if let Some(h) = &rewrite_host {
            if http::HeaderValue::from_str(h).is_err() || h.contains([' ', ',', '@', '/']) {
                e.push(
                    format!("{p}.rewrite_host"),
                    format!("expected a host[:port], got {h:?}"),
                );
            }
        }
        let request_headers = header_rules(e, &format!("{p}.request_headers"), &r.request_headers);
        let response_headers =
            header_rules(e, &format!("{p}.response_headers"), &r.response_headers);
        let max_body_bytes = e.int(
            &format!("{p}.max_body_bytes"),
            r.max_body_bytes,
            0,
            0,
            i64::MAX,
        ) as u64;
        let timeout = r
            .timeout
            .as_ref()
            .filter(|t| !t.is_empty())
            .map(|t| e.duration(&format!("{p}.timeout"), &Some(t.clone()), "30s"));
        let cidrs = |e: &mut Errors, key: &str, list: &Option<Vec<String>>| {
            let mut out = Vec::new();
            for (j, c) in list.clone().unwrap_or_default().iter().enumerate() {
                match super::listeners::parse_cidr(c) {
                    Some(n) => out.push(n),
                    None => e.push(format!("{p}.{key}[{j}]"), format!("invalid CIDR {c:?}")),
                }
            }
            out
        };
        let allow = cidrs(e, "allow", &r.allow);
        let deny = cidrs(e, "deny", &r.deny);
        let basic_auth = r.basic_auth.as_ref().and_then(|b| {
            let file = b.users_file.clone().filter(|f| !f.is_empty());
            let Some(file) = file else {
                e.push(
                    format!("{p}.basic_auth.users_file"),
                    "required key is missing",
                );
                return None;
            };
            let realm = b.realm.clone().unwrap_or_default();
            if realm.contains('"') || http::HeaderValue::from_str(&realm).is_err() {
                e.push(
                    format!("{p}.basic_auth.realm"),
                    format!("invalid realm {realm:?}"),
                );
            }
            Some(BasicAuthConfig {
                realm,
                users_file: PathBuf::from(file),
            })
        });
        let mirror = r.mirror.as_ref().and_then(|m| {
            let pool = m.pool.clone().filter(|p| !p.is_empty())?;
            known(e, format!("{p}.mirror.pool"), &pool);
            let percent = e.int(&format!("{p}.mirror.percent"), m.percent, 100, 0, 100) as u32;
            Some(MirrorConfig { pool, percent })
        });
        let name = r.name.clone().unwrap_or_else(|| match &target {
            RouteTarget::Pool(pool) => pool.clone(),
            RouteTarget::Split(s) => s.first().map(|(p, _)| p.clone()).unwrap_or_default(),
            RouteTarget::Redirect(_) => format!("redirect-{i}"),
        });
        out.push(RouteConfig {
            name,
            host,
            path_prefix,
            listeners: r.listeners.clone(),
            methods,
            headers,
            query,
            target,
            strip_prefix,
            rewrite_prefix,
            rewrite_host,
            request_headers,
            response_headers,
            max_body_bytes,
            timeout,
            allow,
            deny,
            basic_auth,
            compress: r.compress.unwrap_or(false),
            mirror,
            rate_limit,
        });
    }
    out
}

fn visible(s: &str) -> bool {
    s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Headers a rule may not set or remove: hop-by-hop ones, the framing, and
/// the ones sluice sets itself (Host has rewrite_host).
const RESERVED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

fn header_rules(e: &mut Errors, p: &str, raw: &Option<RawHeaderRules>) -> HeaderRules {
    let mut rules = HeaderRules::default();
    let Some(raw) = raw else {
        return rules;
    };
    let check = |e: &mut Errors, key: String, name: &str| -> Option<String> {
        let lower = name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            e.push(key, format!("invalid header name {name:?}"));
            None
        } else if RESERVED.contains(&lower.as_str()) {
            e.push(
                key,
                format!(
                    "{name:?} is hop-by-hop or set by sluice itself (for Host use rewrite_host)"
                ),
            );
            None
        } else {
            Some(lower)
        }
    };
    for (kind, map) in [("set", &raw.set), ("add", &raw.add)] {
        for (name, value) in map.clone().unwrap_or_default() {
            let key = format!("{p}.{kind}.{name}");
            let Some(lower) = check(e, key.clone(), &name) else {
                continue;
            };
            if http::HeaderValue::from_str(&value).is_err() {
                e.push(key, format!("invalid header value {value:?}"));
                continue;
            }
            match kind {
                "set" => rules.set.push((lower, value)),
                _ => rules.add.push((lower, value)),
            }
        }
    }
    for (j, name) in raw.remove.clone().unwrap_or_default().iter().enumerate() {
        if let Some(lower) = check(e, format!("{p}.remove[{j}]"), name) {
            rules.remove.push(lower);
        }
    }
    rules
}

fn validate_redirect(e: &mut Errors, p: &str, r: &RawRedirect) -> RedirectConfig {
    let q = format!("{p}.redirect");
    let scheme = r.scheme.clone().filter(|s| !s.is_empty());
    if let Some(s) = &scheme {
        if s != "http" && s != "https" {
            e.push(
                format!("{q}.scheme"),
                format!("expected http or https, got {s:?}"),
            );
        }
    }
    let host = r.host.clone().filter(|s| !s.is_empty());
    if let Some(h) = &host {
        if !visible(h) || h.contains([',', '@', '/', ':']) {
            e.push(
                format!("{q}.host"),
                format!("expected a host name, got {h:?}"),
            );
        }
    }
    let port = r
        .port
        .map(|port| e.int(&format!("{q}.port"), Some(port), 0, 1, 65535) as u16);
    for (key, v) in [("path", &r.path), ("prefix", &r.prefix)] {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            if !v.starts_with('/') || !visible(v) {
                e.push(
                    format!("{q}.{key}"),
                    format!("must be a path starting with '/', got {v:?}"),
                );
            }
        }
    }
    let code = e.int(&format!("{q}.code"), r.code, 302, 301, 308) as u16;
    if ![301, 302, 303, 307, 308].contains(&code) {
        e.push(
            format!("{q}.code"),
            format!("expected 301, 302, 303, 307 or 308, got {code}"),
        );
    }
    if r.path.as_ref().is_some_and(|v| !v.is_empty())
        && r.prefix.as_ref().is_some_and(|v| !v.is_empty())
    {
        e.push(format!("{q}.prefix"), "not with path");
    }
    RedirectConfig {
        scheme,
        host,
        port,
        path: r.path.clone().filter(|s| !s.is_empty()),
        prefix: r.prefix.clone().filter(|s| !s.is_empty()),
        code,
    }
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
