//! The immutable snapshot that serves requests, and the shared handle that
//! holds the current one.
//!
//! A request loads the snapshot once and keeps it to its end, so a reload
//! never changes the rules under a request in flight. A snapshot is built
//! from a validated `Config` and the previous snapshot: a backend still in
//! the config (same pool, same addr) gets the previous `Arc<Backend>`, with
//! its in-flight count, latency estimate and pooled connections.

use crate::backend::breaker;
use crate::backend::{Backend, Lease};
use crate::balance::{self, Balancer, Member};
use crate::config::{Config, ListenerConfig, PoolConfig, RouteConfig};
use crate::limit::{Budget, ClientLimiter};
use crate::metrics::Metrics;
use crate::route::Router;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

/// A pool as one snapshot sees it: members, settings and a balancer.
pub struct Pool {
    pub name: Arc<str>,
    pub config: PoolConfig,
    pub members: Vec<Member>,
    /// Per member: the address it resolved to when this snapshot was built.
    pub addrs: Vec<SocketAddr>,
    /// Per member: its `sluice_upstream_request_duration_seconds` series,
    /// resolved once here rather than looked up on every try.
    pub upstream_duration: Vec<prometheus::Histogram>,
    balancer: Box<dyn Balancer>,
    pub breaker: Option<breaker::Settings>,
    /// Requests and retries of the last 10 s, for `retry.budget_ratio`.
    pub budget: Budget,
}

/// Why a pool could not admit a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every backend that is otherwise usable is out of rate-limit tokens.
    RateLimited,
    NoBackend,
}

impl Pool {
    fn build(config: &PoolConfig, previous: Option<&Pool>, metrics: &Metrics) -> Pool {
        let name: Arc<str> = config.name.as_str().into();
        let mut members = Vec::with_capacity(config.backends.len());
        let mut addrs = Vec::with_capacity(config.backends.len());
        for b in &config.backends {
            let backend = previous
                .and_then(|p| p.members.iter().find(|m| *m.backend.addr == *b.addr))
                .map(|m| {
                    m.backend.conns.set_connect_timeout(config.connect_timeout);
                    m.backend.clone()
                })
                .unwrap_or_else(|| Arc::new(Backend::new(&name, &b.addr, config.connect_timeout)));
            members.push(Member {
                backend,
                weight: b.weight,
            });
            addrs.push(b.resolved);
        }
        let balancer = balance::build(config.strategy, &members);
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
            budget: Budget::default(),
        }
    }

    /// Whether member `i` may take a request now. Health, breaker, rate
    /// limit and bulkhead are checked here and nowhere else; this only
    /// looks, `admit` takes.
    fn usable(&self, i: usize, now: Instant, passive: bool) -> bool {
        let b = &self.members[i].backend;
        let max = self.config.max_in_flight;
        b.is_up()
            && (!passive || b.reachable(now))
            && (max == 0 || b.in_flight() < max as u64)
            && self
                .breaker
                .as_ref()
                .is_none_or(|s| b.breaker.allows(now, s))
            && self
                .config
                .rate_limit
                .as_ref()
                .is_none_or(|r| b.bucket.has_token(now, r.requests_per_second, r.burst))
    }

    /// Takes what member `i` needs to serve one request: a bulkhead slot (the
    /// lease), a rate-limit token and, if its breaker is half-open, a trial.
    fn admit(&self, i: usize, now: Instant) -> Option<Lease> {
        let b = &self.members[i].backend;
        let mut lease = b.try_lease(self.config.max_in_flight)?;
        if let Some(r) = &self.config.rate_limit {
            b.bucket
                .try_take(now, r.requests_per_second, r.burst)
                .ok()?;
        }
        if let Some(s) = &self.breaker {
            lease.set_trial(b.breaker.admit(now, s)?);
        }
        Some(lease)
    }

    /// Picks a member (skipping those in `tried`) and admits it.
    pub fn pick(&self, key: Option<u64>, tried: &[usize]) -> Result<(usize, Lease), Refusal> {
        let now = Instant::now();
        // Admission can lose a race the `usable` check won (another request
        // took the last slot or token): exclude that member and pick again.
        let mut refused: Vec<usize> = Vec::new();
        // A backend that just refused a connection is passed over while
        // another can serve (nginx's max_fails=1); when none can, it is
        // tried anyway rather than answering 503.
        for passive in [true, false] {
            for _ in 0..4 {
                let Some(i) = self.balancer.pick(&self.members, key, &|i| {
                    !tried.contains(&i) && !refused.contains(&i) && self.usable(i, now, passive)
                }) else {
                    break;
                };
                if let Some(lease) = self.admit(i, now) {
                    return Ok((i, lease));
                }
                refused.push(i);
            }
        }
        Err(self.refusal(now))
    }

    /// Why nothing was admitted: rate limits, if a token would have made a
    /// backend usable; otherwise no backend at all.
    fn refusal(&self, now: Instant) -> Refusal {
        let Some(r) = &self.config.rate_limit else {
            return Refusal::NoBackend;
        };
        let blocked_by_tokens = self.members.iter().any(|m| {
            let b = &m.backend;
            b.is_up()
                && self
                    .breaker
                    .as_ref()
                    .is_none_or(|s| b.breaker.allows(now, s))
                && !b.bucket.has_token(now, r.requests_per_second, r.burst)
        });
        if blocked_by_tokens {
            Refusal::RateLimited
        } else {
            Refusal::NoBackend
        }
    }
}

