//! Building a pool for a snapshot from its config: its members (DNS
//! expanded), and what it keeps of the pool it replaces (the backends
//! with their state, the budget, the balancer when nothing it depends on
//! changed).

use super::*;

/// One member as the pool is built.
struct Entry<'a> {
    /// Its label: the addr as written, or the address DNS found.
    label: String,
    resolved: SocketAddr,
    /// Its weight in the file.
    weight: u32,
    /// The addr as written (a DNS-found member is verified as its name).
    written: &'a str,
}

impl Pool {
    /// `ramp_new`: backends new to the pool start a slow start (a reload
    /// added them), rather than at full weight (process start).
    /// `discovered`: the addresses DNS gave each backend name of a pool with
    /// `dns_refresh` (see `discovery`), by (pool, addr as written).
    pub(crate) fn build(
        config: &PoolConfig,
        previous: Option<&Pool>,
        metrics: &Metrics,
        ramp_new: bool,
        tls: Option<Arc<rustls::ClientConfig>>,
        discovered: &crate::config::resolve::Discovered,
    ) -> Pool {
        let name: Arc<str> = config.name.as_str().into();
        let in_flight = previous.map(|p| p.in_flight.clone()).unwrap_or_default();
        // A name found by DNS is one member per address, labelled by that
        // address, so addresses that stay keep their state.
        let mut entries: Vec<Entry<'_>> = Vec::new();
        for b in &config.backends {
            let entry = |label: String, resolved| Entry {
                label,
                resolved,
                weight: b.weight,
                written: &b.addr,
            };
            match discovered.get(&(config.name.clone(), b.addr.clone())) {
                Some(found) if config.dns_refresh.is_some() && !found.is_empty() => {
                    entries.extend(found.iter().map(|a| entry(a.to_string(), *a)));
                }
                _ => entries.push(entry(b.addr.clone(), b.resolved)),
            }
        }
        // HTTP/2 connections live until the backend closes them: new TLS
        // settings (a renewed client certificate) or a protocol change take
        // effect on new ones, as pooled HTTP/1 connections are replaced as
        // they idle out.
        let renew_h2 = previous.is_some_and(|p| {
            let same_tls = match (&p.tls, &tls) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (a, b) => a.is_none() && b.is_none(),
            };
            p.config.protocol != config.protocol || !same_tls
        });
        let mut members = Vec::with_capacity(entries.len());
        let mut addrs = Vec::with_capacity(entries.len());
        for b in &entries {
            let backend = previous
                .and_then(|p| p.members.iter().find(|m| *m.backend.addr == *b.label))
                .map(|m| {
                    m.backend.conns.set_connect_timeout(config.connect_timeout);
                    if renew_h2 {
                        m.backend.conns.renew_h2();
                    }
                    m.backend.clone()
                })
                .unwrap_or_else(|| {
                    let fresh = Backend::new(&name, &b.label, config.connect_timeout);
                    if ramp_new {
                        fresh.start_ramp();
                    }
                    Arc::new(fresh)
                });
            backend.join_pool(&in_flight);
            // A runtime weight (admin API) replaces the file's.
            let weight = backend.weight_override().unwrap_or(b.weight);
            members.push(Member { backend, weight });
            addrs.push(b.resolved);
        }
        // The same strategy over the same members: the previous balancer
        // (its round-robin position, its ring) serves on.
        let same = previous.is_some_and(|p| {
            p.config.strategy == config.strategy
                && p.members.len() == members.len()
                && p.members
                    .iter()
                    .zip(&members)
                    .all(|(a, b)| Arc::ptr_eq(&a.backend, &b.backend) && a.weight == b.weight)
        });
        let balancer = match previous {
            Some(p) if same => p.balancer.clone(),
            _ => balance::build(kind(config.strategy), &members),
        };
        // The pool's retry series exists from the start, at 0.
        metrics.retries.with_label_values(&[&*name]);
        let upstream_duration = members
            .iter()
            .map(|m| {
                metrics
                    .upstream_duration
                    .with_label_values(&[&*name, &*m.backend.addr])
            })
            .collect();
        Pool {
            upstream_duration,
            name,
            config: config.clone(),
            members,
            addrs,
            balancer,
            breaker: config.circuit_breaker.as_ref().map(|c| breaker::Settings {
                failure_threshold: c.failure_threshold,
                open_duration: c.open_duration,
                half_open_requests: c.half_open_requests,
            }),
            budget: previous.map(|p| p.budget.clone()).unwrap_or_default(),
            in_flight,
            tokens: entries
                .iter()
                .enumerate()
                .map(|(i, e)| (crate::sticky::token(&config.name, &e.label), i))
                .collect(),
            // A TLS backend found by DNS is verified as the name it was
            // found under.
            server_names: entries
                .iter()
                .map(|e| {
                    config
                        .tls
                        .as_ref()
                        .and_then(|t| crate::upstream_tls::server_name(t, e.written))
                })
                .collect(),
            config_weights: entries.iter().map(|e| e.weight).collect(),
            tls,
        }
    }
}

/// The balancer a config strategy means.
fn kind(s: crate::config::Strategy) -> balance::Kind {
    use crate::config::Strategy;
    match s {
        Strategy::RoundRobin => balance::Kind::SmoothWeightedRoundRobin,
        Strategy::LeastConnections => balance::Kind::LeastConnections,
        Strategy::LeastResponseTime => balance::Kind::PeakEwma,
        Strategy::IpHash | Strategy::UrlHash => balance::Kind::ConsistentHash,
        Strategy::Random => balance::Kind::WeightedRandom,
    }
}
