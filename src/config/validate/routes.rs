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