pub struct Route {
    pub name: Arc<str>,
    /// This route's `sluice_request_duration_seconds` series.
    pub duration: prometheus::Histogram,
    pub pool: Arc<Pool>,
    pub config: RouteConfig,
    /// Per-client buckets; carried over a reload by route name.
    pub limiter: Option<Arc<ClientLimiter>>,
}

/// What a listener's connections need from the snapshot.
pub struct ListenerView {
    /// The listener's certificates and rustls settings (TLS listeners).
    pub tls: Option<Arc<crate::tls::ListenerTls>>,
    /// Shared with every connection of the listener (one reference count
    /// per connection, not a copy).
    pub config: Arc<ListenerConfig>,
    pub router: Router<Arc<Route>>,
}

pub struct Snapshot {
    pub config: Arc<Config>,
    pub pools: BTreeMap<String, Arc<Pool>>,
    listeners: HashMap<String, ListenerView>,
    /// Routes open to every listener: serves the connections of a listener
    /// that a reload removed while they drain.
    fallback: ListenerView,
    /// Client limiters by route name, for the next snapshot to reuse.
    limiters: HashMap<String, Arc<ClientLimiter>>,
}

impl Snapshot {
    pub fn build(
        config: Config,
        tls: crate::tls::Tls,
        previous: Option<&Snapshot>,
        metrics: &Metrics,
    ) -> Snapshot {
        let pools: BTreeMap<String, Arc<Pool>> = config
            .pools
            .iter()
            .map(|p| {
                let prev = previous.and_then(|s| s.pools.get(&p.name)).map(|p| &**p);
                (p.name.clone(), Arc::new(Pool::build(p, prev, metrics)))
            })
            .collect();
        let routes: Vec<Arc<Route>> = config
            .routes
            .iter()
            .filter_map(|r| {
                let limiter = r.rate_limit.map(|_| {
                    previous
                        .and_then(|s| s.limiters.get(&r.name))
                        .cloned()
                        .unwrap_or_default()
                });
                Some(Arc::new(Route {
                    name: r.name.as_str().into(),
                    duration: metrics.route_duration(&r.name),
                    pool: pools.get(&r.pool)?.clone(),
                    config: r.clone(),
                    limiter,
                }))
            })
            .collect();
        let router_for = |listener: Option<&str>| {
            Router::new(
                routes
                    .iter()
                    .filter(|r| match (&r.config.listeners, listener) {
                        (None, _) => true,
                        (Some(ls), Some(l)) => ls.iter().any(|x| x == l),
                        (Some(_), None) => false,
                    })
                    .map(|r| {
                        (
                            r.config.host.clone(),
                            r.config.path_prefix.clone(),
                            r.clone(),
                        )
                    }),
            )
        };
        let listeners = config
            .listeners
            .iter()
            .map(|l| {
                (
                    l.name.clone(),
                    ListenerView {
                        tls: tls.get(&l.name).cloned(),
                        config: Arc::new(l.clone()),
                        router: router_for(Some(&l.name)),
                    },
                )
            })
            .collect();
        let fallback =
            ListenerView {
                tls: None,
                config: Arc::new(config.listeners.first().cloned().unwrap_or_else(|| {
                    ListenerConfig {
                        name: String::new(),
                        bind: ([127, 0, 0, 1], 0).into(),
                        header_read_timeout: std::time::Duration::from_secs(10),
                        idle_timeout: std::time::Duration::from_secs(60),
                        max_header_bytes: 65536,
                        max_connections: 10000,
                        trusted_proxies: Vec::new(),
                        certificates: Vec::new(),
                    }
                })),
                router: router_for(None),
            };
        let limiters = routes
            .iter()
            .filter_map(|r| Some((r.name.to_string(), r.limiter.clone()?)))
            .collect();
        Snapshot {
            config: Arc::new(config),
            pools,
            listeners,
            fallback,
            limiters,
        }
    }

    /// The view for a listener by name (the fallback if a reload removed it).
    pub fn listener(&self, name: &str) -> &ListenerView {
        self.listeners.get(name).unwrap_or(&self.fallback)
    }
}

/// State shared by every task: the current snapshot and process flags.
pub struct Shared {
    snapshot: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    draining: AtomicBool,
}

impl Shared {
    pub fn new(snapshot: Snapshot, metrics: Metrics) -> Shared {
        Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            draining: AtomicBool::new(false),
        }
    }

    /// The current snapshot; keep it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Publishes a new snapshot with one atomic store.
    pub fn publish(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
