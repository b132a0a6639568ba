//! `[[listener]]` tables.

use super::super::defaults;
use super::super::raw::*;
use super::super::*;
use super::Errors;
use ipnet::IpNet;
use std::collections::HashSet;

pub(super) fn validate_listeners(
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
        let mut acme_domains = Vec::new();
        for (j, d) in l.acme_domains.iter().flatten().enumerate() {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            // A DNS name: letters, digits, hyphens, dots; no wildcard (the
            // http-01 and tls-alpn-01 challenges cannot prove one).
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            if ok {
                acme_domains.push(d);
            } else {
                e.push(
                    format!("{p}.acme_domains[{j}]"),
                    format!("{d:?} is not a DNS name sluice can obtain a certificate for (no wildcards)"),
                );
            }
        }
        out.push(ListenerConfig {
            name,
            bind,
            header_read_timeout: e.duration(
                &format!("{p}.header_read_timeout"),
                &l.header_read_timeout,
                defaults::text("listener.header_read_timeout"),
            ),
            idle_timeout: e.duration(
                &format!("{p}.idle_timeout"),
                &l.idle_timeout,
                defaults::text("listener.idle_timeout"),
            ),
            max_header_bytes: e.int(
                &format!("{p}.max_header_bytes"),
                l.max_header_bytes,
                defaults::int("listener.max_header_bytes"),
                1024,
                1 << 20,
            ) as usize,
            max_connections: e.int(
                &format!("{p}.max_connections"),
                l.max_connections,
                defaults::int("listener.max_connections"),
                1,
                10_000_000,
            ) as usize,
            trusted_proxies: trusted,
            certificates,
            acme_domains,
            proxy_protocol: l.proxy_protocol.unwrap_or(false),
        });
    }
    out
}

/// Accepts a CIDR (`10.0.0.0/8`) or a bare address (a /32 or /128).
pub(super) fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}
