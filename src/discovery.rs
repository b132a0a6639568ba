//! DNS discovery (`dns_refresh`): the backend host names of such pools are
//! looked up again on their interval with hickory's resolver (through
//! `[dns] nameservers`, or the system's), and every A and AAAA address is
//! a backend with the name's weight. A lookup that fails or finds nothing
//! keeps the last good addresses (logged, counted in
//! `sluice_dns_lookups_total{result="failure"}`).
//!
//! What DNS found lives in the snapshot (`Snapshot::discovered`); when it
//! changes the snapshot is rebuilt with it, so addresses that stay keep
//! their backend state (by (pool, "ip:port")), new ones start (and are
//! health-checked), gone ones drain like backends a reload removed.

use crate::config::resolve::{lookup, resolver};
use crate::snapshot::Shared;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::Resolver;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

pub use crate::config::resolve::Discovered;

/// A backend addr whose host is a name (not an IP literal): (host, port).
pub fn host_name(addr: &str) -> Option<(&str, u16)> {
    if addr.parse::<SocketAddr>().is_ok() {
        return None;
    }
    let (host, port) = addr.rsplit_once(':')?;
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// The first lookups, before sluice serves: the backends of `dns_refresh`
/// pools start as every address their names have, at full weight (a
/// failed lookup leaves the load-time address until the next refresh).
pub async fn seed(config: &crate::config::Config) -> Discovered {
    let mut found = Discovered::new();
    let pools: Vec<_> = config
        .pools
        .iter()
        .filter(|p| p.dns_refresh.is_some())
        .collect();
    if pools.is_empty() {
        return found;
    }
    let Some(r) = resolver(&config.dns_nameservers) else {
        return found;
    };
    for pool in pools {
        for b in &pool.backends {
            if let Some((host, port)) = host_name(&b.addr) {
                if let Ok(addrs) = lookup(&r, host, port).await {
                    found.insert((pool.name.clone(), b.addr.clone()), addrs);
                }
            }
        }
    }
    found
}

/// Looks the names up on their pools' intervals for as long as sluice
/// runs; after a change, `changed` runs with the new snapshot in place (to
/// start and stop health checks).
pub async fn run(shared: Weak<Shared>, changed: impl Fn(&Shared) + Send + 'static) {
    let mut due: HashMap<String, Instant> = HashMap::new();
    let mut resolver: Option<(Vec<SocketAddr>, Resolver<TokioRuntimeProvider>)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.is_draining() {
            return;
        }
        let snap = shared.snapshot();
        let now = Instant::now();
        let pools: Vec<_> = snap
            .config
            .pools
            .iter()
            .filter_map(|p| Some((p, p.dns_refresh?)))
            .filter(|(p, _)| due.get(&p.name).is_none_or(|at| *at <= now))
            .collect();
        if pools.is_empty() {
            continue;
        }
        // The resolver follows [dns] nameservers across reloads.
        let servers = &snap.config.dns_nameservers;
        if resolver.as_ref().is_none_or(|(s, _)| s != servers) {
            resolver = self::resolver(servers).map(|r| (servers.clone(), r));
        }
        let Some((_, r)) = &resolver else {
            tracing::error!("cannot build a DNS resolver; backend names are not refreshed");
            continue;
        };
        let mut found = (*snap.discovered).clone();
        // Names no longer in the config are forgotten.
        found.retain(|(pool, addr), _| {
            snap.config.pool(pool).is_some_and(|p| {
                p.dns_refresh.is_some() && p.backends.iter().any(|b| b.addr == *addr)
            })
        });
        for (pool, every) in pools {
            due.insert(pool.name.clone(), now + every);
            for b in &pool.backends {
                let Some((host, port)) = host_name(&b.addr) else {
                    continue;
                };
                let result = lookup(r, host, port).await;
                let label = if result.is_ok() { "success" } else { "failure" };
                shared
                    .metrics
                    .dns_lookups
                    .with_label_values(&[&pool.name, label])
                    .inc();
                match result {
                    Ok(addrs) => {
                        found.insert((pool.name.clone(), b.addr.clone()), addrs);
                    }
                    Err(e) => tracing::warn!(
                        pool = %pool.name, backend = %b.addr, error = %e,
                        "DNS lookup failed; the last good addresses serve on"
                    ),
                }
            }
        }
        if found != *snap.discovered {
            tracing::info!(names = found.len(), "backend addresses changed by DNS");
            let found = Arc::new(found);
            shared.publish_with(|current| current.rediscovered(found.clone(), &shared.metrics));
            changed(&shared);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn only_names_are_looked_up() {
        assert_eq!(host_name("api.internal:8080"), Some(("api.internal", 8080)));
        assert_eq!(host_name("10.0.0.1:80"), None);
        assert_eq!(host_name("[::1]:80"), None);
        assert_eq!(host_name("api.internal"), None);
    }
}
